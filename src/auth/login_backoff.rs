//! Per-account backoff on failed password checks: sign-in, and the current
//! password `PATCH /users/me` asks for. Per-IP limits alone let a guesser
//! spread over many addresses; this counts by the account, whatever the
//! address, and the same whether or not the account exists (the key is the
//! normalised email, so the answer reveals nothing).
//!
//! After `free_attempts` failures in a row, each further failure locks the
//! account's password checks for `base_ms × 2^(failures − free_attempts)`,
//! capped at `max_secs`; an attempt while locked is refused (429 with
//! `Retry-After`) without checking the password. A success clears the
//! count, as do `reset_after_secs` without a failure.
//!
//! In Redis (shared by every replica), the two keys in the account's hash
//! slot. If Redis cannot answer, checks go on without backoff (the per-IP
//! limits still apply) rather than locking everyone out.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::LoginBackoffSettings;
use crate::http::error::ApiError;
use crate::redis_conn::{Redis, RedisGuard, tag};

pub struct LoginBackoff {
    redis: Redis,
    guard: RedisGuard,
    prefix: String,
    settings: LoginBackoffSettings,
}

impl LoginBackoff {
    pub fn new(
        redis: Redis,
        guard: RedisGuard,
        key_prefix: &str,
        settings: &LoginBackoffSettings,
    ) -> Self {
        Self {
            redis,
            guard,
            prefix: format!("{key_prefix}login_backoff:"),
            settings: settings.clone(),
        }
    }

    /// (failure count, lock) keys of an account, by its normalised email.
    fn keys(&self, email: &str) -> (String, String) {
        let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
        let slot = tag(hex::encode(&digest[..16]));
        (
            format!("{}{slot}:failures", self.prefix),
            format!("{}{slot}:locked", self.prefix),
        )
    }

    /// Refuses a password check while the account is locked.
    pub async fn check(&self, email: &str) -> Result<(), ApiError> {
        let (_, locked) = self.keys(email);
        let remaining_ms: i64 = match self
            .guard
            .run("login_backoff.check", async {
                let mut conn = self.redis.connection();
                Ok(redis::cmd("PTTL")
                    .arg(&locked)
                    .query_async(&mut conn)
                    .await?)
            })
            .await
        {
            Ok(ms) => ms,
            Err(err) => {
                tracing::warn!(error = %err, "login backoff unavailable: checking without it");
                return Ok(());
            }
        };
        if remaining_ms > 0 {
            let retry_after_secs = (remaining_ms as u64).div_ceil(1000);
            return Err(ApiError::TooManyRequests {
                detail: format!(
                    "Too many failed password attempts for this account; retry in {retry_after_secs} s"
                ),
                retry_after_secs,
            });
        }
        Ok(())
    }

    /// Counts a failed check; from `free_attempts` failures on, locks.
    pub async fn failed(&self, email: &str) {
        let (failures, locked) = self.keys(email);
        let settings = &self.settings;
        let result = self
            .guard
            .run("login_backoff.fail", async {
                let mut conn = self.redis.connection();
                let (count,): (u32,) = redis::pipe()
                    .incr(&failures, 1)
                    .expire(&failures, settings.reset_after_secs as i64)
                    .ignore()
                    .query_async(&mut conn)
                    .await?;
                if let Some(lock) = lock_for(settings, count) {
                    let _: () = redis::cmd("SET")
                        .arg(&locked)
                        .arg(1)
                        .arg("PX")
                        .arg(lock.as_millis() as u64)
                        .query_async(&mut conn)
                        .await?;
                }
                Ok(())
            })
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "login backoff unavailable: a failure went uncounted");
        }
    }

    /// Clears the account's count after a successful check.
    pub async fn succeeded(&self, email: &str) {
        let (failures, locked) = self.keys(email);
        let _ = self
            .guard
            .run("login_backoff.clear", async {
                let mut conn = self.redis.connection();
                let _: () = redis::pipe()
                    .del(&failures)
                    .ignore()
                    .del(&locked)
                    .ignore()
                    .query_async(&mut conn)
                    .await?;
                Ok(())
            })
            .await;
    }
}

/// How long `failures` failures in a row lock the account, if at all.
fn lock_for(settings: &LoginBackoffSettings, failures: u32) -> Option<Duration> {
    let beyond = failures.checked_sub(settings.free_attempts)?;
    let factor = 2u64.saturating_pow(beyond.min(40));
    let lock_ms = settings.base_ms.saturating_mul(factor);
    Some(Duration::from_millis(lock_ms.min(settings.max_secs * 1000)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_doubles_from_the_free_attempts_on_and_is_capped() {
        let settings = LoginBackoffSettings {
            free_attempts: 5,
            base_ms: 1000,
            max_secs: 900,
            reset_after_secs: 3600,
        };
        let secs = |n| lock_for(&settings, n).map(|d| d.as_secs());
        assert_eq!(secs(4), None);
        assert_eq!(secs(5), Some(1));
        assert_eq!(secs(6), Some(2));
        assert_eq!(secs(10), Some(32));
        assert_eq!(secs(15), Some(900));
        assert_eq!(secs(u32::MAX), Some(900));
    }
}
