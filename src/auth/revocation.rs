//! Revocation state: revoked sessions (logout, a refresh token reused: every
//! access token whose `sid` names the session ends at once) and per-user
//! "tokens issued before T are invalid" marks (deactivation, password or role
//! change), plus the short-lived cache of verified API keys.
//!
//! PostgreSQL is the record; Redis answers on the hot path, so verifying a
//! bearer token costs one Redis round trip and no query. Two failure modes
//! are handled so that a revoked token is never accepted:
//!
//! - **Redis unreachable**: checks fall back to PostgreSQL (slower, exact).
//! - **Redis lost data** (restart, flush, eviction, a cluster node's loss):
//!   each tenant has a marker key, written after its state was copied from
//!   PostgreSQL, read with every check. Without it, the tenant's checks go to
//!   PostgreSQL and a refill of that tenant runs in the background, after
//!   which Redis is trusted again for it.
//! - **A write to Redis failed**: this process stops trusting Redis, and
//!   once Redis answers it deletes every tenant's marker and every cached
//!   API-key grant (a SCAN of each node), so every tenant refills from
//!   PostgreSQL — which has the write — at its next check.
//! - **Other processes** never see this one's failed write, nor one it did
//!   not get to make (it died between the commit and Redis): the commit
//!   itself recorded the invalidation in `auth_invalidations` (triggers on
//!   the revocation tables), and every API process applies the records to
//!   Redis every `auth.invalidation_replay_ms` ([`RevocationStore::apply_invalidations`]):
//!   the same entries the direct write makes (applying one twice changes
//!   nothing), and the cached grants of the keys concerned dropped. A
//!   revocation therefore holds on every replica within that interval of
//!   Redis answering.
//!
//! A cached API-key grant is stamped: a lookup that missed reads the key's
//! generation, and its grant is stored only if no revocation bumped the
//! generation meanwhile, so a concurrent miss cannot re-store a key that was
//! just revoked.
//!
//! A tenant's keys (marker, revoked sessions, users' marks) share its hash
//! tag, so a check is one command or script on one Redis Cluster slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::roles::{Role, Tier};
use super::tokens::{AccessClaims, unix_now_ms};
use crate::config::Settings;
use crate::db::observed;
use crate::db::{self, Database};
use crate::redis_conn::{Connection, Redis, RedisGuard, tag};

/// Least time between two background refills of one tenant, or two resets.
const RESYNC_MIN_INTERVAL_MS: i64 = 1_000;

/// Most tenants whose last refill attempt is remembered (for the interval).
const REFILL_ATTEMPTS_KEPT: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationError {
    /// The token was revoked, or its user's tokens were invalidated after it was issued.
    Revoked,
    /// Neither Redis nor PostgreSQL could answer.
    Unavailable,
}

/// What the cache knew of an API key: its grant, or that PostgreSQL
/// recently had no such key, and the stamp a miss must present to store
/// either (`None`: Redis did not answer, so nothing is stored).
#[derive(Debug, Default)]
pub struct ApiKeyLookup {
    pub grant: Option<ApiKeyGrant>,
    pub unknown: bool,
    pub stamp: Option<String>,
}

/// What the cache holds for a key PostgreSQL does not know (or no longer
/// honours): refused without asking again for `auth.api_key_cache_ttl_secs`.
const UNKNOWN_API_KEY: &str = "unknown";

/// Invalidations applied per round.
const INVALIDATIONS_PER_ROUND: i32 = 500;

/// How long a key's generation outlives its last bump: far longer than any
/// lookup between its miss and its store.
const API_KEY_GENERATION_TTL_SECS: u64 = 86_400;

/// What a verified API key grants, as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyGrant {
    pub key_id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub role: Role,
    pub tier: Tier,
    /// When the key stops working (Unix seconds), if it expires.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

pub struct RevocationStore {
    redis: Redis,
    db: Database,
    prefix: String,
    guard: RedisGuard,
    command_timeout: Duration,
    access_token_ttl_secs: u64,
    leeway_secs: u64,
    api_key_cache_ttl_secs: u64,
    /// A write to Redis failed: until a reset succeeds, Redis may be missing state.
    stale: AtomicBool,
    reset_running: AtomicBool,
    last_reset_attempt_ms: AtomicI64,
    /// Per tenant: when its last refill started.
    refills: Mutex<HashMap<Uuid, i64>>,
}

impl RevocationStore {
    pub fn new(settings: &Settings, redis: Redis, guard: RedisGuard, db: Database) -> Arc<Self> {
        Arc::new(Self {
            redis,
            db,
            prefix: format!("{}auth:", settings.redis.key_prefix),
            guard,
            command_timeout: settings.redis.command_timeout(),
            access_token_ttl_secs: settings.auth.access_token_ttl_secs,
            leeway_secs: settings.auth.leeway_secs,
            api_key_cache_ttl_secs: settings.auth.api_key_cache_ttl_secs,
            stale: AtomicBool::new(false),
            reset_running: AtomicBool::new(false),
            last_reset_attempt_ms: AtomicI64::new(0),
            refills: Mutex::new(HashMap::new()),
        })
    }

    /// Present once the tenant's revocations were copied from PostgreSQL.
    fn marker_key(&self, tenant: Uuid) -> String {
        format!("{}{}:synced", self.prefix, tag(tenant))
    }

    fn sentinel_key(&self, tenant: Uuid) -> String {
        format!("{}{}:refilling", self.prefix, tag(tenant))
    }

    fn session_key(&self, tenant: Uuid, session: Uuid) -> String {
        format!("{}{}:revoked_session:{session}", self.prefix, tag(tenant))
    }

    fn user_key(&self, tenant: Uuid, user_id: Uuid) -> String {
        format!("{}{}:invalid_before:{user_id}", self.prefix, tag(tenant))
    }

    /// Tagged by the key's own hash: it is looked up before its tenant is known.
    fn api_key_key(&self, hash: &[u8]) -> String {
        format!("{}api_key:{}", self.prefix, tag(hex::encode(hash)))
    }

    /// Bumped by every revocation of the key; in the grant's hash slot.
    fn api_key_generation_key(&self, hash: &[u8]) -> String {
        format!(
            "{}api_key_generation:{}",
            self.prefix,
            tag(hex::encode(hash))
        )
    }

    /// How long a user's mark must live in Redis: until every token issued
    /// before it has expired.
    fn mark_ttl_secs(&self) -> u64 {
        self.access_token_ttl_secs + self.leeway_secs
    }

    /// Reads a tenant's `keys` with its marker in one round trip. `None`
    /// means Redis cannot be trusted right now and the caller must ask PostgreSQL.
    async fn read_trusted(
        self: &Arc<Self>,
        tenant: Uuid,
        keys: &[String],
    ) -> Option<Vec<Option<String>>> {
        if !self.redis_trusted(tenant) {
            return None;
        }
        let mut all = Vec::with_capacity(keys.len() + 1);
        all.push(self.marker_key(tenant));
        all.extend_from_slice(keys);
        let values: Vec<Option<String>> = self
            .redis_op("revocation.read", |mut conn| async move {
                Ok(conn.mget(all).await?)
            })
            .await
            .ok()?;
        if values.first().is_none_or(Option::is_none) {
            // Redis lost the tenant's data (or never had it): refill before trusting it.
            self.schedule_refill(tenant);
            return None;
        }
        Some(values.into_iter().skip(1).collect())
    }

    async fn redis_op<T, F, Fut>(&self, operation: &'static str, op: F) -> anyhow::Result<T>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        self.guard
            .run(operation, async { op(self.redis.connection()).await })
            .await
    }

    /// The keys that hold an access token's revocation state, for a script
    /// that checks it in the same round trip as other work (the rate
    /// limiter): the tenant's marker, the token's session's revocation, its
    /// user's mark — all in the tenant's hash slot. A user's mark holds Unix
    /// milliseconds; tokens issued before it are invalid.
    pub fn revocation_keys(&self, claims: &AccessClaims) -> [String; 3] {
        [
            self.marker_key(claims.tid),
            self.session_key(claims.tid, claims.sid),
            self.user_key(claims.tid, claims.sub),
        ]
    }

    /// Whether what Redis says about a tenant's revocations can be believed
    /// right now (no write of this process was lost). If not, a reset is on
    /// its way.
    pub fn redis_trusted(self: &Arc<Self>, _tenant: Uuid) -> bool {
        if self.stale.load(Ordering::Acquire) {
            self.schedule_reset();
            return false;
        }
        true
    }

    /// Called when a reader found a tenant's marker missing: Redis lost its data.
    pub fn redis_lost_state(self: &Arc<Self>, tenant: Uuid) {
        self.schedule_refill(tenant);
    }

    /// Whether an access token may still be used.
    pub async fn check_access_token(
        self: &Arc<Self>,
        claims: &AccessClaims,
    ) -> Result<(), RevocationError> {
        let keys = [
            self.session_key(claims.tid, claims.sid),
            self.user_key(claims.tid, claims.sub),
        ];
        if let Some(values) = self.read_trusted(claims.tid, &keys).await {
            let revoked = values[0].is_some();
            let invalid_before = values[1].as_deref().and_then(|v| v.parse::<i64>().ok());
            return if revoked || invalid_before.is_some_and(|mark| claims.issued_at_ms() < mark) {
                Err(RevocationError::Revoked)
            } else {
                Ok(())
            };
        }
        // Boxed: rarely run, and its statement's large future would otherwise
        // be copied with every caller's on every request.
        Box::pin(self.check_in_postgres(claims)).await
    }

    /// The exact answer, from PostgreSQL, for when Redis cannot give it.
    pub async fn check_in_postgres(&self, claims: &AccessClaims) -> Result<(), RevocationError> {
        let unavailable = |err: sqlx::Error| {
            tracing::error!(error = %err, "revocation check failed in PostgreSQL");
            RevocationError::Unavailable
        };
        let mut tx = db::begin_tenant_tx(&self.db, claims.tid)
            .await
            .map_err(unavailable)?;
        let row: Option<(bool, bool, Option<time::OffsetDateTime>)> = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM revoked_sessions WHERE session_id = $1),
                    u.is_active, u.tokens_invalid_before
             FROM users u WHERE u.id = $2",
        )
        .bind(claims.sid)
        .bind(claims.sub)
        .fetch_optional(observed("auth.revocation_check", &mut *tx))
        .await
        .map_err(unavailable)?;
        let _ = tx.rollback().await;
        match row {
            Some((false, true, mark))
                if mark.is_none_or(|m| claims.issued_at_ms() >= timestamp_ms(m)) =>
            {
                Ok(())
            }
            _ => Err(RevocationError::Revoked),
        }
    }

    /// When a session revoked now has no live access token left: the
    /// last one minted before the revocation expires by then.
    pub fn session_revocation_expiry(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc() + time::Duration::seconds(self.access_token_ttl_secs as i64)
    }

    /// Records in Redis that a session is revoked until `expires_at` (its
    /// row in PostgreSQL, written first): every access token it minted is
    /// refused from the next request on.
    pub async fn revoke_session(
        self: &Arc<Self>,
        tenant: Uuid,
        session: Uuid,
        expires_at: time::OffsetDateTime,
    ) {
        let key = self.session_key(tenant, session);
        let remaining = (expires_at.unix_timestamp() - super::tokens::unix_now()).max(1) as u64;
        let ttl = remaining + self.leeway_secs;
        let result = self
            .redis_op("revocation.session", |mut conn| async move {
                Ok(conn.set_ex::<_, _, ()>(key, 1, ttl).await?)
            })
            .await;
        self.note_write(result, "revoking a session");
    }

    /// Records in Redis that a user's tokens minted before `mark_ms` are invalid.
    pub async fn invalidate_user_tokens(
        self: &Arc<Self>,
        tenant: Uuid,
        user_id: Uuid,
        mark_ms: i64,
    ) {
        let key = self.user_key(tenant, user_id);
        let ttl = self.mark_ttl_secs();
        let result = self
            .redis_op("revocation.invalidate_before", |mut conn| async move {
                Ok(conn.set_ex::<_, _, ()>(key, mark_ms, ttl).await?)
            })
            .await;
        self.note_write(result, "invalidating a user's tokens");
    }

    /// The cached grant of an API key, if Redis is trustworthy and has it,
    /// with the key's stamp, in one round trip.
    /// (A grant lost with Redis's data is only a miss: no marker is needed.)
    pub async fn cached_api_key(self: &Arc<Self>, hash: &[u8]) -> ApiKeyLookup {
        if self.stale.load(Ordering::Acquire) {
            self.schedule_reset();
            return ApiKeyLookup::default();
        }
        let keys = [self.api_key_key(hash), self.api_key_generation_key(hash)];
        let read: Option<(Option<String>, Option<String>)> = self
            .redis_op("api_key.read", |mut conn| async move {
                Ok(conn.mget(&keys).await?)
            })
            .await
            .ok();
        let Some((json, generation)) = read else {
            return ApiKeyLookup::default();
        };
        ApiKeyLookup {
            unknown: json.as_deref() == Some(UNKNOWN_API_KEY),
            grant: json.and_then(|json| serde_json::from_str(&json).ok()),
            stamp: Some(generation.unwrap_or_default()),
        }
    }

    /// Caches a grant read from PostgreSQL after a miss, unless the key was
    /// revoked since the miss read `stamp` (or Redis did not answer then).
    pub async fn cache_api_key(&self, hash: &[u8], grant: &ApiKeyGrant, stamp: Option<String>) {
        let Ok(json) = serde_json::to_string(grant) else {
            return;
        };
        self.store_api_key_answer(hash, json, stamp).await;
    }

    /// Remembers that PostgreSQL has no usable key with this hash, so the
    /// next presentations are refused without asking it.
    pub async fn cache_unknown_api_key(&self, hash: &[u8], stamp: Option<String>) {
        self.store_api_key_answer(hash, UNKNOWN_API_KEY.to_owned(), stamp)
            .await;
    }

    async fn store_api_key_answer(&self, hash: &[u8], json: String, stamp: Option<String>) {
        let Some(stamp) = stamp else { return };
        let mut store = STORE_UNLESS_REVOKED.prepare_invoke();
        store
            .key(self.api_key_key(hash))
            .key(self.api_key_generation_key(hash))
            .arg(json)
            .arg(self.api_key_cache_ttl_secs)
            .arg(stamp);
        // A failed cache write loses nothing: the next use asks PostgreSQL.
        let _ = self
            .redis_op("api_key.cache", |mut conn| async move {
                Ok(store.invoke_async::<i64>(&mut conn).await.map(|_| ())?)
            })
            .await;
    }

    /// Drops cached API-key grants and bumps their generations (revocation,
    /// user deactivation).
    pub async fn forget_api_keys(self: &Arc<Self>, hashes: &[Vec<u8>]) {
        if hashes.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for hash in hashes {
            self.forget_api_key(&mut pipe, hash);
        }
        let result = self
            .redis_op("api_key.forget", |mut conn| async move {
                Ok(pipe.query_async::<()>(&mut conn).await?)
            })
            .await;
        self.note_write(result, "dropping cached API keys");
    }

    /// One command per key: each key has its own hash slot.
    fn forget_api_key(&self, pipe: &mut redis::Pipeline, hash: &[u8]) {
        let generation = self.api_key_generation_key(hash);
        pipe.del(self.api_key_key(hash)).ignore();
        pipe.incr(&generation, 1).ignore();
        pipe.expire(&generation, API_KEY_GENERATION_TTL_SECS as i64)
            .ignore();
    }

    /// Applies the invalidations recorded in PostgreSQL to Redis — the
    /// entries a direct write makes (a revoked token, a user's mark, a key's
    /// grant dropped and generation bumped), plus the tenant's refill
    /// sentinel dropped (an in-flight refill, whose snapshot may predate the
    /// revocation, is abandoned) — then deletes the records, in one
    /// transaction that holds them so no other process applies them too.
    pub async fn apply_invalidations(&self) -> anyhow::Result<usize> {
        type Row = (
            i64,
            Uuid,
            String,
            Option<Uuid>,
            Option<time::OffsetDateTime>,
            Option<Vec<u8>>,
        );
        let mut tx = self.db.begin().await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, tenant_id, kind, subject, until, api_key_hash
             FROM auth_invalidations_pending($1)",
        )
        .bind(INVALIDATIONS_PER_ROUND)
        .fetch_all(observed("auth.invalidations_pending", &mut *tx))
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let now_secs = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut pipe = redis::pipe();
        let mut tenants = std::collections::HashSet::new();
        for (_, tenant, kind, subject, until, hash) in &rows {
            if tenants.insert(*tenant) {
                pipe.del(self.sentinel_key(*tenant)).ignore();
            }
            match (kind.as_str(), subject, until, hash) {
                ("session", Some(session), Some(expires), _) => {
                    let remaining = (expires.unix_timestamp() - now_secs).max(1) as u64;
                    pipe.set_ex(
                        self.session_key(*tenant, *session),
                        1,
                        remaining + self.leeway_secs,
                    )
                    .ignore();
                }
                ("user", Some(user), Some(mark), _) => {
                    pipe.set_ex(
                        self.user_key(*tenant, *user),
                        timestamp_ms(*mark),
                        self.mark_ttl_secs(),
                    )
                    .ignore();
                }
                ("api_key", _, _, Some(hash)) => self.forget_api_key(&mut pipe, hash),
                _ => {}
            }
        }
        self.redis_op("revocation.apply_invalidations", |mut conn| async move {
            Ok(pipe.query_async::<()>(&mut conn).await?)
        })
        .await?;
        let ids: Vec<i64> = rows.iter().map(|row| row.0).collect();
        sqlx::query("SELECT auth_invalidations_applied($1)")
            .bind(&ids)
            .execute(observed("auth.invalidations_applied", &mut *tx))
            .await?;
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Applies recorded invalidations every `every`, for the life of the
    /// process (logging when it starts failing and when it recovers).
    pub fn replay_invalidations(self: &Arc<Self>, every: Duration) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                match store.apply_invalidations().await {
                    Ok(applied) => {
                        if failing {
                            tracing::info!("applying recorded invalidations to Redis works again");
                            failing = false;
                        }
                        if applied > 0 {
                            tracing::debug!(applied, "applied recorded invalidations to Redis");
                        }
                    }
                    Err(err) if !failing => {
                        tracing::warn!(
                            error = %format!("{err:#}"),
                            "cannot apply recorded invalidations to Redis; retrying"
                        );
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        });
    }

    fn note_write(self: &Arc<Self>, result: anyhow::Result<()>, what: &str) {
        if let Err(err) = result {
            tracing::warn!(
                error = %err,
                "Redis unavailable while {what}; recorded in PostgreSQL only, Redis will be refilled"
            );
            self.stale.store(true, Ordering::Release);
            self.schedule_reset();
        }
    }

    /// Refills one tenant in the background, at most once per interval.
    fn schedule_refill(self: &Arc<Self>, tenant: Uuid) {
        let now = unix_now_ms();
        {
            let mut refills = self.refills.lock().unwrap_or_else(|e| e.into_inner());
            if refills
                .get(&tenant)
                .is_some_and(|last| now - last < RESYNC_MIN_INTERVAL_MS)
            {
                return;
            }
            if refills.len() >= REFILL_ATTEMPTS_KEPT {
                refills.retain(|_, last| now - *last < RESYNC_MIN_INTERVAL_MS);
            }
            refills.insert(tenant, now);
        }
        let store = self.clone();
        tokio::spawn(async move {
            match store.refill(tenant).await {
                Ok(count) => tracing::info!(
                    entries = count,
                    tenant_id = %tenant,
                    "refilled a tenant's Redis revocation state from PostgreSQL"
                ),
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), tenant_id = %tenant, "refilling a tenant's Redis revocation state failed")
                }
            }
        });
    }

    /// After a lost write: drops every tenant's marker (and refill
    /// sentinel) and every cached API-key grant, then trusts Redis again —
    /// each tenant refills at its next check.
    fn schedule_reset(self: &Arc<Self>) {
        let now = unix_now_ms();
        let last = self.last_reset_attempt_ms.load(Ordering::Acquire);
        if now - last < RESYNC_MIN_INTERVAL_MS || self.reset_running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.last_reset_attempt_ms.store(now, Ordering::Release);
        let store = self.clone();
        tokio::spawn(async move {
            let patterns = [
                format!("{}*:synced", store.prefix),
                format!("{}*:refilling", store.prefix),
                format!("{}api_key:*", store.prefix),
            ];
            let timeout = store.command_timeout * 20;
            let result = store
                .guard
                .run_within(
                    "revocation.reset",
                    timeout,
                    store.redis.delete_matching(&patterns),
                )
                .await;
            match result {
                Ok(deleted) => {
                    store.stale.store(false, Ordering::Release);
                    tracing::info!(
                        keys = deleted,
                        "Redis revocation state reset after a lost write; tenants refill from PostgreSQL"
                    );
                }
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "resetting Redis revocation state failed")
                }
            }
            store.reset_running.store(false, Ordering::Release);
        });
    }

    /// Copies a tenant's live revocations from PostgreSQL into Redis, then
    /// writes its marker.
    ///
    /// Redis may lose the tenant's data again while this runs, after the
    /// PostgreSQL snapshot was taken: a revocation made since then lives in
    /// Redis only (its own write), and writing the snapshot and the marker
    /// would leave it out for good. So a sentinel is set before the snapshot,
    /// and the entries and the marker are written by one script only if the
    /// sentinel is still there; otherwise the refill is abandoned and tried again.
    pub async fn refill(&self, tenant: Uuid) -> anyhow::Result<usize> {
        let sentinel = self.sentinel_key(tenant);
        let nonce = Uuid::new_v4().to_string();
        let timeout = self.command_timeout * 20;
        {
            let (sentinel, nonce) = (sentinel.clone(), nonce.clone());
            self.guard
                .run("revocation.refill_start", async move {
                    let mut conn = self.redis.connection();
                    let _: () = conn.set_ex(sentinel, nonce, 300).await?;
                    Ok(())
                })
                .await?;
        }
        let rows: Vec<(String, Uuid, time::OffsetDateTime, time::OffsetDateTime)> = {
            let mut tx = db::begin_tenant_tx(&self.db, tenant).await?;
            let rows = sqlx::query_as(
                "SELECT 'session', r.session_id, r.expires_at, r.revoked_at
                 FROM revoked_sessions r
                 WHERE r.expires_at > now()
                 UNION ALL
                 SELECT 'user', u.id,
                        u.tokens_invalid_before + make_interval(secs => $1),
                        u.tokens_invalid_before
                 FROM users u
                 WHERE u.tokens_invalid_before > now() - make_interval(secs => $1)",
            )
            .bind(self.access_token_ttl_secs as f64)
            .fetch_all(observed("auth.revocation_refill", &mut *tx))
            .await?;
            let _ = tx.rollback().await;
            rows
        };
        let now_secs = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut write = REFILL_SCRIPT.prepare_invoke();
        write
            .key(&sentinel)
            .key(self.marker_key(tenant))
            .arg(&nonce);
        for (kind, subject, until, mark) in &rows {
            let ttl = (until.unix_timestamp() - now_secs).max(1) as u64 + self.leeway_secs;
            if kind == "session" {
                write
                    .key(self.session_key(tenant, *subject))
                    .arg(1)
                    .arg(ttl);
            } else {
                write
                    .key(self.user_key(tenant, *subject))
                    .arg(timestamp_ms(*mark))
                    .arg(ttl);
            }
        }
        let written: i64 = self
            .guard
            .run_within("revocation.refill", timeout, async {
                let mut conn = self.redis.connection();
                Ok(write.invoke_async(&mut conn).await?)
            })
            .await?;
        anyhow::ensure!(
            written == 1,
            "Redis lost the tenant's data during the refill; it will be tried again"
        );
        Ok(rows.len())
    }
}

/// Writes a refill's entries and the marker, only if the refill's sentinel
/// (KEYS[1] = ARGV[1]) survived. KEYS[2] is the marker; then one key per
/// entry, with its value and TTL in ARGV.
static REFILL_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
for i = 3, #KEYS do
  local n = i - 2
  redis.call('SET', KEYS[i], ARGV[2 * n], 'EX', ARGV[2 * n + 1])
end
redis.call('SET', KEYS[2], 1)
redis.call('DEL', KEYS[1])
return 1
",
    )
});

/// Stores a grant (KEYS[1], ARGV[1], TTL ARGV[2]) only if the key's
/// generation (KEYS[2]) is still the stamp the miss read (ARGV[3]; empty:
/// no generation yet).
static STORE_UNLESS_REVOKED: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local generation = redis.call('GET', KEYS[2]) or ''
if generation ~= ARGV[3] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
",
    )
});

pub fn timestamp_ms(at: time::OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}
