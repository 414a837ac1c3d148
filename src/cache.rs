//! Redis: the process's connections (one per thread), the guard every call
//! goes through, and the per-tenant response cache.
//!
//! A connection bounds connecting and each response; [`RedisGuard`] bounds
//! each whole operation and holds the Redis circuit breaker, so a Redis that
//! stops answering never hangs a request.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;

use tracing::Instrument;

use crate::config::RedisSettings;
use crate::resilience::breaker::CircuitBreaker;

/// The process's Redis connections: one multiplexed connection per thread
/// that uses Redis, each reconnecting by itself. Concurrent calls are
/// pipelined on it and none waits for a checkout — a pool would check a
/// connection out with a `PING` round trip, doubling the cost of the two
/// calls an authenticated cached read makes (rate limit, cache lookup).
///
/// Per thread, because a connection's reader runs on the runtime that first
/// used it: an HTTP worker (each has its own single-threaded runtime) then
/// reads its own replies, instead of every reply crossing to another thread
/// and waking the worker from there (two thread switches per call).
///
/// Lazy: the service starts while Redis is down.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// Tells this instance's connections from another's in a thread's list
    /// (tests run several applications, with different servers, in one process).
    id: u64,
}

impl Redis {
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let client = redis::Client::open(settings.redis_url())
            .context("`redis.url` cannot be used to build a Redis client")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout()))
            .set_response_timeout(Some(settings.command_timeout()))
            // Reconnection is retried a few times in the background, then again on next use.
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1));
        Ok(Self {
            client,
            config,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// This thread's connection (a cheap handle; made on first use).
    pub fn connection(&self) -> ConnectionManager {
        thread_local! {
            static CONNECTIONS: std::cell::RefCell<Vec<(u64, ConnectionManager)>> =
                const { std::cell::RefCell::new(Vec::new()) };
        }
        CONNECTIONS.with_borrow_mut(|connections| {
            if let Some((_, connection)) = connections.iter().find(|(id, _)| *id == self.id) {
                return connection.clone();
            }
            let connection =
                ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
                    .expect("a lazy connection manager opens nothing");
            connections.push((self.id, connection.clone()));
            connection
        })
    }
}

impl RedisSettings {
    fn redis_url(&self) -> String {
        self.url.expose_secret().to_owned()
    }
}

/// Every Redis call of the service goes through this: the Redis circuit
/// breaker (an open breaker answers at once, so a dead Redis costs no
/// timeout per request) and the command timeout.
#[derive(Clone)]
pub struct RedisGuard {
    breaker: Arc<CircuitBreaker>,
    timeout: Duration,
}

impl RedisGuard {
    pub fn new(breaker: Arc<CircuitBreaker>, settings: &RedisSettings) -> Self {
        Self {
            breaker,
            timeout: settings.command_timeout(),
        }
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Closes the breaker as soon as Redis answers a `PING` again (checked
    /// every `circuit_breakers.redis.probe_interval_ms` while open).
    pub fn watch_recovery(&self, redis: &Redis) {
        let redis = redis.clone();
        self.breaker.watch_recovery(move || {
            let mut conn = redis.connection();
            async move {
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            }
        });
    }

    /// Runs `op` (named `operation` in traces) under the breaker and the
    /// command timeout.
    pub async fn run<T>(
        &self,
        operation: &'static str,
        op: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        self.run_within(operation, self.timeout, op).await
    }

    /// As [`Self::run`], for a long operation (a refill) with its own time limit.
    pub async fn run_within<T>(
        &self,
        operation: &'static str,
        limit: Duration,
        op: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        if !self.breaker.allow() {
            anyhow::bail!("the Redis circuit breaker is open");
        }
        // A client span when tracing is on; disabled (free) otherwise.
        let span = tracing::trace_span!(
            target: "stock_tracker::redis",
            "redis",
            otel.name = operation,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.system = "redis",
        );
        let result = with_timeout(limit, op).instrument(span.clone()).await;
        match &result {
            Ok(_) => self.breaker.record_success(),
            Err(_) => {
                span.record("otel.status_code", "ERROR");
                self.breaker.record_failure()
            }
        }
        result
    }
}

/// Runs one Redis operation under a time limit.
async fn with_timeout<T, F>(limit: Duration, op: F) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
{
    tokio::time::timeout(limit, op)
        .await
        .map_err(|_| anyhow::anyhow!("redis did not answer within {} ms", limit.as_millis()))?
}

/// Cached HTTP response bodies, per tenant.
///
/// An entry lives at `{prefix}cache:{tenant}:{name}` and starts with the
/// stamp `{epoch}:{generation}\n` it was computed under. Bumping a tenant's
/// generation (one `INCR`) makes every entry of the tenant — each list page
/// and detail — stale at once: its stamp no longer matches, so it is a miss,
/// overwritten by the next store, and TTLs reclaim the rest. The global epoch
/// does the same for all tenants: it is bumped when this process failed to
/// bump a generation (Redis unreachable during a write), before Redis is
/// trusted again, so no stale page outlives an outage.
///
/// A lookup is one round trip and no script: `MGET` of the epoch, the
/// generation and the entry; a hit is the stored bytes after the stamp,
/// sliced, not copied. (A Lua script returning the body cost Redis ~20 µs a
/// call, against ~1.5 µs for the `MGET`.)
pub struct ResponseCache {
    redis: Redis,
    prefix: String,
    epoch_key: String,
    ttl_secs: u64,
    guard: RedisGuard,
    metrics: crate::telemetry::metrics::Metrics,
    epoch_bump_needed: std::sync::atomic::AtomicBool,
}

/// The outcome of a lookup.
pub enum Lookup {
    Hit(actix_web::web::Bytes),
    /// Not cached, or stale: store the response with [`ResponseCache::put`].
    Miss(PendingEntry),
    /// Redis cannot be used: serve from PostgreSQL, do not store.
    Bypass,
}

/// Where a missed response is stored, and the stamp it was computed under.
pub struct PendingEntry {
    key: String,
    stamp: String,
}

impl Lookup {
    /// The `X-Cache` header value.
    pub fn header(&self) -> &'static str {
        match self {
            Lookup::Hit(_) => "HIT",
            Lookup::Miss(_) => "MISS",
            Lookup::Bypass => "BYPASS",
        }
    }
}

impl ResponseCache {
    pub fn new(
        settings: &crate::config::Settings,
        redis: Redis,
        guard: RedisGuard,
        metrics: crate::telemetry::metrics::Metrics,
    ) -> Self {
        Self {
            redis,
            prefix: format!("{}cache:", settings.redis.key_prefix),
            epoch_key: format!("{}cache:epoch", settings.redis.key_prefix),
            ttl_secs: settings.cache.ttl_secs,
            guard,
            metrics,
            epoch_bump_needed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn generation_key(&self, tenant_id: uuid::Uuid) -> String {
        format!("{}{tenant_id}:generation", self.prefix)
    }

    /// Looks up `name` (e.g. `products:list:<hash>`) in a tenant's cache.
    pub async fn get(&self, cache: &'static str, tenant_id: uuid::Uuid, name: &str) -> Lookup {
        use std::sync::atomic::Ordering;
        let started = std::time::Instant::now();
        let key = format!("{}{tenant_id}:{name}", self.prefix);
        let outcome = self
            .guard
            .run("cache.lookup", async {
                let mut conn = self.redis.connection();
                if self.epoch_bump_needed.load(Ordering::Acquire) {
                    let _: i64 = redis::cmd("INCR")
                        .arg(&self.epoch_key)
                        .query_async(&mut conn)
                        .await?;
                    self.epoch_bump_needed.store(false, Ordering::Release);
                    tracing::info!("cache epoch bumped after a lost invalidation");
                }
                let (epoch, generation, entry): (Option<String>, Option<String>, Option<Vec<u8>>) =
                    redis::cmd("MGET")
                        .arg(&self.epoch_key)
                        .arg(self.generation_key(tenant_id))
                        .arg(&key)
                        .query_async(&mut conn)
                        .await?;
                let stamp = format!(
                    "{}:{}\n",
                    epoch.as_deref().unwrap_or("0"),
                    generation.as_deref().unwrap_or("0")
                );
                Ok((stamp, entry))
            })
            .await;
        let lookup = match outcome {
            Ok((stamp, Some(entry))) if entry.starts_with(stamp.as_bytes()) => {
                Lookup::Hit(actix_web::web::Bytes::from(entry).slice(stamp.len()..))
            }
            Ok((stamp, _)) => Lookup::Miss(PendingEntry { key, stamp }),
            Err(err) => {
                tracing::debug!(error = %err, "cache bypassed");
                Lookup::Bypass
            }
        };
        if !matches!(lookup, Lookup::Bypass) {
            self.metrics
                .cache_lookup_duration
                .with_label_values(&[cache])
                .observe(started.elapsed().as_secs_f64());
        }
        let result = match lookup {
            Lookup::Hit(_) => "hit",
            Lookup::Miss(_) => "miss",
            Lookup::Bypass => "bypass",
        };
        self.metrics
            .cache_requests
            .with_label_values(&[cache, result])
            .inc();
        lookup
    }

    /// Stores a response body as a miss told, stamped as it said.
    pub async fn put(&self, entry: PendingEntry, body: &[u8]) {
        let ttl = self.ttl_secs;
        let mut value = Vec::with_capacity(entry.stamp.len() + body.len());
        value.extend_from_slice(entry.stamp.as_bytes());
        value.extend_from_slice(body);
        // A failed store loses nothing: the next read asks PostgreSQL again.
        let _ = self
            .guard
            .run("cache.store", async {
                let mut conn = self.redis.connection();
                let _: () = redis::cmd("SET")
                    .arg(entry.key)
                    .arg(value)
                    .arg("EX")
                    .arg(ttl)
                    .query_async(&mut conn)
                    .await?;
                Ok(())
            })
            .await;
    }

    /// Drops every cached entry of a tenant (after a committed write).
    pub async fn invalidate_tenant(&self, tenant_id: uuid::Uuid) {
        let key = self.generation_key(tenant_id);
        let result = self
            .guard
            .run("cache.invalidate", async {
                let mut conn = self.redis.connection();
                let _: i64 = redis::cmd("INCR").arg(key).query_async(&mut conn).await?;
                Ok(())
            })
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "cache invalidation lost; every tenant's cache will be dropped once Redis answers");
            self.epoch_bump_needed
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }
}
