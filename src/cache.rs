//! The per-tenant response cache: list and detail pages stored in Redis,
//! invalidated per tenant on writes and syncs (Redis reached through
//! [`crate::redis_conn`], like the rate limiter and revocation).

use crate::redis_conn::{Redis, RedisGuard, tag};
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
/// stamp `{generation}\n` it was computed under. Bumping a tenant's
/// generation (one `INCR`) makes every entry of the tenant — each list page
/// and detail — stale at once: its stamp no longer matches, so it is a miss,
/// overwritten by the next store, and TTLs reclaim the rest. A tenant's keys
/// share its hash tag, so a lookup runs on one Redis Cluster slot, and no
/// key is read by every tenant's requests.
///
/// An invalidation that fails (Redis unreachable during a write) is kept in
/// process and made before this process trusts its next Redis answer, so
/// no stale page outlives an outage; if too many pile up, every cached
/// entry is deleted instead (a SCAN of each node).
///
/// A lookup is one round trip and no script: `MGET` of the generation and
/// the entry; a hit is the stored bytes after the stamp, sliced, not copied.
/// (A Lua script returning the body cost Redis ~20 µs a call, against
/// ~1.5 µs for the `MGET`.)
pub struct ResponseCache {
    redis: Redis,
    prefix: String,
    ttl_secs: u64,
    guard: RedisGuard,
    requests: prometheus::IntCounterVec,
    lookup_duration: prometheus::HistogramVec,
    /// Tenants whose invalidation was lost, to bump once Redis answers.
    lost: std::sync::Mutex<LostInvalidations>,
    lost_any: std::sync::atomic::AtomicBool,
}

/// Invalidations to make again; past [`LOST_INVALIDATIONS_KEPT`] tenants,
/// the whole cache is dropped instead.
#[derive(Default)]
struct LostInvalidations {
    tenants: std::collections::HashSet<uuid::Uuid>,
    drop_all: bool,
}

const LOST_INVALIDATIONS_KEPT: usize = 10_000;

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
            ttl_secs: settings.cache.ttl_secs,
            guard,
            requests: metrics.counter_vec(&CACHE_REQUESTS),
            lookup_duration: metrics.histogram_vec(&CACHE_LOOKUP_DURATION),
            lost: std::sync::Mutex::new(LostInvalidations::default()),
            lost_any: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn key(&self, tenant_id: uuid::Uuid, name: &str) -> String {
        format!("{}{}:{name}", self.prefix, tag(tenant_id))
    }

    fn generation_key(&self, tenant_id: uuid::Uuid) -> String {
        self.key(tenant_id, "generation")
    }

    /// Registers the series of the caches a domain serves from, at zero.
    pub fn declare(&self, caches: &[&'static str]) {
        for cache in caches {
            self.lookup_duration.with_label_values(&[cache]);
            for result in ["hit", "miss", "bypass"] {
                self.requests.with_label_values(&[cache, result]);
            }
        }
    }

    /// Looks up `name` (e.g. `products:list:<hash>`) in a tenant's cache.
    pub async fn get(&self, cache: &'static str, tenant_id: uuid::Uuid, name: &str) -> Lookup {
        let started = std::time::Instant::now();
        let key = self.key(tenant_id, name);
        let outcome = self
            .guard
            .run("cache.lookup", async {
                self.replay_lost_invalidations().await?;
                let mut conn = self.redis.connection();
                let (generation, entry): (Option<String>, Option<Vec<u8>>) = redis::cmd("MGET")
                    .arg(self.generation_key(tenant_id))
                    .arg(&key)
                    .query_async(&mut conn)
                    .await?;
                let stamp = format!("{}\n", generation.as_deref().unwrap_or("0"));
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

    /// Makes the invalidations lost while Redis was unreachable, before
    /// anything is read from it. Fails (the lookup is bypassed) until done.
    async fn replay_lost_invalidations(&self) -> anyhow::Result<()> {
        use std::sync::atomic::Ordering;
        if !self.lost_any.load(Ordering::Acquire) {
            return Ok(());
        }
        let lost = std::mem::take(&mut *self.lost.lock().unwrap_or_else(|e| e.into_inner()));
        let result = async {
            if lost.drop_all {
                let deleted = self
                    .redis
                    .delete_matching(&[format!("{}*", self.prefix)])
                    .await?;
                tracing::info!(keys = deleted, "cache dropped after lost invalidations");
            } else {
                let mut conn = self.redis.connection();
                for tenant in &lost.tenants {
                    let _: i64 = redis::cmd("INCR")
                        .arg(self.generation_key(*tenant))
                        .query_async(&mut conn)
                        .await?;
                }
                tracing::info!(
                    tenants = lost.tenants.len(),
                    "lost cache invalidations made"
                );
            }
            anyhow::Ok(())
        }
        .await;
        let mut pending = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        if result.is_err() {
            // Put them back, with any lost meanwhile.
            pending.drop_all |= lost.drop_all;
            for tenant in lost.tenants {
                self.note_lost(&mut pending, tenant);
            }
        }
        self.lost_any.store(
            pending.drop_all || !pending.tenants.is_empty(),
            Ordering::Release,
        );
        result
    }

    fn note_lost(&self, lost: &mut LostInvalidations, tenant: uuid::Uuid) {
        if lost.drop_all {
            return;
        }
        lost.tenants.insert(tenant);
        if lost.tenants.len() > LOST_INVALIDATIONS_KEPT {
            lost.tenants.clear();
            lost.drop_all = true;
        }
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
            tracing::warn!(error = %err, "cache invalidation lost; it will be made once Redis answers");
            let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
            self.note_lost(&mut lost, tenant_id);
            self.lost_any
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }
}
