//! `[worker]`: the task consumer and its retries.

use std::net::IpAddr;

use garde::Validate;
use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// The worker's own `/metrics` and health routes.
    #[garde(skip)]
    pub host: IpAddr,
    #[garde(skip)]
    pub port: u16,
    #[garde(skip)]
    pub shutdown_timeout_secs: u64,
    #[garde(skip)]
    pub max_retries: u32,
    #[garde(range(min = 1))]
    pub retry_base_secs: u32,
    /// At least `retry_base_secs`.
    #[garde(skip)]
    pub retry_max_secs: u32,
    /// Products written per transaction during a sync.
    #[garde(range(min = 1, max = 10_000))]
    pub page_size: u32,
    #[garde(skip)]
    pub demo_products: u32,
    /// A running sync job is the worker's for this long, renewed every
    /// third of it; past it, beat's reaper hands the job to another worker.
    #[garde(range(min = 3))]
    pub job_lease_secs: u64,
}

impl WorkerSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.retry_max_secs < self.retry_base_secs {
            return invalid(
                "worker.retry_max_secs",
                "must be at least worker.retry_base_secs",
            );
        }
        Ok(())
    }
}
