//! `[load_shedding]`: when the API refuses work with 503 (what it drives:
//! `crate::resilience::load`).

use garde::Validate;
use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct LoadSheddingSettings {
    #[garde(range(min = 1))]
    pub max_runtime_lag_ms: u64,
    #[garde(range(min = 1))]
    pub lag_probe_interval_ms: u64,
    /// At least `lag_probe_interval_ms`.
    #[garde(skip)]
    pub lag_window_ms: u64,
    #[garde(range(min = 1))]
    pub max_in_flight: usize,
    /// Share of `max_in_flight` kept for writes: at least 0, below 1.
    #[garde(custom(below_one))]
    pub write_reserve: f64,
    #[garde(range(min = 0))]
    pub max_db_pool_waiters: i64,
    #[garde(range(min = 1))]
    pub retry_after_secs: u64,
}

fn below_one(value: &f64, _: &()) -> garde::Result {
    if (0.0..1.0).contains(value) {
        Ok(())
    } else {
        Err(garde::Error::new("must be at least 0 and below 1"))
    }
}

impl LoadSheddingSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.lag_window_ms < self.lag_probe_interval_ms {
            return invalid(
                "load_shedding.lag_window_ms",
                "must be at least load_shedding.lag_probe_interval_ms",
            );
        }
        Ok(())
    }
}
