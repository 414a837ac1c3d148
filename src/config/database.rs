//! `[database]`: the PostgreSQL pool, and whether a transaction pooler
//! (PgBouncer) stands between the service and PostgreSQL.

use std::time::Duration;

use garde::Validate;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::rules::{secret_url_of, url_of};
use super::{ConfigError, invalid};

/// What stands between the service and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooler {
    /// The service talks to PostgreSQL itself.
    #[default]
    None,
    /// A pooler in transaction mode (PgBouncer `pool_mode = transaction`):
    /// a server connection serves one transaction of one client, then
    /// another client's. Statements are then unnamed, and what needs a
    /// session (beat's leadership, migrations) goes through `direct_url`.
    Transaction,
}

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Holds the password: never logged.
    #[garde(custom(secret_url_of(&["postgres", "postgresql"])))]
    pub url: SecretString,
    #[serde(default)]
    #[garde(skip)]
    pub pooler: Pooler,
    /// PostgreSQL itself, bypassing the pooler: for the connections that
    /// need a session. Required with a pooler, refused without one.
    #[serde(default)]
    #[garde(custom(optional_secret_url))]
    pub direct_url: Option<SecretString>,
    /// Statements at least this slow are logged and counted by query kind.
    #[garde(skip)]
    pub slow_query_threshold_ms: u64,
    #[garde(range(min = 1))]
    pub max_connections: u32,
    /// At most `max_connections` (checked with the other cross-key rules).
    #[garde(skip)]
    pub min_connections: u32,
    #[garde(range(min = 1))]
    pub acquire_timeout_ms: u64,
    #[garde(skip)]
    pub statement_timeout_ms: u64,
}

fn optional_secret_url(value: &Option<SecretString>, ctx: &()) -> garde::Result {
    match value {
        Some(url) => url_of(&["postgres", "postgresql"])(url.expose_secret(), ctx),
        None => Ok(()),
    }
}

impl DatabaseSettings {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    /// The URL of PostgreSQL itself: `direct_url` behind a pooler, else `url`.
    pub fn session_url(&self) -> &SecretString {
        self.direct_url.as_ref().unwrap_or(&self.url)
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.min_connections > self.max_connections {
            return invalid(
                "database.min_connections",
                "must not exceed database.max_connections",
            );
        }
        match (self.pooler, &self.direct_url) {
            (Pooler::Transaction, None) => invalid(
                "database.direct_url",
                "is required when database.pooler is \"transaction\": beat's leadership and migrations need a session, which a transaction pooler does not keep",
            ),
            (Pooler::None, Some(_)) => invalid(
                "database.direct_url",
                "is only used behind a pooler: set database.pooler = \"transaction\" or remove it",
            ),
            _ => Ok(()),
        }
    }
}
