//! `[beat]`: the scheduler's intervals and its leadership.

use std::net::IpAddr;

use garde::Validate;
use serde::Deserialize;

use super::{ConfigError, invalid};

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
    /// How often expired job leases are reaped and due jobs whose message
    /// is missing are handed to the broker.
    #[garde(range(min = 1))]
    pub sweep_interval_secs: u64,
    /// The leader holds the schedule this long, renewed every third of it;
    /// a leader that stops renewing (frozen, cut off, dead) is replaced
    /// within this plus `standby_retry_secs`.
    #[garde(range(min = 3))]
    pub leader_lease_secs: u64,
    /// How often a standby tries to take the lead.
    #[garde(range(min = 1))]
    pub standby_retry_secs: u64,
    /// How often retention runs (`[retention]`).
    #[garde(range(min = 1))]
    pub purge_interval_secs: u64,
}

impl BeatSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.liveness_timeout_secs <= self.standby_retry_secs.max(self.leader_lease_secs) {
            return invalid(
                "beat.liveness_timeout_secs",
                "must be longer than beat.standby_retry_secs and beat.leader_lease_secs",
            );
        }
        Ok(())
    }
}
