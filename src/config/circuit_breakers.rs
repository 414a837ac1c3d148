//! `[circuit_breakers.*]`: one breaker per dependency (what they drive:
//! `crate::resilience::breaker`).

use garde::Validate;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerSettings {
    #[garde(dive)]
    pub database: BreakerSettings,
    #[garde(dive)]
    pub redis: BreakerSettings,
}

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    #[garde(range(min = 1))]
    pub failure_threshold: u32,
    #[garde(range(min = 1))]
    pub open_timeout_ms: u64,
    /// How often the dependency is checked while the breaker is not closed.
    #[garde(range(min = 1))]
    pub probe_interval_ms: u64,
}
