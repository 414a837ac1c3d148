//! Every metric the service exports is defined here, once: name, type, help
//! and labels. The collectors are built from these definitions and the
//! `/metrics/catalog` document is generated from them, so the two cannot
//! drift apart. Later features add their definitions to [`CATALOG`].
//!
//! Naming: the `stock_tracker_` prefix, base units in names (`_seconds`,
//! `_bytes`, `_total`), and labels with bounded values only — never a tenant
//! id, user id or raw path.
//!
//! Each [`Metrics`] owns its registry, so every `Application` (and every
//! test) counts on its own — except what belongs to the process: its CPU
//! and memory, and the statement timings (`db::observe`), shared by every
//! registry of the process.

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use std::sync::{Arc, LazyLock};

use serde::Serialize;
use utoipa::ToSchema;

use super::memory::{self, MemoryTrend};

/// Prefix of every metric name.
pub const NAMESPACE: &str = "stock_tracker";

/// Buckets for HTTP latency, in seconds. Dense around the alert thresholds
/// (p50 100 ms, p95 300 ms, p95 1 s) so quantile estimates there are accurate.
pub const HTTP_LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets for dependency checks and cache lookups, in seconds (readiness
/// probes time out at 1 s by default; cache lookups at 250 ms).
pub const CHECK_LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// The definition of one metric family.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct MetricDef {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub kind: MetricKind,
    pub help: &'static str,
    #[schema(value_type = Vec<String>)]
    pub labels: &'static [&'static str],
}

/// Requests by route pattern, method and status (recorded by actix-web-prom).
pub const HTTP_REQUESTS_TOTAL: MetricDef = MetricDef {
    name: "stock_tracker_http_requests_total",
    kind: MetricKind::Counter,
    help: "Total number of HTTP requests",
    labels: &["endpoint", "method", "status"],
};

/// Request latency by route pattern, method and status (recorded by actix-web-prom).
pub const HTTP_REQUEST_DURATION: MetricDef = MetricDef {
    name: "stock_tracker_http_requests_duration_seconds",
    kind: MetricKind::Histogram,
    help: "HTTP request duration in seconds for all requests",
    labels: &["endpoint", "method", "status"],
};

pub const BUILD_INFO: MetricDef = MetricDef {
    name: "stock_tracker_build_info",
    kind: MetricKind::Gauge,
    help: "Always 1; labels carry the running version",
    labels: &["version"],
};

pub const DEPENDENCY_UP: MetricDef = MetricDef {
    name: "stock_tracker_dependency_up",
    kind: MetricKind::Gauge,
    help: "Result of the last readiness check of a dependency: 1 up, 0 down",
    labels: &["dependency"],
};

pub const DEPENDENCY_CHECK_DURATION: MetricDef = MetricDef {
    name: "stock_tracker_dependency_check_duration_seconds",
    kind: MetricKind::Histogram,
    help: "Duration of readiness checks against a dependency",
    labels: &["dependency"],
};

pub const AUTH_EVENTS: MetricDef = MetricDef {
    name: "stock_tracker_auth_events_total",
    kind: MetricKind::Counter,
    help: "Authentication events by outcome: register, login, refresh, logout (success, failure, reuse_detected) and credentials presented per request, bearer and api_key (success, invalid, revoked, unavailable)",
    labels: &["event", "outcome"],
};

pub const CACHE_REQUESTS: MetricDef = MetricDef {
    name: "stock_tracker_cache_requests_total",
    kind: MetricKind::Counter,
    help: "Cached reads by cache and result: hit, miss, or bypass (Redis unavailable)",
    labels: &["cache", "result"],
};

pub const CACHE_LOOKUP_DURATION: MetricDef = MetricDef {
    name: "stock_tracker_cache_lookup_duration_seconds",
    kind: MetricKind::Histogram,
    help: "Duration of cache lookups in Redis, hits and misses alike",
    labels: &["cache"],
};

pub const RATE_LIMIT_DECISIONS: MetricDef = MetricDef {
    name: "stock_tracker_rate_limit_decisions_total",
    kind: MetricKind::Counter,
    help: "Rate-limit decisions by deciding scope (tenant, user, ip, endpoint, global), tier (or anonymous) and outcome: allowed, limited, or fallback (allowed by the in-process limiter while Redis is unavailable)",
    labels: &["scope", "tier", "outcome"],
};

pub const RATE_LIMIT_SCRIPT_DURATION: MetricDef = MetricDef {
    name: "stock_tracker_rate_limit_script_duration_seconds",
    kind: MetricKind::Histogram,
    help: "Duration of the rate-limit script call to Redis, round trip included",
    labels: &[],
};

pub const RATE_LIMIT_FALLBACK_SWITCHES: MetricDef = MetricDef {
    name: "stock_tracker_rate_limit_fallback_switches_total",
    kind: MetricKind::Counter,
    help: "Switches of the rate limiter between Redis and the in-process fallback, by the backend switched to",
    labels: &["to"],
};

pub const RATE_LIMIT_FALLBACK_ACTIVE: MetricDef = MetricDef {
    name: "stock_tracker_rate_limit_fallback_active",
    kind: MetricKind::Gauge,
    help: "1 while the rate limiter counts in process because Redis is unavailable",
    labels: &[],
};

pub const CIRCUIT_BREAKER_STATE: MetricDef = MetricDef {
    name: "stock_tracker_circuit_breaker_state",
    kind: MetricKind::Gauge,
    help: "Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open",
    labels: &["dependency"],
};

pub const CIRCUIT_BREAKER_TRANSITIONS: MetricDef = MetricDef {
    name: "stock_tracker_circuit_breaker_transitions_total",
    kind: MetricKind::Counter,
    help: "Circuit breaker state changes per dependency, by the state entered",
    labels: &["dependency", "to"],
};

pub const LOAD_SHED: MetricDef = MetricDef {
    name: "stock_tracker_load_shed_total",
    kind: MetricKind::Counter,
    help: "Requests refused with 503 by the load shedder, by reason: runtime_lag, in_flight, db_pool_waiters",
    labels: &["reason"],
};

pub const HTTP_REQUESTS_IN_FLIGHT: MetricDef = MetricDef {
    name: "stock_tracker_http_requests_in_flight",
    kind: MetricKind::Gauge,
    help: "HTTP requests being served right now (probes, metrics and docs excluded)",
    labels: &[],
};

pub const RUNTIME_LAG: MetricDef = MetricDef {
    name: "stock_tracker_runtime_lag_seconds",
    kind: MetricKind::Gauge,
    help: "Scheduling lag of each HTTP worker thread's runtime: how late its last periodic tick ran (the event-loop lag of an async runtime)",
    labels: &["worker"],
};

pub const RUNTIME_ALIVE_TASKS: MetricDef = MetricDef {
    name: "stock_tracker_runtime_alive_tasks",
    kind: MetricKind::Gauge,
    help: "Tasks alive on the HTTP worker runtimes (async tasks pending), summed over workers",
    labels: &[],
};

pub const DB_POOL_WAITERS: MetricDef = MetricDef {
    name: "stock_tracker_db_pool_waiters",
    kind: MetricKind::Gauge,
    help: "Callers waiting for a PostgreSQL connection from the pool",
    labels: &[],
};

pub const WORKER_TASKS: MetricDef = MetricDef {
    name: "stock_tracker_worker_tasks_total",
    kind: MetricKind::Counter,
    help: "Tasks run by the worker, by task and status: succeeded, failed, retried, skipped (a duplicate delivery of a finished job)",
    labels: &["task", "status"],
};

pub const WORKER_TASK_DURATION: MetricDef = MetricDef {
    name: "stock_tracker_worker_task_duration_seconds",
    kind: MetricKind::Histogram,
    help: "Task run time, by task and status",
    labels: &["task", "status"],
};

pub const WORKER_TASKS_IN_PROGRESS: MetricDef = MetricDef {
    name: "stock_tracker_worker_tasks_in_progress",
    kind: MetricKind::Gauge,
    help: "Tasks running now, by task",
    labels: &["task"],
};

pub const WORKER_RETRIES: MetricDef = MetricDef {
    name: "stock_tracker_worker_task_retries_total",
    kind: MetricKind::Counter,
    help: "Task retries scheduled after a transient failure, by task",
    labels: &["task"],
};

pub const WORKER_PREFETCH: MetricDef = MetricDef {
    name: "stock_tracker_worker_prefetch_messages",
    kind: MetricKind::Gauge,
    help: "Messages the worker may hold unacknowledged at once (broker.prefetch)",
    labels: &[],
};

pub const SYNC_JOBS: MetricDef = MetricDef {
    name: "stock_tracker_sync_jobs_total",
    kind: MetricKind::Counter,
    help: "Sync jobs finished by the worker, by marketplace kind and outcome: succeeded or failed",
    labels: &["marketplace", "outcome"],
};

pub const SYNC_PRODUCTS: MetricDef = MetricDef {
    name: "stock_tracker_sync_products_total",
    kind: MetricKind::Counter,
    help: "Products read from a marketplace by sync jobs, by marketplace kind and outcome: created, updated (price, name or stock changed) or unchanged",
    labels: &["marketplace", "outcome"],
};

/// Outbound HTTP calls (seed 004's external API tracker).
pub const EXTERNAL_API_REQUESTS: MetricDef = MetricDef {
    name: "stock_tracker_external_api_requests_total",
    kind: MetricKind::Counter,
    help: "Outbound HTTP calls by service (wildberries, webhook, telegram), operation and status_code: the HTTP status, or timeout / error when no response came",
    labels: &["service", "operation", "status_code"],
};

pub const EXTERNAL_API_DURATION: MetricDef = MetricDef {
    name: "stock_tracker_external_api_duration_seconds",
    kind: MetricKind::Histogram,
    help: "Duration of outbound HTTP calls until the response headers (or the failure), by service and operation",
    labels: &["service", "operation"],
};

/// Buckets for outbound calls, in seconds (seed 004; alerts at p95 3 s and 10 s).
pub const EXTERNAL_API_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

pub const QUEUE_DEPTH: MetricDef = MetricDef {
    name: "stock_tracker_queue_depth",
    kind: MetricKind::Gauge,
    help: "Messages ready for delivery in each broker queue, read with a passive queue declare at scrape time",
    labels: &["queue"],
};

pub const QUEUE_CONSUMERS: MetricDef = MetricDef {
    name: "stock_tracker_queue_consumers",
    kind: MetricKind::Gauge,
    help: "Consumers attached to each broker queue, read with a passive queue declare at scrape time (0: no worker consuming)",
    labels: &["queue"],
};

pub const WEBHOOK_DELIVERIES: MetricDef = MetricDef {
    name: "stock_tracker_webhook_deliveries_total",
    kind: MetricKind::Counter,
    help: "Webhook delivery attempts by event type and outcome: delivered, retried (failed, another attempt scheduled) or failed (no attempts left)",
    labels: &["event", "outcome"],
};

pub const WEBHOOK_DELIVERY_DURATION: MetricDef = MetricDef {
    name: "stock_tracker_webhook_delivery_duration_seconds",
    kind: MetricKind::Histogram,
    help: "Duration of webhook requests to receivers",
    labels: &[],
};

pub const WEBHOOK_SUBSCRIPTIONS_DISABLED: MetricDef = MetricDef {
    name: "stock_tracker_webhook_subscriptions_disabled_total",
    kind: MetricKind::Counter,
    help: "Webhook subscriptions disabled by the service after failing too long",
    labels: &[],
};

pub const TELEGRAM_DELIVERIES: MetricDef = MetricDef {
    name: "stock_tracker_telegram_deliveries_total",
    kind: MetricKind::Counter,
    help: "Telegram message attempts by event type and outcome: delivered, retried or failed",
    labels: &["event", "outcome"],
};

/// Every metric the worker exports besides the ones it shares with the API
/// (see [`worker_catalog`]).
pub const WORKER_CATALOG: &[MetricDef] = &[
    WORKER_TASKS,
    WORKER_TASK_DURATION,
    WORKER_TASKS_IN_PROGRESS,
    WORKER_RETRIES,
    WORKER_PREFETCH,
    SYNC_JOBS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_DELIVERY_DURATION,
    WEBHOOK_SUBSCRIPTIONS_DISABLED,
    TELEGRAM_DELIVERIES,
    SYNC_PRODUCTS,
    EXTERNAL_API_REQUESTS,
    EXTERNAL_API_DURATION,
    QUEUE_DEPTH,
    QUEUE_CONSUMERS,
];

/// Families only the API exports: HTTP traffic and the tenant activity it sees.
pub const API_ONLY: &[MetricDef] = &[HTTP_REQUESTS_TOTAL, HTTP_REQUEST_DURATION, ACTIVE_TENANTS];

/// Everything the worker's `/metrics` exports: the shared families (process,
/// memory, database, Redis, breakers) and [`WORKER_CATALOG`].
pub fn worker_catalog() -> Vec<MetricDef> {
    CATALOG
        .iter()
        .filter(|def| !API_ONLY.iter().any(|api| api.name == def.name))
        .chain(WORKER_CATALOG)
        .copied()
        .collect()
}

/// Buckets for task durations, in seconds: a sync of thousands of products takes seconds.
pub const TASK_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

pub const DB_POOL_CONNECTIONS: MetricDef = MetricDef {
    name: "stock_tracker_db_pool_connections",
    kind: MetricKind::Gauge,
    help: "PostgreSQL pool connections by state (idle, in_use) and the pool's maximum (max), read at scrape time",
    labels: &["state"],
};

/// Exported by the process collector (Linux): CPU, memory, file descriptors.
pub const PROCESS_CPU: MetricDef = MetricDef {
    name: "stock_tracker_process_cpu_seconds_total",
    kind: MetricKind::Counter,
    help: "Total user and system CPU time spent in seconds.",
    labels: &[],
};

pub const PROCESS_RSS: MetricDef = MetricDef {
    name: "stock_tracker_process_resident_memory_bytes",
    kind: MetricKind::Gauge,
    help: "Resident memory size in bytes.",
    labels: &[],
};

pub const PROCESS_VIRTUAL_MEMORY: MetricDef = MetricDef {
    name: "stock_tracker_process_virtual_memory_bytes",
    kind: MetricKind::Gauge,
    help: "Virtual memory size in bytes.",
    labels: &[],
};

pub const PROCESS_OPEN_FDS: MetricDef = MetricDef {
    name: "stock_tracker_process_open_fds",
    kind: MetricKind::Gauge,
    help: "Number of open file descriptors.",
    labels: &[],
};

pub const PROCESS_MAX_FDS: MetricDef = MetricDef {
    name: "stock_tracker_process_max_fds",
    kind: MetricKind::Gauge,
    help: "Maximum number of open file descriptors.",
    labels: &[],
};

pub const PROCESS_START_TIME: MetricDef = MetricDef {
    name: "stock_tracker_process_start_time_seconds",
    kind: MetricKind::Gauge,
    help: "Start time of the process since unix epoch in seconds.",
    labels: &[],
};

pub const PROCESS_THREADS: MetricDef = MetricDef {
    name: "stock_tracker_process_threads",
    kind: MetricKind::Gauge,
    help: "Number of OS threads in the process.",
    labels: &[],
};

pub const DB_QUERY_DURATION: MetricDef = MetricDef {
    name: "stock_tracker_db_query_duration_seconds",
    kind: MetricKind::Histogram,
    help: "Duration of PostgreSQL statements by query kind (area.operation, named in the code)",
    labels: &["kind"],
};

pub const DB_QUERY_ERRORS: MetricDef = MetricDef {
    name: "stock_tracker_db_query_errors_total",
    kind: MetricKind::Counter,
    help: "PostgreSQL statements that failed, by query kind",
    labels: &["kind"],
};

pub const DB_QUERIES_SLOW: MetricDef = MetricDef {
    name: "stock_tracker_db_slow_queries_total",
    kind: MetricKind::Counter,
    help: "PostgreSQL statements at least database.slow_query_threshold_ms long, by query kind (each also logged)",
    labels: &["kind"],
};

/// jemalloc's statistics, read at scrape time after advancing its epoch.
pub const JEMALLOC_ALLOCATED: MetricDef = MetricDef {
    name: "stock_tracker_jemalloc_allocated_bytes",
    kind: MetricKind::Gauge,
    help: "Bytes allocated by the application through jemalloc",
    labels: &[],
};

pub const JEMALLOC_ACTIVE: MetricDef = MetricDef {
    name: "stock_tracker_jemalloc_active_bytes",
    kind: MetricKind::Gauge,
    help: "Bytes in jemalloc's active pages (allocated plus fragmentation within pages)",
    labels: &[],
};

pub const JEMALLOC_RESIDENT: MetricDef = MetricDef {
    name: "stock_tracker_jemalloc_resident_bytes",
    kind: MetricKind::Gauge,
    help: "Bytes in physically resident pages mapped by jemalloc (data and metadata)",
    labels: &[],
};

pub const JEMALLOC_RETAINED: MetricDef = MetricDef {
    name: "stock_tracker_jemalloc_retained_bytes",
    kind: MetricKind::Gauge,
    help: "Bytes of virtual memory jemalloc retained for reuse instead of returning it to the system",
    labels: &[],
};

pub const MEMORY_GROWTH: MetricDef = MetricDef {
    name: "stock_tracker_memory_growth_bytes_per_second",
    kind: MetricKind::Gauge,
    help: "Growth rate of the resident memory: the least-squares slope of RSS samples over metrics.memory_growth_window_secs",
    labels: &[],
};

pub const MEMORY_LIMIT: MetricDef = MetricDef {
    name: "stock_tracker_memory_limit_bytes",
    kind: MetricKind::Gauge,
    help: "The container's memory limit (cgroup memory.max); 0 when unlimited",
    labels: &[],
};

pub const CPU_LIMIT: MetricDef = MetricDef {
    name: "stock_tracker_cpu_limit_cores",
    kind: MetricKind::Gauge,
    help: "CPU cores the process may use: the cgroup quota (cpu.max), else the cores available",
    labels: &[],
};

pub const ACTIVE_TENANTS: MetricDef = MetricDef {
    name: "stock_tracker_active_tenants",
    kind: MetricKind::Gauge,
    help: "Tenants with at least one authenticated request within metrics.active_tenant_window_secs, across all API replicas (every replica reports the same estimate: aggregate with max)",
    labels: &[],
};

/// Every metric the service exports.
pub const CATALOG: &[MetricDef] = &[
    HTTP_REQUESTS_TOTAL,
    HTTP_REQUEST_DURATION,
    BUILD_INFO,
    DEPENDENCY_UP,
    DEPENDENCY_CHECK_DURATION,
    AUTH_EVENTS,
    CACHE_REQUESTS,
    CACHE_LOOKUP_DURATION,
    RATE_LIMIT_DECISIONS,
    RATE_LIMIT_SCRIPT_DURATION,
    RATE_LIMIT_FALLBACK_SWITCHES,
    RATE_LIMIT_FALLBACK_ACTIVE,
    CIRCUIT_BREAKER_STATE,
    CIRCUIT_BREAKER_TRANSITIONS,
    LOAD_SHED,
    HTTP_REQUESTS_IN_FLIGHT,
    RUNTIME_LAG,
    RUNTIME_ALIVE_TASKS,
    DB_POOL_WAITERS,
    DB_POOL_CONNECTIONS,
    PROCESS_CPU,
    PROCESS_RSS,
    PROCESS_VIRTUAL_MEMORY,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    PROCESS_START_TIME,
    PROCESS_THREADS,
    DB_QUERY_DURATION,
    DB_QUERY_ERRORS,
    DB_QUERIES_SLOW,
    JEMALLOC_ALLOCATED,
    JEMALLOC_ACTIVE,
    JEMALLOC_RESIDENT,
    JEMALLOC_RETAINED,
    MEMORY_GROWTH,
    MEMORY_LIMIT,
    CPU_LIMIT,
    ACTIVE_TENANTS,
];

/// Buckets for the rate-limit script, in seconds: it runs on every request
/// and should take well under a millisecond on a local network.
pub const SCRIPT_LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

impl MetricDef {
    fn opts(&self) -> Opts {
        Opts::new(self.name, self.help)
    }

    pub(crate) fn int_counter(&self) -> IntCounterVec {
        debug_assert_eq!(self.kind, MetricKind::Counter);
        IntCounterVec::new(self.opts(), self.labels).expect("valid counter definition")
    }

    /// A gauge without labels.
    fn plain_gauge(&self) -> prometheus::Gauge {
        debug_assert!(self.kind == MetricKind::Gauge && self.labels.is_empty());
        prometheus::Gauge::with_opts(self.opts()).expect("valid gauge definition")
    }

    fn gauge(&self) -> GaugeVec {
        debug_assert_eq!(self.kind, MetricKind::Gauge);
        GaugeVec::new(self.opts(), self.labels).expect("valid gauge definition")
    }

    fn int_gauge(&self) -> IntGaugeVec {
        debug_assert_eq!(self.kind, MetricKind::Gauge);
        IntGaugeVec::new(self.opts(), self.labels).expect("valid gauge definition")
    }

    /// A gauge without labels.
    fn plain_int_gauge(&self) -> prometheus::IntGauge {
        debug_assert!(self.kind == MetricKind::Gauge && self.labels.is_empty());
        prometheus::IntGauge::with_opts(self.opts()).expect("valid gauge definition")
    }

    pub(crate) fn histogram(&self, buckets: &[f64]) -> HistogramVec {
        debug_assert_eq!(self.kind, MetricKind::Histogram);
        HistogramVec::new(
            HistogramOpts::new(self.name, self.help).buckets(buckets.to_vec()),
            self.labels,
        )
        .expect("valid histogram definition")
    }
}

/// Buckets for statement latency, in seconds: dense around the alert
/// thresholds (p95 100 ms warning, 200 ms critical).
pub const QUERY_LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0,
];

/// The statement collectors, shared by every registry of the process.
pub struct QueryMetrics {
    pub duration: HistogramVec,
    pub errors: IntCounterVec,
    pub slow: IntCounterVec,
}

pub static QUERY_METRICS: LazyLock<QueryMetrics> = LazyLock::new(|| QueryMetrics {
    duration: DB_QUERY_DURATION.histogram(QUERY_LATENCY_BUCKETS),
    errors: DB_QUERY_ERRORS.int_counter(),
    slow: DB_QUERIES_SLOW.int_counter(),
});

/// The application's collectors and the registry that exports them.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub dependency_up: GaugeVec,
    pub dependency_check_duration: HistogramVec,
    pub auth_events: IntCounterVec,
    pub cache_requests: IntCounterVec,
    pub cache_lookup_duration: HistogramVec,
    pub rate_limit_decisions: IntCounterVec,
    pub rate_limit_script_duration: HistogramVec,
    pub rate_limit_fallback_switches: IntCounterVec,
    pub rate_limit_fallback_active: prometheus::IntGauge,
    pub circuit_breaker_state: IntGaugeVec,
    pub circuit_breaker_transitions: IntCounterVec,
    pub load_shed: IntCounterVec,
    pub http_requests_in_flight: prometheus::IntGauge,
    pub runtime_lag: GaugeVec,
    pub runtime_alive_tasks: prometheus::IntGauge,
    pub db_pool_waiters: prometheus::IntGauge,
    pub db_pool_connections: IntGaugeVec,
    pub memory: MemoryGauges,
    /// Registered by the API only ([`Metrics::for_api`]).
    pub active_tenants: prometheus::IntGauge,
    // The worker's (registered only by [`Metrics::for_worker`]).
    pub worker_tasks: IntCounterVec,
    pub worker_task_duration: HistogramVec,
    pub worker_tasks_in_progress: IntGaugeVec,
    pub worker_retries: IntCounterVec,
    pub worker_prefetch: prometheus::IntGauge,
    pub sync_jobs: IntCounterVec,
    pub webhook_deliveries: IntCounterVec,
    pub webhook_delivery_duration: HistogramVec,
    pub webhook_subscriptions_disabled: prometheus::IntCounter,
    pub telegram_deliveries: IntCounterVec,
    pub sync_products: IntCounterVec,
    pub external_api_requests: IntCounterVec,
    pub external_api_duration: HistogramVec,
    pub queue_depth: IntGaugeVec,
    pub queue_consumers: IntGaugeVec,
}

/// The memory and CPU gauges, set at scrape time by [`Metrics::scrape`].
#[derive(Clone)]
pub struct MemoryGauges {
    pub jemalloc_allocated: prometheus::IntGauge,
    pub jemalloc_active: prometheus::IntGauge,
    pub jemalloc_resident: prometheus::IntGauge,
    pub jemalloc_retained: prometheus::IntGauge,
    pub growth: prometheus::Gauge,
    pub limit: prometheus::IntGauge,
    pub cpu_limit: prometheus::Gauge,
    /// The RSS samples the growth rate is computed from.
    pub trend: Arc<MemoryTrend>,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let build_info = BUILD_INFO.int_gauge();
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let metrics = Self {
            dependency_up: DEPENDENCY_UP.gauge(),
            dependency_check_duration: DEPENDENCY_CHECK_DURATION.histogram(CHECK_LATENCY_BUCKETS),
            auth_events: AUTH_EVENTS.int_counter(),
            cache_requests: CACHE_REQUESTS.int_counter(),
            cache_lookup_duration: CACHE_LOOKUP_DURATION.histogram(CHECK_LATENCY_BUCKETS),
            rate_limit_decisions: RATE_LIMIT_DECISIONS.int_counter(),
            rate_limit_script_duration: RATE_LIMIT_SCRIPT_DURATION
                .histogram(SCRIPT_LATENCY_BUCKETS),
            rate_limit_fallback_switches: RATE_LIMIT_FALLBACK_SWITCHES.int_counter(),
            rate_limit_fallback_active: RATE_LIMIT_FALLBACK_ACTIVE.plain_int_gauge(),
            circuit_breaker_state: CIRCUIT_BREAKER_STATE.int_gauge(),
            circuit_breaker_transitions: CIRCUIT_BREAKER_TRANSITIONS.int_counter(),
            load_shed: LOAD_SHED.int_counter(),
            http_requests_in_flight: HTTP_REQUESTS_IN_FLIGHT.plain_int_gauge(),
            runtime_lag: RUNTIME_LAG.gauge(),
            runtime_alive_tasks: RUNTIME_ALIVE_TASKS.plain_int_gauge(),
            db_pool_waiters: DB_POOL_WAITERS.plain_int_gauge(),
            db_pool_connections: DB_POOL_CONNECTIONS.int_gauge(),
            memory: MemoryGauges {
                jemalloc_allocated: JEMALLOC_ALLOCATED.plain_int_gauge(),
                jemalloc_active: JEMALLOC_ACTIVE.plain_int_gauge(),
                jemalloc_resident: JEMALLOC_RESIDENT.plain_int_gauge(),
                jemalloc_retained: JEMALLOC_RETAINED.plain_int_gauge(),
                growth: MEMORY_GROWTH.plain_gauge(),
                limit: MEMORY_LIMIT.plain_int_gauge(),
                cpu_limit: CPU_LIMIT.plain_gauge(),
                trend: Arc::new(MemoryTrend::default()),
            },
            active_tenants: ACTIVE_TENANTS.plain_int_gauge(),
            worker_tasks: WORKER_TASKS.int_counter(),
            worker_task_duration: WORKER_TASK_DURATION.histogram(TASK_DURATION_BUCKETS),
            worker_tasks_in_progress: WORKER_TASKS_IN_PROGRESS.int_gauge(),
            worker_retries: WORKER_RETRIES.int_counter(),
            worker_prefetch: WORKER_PREFETCH.plain_int_gauge(),
            sync_jobs: SYNC_JOBS.int_counter(),
            webhook_deliveries: WEBHOOK_DELIVERIES.int_counter(),
            webhook_delivery_duration: WEBHOOK_DELIVERY_DURATION.histogram(CHECK_LATENCY_BUCKETS),
            webhook_subscriptions_disabled: prometheus::IntCounter::with_opts(
                WEBHOOK_SUBSCRIPTIONS_DISABLED.opts(),
            )
            .expect("valid counter definition"),
            telegram_deliveries: TELEGRAM_DELIVERIES.int_counter(),
            sync_products: SYNC_PRODUCTS.int_counter(),
            external_api_requests: EXTERNAL_API_REQUESTS.int_counter(),
            external_api_duration: EXTERNAL_API_DURATION.histogram(EXTERNAL_API_BUCKETS),
            queue_depth: QUEUE_DEPTH.int_gauge(),
            queue_consumers: QUEUE_CONSUMERS.int_gauge(),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(build_info),
            Box::new(metrics.dependency_up.clone()),
            Box::new(metrics.dependency_check_duration.clone()),
            Box::new(metrics.auth_events.clone()),
            Box::new(metrics.cache_requests.clone()),
            Box::new(metrics.cache_lookup_duration.clone()),
            Box::new(metrics.rate_limit_decisions.clone()),
            Box::new(metrics.rate_limit_script_duration.clone()),
            Box::new(metrics.rate_limit_fallback_switches.clone()),
            Box::new(metrics.rate_limit_fallback_active.clone()),
            Box::new(metrics.circuit_breaker_state.clone()),
            Box::new(metrics.circuit_breaker_transitions.clone()),
            Box::new(metrics.load_shed.clone()),
            Box::new(metrics.http_requests_in_flight.clone()),
            Box::new(metrics.runtime_lag.clone()),
            Box::new(metrics.runtime_alive_tasks.clone()),
            Box::new(metrics.db_pool_waiters.clone()),
            Box::new(metrics.db_pool_connections.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::new(
                std::process::id() as i32,
                NAMESPACE,
            )),
            Box::new(QUERY_METRICS.duration.clone()),
            Box::new(QUERY_METRICS.errors.clone()),
            Box::new(QUERY_METRICS.slow.clone()),
            Box::new(metrics.memory.jemalloc_allocated.clone()),
            Box::new(metrics.memory.jemalloc_active.clone()),
            Box::new(metrics.memory.jemalloc_resident.clone()),
            Box::new(metrics.memory.jemalloc_retained.clone()),
            Box::new(metrics.memory.growth.clone()),
            Box::new(metrics.memory.limit.clone()),
            Box::new(metrics.memory.cpu_limit.clone()),
        ];
        for reason in ["runtime_lag", "in_flight", "db_pool_waiters"] {
            metrics.load_shed.with_label_values(&[reason]);
        }
        // Both directions exist from the start, so `increase()` sees the first switch.
        for to in ["fallback", "redis"] {
            metrics
                .rate_limit_fallback_switches
                .with_label_values(&[to]);
        }
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("metric names are unique");
        }
        metrics
    }

    /// Counts one authentication event (see [`AUTH_EVENTS`]).
    pub fn auth_event(&self, event: &str, outcome: &str) {
        self.auth_events.with_label_values(&[event, outcome]).inc();
    }

    /// Counts one rate-limit decision (see [`RATE_LIMIT_DECISIONS`]).
    pub fn rate_limit_decision(&self, scope: &str, tier: &str, outcome: &str) {
        self.rate_limit_decisions
            .with_label_values(&[scope, tier, outcome])
            .inc();
    }

    /// Counts a switch of the limiter's backend and sets the fallback gauge.
    pub fn rate_limit_fallback_switch(&self, to: &str) {
        self.rate_limit_fallback_switches
            .with_label_values(&[to])
            .inc();
        self.rate_limit_fallback_active
            .set(i64::from(to == "fallback"));
    }

    /// The worker's metrics: the shared ones plus [`WORKER_CATALOG`].
    pub fn for_worker(marketplace_kinds: &[&str]) -> Self {
        let metrics = Self::new();
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.worker_tasks.clone()),
            Box::new(metrics.worker_task_duration.clone()),
            Box::new(metrics.worker_tasks_in_progress.clone()),
            Box::new(metrics.worker_retries.clone()),
            Box::new(metrics.worker_prefetch.clone()),
            Box::new(metrics.sync_jobs.clone()),
            Box::new(metrics.webhook_deliveries.clone()),
            Box::new(metrics.webhook_delivery_duration.clone()),
            Box::new(metrics.webhook_subscriptions_disabled.clone()),
            Box::new(metrics.telegram_deliveries.clone()),
            Box::new(metrics.sync_products.clone()),
            Box::new(metrics.external_api_requests.clone()),
            Box::new(metrics.external_api_duration.clone()),
            Box::new(metrics.queue_depth.clone()),
            Box::new(metrics.queue_consumers.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("metric names are unique");
        }
        for task in [
            "sync_tenant_products",
            "sync_all_tenants",
            "deliver_webhook",
            "deliver_telegram",
        ] {
            metrics.worker_tasks_in_progress.with_label_values(&[task]);
            metrics.worker_retries.with_label_values(&[task]);
        }
        // Every known combination exists from the start, so ratios and panels
        // read 0 rather than "no data" before the first event.
        for event in ["sync.completed", "sync.failed", "stock.low"] {
            for outcome in ["delivered", "retried", "failed"] {
                metrics
                    .webhook_deliveries
                    .with_label_values(&[event, outcome]);
                metrics
                    .telegram_deliveries
                    .with_label_values(&[event, outcome]);
            }
        }
        for (service, operation) in [
            ("wildberries", "content"),
            ("wildberries", "marketplace"),
            ("wildberries", "prices"),
            ("webhook", "deliver"),
            ("telegram", "send_message"),
        ] {
            metrics
                .external_api_duration
                .with_label_values(&[service, operation]);
        }
        for marketplace in marketplace_kinds {
            for outcome in ["succeeded", "failed"] {
                metrics.sync_jobs.with_label_values(&[marketplace, outcome]);
            }
            for outcome in ["created", "updated", "unchanged"] {
                metrics
                    .sync_products
                    .with_label_values(&[marketplace, outcome]);
            }
        }
        metrics
    }

    /// The API's metrics: the shared ones plus the active-tenant estimate.
    pub fn for_api() -> Self {
        let metrics = Self::new();
        metrics
            .registry
            .register(Box::new(metrics.active_tenants.clone()))
            .expect("metric names are unique");
        metrics
    }

    /// Reads jemalloc's statistics, the memory trend and the cgroup limits
    /// into their gauges (at scrape time).
    fn observe_process(&self) {
        let gauges = &self.memory;
        if let Some(stats) = memory::jemalloc_stats() {
            gauges.jemalloc_allocated.set(stats.allocated as i64);
            gauges.jemalloc_active.set(stats.active as i64);
            gauges.jemalloc_resident.set(stats.resident as i64);
            gauges.jemalloc_retained.set(stats.retained as i64);
        }
        gauges.growth.set(gauges.trend.bytes_per_second());
        gauges
            .limit
            .set(memory::memory_limit_bytes().unwrap_or(0) as i64);
        gauges.cpu_limit.set(memory::cpu_limit_cores());
    }

    /// Reads the PostgreSQL pool's sizes into their gauge (at scrape time).
    fn observe_pool(&self, pool: &sqlx::PgPool) {
        let size = i64::from(pool.size());
        let idle = pool.num_idle() as i64;
        let gauge = &self.db_pool_connections;
        gauge.with_label_values(&["idle"]).set(idle);
        gauge
            .with_label_values(&["in_use"])
            .set((size - idle).max(0));
        gauge
            .with_label_values(&["max"])
            .set(i64::from(pool.options().get_max_connections()));
    }

    pub fn breaker_state(&self, dependency: &str, value: i64) {
        self.circuit_breaker_state
            .with_label_values(&[dependency])
            .set(value);
    }

    pub fn breaker_transition(&self, dependency: &str, to: &str) {
        self.circuit_breaker_transitions
            .with_label_values(&[dependency, to])
            .inc();
    }

    /// A scrape: the gauges read at scrape time (pool, process), then the
    /// text exposition of every registered metric.
    pub fn scrape(&self, pool: &sqlx::PgPool) -> String {
        self.observe_pool(pool);
        self.observe_process();
        self.render()
    }

    /// Starts sampling the resident memory for the growth-rate gauge.
    pub fn start_memory_sampler(&self, settings: &crate::config::MetricsSettings) {
        self.memory.trend.clone().spawn_sampler(settings);
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_are_unique_prefixed_and_unit_suffixed() {
        let mut names: Vec<_> = CATALOG.iter().map(|d| d.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CATALOG.len(), "duplicate metric names");
        for def in CATALOG {
            assert!(def.name.starts_with("stock_tracker_"), "{}", def.name);
            if def.kind == MetricKind::Counter {
                assert!(def.name.ends_with("_total"), "{}", def.name);
            }
            if def.kind == MetricKind::Histogram {
                assert!(
                    def.name.ends_with("_seconds") || def.name.ends_with("_bytes"),
                    "{}",
                    def.name
                );
            }
            assert!(
                !def.labels.contains(&"tenant_id"),
                "{} is labelled by tenant",
                def.name
            );
        }
    }
}
