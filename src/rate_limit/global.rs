//! The global limit without a key every request touches: each replica takes
//! leases of the global budget from Redis — a number of requests, counted
//! in the global window when taken (the same sub-window algorithm, one
//! script call) — and admits from its lease in process until it is spent
//! or `lease_ms` old. A request costs Redis nothing for the global limit
//! except once per lease.
//!
//! A lease's size follows demand: it doubles while leases run out before
//! they expire, and falls back to what was used when one expires unspent,
//! capped at the budget's share of one lease period
//! (`limit × lease_ms / window`, at least 1). A lease counts whole when
//! taken, so the Redis count never exceeds the limit; its requests are
//! admitted up to `lease_ms` later, so in any window-long interval the
//! replicas together admit at most `limit + R × max_lease` (R replicas):
//! leases taken in the `lease_ms` before the interval may be spent in it.
//! While the global limit refuses, requests are refused in process until
//! the `Retry-After` the script gave, without asking Redis.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::limiter::Check;
use super::script::WindowScript;
use super::window::WindowState;

pub struct GlobalBudget {
    lease_ms: u64,
    max_lease: u64,
    state: Mutex<Lease>,
    /// One lease request at a time per replica: the others wait for its answer.
    taking: tokio::sync::Mutex<()>,
}

struct Lease {
    left: u64,
    size: u64,
    expires: Instant,
    /// Refused by Redis: until then, refuse without asking.
    refused_until: Option<Instant>,
    /// The global window as last read from Redis.
    last: WindowState,
}

/// What the global limit says about one request.
pub enum Verdict {
    Admit(WindowState),
    Refuse(WindowState),
}

impl GlobalBudget {
    pub fn new(limit: u64, window_secs: u64, lease_ms: u64) -> Self {
        let window_ms = window_secs.saturating_mul(1000).max(1);
        let max_lease = (limit.saturating_mul(lease_ms) / window_ms).max(1);
        Self {
            lease_ms,
            max_lease,
            state: Mutex::new(Lease {
                left: 0,
                size: 1,
                expires: Instant::now(),
                refused_until: None,
                last: WindowState::default(),
            }),
            taking: tokio::sync::Mutex::new(()),
        }
    }

    /// The most one lease holds.
    pub fn max_lease(&self) -> u64 {
        self.max_lease
    }

    /// Admits one request from this replica's lease, taking a new lease
    /// from Redis (the global `check`) when it is spent or old.
    pub async fn take(
        &self,
        check: &Check,
        script: &WindowScript,
        duration: &prometheus::Histogram,
    ) -> anyhow::Result<Verdict> {
        if let Some(verdict) = self.spend_lease() {
            return Ok(verdict);
        }
        let _taking = self.taking.lock().await;
        // Another request may have taken a lease while this one waited.
        if let Some(verdict) = self.spend_lease() {
            return Ok(verdict);
        }
        let size = self.next_size();
        let reply = script.run(&[check], size, None, duration).await?;
        let window = reply.windows.first().copied().unwrap_or_default();
        let now = Instant::now();
        let mut lease = self.lock();
        lease.last = window;
        if reply.granted == 0 {
            lease.left = 0;
            lease.refused_until = Some(now + Duration::from_millis(window.retry_ms.max(1)));
            return Ok(Verdict::Refuse(window));
        }
        lease.refused_until = None;
        lease.size = reply.granted;
        lease.left = reply.granted - 1;
        lease.expires = now + Duration::from_millis(self.lease_ms);
        Ok(Verdict::Admit(window))
    }

    /// The state shown by `/rate-limits/me`: refused or not, as last known.
    pub fn peek(&self) -> Verdict {
        let lease = self.lock();
        match lease.refused_until {
            Some(until) if until > Instant::now() => Verdict::Refuse(lease.last),
            _ => Verdict::Admit(lease.last),
        }
    }

    fn spend_lease(&self) -> Option<Verdict> {
        let now = Instant::now();
        let mut lease = self.lock();
        if let Some(until) = lease.refused_until
            && until > now
        {
            let mut window = lease.last;
            window.retry_ms = (until - now).as_millis() as u64;
            return Some(Verdict::Refuse(window));
        }
        if lease.left > 0 && lease.expires > now {
            lease.left -= 1;
            return Some(Verdict::Admit(lease.last));
        }
        None
    }

    /// Twice the last lease if it was spent before expiring, else what of it was used.
    fn next_size(&self) -> u64 {
        let lease = self.lock();
        let size = if lease.left == 0 && lease.expires > Instant::now() {
            lease.size.saturating_mul(2)
        } else {
            lease.size - lease.left
        };
        size.clamp(1, self.max_lease)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lease> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
