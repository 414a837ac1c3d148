//! Load shedding: refuse work the process cannot do in time, before doing
//! any of it.
//!
//! Three signals, each exported as a gauge:
//! - **Runtime lag**: actix runs one single-threaded tokio runtime per HTTP
//!   worker thread. A probe task on each sleeps for `lag_probe_interval_ms`
//!   and measures how late it wakes: a busy or blocked worker wakes late (the
//!   event-loop lag of seed 000). A request is judged by its own worker's
//!   highest lag over the last `lag_window_ms`.
//! - **In-flight requests** in the process. Reads are shed once only
//!   `write_reserve` of `max_in_flight` is left, so writes (a user's changes)
//!   keep a reserved share of capacity — the shedder runs before
//!   authentication, so priority is by method, not by caller.
//! - **Database pool waiters** (see [`crate::db::Database`]).
//!
//! The probe also reads each worker runtime's alive-task count (seed 000's
//! "async tasks pending").

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::Method;

use crate::config::LoadSheddingSettings;
use crate::telemetry::metrics::{MetricDef, Metrics};

pub const LOAD_SHED: MetricDef = MetricDef::counter(
    "stock_tracker_load_shed_total",
    "Requests refused with 503 by the load shedder, by reason: runtime_lag, in_flight, db_pool_waiters",
    &["reason"],
);

pub const HTTP_REQUESTS_IN_FLIGHT: MetricDef = MetricDef::gauge(
    "stock_tracker_http_requests_in_flight",
    "HTTP requests being served right now (probes, metrics and docs excluded)",
    &[],
);

pub const RUNTIME_LAG: MetricDef = MetricDef::gauge(
    "stock_tracker_runtime_lag_seconds",
    "Scheduling lag of each HTTP worker thread's runtime: how late its last periodic tick ran (the event-loop lag of an async runtime)",
    &["worker"],
);

pub const RUNTIME_ALIVE_TASKS: MetricDef = MetricDef::gauge(
    "stock_tracker_runtime_alive_tasks",
    "Tasks alive on the HTTP worker runtimes (async tasks pending), summed over workers",
    &[],
);

pub const METRICS: &[MetricDef] = &[
    LOAD_SHED,
    HTTP_REQUESTS_IN_FLIGHT,
    RUNTIME_LAG,
    RUNTIME_ALIVE_TASKS,
];

/// The monitor's collectors.
struct LoadMetrics {
    shed: prometheus::IntCounterVec,
    in_flight: prometheus::IntGauge,
    runtime_lag: prometheus::GaugeVec,
    alive_tasks: prometheus::IntGauge,
}

impl LoadMetrics {
    fn register(metrics: &Metrics) -> Self {
        let shed = metrics.counter_vec(&LOAD_SHED);
        for reason in [
            ShedReason::RuntimeLag,
            ShedReason::InFlight,
            ShedReason::DbPoolWaiters,
        ] {
            shed.with_label_values(&[reason.as_str()]);
        }
        Self {
            shed,
            in_flight: metrics.int_gauge(&HTTP_REQUESTS_IN_FLIGHT),
            runtime_lag: metrics.gauge_vec(&RUNTIME_LAG),
            alive_tasks: metrics.int_gauge(&RUNTIME_ALIVE_TASKS),
        }
    }
}

/// Most worker threads one process measures (actix's default is one per core).
const MAX_WORKERS: usize = 256;

/// One worker's lag: the highest recent tick delay, and when it was seen.
#[derive(Default)]
struct WorkerSlot {
    peak_lag_us: AtomicU64,
    peak_at_ms: AtomicU64,
    alive_tasks: AtomicI64,
}

pub struct LoadMonitor {
    settings: LoadSheddingSettings,
    in_flight: AtomicUsize,
    workers: Vec<WorkerSlot>,
    next_worker: AtomicUsize,
    started: Instant,
    metrics: LoadMetrics,
    /// Callers waiting for a database connection right now.
    db_pool_waiters: Box<dyn Fn() -> i64 + Send + Sync>,
}

thread_local! {
    /// The probe slot of the HTTP worker running on this thread, tagged with
    /// its monitor (tests run several applications in one process).
    static WORKER: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    RuntimeLag,
    InFlight,
    DbPoolWaiters,
}

impl ShedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::RuntimeLag => "runtime_lag",
            ShedReason::InFlight => "in_flight",
            ShedReason::DbPoolWaiters => "db_pool_waiters",
        }
    }
}

impl LoadMonitor {
    /// `db_pool_waiters` reads the database handle's waiter count (kept
    /// there, as the handle sees each caller queue).
    pub fn new(
        settings: LoadSheddingSettings,
        metrics: &Metrics,
        db_pool_waiters: impl Fn() -> i64 + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            in_flight: AtomicUsize::new(0),
            workers: (0..MAX_WORKERS).map(|_| WorkerSlot::default()).collect(),
            next_worker: AtomicUsize::new(0),
            started: Instant::now(),
            metrics: LoadMetrics::register(metrics),
            db_pool_waiters: Box::new(db_pool_waiters),
        })
    }

    fn id(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Starts the lag probe on the calling HTTP worker thread, once per
    /// thread. Called from the per-worker application factory.
    pub fn start_worker_probe(self: &Arc<Self>) {
        let id = self.id();
        if WORKER.get().is_some_and(|(monitor, _)| monitor == id) {
            return;
        }
        let slot = self.next_worker.fetch_add(1, Ordering::Relaxed);
        if slot >= MAX_WORKERS {
            return;
        }
        WORKER.set(Some((id, slot)));
        self.metrics
            .runtime_lag
            .with_label_values(&[slot.to_string().as_str()])
            .set(0.0);
        let monitor = self.clone();
        actix_web::rt::spawn(async move { monitor.probe(slot).await });
    }

    async fn probe(self: Arc<Self>, slot: usize) {
        let interval = Duration::from_millis(self.settings.lag_probe_interval_ms);
        let label = slot.to_string();
        loop {
            let before = Instant::now();
            tokio::time::sleep(interval).await;
            let lag = before.elapsed().saturating_sub(interval);
            let worker = &self.workers[slot];
            let now = self.now_ms();
            let peak_at = worker.peak_at_ms.load(Ordering::Relaxed);
            let lag_us = lag.as_micros() as u64;
            if lag_us >= worker.peak_lag_us.load(Ordering::Relaxed)
                || now.saturating_sub(peak_at) > self.settings.lag_window_ms
            {
                worker.peak_lag_us.store(lag_us, Ordering::Relaxed);
                worker.peak_at_ms.store(now, Ordering::Relaxed);
            }
            let peak = worker.peak_lag_us.load(Ordering::Relaxed);
            self.metrics
                .runtime_lag
                .with_label_values(&[label.as_str()])
                .set(peak as f64 / 1e6);
            let alive = tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks() as i64;
            worker.alive_tasks.store(alive, Ordering::Relaxed);
            let workers = self.next_worker.load(Ordering::Relaxed).min(MAX_WORKERS);
            let total: i64 = self.workers[..workers]
                .iter()
                .map(|w| w.alive_tasks.load(Ordering::Relaxed))
                .sum();
            self.metrics.alive_tasks.set(total);
        }
    }

    /// The recent lag of the worker running this request (of the most
    /// lagging worker when called off a worker thread).
    fn current_lag(self: &Arc<Self>) -> Duration {
        let now = self.now_ms();
        let recent = |worker: &WorkerSlot| {
            let fresh = now.saturating_sub(worker.peak_at_ms.load(Ordering::Relaxed))
                <= self.settings.lag_window_ms;
            if fresh {
                worker.peak_lag_us.load(Ordering::Relaxed)
            } else {
                0
            }
        };
        let lag_us = match WORKER.get() {
            Some((monitor, slot)) if monitor == self.id() => recent(&self.workers[slot]),
            _ => self.workers.iter().map(recent).max().unwrap_or(0),
        };
        Duration::from_micros(lag_us)
    }

    /// Counts a request in flight until the returned guard drops.
    fn enter(self: &Arc<Self>) -> InFlight {
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.metrics.in_flight.set(now as i64);
        InFlight(self.clone())
    }

    /// Why this request should be shed, if it should; `in_flight` counts it.
    /// Counts a request in flight (until the guard is dropped) and decides
    /// whether to serve it. A refusal is counted and logged here; its `Err`
    /// holds the `Retry-After` to send, in seconds.
    pub fn admit(self: &Arc<Self>, method: &Method) -> (InFlight, Result<(), u64>) {
        let in_flight = self.enter();
        let Some(reason) = self.overloaded(method) else {
            return (in_flight, Ok(()));
        };
        self.metrics
            .shed
            .with_label_values(&[reason.as_str()])
            .inc();
        tracing::warn!(reason = reason.as_str(), "request shed");
        (in_flight, Err(self.settings.retry_after_secs))
    }

    fn overloaded(self: &Arc<Self>, method: &Method) -> Option<ShedReason> {
        let settings = &self.settings;
        let db_waiters = (self.db_pool_waiters)();
        if self.current_lag() > Duration::from_millis(settings.max_runtime_lag_ms) {
            return Some(ShedReason::RuntimeLag);
        }
        let in_flight = self.in_flight.load(Ordering::Acquire);
        let is_read = matches!(*method, Method::GET | Method::HEAD);
        let capacity = if is_read {
            ((settings.max_in_flight as f64) * (1.0 - settings.write_reserve)).floor() as usize
        } else {
            settings.max_in_flight
        };
        if in_flight > capacity.max(1) {
            return Some(ShedReason::InFlight);
        }
        if db_waiters > settings.max_db_pool_waiters {
            return Some(ShedReason::DbPoolWaiters);
        }
        None
    }
}

/// A request counted in flight until this is dropped.
pub struct InFlight(Arc<LoadMonitor>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.in_flight.fetch_sub(1, Ordering::AcqRel) - 1;
        self.0.metrics.in_flight.set(now as i64);
    }
}
