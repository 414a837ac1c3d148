//! `[database]`: the PostgreSQL pool.

use std::time::Duration;

use garde::Validate;
use secrecy::SecretString;
use serde::Deserialize;

use super::rules::secret_url_of;

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Holds the password: never logged.
    #[garde(custom(secret_url_of(&["postgres", "postgresql"])))]
    pub url: SecretString,
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

impl DatabaseSettings {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}
