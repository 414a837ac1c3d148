//! `[cors]`: which browser origins may call the API.

use garde::Validate;
use serde::Deserialize;

use super::{ConfigError, invalid, list_or_comma_separated};

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins such as `https://app.example.com`, or `*`.
    #[serde(deserialize_with = "list_or_comma_separated")]
    #[garde(inner(custom(origin)))]
    pub allowed_origins: Vec<String>,
    #[serde(deserialize_with = "list_or_comma_separated")]
    #[garde(skip)]
    pub allowed_methods: Vec<String>,
    #[serde(deserialize_with = "list_or_comma_separated")]
    #[garde(skip)]
    pub allowed_headers: Vec<String>,
    #[garde(skip)]
    pub allow_credentials: bool,
    #[garde(skip)]
    pub max_age_secs: usize,
}

fn origin(value: &str, _: &()) -> garde::Result {
    if value == "*" || url::Url::parse(value).is_ok() {
        Ok(())
    } else {
        Err(garde::Error::new(format!(
            "`{value}` is not an origin such as https://app.example.com"
        )))
    }
}

impl CorsSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.allow_credentials && self.allowed_origins.iter().any(|o| o == "*") {
            return invalid(
                "cors.allowed_origins",
                "must not contain \"*\" while cors.allow_credentials is true (browsers refuse it, and it would expose credentials to every site)",
            );
        }
        Ok(())
    }
}
