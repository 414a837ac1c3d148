//! Dependency checks for readiness. Each check is bounded by
//! `health.check_timeout_ms`, and all run concurrently, so the probe answers
//! within one timeout however many dependencies hang.
//!
//! PostgreSQL is required: without it the service cannot answer anything
//! useful, so readiness fails. Redis is not: the service keeps serving without
//! it (no cache, local rate limits), so readiness stays 200 and reports
//! `degraded`. Each component also reports its circuit breaker's state; a
//! dependency that answers its check has its breaker closed.

use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

use crate::db::{self, observed};
use crate::infra::Infra;
use crate::resilience::breaker::CircuitBreaker;
use crate::telemetry::metrics::{CHECK_LATENCY_BUCKETS, MetricDef, Metrics};

pub const DEPENDENCY_UP: MetricDef = MetricDef::gauge(
    "stock_tracker_dependency_up",
    "Result of the last readiness check of a dependency: 1 up, 0 down",
    &["dependency"],
);

pub const DEPENDENCY_CHECK_DURATION: MetricDef = MetricDef::histogram(
    "stock_tracker_dependency_check_duration_seconds",
    "Duration of readiness checks against a dependency",
    &["dependency"],
    CHECK_LATENCY_BUCKETS,
);

pub const METRICS: &[MetricDef] = &[DEPENDENCY_UP, DEPENDENCY_CHECK_DURATION];

/// Registers the readiness families (their series appear with the first check).
pub fn register_metrics(metrics: &Metrics) {
    metrics.gauge_vec(&DEPENDENCY_UP);
    metrics.histogram_vec(&DEPENDENCY_CHECK_DURATION);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ComponentStatus {
    Up,
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OverallStatus {
    /// Every dependency answers.
    Ok,
    /// An optional dependency is down; the service still serves.
    Degraded,
    /// A required dependency is down; do not route traffic here.
    Unavailable,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComponentHealth {
    pub status: ComponentStatus,
    /// How long the check took (up to the check timeout), in milliseconds.
    pub response_time_ms: f64,
    /// Whether the service can serve without this dependency.
    pub required: bool,
    /// Why the check failed; a category, never connection details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The dependency's circuit breaker: `closed`, `open` (calls fail fast)
    /// or `half_open` (a probe call decides). A successful check above
    /// closes it, so `up` always comes with `closed`: readiness and the
    /// breaker agree.
    pub circuit_breaker: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Components {
    pub database: ComponentHealth,
    pub redis: ComponentHealth,
    /// RabbitMQ: without it, syncs are still accepted (their jobs wait, queued).
    pub broker: ComponentHealth,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    pub status: OverallStatus,
    pub version: &'static str,
    pub components: Components,
}

pub async fn readiness(state: &Infra) -> Readiness {
    let limit = state.settings.health.check_timeout();
    let (database, redis, broker) = tokio::join!(
        check("database", true, limit, state, check_database(state)),
        check("redis", false, limit, state, check_redis(state)),
        check("broker", false, limit, state, async {
            if crate::broker::reachable(&state.settings).await {
                Ok(())
            } else {
                Err("unreachable")
            }
        }),
    );
    let (database, redis, broker) = (
        database.with_breaker(state.db.breaker()),
        redis.with_breaker(state.redis_guard.breaker()),
        broker.with_breaker(state.queue.breaker()),
    );
    let status = if database.status == ComponentStatus::Down {
        OverallStatus::Unavailable
    } else if redis.status == ComponentStatus::Down || broker.status == ComponentStatus::Down {
        OverallStatus::Degraded
    } else {
        OverallStatus::Ok
    };
    Readiness {
        status,
        version: env!("CARGO_PKG_VERSION"),
        components: Components {
            database,
            redis,
            broker,
        },
    }
}

async fn check(
    name: &str,
    required: bool,
    limit: Duration,
    state: &Infra,
    probe: impl Future<Output = Result<(), &'static str>>,
) -> ComponentHealth {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(limit, probe).await {
        Ok(result) => result,
        Err(_) => Err("timeout"),
    };
    let elapsed = started.elapsed();
    state
        .metrics
        .histogram_vec(&DEPENDENCY_CHECK_DURATION)
        .with_label_values(&[name])
        .observe(elapsed.as_secs_f64());
    state
        .metrics
        .gauge_vec(&DEPENDENCY_UP)
        .with_label_values(&[name])
        .set(if outcome.is_ok() { 1.0 } else { 0.0 });
    if let Err(reason) = outcome {
        tracing::warn!(dependency = name, reason, "readiness check failed");
    }
    ComponentHealth {
        status: if outcome.is_ok() {
            ComponentStatus::Up
        } else {
            ComponentStatus::Down
        },
        response_time_ms: (elapsed.as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
        required,
        error: outcome.err().map(str::to_owned),
        circuit_breaker: String::new(),
    }
}

impl ComponentHealth {
    /// Adds the breaker's state. A dependency that just answered the check
    /// closes its breaker first (the check counts as its recovery probe), so
    /// readiness never admits traffic that the breaker would refuse.
    fn with_breaker(mut self, breaker: &CircuitBreaker) -> Self {
        if self.status == ComponentStatus::Up {
            breaker.dependency_answered();
        }
        self.circuit_breaker = breaker.state().as_str().to_owned();
        self
    }
}

async fn check_database(state: &Infra) -> Result<(), &'static str> {
    sqlx::raw_sql(db::PING)
        .execute(observed("health.ping", state.db.pool()))
        .await
        .map(|_| ())
        .map_err(|err| match err {
            sqlx::Error::PoolTimedOut => "timeout",
            _ => "unreachable",
        })
}

async fn check_redis(state: &Infra) -> Result<(), &'static str> {
    let mut conn = state.redis.connection();
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map(|_| ())
        .map_err(|_| "unreachable")
}
