//! The per-tenant response cache: list and detail pages stored in Redis,
//! invalidated per tenant on writes and syncs (Redis reached through
//! [`crate::redis_conn`], like the rate limiter and revocation).

use crate::redis_conn::{Redis, RedisGuard};
use crate::telemetry::metrics::{CHECK_LATENCY_BUCKETS, MetricDef, Metrics};

pub const CACHE_REQUESTS: MetricDef = MetricDef::counter(
    "stock_tracker_cache_requests_total",
    "Cached reads by cache and result: hit, miss, or bypass (Redis unavailable)",
    &["cache", "result"],
);

pub const CACHE_LOOKUP_DURATION: MetricDef = MetricDef::histogram(
    "stock_tracker_cache_lookup_duration_seconds",
    "Duration of cache lookups in Redis, hits and misses alike",
    &["cache"],
    CHECK_LATENCY_BUCKETS,
);

pub const METRICS: &[MetricDef] = &[CACHE_REQUESTS, CACHE_LOOKUP_DURATION];

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
    requests: prometheus::IntCounterVec,
    lookup_duration: prometheus::HistogramVec,
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
        metrics: &Metrics,
    ) -> Self {
        Self {
            redis,
            prefix: format!("{}cache:", settings.redis.key_prefix),
            epoch_key: format!("{}cache:epoch", settings.redis.key_prefix),
            ttl_secs: settings.cache.ttl_secs,
            guard,
            requests: metrics.counter_vec(&CACHE_REQUESTS),
            lookup_duration: metrics.histogram_vec(&CACHE_LOOKUP_DURATION),
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
            self.lookup_duration
                .with_label_values(&[cache])
                .observe(started.elapsed().as_secs_f64());
        }
        let result = match lookup {
            Lookup::Hit(_) => "hit",
            Lookup::Miss(_) => "miss",
            Lookup::Bypass => "bypass",
        };
        self.requests.with_label_values(&[cache, result]).inc();
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
