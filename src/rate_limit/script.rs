//! The call of `script.lua`: one decision over the windows of one hash slot
//! (a tenant's, a client IP's, or the global budget's), with the caller's
//! revocation state read in the same round trip.

use std::time::Instant;

use super::limiter::Check;
use super::window::WindowState;
use crate::redis_conn::{Redis, RedisGuard};

const SOURCE: &str = include_str!("script.lua");

/// The version of the packed window layout, the last part of every window
/// key: during a rolling update, replicas of releases with different layouts
/// count in different keys (for that while, a limit may admit up to twice)
/// instead of overwriting each other's counts.
pub const LAYOUT: &str = "v2";

/// What the script said.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The revocation state read: 0 valid or no token, 1 revoked, 2 unknown
    /// (the tenant's revocation state is missing from Redis).
    pub status: i64,
    /// Hits recorded (or, when only looking, that would be): 0 is a refusal.
    pub granted: u64,
    /// Redis's clock, in Unix milliseconds.
    pub now_ms: i64,
    /// One state per window, in the order of the checks; empty when the
    /// token was revoked (the script stops before counting).
    pub windows: Vec<WindowState>,
}

pub struct WindowScript {
    script: redis::Script,
    redis: Redis,
    guard: RedisGuard,
    buckets: u32,
}

impl WindowScript {
    pub fn new(redis: Redis, guard: RedisGuard, buckets: u32) -> Self {
        Self {
            script: redis::Script::new(SOURCE),
            redis,
            guard,
            buckets,
        }
    }

    /// Loads the script so the first request needs no extra round trip.
    /// On a cluster this reaches one node; `EVALSHA` reloads it on the others.
    pub async fn load(&self) -> anyhow::Result<()> {
        let mut conn = self.redis.connection();
        let load = async { Ok(self.script.prepare_invoke().load_async(&mut conn).await?) };
        self.guard.run("rate_limit.load_script", load).await?;
        Ok(())
    }

    /// Checks `checks` — every one in the same hash slot; consecutive checks
    /// with the same key are the windows of one scope — and records `hits`
    /// in each (or as many as fit, for a lease; 0 only looks). With
    /// `revocation` (the token's three keys, in the same slot, and its issue
    /// time) the token's state is read first.
    pub async fn run(
        &self,
        checks: &[&Check],
        hits: u64,
        revocation: Option<([String; 3], i64)>,
        duration: &prometheus::Histogram,
    ) -> anyhow::Result<Reply> {
        let mut invocation = self.script.prepare_invoke();
        let issued_at_ms = revocation.as_ref().map_or(0, |(_, at)| *at);
        if let Some((keys, _)) = &revocation {
            for key in keys {
                invocation.key(key);
            }
        }
        invocation
            .arg(hits)
            .arg(self.buckets)
            .arg(u8::from(revocation.is_some()))
            .arg(issued_at_ms);
        for scope in checks.chunk_by(|a, b| a.key == b.key) {
            invocation.key(&*scope[0].key).arg(scope.len());
            for check in scope {
                invocation.arg(check.spec.limit).arg(check.spec.bucket_ms);
            }
        }
        let started = Instant::now();
        let mut conn = self.redis.connection();
        let result = self
            .guard
            .run("rate_limit.decide", async {
                Ok(invocation.invoke_async::<Vec<i64>>(&mut conn).await?)
            })
            .await;
        duration.observe(started.elapsed().as_secs_f64());
        let values = result?;
        anyhow::ensure!(
            values.len() >= 3,
            "the rate-limit script answered {values:?}"
        );
        let windows: Vec<WindowState> = values[3..]
            .chunks_exact(3)
            .map(|w| WindowState {
                count: w[0].max(0) as u64,
                retry_ms: w[1].max(0) as u64,
                reset_ms: w[2].max(0) as u64,
            })
            .collect();
        anyhow::ensure!(
            windows.is_empty() && values[0] == 1 || windows.len() == checks.len(),
            "the rate-limit script answered {} windows for {}",
            windows.len(),
            checks.len()
        );
        Ok(Reply {
            status: values[0],
            granted: values[1].max(0) as u64,
            now_ms: values[2],
            windows,
        })
    }
}
