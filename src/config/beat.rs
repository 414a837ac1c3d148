//! `[beat]`: the scheduler's intervals and its leadership.

use std::net::IpAddr;

use garde::Validate;
use serde::Deserialize;

use super::{ConfigError, invalid};

/// How often the leader's lock connection is checked, in seconds.
const LOCK_KEEPALIVE_SECS: u64 = 5;

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct BeatSettings {
    /// Beat's own `/health/live` and `/metrics`.
    #[garde(skip)]
    pub host: IpAddr,
    #[garde(skip)]
    pub port: u16,
    /// Liveness fails when the scheduling loop has not come round for this long.
    #[garde(skip)]
    pub liveness_timeout_secs: u64,
    #[garde(range(min = 1))]
    pub sync_interval_secs: u64,
    #[garde(range(min = 1))]
    pub sweep_interval_secs: u64,
    #[garde(skip)]
    pub stale_job_secs: u64,
    #[garde(skip)]
    pub standby_retry_secs: u64,
    /// How often retention runs (`[retention]`).
    #[garde(range(min = 1))]
    pub purge_interval_secs: u64,
}

impl BeatSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.liveness_timeout_secs <= self.standby_retry_secs.max(LOCK_KEEPALIVE_SECS) {
            return invalid(
                "beat.liveness_timeout_secs",
                "must be longer than beat.standby_retry_secs and the 5 s lock keepalive",
            );
        }
        Ok(())
    }
}
