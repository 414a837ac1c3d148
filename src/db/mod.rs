//! PostgreSQL access: the connection pool the service queries through, the
//! embedded migrations, and the tenant-scoped transaction every tenant-owned
//! query runs in.
//!
//! Two ways in, deliberately separate:
//! - [`connect_pool`] and [`Database`]: every transaction the service runs
//!   starts as the unprivileged [`APP_ROLE`], with the tenant and the
//!   statement timeout set for that transaction only (`SET LOCAL`, sent with
//!   the `BEGIN` in one round trip), so row-level security applies even when
//!   `DATABASE_URL` names the tables' owner or a superuser, and nothing is
//!   left on a connection for a transaction pooler's next client. Without a
//!   pooler, each connection also switches to the role when it opens.
//! - [`migrate`]: a single connection as the URL's own role (the owner), which
//!   creates the schema and the role; behind a pooler, through `direct_url`.
//!
//! Paths that run before a tenant is known (login by email, refresh-token and
//! API-key lookup, the workers' cross-tenant scans) never switch RLS off: they
//! call narrow `SECURITY DEFINER` SQL functions, each returning only what that
//! one path needs, defined in the migrations next to the tables they read.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Executor, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::config::{DatabaseSettings, Pooler};
use crate::resilience::breaker::CircuitBreaker;
use crate::telemetry::metrics::{MetricDef, Metrics};

pub mod observe;
pub use observe::observed;

/// The migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The role the service's queries run as: owns nothing, no BYPASSRLS.
pub const APP_ROLE: &str = "stock_tracker_app";
const SET_APP_ROLE: &str = "SET ROLE stock_tracker_app";

/// The statement that checks PostgreSQL answers, outside any transaction: a
/// simple query, one message, so a transaction pooler runs it whole on one
/// server connection. (A prepared statement takes two exchanges outside a
/// transaction, and the pooler may send the second to another server
/// connection, where its unnamed statement does not exist.)
pub const PING: &str = "SELECT 1";

/// A pooled connection idle this long is pinged before it is used.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Options for the pool's connections: through the pooler, if any.
pub fn connect_options(settings: &DatabaseSettings) -> anyhow::Result<PgConnectOptions> {
    let options = parse_url(&settings.url, "database.url")?;
    Ok(match settings.pooler {
        Pooler::None => options,
        // A transaction pooler refuses startup parameters it does not track
        // (sqlx sends `extra_float_digits`), and statements are unnamed
        // (see `observe`): nothing to cache.
        Pooler::Transaction => options.extra_float_digits(None).statement_cache_capacity(0),
    })
}

/// Options for a connection that needs a session of its own (migrations,
/// with their session lock): PostgreSQL itself, never a pooler.
pub fn session_options(settings: &DatabaseSettings) -> anyhow::Result<PgConnectOptions> {
    let key = match settings.pooler {
        Pooler::None => "database.url",
        Pooler::Transaction => "database.direct_url",
    };
    parse_url(settings.session_url(), key)
}

fn parse_url(url: &secrecy::SecretString, key: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url.expose_secret())
        .with_context(|| format!("`{key}` is not a valid PostgreSQL URL"))?;
    // Statements are measured and slow ones logged by `observe`. sqlx's own
    // statement log would also ask `tracing::enabled!` after every statement,
    // which leaves per-layer filter state behind that disables the next span.
    Ok(options.disable_statement_logging())
}

/// The service's pool. Connections open lazily; call [`check_schema`] first so a
/// missing migration is reported at start rather than on the first request.
pub fn connect_pool(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    observe::set_slow_threshold(Duration::from_millis(settings.slow_query_threshold_ms));
    observe::set_unnamed_statements(settings.pooler == Pooler::Transaction);
    let options = connect_options(settings)?.application_name("stock-tracker");
    let session_role = settings.pooler == Pooler::None;
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(settings.acquire_timeout())
        // sqlx checks every connection it hands out with a round trip; only
        // one that sat idle a while is checked here (PostgreSQL may have
        // restarted meanwhile). A busy one that broke fails its statement,
        // which the database breaker counts, and is discarded.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_IDLE_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        // Defence in depth where a connection has one client: a statement
        // run outside the service's transactions still cannot bypass
        // row-level security. Behind a pooler this would leak to whichever
        // client the server connection serves next, so it is not set there.
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if session_role {
                    conn.execute(SET_APP_ROLE).await?;
                }
                Ok(())
            })
        })
        .connect_lazy_with(options))
}

/// Creates the database if it does not exist, then applies pending migrations.
pub async fn migrate(settings: &DatabaseSettings) -> anyhow::Result<()> {
    let url = settings.session_url().expose_secret();
    if !Postgres::database_exists(url).await.context(
        "cannot reach PostgreSQL at `database.url` (`database.direct_url` behind a pooler)",
    )? {
        Postgres::create_database(url)
            .await
            .context("creating the database")?;
        tracing::info!("created the database");
    }
    let pool = owner_pool(settings).await?;
    MIGRATOR.run(&pool).await.context("applying migrations")?;
    revoke_temporary_from_public(&pool).await?;
    pool.close().await;
    Ok(())
}

/// No role but the owner may create temporary objects in the database: they
/// are the way to shadow a table for a function that runs as its owner
/// (migration 0013 has the definer functions search them last as well).
/// A grant on the database itself, which `CREATE DATABASE … TEMPLATE` does
/// not copy, so it is applied on every run rather than by a migration; a
/// migrator that does not own the database cannot revoke it and is told
/// what to ask of its DBA.
async fn revoke_temporary_from_public(pool: &PgPool) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    // REVOKE takes no bind parameter for the database's name: format() quotes it.
    conn.execute(
        "DO $$ BEGIN
             EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
         END $$",
    )
    .await
    .context("revoking TEMPORARY on the database from PUBLIC")?;
    let (database, app_may_create_temp): (String, bool) = sqlx::query_as(
        "SELECT current_database()::text,
                has_database_privilege('stock_tracker_app', current_database(), 'TEMPORARY')",
    )
    .fetch_one(&mut *conn)
    .await?;
    if app_may_create_temp {
        tracing::warn!(
            database,
            "the app role may still create temporary objects: the migrating role does not own \
             the database; have its owner run `REVOKE TEMPORARY ON DATABASE \"{database}\" \
             FROM PUBLIC` (docs/operations.md, \"Database roles\")"
        );
    }
    Ok(())
}

/// One connection as the URL's own role (the tables' owner), for operator
/// commands that run outside any tenant: migrations and bootstrap tasks.
/// Directly to PostgreSQL: the migrator holds a session advisory lock.
pub async fn owner_pool(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(session_options(settings)?)
        .await
        .context("connecting to PostgreSQL")
}

/// Refuses to serve against a schema older than this release. Migrations
/// applied by a newer release are tolerated, so a rolling deploy can migrate
/// first and replace the old replicas afterwards.
pub async fn check_schema(pool: &PgPool) -> anyhow::Result<()> {
    const HINT: &str = "run `stock-tracker migrate` against this database";
    // In a transaction, which keeps one server connection behind a pooler.
    let read = async {
        let mut tx = pool.begin().await?;
        let applied: Vec<(i64, bool, Vec<u8>)> =
            sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations")
                .fetch_all(observed("db.check_schema", &mut *tx))
                .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(applied)
    };
    let applied = read
        .await
        .with_context(|| format!("cannot read the migration history ({HINT})"))?;
    let mut missing = Vec::new();
    for migration in MIGRATOR.iter() {
        match applied.iter().find(|(v, _, _)| *v == migration.version) {
            Some((_, true, checksum)) if *checksum == *migration.checksum => {}
            Some((_, true, _)) => anyhow::bail!(
                "migration {} ({}) differs from the one applied to this database; the migration files must not change once released",
                migration.version,
                migration.description
            ),
            _ => missing.push(format!("{} ({})", migration.version, migration.description)),
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "the database schema is behind this release: migrations not applied: {}; {HINT}",
            missing.join(", ")
        );
    }
    Ok(())
}

pub const DB_POOL_WAITERS: MetricDef = MetricDef::gauge(
    "stock_tracker_db_pool_waiters",
    "Callers waiting for a PostgreSQL connection from the pool",
    &[],
);

pub const DB_POOL_CONNECTIONS: MetricDef = MetricDef::gauge(
    "stock_tracker_db_pool_connections",
    "PostgreSQL pool connections by state (idle, in_use), read at scrape time; they sum to the pool's size",
    &["state"],
);

pub const DB_POOL_MAX_CONNECTIONS: MetricDef = MetricDef::gauge(
    "stock_tracker_db_pool_max_connections",
    "The most connections the PostgreSQL pool opens (`database.max_connections`)",
    &[],
);

/// The pool's families and the statements' ([`observe`]).
pub const METRICS: &[MetricDef] = &[
    DB_POOL_WAITERS,
    DB_POOL_CONNECTIONS,
    DB_POOL_MAX_CONNECTIONS,
    observe::DB_QUERY_DURATION,
    observe::DB_QUERY_ERRORS,
    observe::DB_QUERIES_SLOW,
];

/// The service's PostgreSQL handle: the pool behind the database circuit
/// breaker, counting the callers that wait for a connection (a load-shedding
/// signal). Request paths go through [`Database::begin`],
/// [`begin_tenant_tx`] and [`read_in_one_trip`]; with the breaker open they
/// fail at once, answered as a pool with nothing to give (`PoolTimedOut`, a
/// 503), instead of each waiting out the acquire timeout against a dead
/// server.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
    /// What every transaction sets for itself, right after `BEGIN`.
    prelude: Arc<str>,
    breaker: Arc<CircuitBreaker>,
    waiters: Arc<AtomicI64>,
    waiters_gauge: prometheus::IntGauge,
    connections_gauge: prometheus::IntGaugeVec,
    max_connections_gauge: prometheus::IntGauge,
}

impl Database {
    pub fn new(
        pool: PgPool,
        settings: &DatabaseSettings,
        breaker: Arc<CircuitBreaker>,
        metrics: &Metrics,
    ) -> Self {
        observe::register(metrics);
        // A server-side cap on each statement: a runaway query cannot hold
        // a connection. The same cap on a transaction left idle: a client
        // frozen mid-transaction (SIGSTOP, a partition) cannot hold its row
        // locks — a job's, say, that beat's reaper must update.
        let prelude = format!(
            "SET LOCAL ROLE {APP_ROLE}; SET LOCAL statement_timeout = {0}; \
             SET LOCAL idle_in_transaction_session_timeout = {0}",
            settings.statement_timeout_ms
        );
        Self {
            pool,
            prelude: prelude.into(),
            breaker,
            waiters: Arc::new(AtomicI64::new(0)),
            waiters_gauge: metrics.int_gauge(&DB_POOL_WAITERS),
            connections_gauge: metrics.int_gauge_vec(&DB_POOL_CONNECTIONS),
            max_connections_gauge: metrics.int_gauge(&DB_POOL_MAX_CONNECTIONS),
        }
    }

    /// Reads the pool's sizes into their gauge (at scrape time).
    pub fn observe_pool(&self) {
        let size = i64::from(self.pool.size());
        let idle = self.pool.num_idle() as i64;
        let gauge = &self.connections_gauge;
        gauge.with_label_values(&["idle"]).set(idle);
        gauge
            .with_label_values(&["in_use"])
            .set((size - idle).max(0));
        self.max_connections_gauge
            .set(i64::from(self.pool.options().get_max_connections()));
    }

    /// The pool itself, outside the breaker: readiness probes and shutdown.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Closes the breaker as soon as PostgreSQL answers a `SELECT 1` again
    /// (checked every `circuit_breakers.database.probe_interval_ms` while open).
    pub fn watch_recovery(&self) {
        let pool = self.pool.clone();
        self.breaker.watch_recovery(move || {
            let pool = pool.clone();
            async move {
                sqlx::raw_sql(PING)
                    .execute(observed("breaker.probe", &pool))
                    .await
                    .is_ok()
            }
        });
    }

    /// Callers waiting for a connection right now.
    pub fn waiters(&self) -> i64 {
        self.waiters.load(Ordering::Relaxed)
    }

    /// A transaction as the app role, with no tenant: for the `SECURITY
    /// DEFINER` functions that run before a tenant is known and the
    /// workers' cross-tenant scans. One round trip to begin.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.begin_with("db.begin", format!("BEGIN; {}", self.prelude))
            .await
    }

    async fn begin_with(
        &self,
        kind: &'static str,
        statement: String,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let pool = self.pool.clone();
        // The statement holds only the settings and, for a tenant, a UUID's
        // text form (hex digits and dashes). Measured like a statement run
        // on the pool: the wait for a connection included.
        let begin = pool.begin_with(sqlx::AssertSqlSafe(statement));
        self.guarded(observe::measured(kind, begin)).await
    }

    async fn guarded<T>(
        &self,
        get: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, sqlx::Error> {
        if !self.breaker.allow() {
            return Err(sqlx::Error::PoolTimedOut);
        }
        // With no idle connection and the pool at its size, this caller waits.
        let waits = self.pool.num_idle() == 0
            && self.pool.size() >= self.pool.options().get_max_connections();
        if waits {
            let now = self.waiters.fetch_add(1, Ordering::Relaxed) + 1;
            self.waiters_gauge.set(now);
        }
        let result = get.await;
        if waits {
            let now = self.waiters.fetch_sub(1, Ordering::Relaxed) - 1;
            self.waiters_gauge.set(now);
        }
        match &result {
            Err(err) if is_connection_failure(err) => self.breaker.record_failure(),
            _ => self.breaker.record_success(),
        }
        result
    }
}

/// Errors that say the database cannot be reached (as opposed to a query the
/// database refused): these trip the breaker.
pub fn is_connection_failure(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
    )
}

/// Begins a transaction scoped to one tenant: row-level security lets it see
/// and write that tenant's rows only. The role, the statement timeout and
/// the tenant are set for the transaction only, sent with the `BEGIN` in one
/// round trip.
pub async fn begin_tenant_tx(
    db: &Database,
    tenant_id: Uuid,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    db.begin_with(
        "db.begin_tenant",
        format!(
            "BEGIN; {}; SET LOCAL app.tenant_id = '{tenant_id}'",
            db.prelude
        ),
    )
    .await
}

/// One tenant-scoped read in a single round trip: the role, the statement
/// timeout and the tenant are set for the transaction (`SET LOCAL`) and
/// `statement` runs in it, all
/// in one simple-protocol query string, which PostgreSQL runs as one
/// implicit transaction. Row-level security is as strict as in
/// [`begin_tenant_tx`], and nothing stays on the connection for its next
/// user (or a transaction pooler's next client) to see — where a
/// transaction costs three (`BEGIN` with the settings, the statement,
/// `COMMIT`).
///
/// The simple protocol binds no parameters, so `statement` may hold only
/// values rendered by [`uuid_literal`]; rows come back in text format,
/// which sqlx decodes like binary ones (it sets `TimeZone` and `DateStyle`
/// on every connection).
pub async fn read_in_one_trip<R>(
    db: &Database,
    tenant_id: Uuid,
    operation: &'static str,
    statement: &str,
) -> Result<Vec<R>, sqlx::Error>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let pool = db.pool.clone();
    let mut conn = db.guarded(async move { pool.acquire().await }).await?;
    let sql = format!(
        "{}; SET LOCAL app.tenant_id = '{tenant_id}'; {statement}",
        db.prelude
    );
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .fetch_all(observed(operation, &mut *conn))
        .await?;
    rows.iter().map(R::from_row).collect()
}

/// A UUID as an SQL literal, for [`read_in_one_trip`]: its text form holds
/// only hex digits and dashes, so it cannot break out of the quotes.
pub fn uuid_literal(id: Uuid) -> String {
    format!("'{id}'::uuid")
}

/// Whether `err` is a violation of the named unique constraint or index.
pub fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation() && db.constraint() == Some(constraint))
}

/// A token-invalidation mark: every access token minted up to now (to the
/// millisecond) is refused from here on. Returns the mark in Unix
/// milliseconds and as a timestamp for PostgreSQL.
pub fn invalidation_mark() -> (i64, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    let mark_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64 + 1;
    let mark = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(mark_ms) * 1_000_000)
        .unwrap_or(now);
    (mark_ms, mark)
}
