//! Marketplace connections as the API shows and accepts them.

use std::fmt;

use garde::Validate;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::validation::not_blank;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MarketplaceKind {
    /// The built-in deterministic simulator.
    Demo,
    Wildberries,
}

impl MarketplaceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MarketplaceKind::Demo => "demo",
            MarketplaceKind::Wildberries => "wildberries",
        }
    }
}

/// The demo marketplace needs no credentials.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DemoCredentials {}

/// Wildberries seller API credentials.
#[derive(Clone, Serialize, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WildberriesCredentials {
    /// The seller API token. Write-only: never returned.
    #[garde(custom(secret_text))]
    #[schema(value_type = String, min_length = 1, max_length = 4096, pattern = r"\S", write_only)]
    #[serde(serialize_with = "expose")]
    pub api_token: SecretString,
}

impl fmt::Debug for WildberriesCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WildberriesCredentials { api_token: [redacted] }")
    }
}

fn secret_text(value: &SecretString, _: &()) -> garde::Result {
    let token = value.expose_secret();
    if token.trim().is_empty() || token.len() > 4096 {
        return Err(garde::Error::new("must be 1 to 4096 characters, not blank"));
    }
    Ok(())
}

/// Serializes a secret for encryption only (the one place it is written out).
fn expose<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

/// `POST /api/v1/marketplaces`: the credentials' shape depends on `kind`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum CreateConnection {
    Demo {
        #[garde(length(min = 1, max = 200), custom(not_blank))]
        #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
        name: String,
        #[garde(dive)]
        #[serde(default)]
        credentials: DemoCredentials,
    },
    Wildberries {
        #[garde(length(min = 1, max = 200), custom(not_blank))]
        #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
        name: String,
        #[garde(dive)]
        credentials: WildberriesCredentials,
    },
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Connection {
    pub id: Uuid,
    pub kind: MarketplaceKind,
    pub name: String,
    /// Always true: credentials are stored (encrypted) but never returned.
    pub has_credentials: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_synced_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}
