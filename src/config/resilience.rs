//! The `[circuit_breakers.*]` and `[load_shedding]` sections (what they
//! drive: `crate::resilience`).

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    pub failure_threshold: u32,
    pub open_timeout_ms: u64,
    /// How often the dependency is checked while the breaker is not closed.
    pub probe_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSheddingSettings {
    pub max_runtime_lag_ms: u64,
    pub lag_probe_interval_ms: u64,
    pub lag_window_ms: u64,
    pub max_in_flight: usize,
    pub write_reserve: f64,
    pub max_db_pool_waiters: i64,
    pub retry_after_secs: u64,
}

impl LoadSheddingSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: &str| {
            Err(ConfigError::Invalid {
                key: format!("load_shedding.{key}"),
                problem: problem.to_owned(),
            })
        };
        if self.max_runtime_lag_ms == 0 || self.lag_probe_interval_ms == 0 {
            return invalid(
                "max_runtime_lag_ms",
                "and lag_probe_interval_ms must be greater than 0",
            );
        }
        if self.lag_window_ms < self.lag_probe_interval_ms {
            return invalid("lag_window_ms", "must be at least lag_probe_interval_ms");
        }
        if self.max_in_flight == 0 {
            return invalid("max_in_flight", "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.write_reserve) {
            return invalid("write_reserve", "must be at least 0 and below 1");
        }
        if self.max_db_pool_waiters < 0 {
            return invalid("max_db_pool_waiters", "must not be negative");
        }
        if self.retry_after_secs == 0 {
            return invalid("retry_after_secs", "must be at least 1");
        }
        Ok(())
    }
}
