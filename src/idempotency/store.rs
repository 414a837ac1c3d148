//! The keys' records in Redis.
//!
//! One string per tenant and key, `{prefix}idem:{tenant}:{sha256(key)}`:
//! - `running:{token}:{fingerprint}` while the first request runs (expires
//!   after `lock_secs`, so a process that died frees it);
//! - `done:{fingerprint}:{fernet token of the answer}` once it answered 2xx
//!   (expires after `ttl_secs`).
//!
//! Only the claimant, which alone knows the token, can turn its `running`
//! record into `done` or delete it.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::{IdempotencySettings, Settings};
use crate::crypto::SecretBox;
use crate::redis_conn::{Redis, RedisGuard, tag};

/// Sets or deletes `KEYS[1]` only if it still holds the claimant's record.
const FINISH: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1])
else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
";

/// A stored 2xx answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredAnswer {
    pub status: u16,
    /// The handler's headers (name, value), content type included.
    pub headers: Vec<(String, String)>,
    /// The body, base64.
    pub body: String,
}

impl StoredAnswer {
    pub fn new(status: u16, headers: Vec<(String, String)>, body: &[u8]) -> Self {
        Self {
            status,
            headers,
            body: STANDARD.encode(body),
        }
    }

    pub fn body(&self) -> Vec<u8> {
        STANDARD.decode(&self.body).unwrap_or_default()
    }
}

/// What a claim found.
pub enum Claim {
    /// The key was free and is now this request's.
    Won(Ticket),
    /// Another request with the key is running.
    Running { fingerprint: String },
    /// A request with the key answered.
    Done {
        fingerprint: String,
        answer: Box<StoredAnswer>,
    },
}

/// The claimant's proof: the key and the exact record it wrote.
pub struct Ticket {
    key: String,
    record: String,
}

#[derive(Clone)]
pub struct IdempotencyStore {
    redis: Redis,
    guard: RedisGuard,
    prefix: String,
    settings: IdempotencySettings,
    finish: Arc<redis::Script>,
}

impl IdempotencyStore {
    pub fn new(settings: &Settings, redis: Redis, guard: RedisGuard) -> Self {
        Self {
            redis,
            guard,
            prefix: format!("{}idem:", settings.redis.key_prefix),
            settings: settings.idempotency.clone(),
            finish: Arc::new(redis::Script::new(FINISH)),
        }
    }

    pub fn settings(&self) -> &IdempotencySettings {
        &self.settings
    }

    fn redis_key(&self, tenant: Uuid, key: &str) -> String {
        let digest = hex::encode(Sha256::digest(key.as_bytes()));
        format!("{}{}:{digest}", self.prefix, tag(tenant))
    }

    /// Claims `key` for a request with `fingerprint`, or reads who has it.
    pub async fn claim(
        &self,
        secrets: &SecretBox,
        tenant: Uuid,
        key: &str,
        fingerprint: &str,
    ) -> anyhow::Result<Claim> {
        let key = self.redis_key(tenant, key);
        let record = format!("running:{}:{fingerprint}", Uuid::new_v4().simple());
        let existing: Option<String> = self
            .guard
            .run("idempotency.claim", async {
                let mut conn = self.redis.connection();
                Ok(redis::cmd("SET")
                    .arg(&key)
                    .arg(&record)
                    .arg("NX")
                    .arg("GET")
                    .arg("EX")
                    .arg(self.settings.lock_secs)
                    .query_async(&mut conn)
                    .await?)
            })
            .await?;
        let Some(existing) = existing else {
            return Ok(Claim::Won(Ticket { key, record }));
        };
        let mut parts = existing.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("running"), Some(_token), Some(fingerprint)) => Ok(Claim::Running {
                fingerprint: fingerprint.to_owned(),
            }),
            (Some("done"), Some(fingerprint), Some(sealed)) => {
                let answer = secrets
                    .decrypt(sealed)
                    .and_then(|plain| Ok(serde_json::from_slice(&plain)?))?;
                Ok(Claim::Done {
                    fingerprint: fingerprint.to_owned(),
                    answer: Box::new(answer),
                })
            }
            _ => anyhow::bail!("unreadable idempotency record"),
        }
    }

    /// Stores the claimant's 2xx answer for `ttl_secs`.
    pub async fn complete(
        &self,
        secrets: &SecretBox,
        ticket: Ticket,
        fingerprint: &str,
        answer: &StoredAnswer,
    ) -> anyhow::Result<()> {
        let sealed = secrets.encrypt(&serde_json::to_vec(answer)?);
        let done = format!("done:{fingerprint}:{sealed}");
        self.finish(ticket, &done, self.settings.ttl_secs).await
    }

    /// Frees the key: the request answered something other than 2xx.
    pub async fn release(&self, ticket: Ticket) -> anyhow::Result<()> {
        self.finish(ticket, "", 0).await
    }

    async fn finish(&self, ticket: Ticket, value: &str, ttl_secs: u64) -> anyhow::Result<()> {
        let finished: i64 = self
            .guard
            .run("idempotency.finish", async {
                let mut conn = self.redis.connection();
                let mut invocation = self.finish.key(&ticket.key);
                invocation.arg(&ticket.record).arg(value).arg(ttl_secs);
                Ok(invocation.invoke_async(&mut conn).await?)
            })
            .await?;
        if finished == 0 {
            anyhow::bail!(
                "the key's claim expired before the request finished (`idempotency.lock_secs`)"
            );
        }
        Ok(())
    }
}
