//! Telemetry for every statement the service runs: latency and errors by
//! query kind, a JSON log line and a counter for slow statements, and a
//! `db.query` span (exported as an OpenTelemetry client span when tracing is
//! on; disabled at its call site, so free, when it is off).
//!
//! Call sites name their statement's kind once, by wrapping the executor:
//! `.fetch_one(observed("products.find", conn))`. Kinds are fixed strings
//! (`<area>.<operation>`), so the label set is bounded by the code, not by
//! the data. Nothing of the statement's parameters is recorded anywhere.
//!
//! Behind a transaction pooler the wrapper also makes every statement
//! unnamed: a named prepared statement lives on the server connection, which
//! the pooler hands to another client after the transaction, where the next
//! statement of the same name would collide (PgBouncer before 1.21 does not
//! track them). One switch here covers every call site.
//!
//! The collectors are process-wide ([`QUERY_METRICS`], adopted by every
//! registry): a connection does not know which application it serves, and one
//! process runs one service role.

use std::fmt;
use std::future::Future;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use prometheus::{HistogramVec, IntCounterVec};
use sqlx::Either;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Execute, Executor, Postgres};

use crate::telemetry::metrics::{MetricDef, Metrics};

pub const DB_QUERY_DURATION: MetricDef = MetricDef::histogram(
    "stock_tracker_db_query_duration_seconds",
    "Duration of PostgreSQL statements by query kind (area.operation, named in the code)",
    &["kind"],
    QUERY_LATENCY_BUCKETS,
);

pub const DB_QUERY_ERRORS: MetricDef = MetricDef::counter(
    "stock_tracker_db_query_errors_total",
    "PostgreSQL statements that failed, by query kind",
    &["kind"],
);

pub const DB_QUERIES_SLOW: MetricDef = MetricDef::counter(
    "stock_tracker_db_slow_queries_total",
    "PostgreSQL statements at least database.slow_query_threshold_ms long, by query kind (each also logged)",
    &["kind"],
);

/// Buckets for statement latency, in seconds: dense around the alert
/// thresholds (p95 100 ms warning, 200 ms critical).
pub const QUERY_LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0,
];

/// The statement collectors, shared by every registry of the process.
struct QueryMetrics {
    duration: HistogramVec,
    errors: IntCounterVec,
    slow: IntCounterVec,
}

static QUERY_METRICS: LazyLock<QueryMetrics> = LazyLock::new(|| QueryMetrics {
    duration: DB_QUERY_DURATION.new_histogram_vec(),
    errors: DB_QUERY_ERRORS.new_counter_vec(),
    slow: DB_QUERIES_SLOW.new_counter_vec(),
});

/// Adds the process's statement collectors to `metrics`' registry.
pub fn register(metrics: &Metrics) {
    metrics.family(&DB_QUERY_DURATION, || QUERY_METRICS.duration.clone());
    metrics.family(&DB_QUERY_ERRORS, || QUERY_METRICS.errors.clone());
    metrics.family(&DB_QUERIES_SLOW, || QUERY_METRICS.slow.clone());
}

/// Statements at least this slow are logged and counted (milliseconds).
static SLOW_THRESHOLD_MS: AtomicU64 = AtomicU64::new(u64::MAX);

/// Sets the slow-statement threshold (from `database.slow_query_threshold_ms`).
pub fn set_slow_threshold(threshold: Duration) {
    SLOW_THRESHOLD_MS.store(threshold.as_millis() as u64, Ordering::Relaxed);
}

/// Whether statements are sent unnamed (from `database.pooler`).
static UNNAMED_STATEMENTS: AtomicBool = AtomicBool::new(false);

/// Sends every statement of the process unnamed from now on when `unnamed`
/// (a pool behind a transaction pooler); never turns it back off. Unnamed
/// statements are correct on any connection, named ones only where a
/// connection has one client: with pools of both kinds in one process (as
/// in the tests), the other pool's settings must not make this one's
/// statements named again.
pub fn set_unnamed_statements(unnamed: bool) {
    UNNAMED_STATEMENTS.fetch_or(unnamed, Ordering::Relaxed);
}

/// A statement that is prepared unnamed when [`UNNAMED_STATEMENTS`] says so.
struct Statement<Q>(Q);

impl<'q, Q: Execute<'q, Postgres>> Execute<'q, Postgres> for Statement<Q> {
    fn sql(self) -> sqlx::SqlStr {
        self.0.sql()
    }

    fn statement(&self) -> Option<&PgStatement> {
        self.0.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, sqlx::error::BoxDynError> {
        self.0.take_arguments()
    }

    fn persistent(&self) -> bool {
        self.0.persistent() && !UNNAMED_STATEMENTS.load(Ordering::Relaxed)
    }
}

/// Wraps an executor (a connection, a transaction's connection, or the pool)
/// so the statement run through it is measured under `kind`.
pub fn observed<'c, E>(kind: &'static str, inner: E) -> Observed<E>
where
    E: Executor<'c, Database = Postgres>,
{
    Observed { kind, inner }
}

/// An executor that measures the one statement it runs.
pub struct Observed<E> {
    kind: &'static str,
    inner: E,
}

impl<E> fmt::Debug for Observed<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observed")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<'c, E> Executor<'c> for Observed<E>
where
    E: Executor<'c, Database = Postgres>,
{
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, Q>(
        self,
        query: Q,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        Q: 'q + Execute<'q, Postgres>,
    {
        let mut probe = Probe::start(self.kind);
        self.inner
            .fetch_many(Statement(query))
            // The closure owns the probe: it drops, and records, with the stream.
            .inspect(move |step| {
                if step.is_err() {
                    probe.fail();
                }
            })
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, Q>(
        self,
        query: Q,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        Q: 'q + Execute<'q, Postgres>,
    {
        let mut probe = Probe::start(self.kind);
        let running = self.inner.fetch_optional(Statement(query));
        async move {
            let result = running.await;
            if result.is_err() {
                probe.fail();
            }
            result
        }
        .boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        self.inner.prepare_with(sql, parameters)
    }

    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.inner.describe(sql)
    }
}

/// Measures `work` — a statement that does not go through an executor, such
/// as a transaction's `BEGIN` — under `kind`, like an observed statement.
pub async fn measured<T>(
    kind: &'static str,
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let mut probe = Probe::start(kind);
    let result = work.await;
    if result.is_err() {
        probe.fail();
    }
    result
}

/// Measures one statement from its start until its result (or stream) is
/// dropped, so a caller that stops early is measured too.
struct Probe {
    kind: &'static str,
    started: Instant,
    failed: bool,
    // Closed when the probe drops: the span covers exactly the statement.
    span: tracing::Span,
}

impl Probe {
    // A method, not a field write: closures then capture the whole probe
    // (and drop it when they drop), not just its flag.
    fn fail(&mut self) {
        self.failed = true;
    }

    fn start(kind: &'static str) -> Self {
        let span = tracing::trace_span!(
            target: "stock_tracker::db",
            "db.query",
            otel.name = kind,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.system = "postgresql",
            db.operation.name = kind,
        );
        Self {
            kind,
            started: Instant::now(),
            failed: false,
            span,
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let metrics = &*QUERY_METRICS;
        metrics
            .duration
            .with_label_values(&[self.kind])
            .observe(elapsed.as_secs_f64());
        // A kind's error and slow counters exist (at 0) from its first
        // statement on, so the first failure is an increase, not a new series.
        let errors = metrics.errors.with_label_values(&[self.kind]);
        let slow = metrics.slow.with_label_values(&[self.kind]);
        if self.failed {
            errors.inc();
            self.span.record("otel.status_code", "ERROR");
        }
        if elapsed.as_millis() as u64 >= SLOW_THRESHOLD_MS.load(Ordering::Relaxed) {
            slow.inc();
            // Logged inside the caller's span, so the line carries its request
            // id, route and tenant; never the statement's parameters.
            tracing::warn!(
                target: "slow_query",
                query_kind = self.kind,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                threshold_ms = SLOW_THRESHOLD_MS.load(Ordering::Relaxed),
                failed = self.failed,
                "slow query"
            );
        }
    }
}
