//! `[metrics]`: the memory trend and the active-tenant window.

use std::time::Duration;

use garde::Validate;
use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// How often the resident memory is sampled for the growth rate.
    #[garde(range(min = 1))]
    pub memory_sample_interval_secs: u64,
    /// The window the memory growth rate is computed over.
    #[garde(skip)]
    pub memory_growth_window_secs: u64,
    /// A tenant is active while it made a request within this window.
    #[garde(range(min = 60, max = 86_400))]
    pub active_tenant_window_secs: u64,
}

impl MetricsSettings {
    pub fn memory_sample_interval(&self) -> Duration {
        Duration::from_secs(self.memory_sample_interval_secs)
    }

    pub fn memory_growth_window(&self) -> Duration {
        Duration::from_secs(self.memory_growth_window_secs)
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.memory_growth_window_secs < 2 * self.memory_sample_interval_secs {
            return invalid(
                "metrics.memory_growth_window_secs",
                "must cover at least two samples of metrics.memory_sample_interval_secs",
            );
        }
        Ok(())
    }
}
