//! `[secrets]`: the Fernet key ring that encrypts credentials at rest.

use garde::Validate;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{ConfigError, invalid, list_or_comma_separated};

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct SecretsSettings {
    /// The first key encrypts; every key decrypts (rotation).
    #[serde(deserialize_with = "list_or_comma_separated")]
    #[garde(length(min = 1), inner(custom(fernet_key)))]
    pub fernet_keys: Vec<SecretString>,
}

fn fernet_key(key: &SecretString, _: &()) -> garde::Result {
    match fernet::Fernet::new(key.expose_secret()) {
        Some(_) => Ok(()),
        None => Err(garde::Error::new(
            "is not a Fernet key (URL-safe base64 of 32 bytes; generate one with `python3 -c \"import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())\"`)",
        )),
    }
}

impl SecretsSettings {
    /// Production needs its own keys.
    pub(super) fn check(&self, production: bool) -> Result<(), ConfigError> {
        let shipped: Vec<String> = super::shipped_default("secrets.fernet_keys");
        let uses_shipped = self
            .fernet_keys
            .iter()
            .any(|key| shipped.iter().any(|d| d == key.expose_secret()));
        if production && uses_shipped {
            return invalid(
                "secrets.fernet_keys",
                "contains the built-in development key; production needs its own keys",
            );
        }
        Ok(())
    }
}
