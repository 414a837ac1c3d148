//! `[health]`: the readiness checks.

use std::time::Duration;

use garde::Validate;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct HealthSettings {
    #[garde(range(min = 1))]
    pub check_timeout_ms: u64,
}

impl HealthSettings {
    pub fn check_timeout(&self) -> Duration {
        Duration::from_millis(self.check_timeout_ms)
    }
}
