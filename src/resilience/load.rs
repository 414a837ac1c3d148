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

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError, web};
use serde::Deserialize;

use crate::config::ConfigError;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::telemetry::metrics::Metrics;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSheddingSettings {
    pub max_runtime_lag_ms: u64,
    pub lag_probe_interval_ms: u64,
    pub lag_window_ms: u64,
    pub max_in_flight: usize,
    pub write_reserve: f64,
    pub max_db_pool_waiters: i64,
    pub retry_after_secs: u64,
}

impl LoadSheddingSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: &str| {
            Err(ConfigError::Invalid {
                key: format!("load_shedding.{key}"),
                problem: problem.to_owned(),
            })
        };
        if self.max_runtime_lag_ms == 0 || self.lag_probe_interval_ms == 0 {
            return invalid(
                "max_runtime_lag_ms",
                "and lag_probe_interval_ms must be greater than 0",
            );
        }
        if self.lag_window_ms < self.lag_probe_interval_ms {
            return invalid("lag_window_ms", "must be at least lag_probe_interval_ms");
        }
        if self.max_in_flight == 0 {
            return invalid("max_in_flight", "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.write_reserve) {
            return invalid("write_reserve", "must be at least 0 and below 1");
        }
        if self.max_db_pool_waiters < 0 {
            return invalid("max_db_pool_waiters", "must not be negative");
        }
        if self.retry_after_secs == 0 {
            return invalid("retry_after_secs", "must be at least 1");
        }
        Ok(())
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
    metrics: Metrics,
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
    pub fn new(settings: LoadSheddingSettings, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            settings,
            in_flight: AtomicUsize::new(0),
            workers: (0..MAX_WORKERS).map(|_| WorkerSlot::default()).collect(),
            next_worker: AtomicUsize::new(0),
            started: Instant::now(),
            metrics,
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
            self.metrics.runtime_alive_tasks.set(total);
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
        self.metrics.http_requests_in_flight.set(now as i64);
        InFlight(self.clone())
    }

    /// Why this request should be shed, if it should; `in_flight` counts it.
    fn overloaded(self: &Arc<Self>, method: &Method, db_waiters: i64) -> Option<ShedReason> {
        let settings = &self.settings;
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

struct InFlight(Arc<LoadMonitor>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.in_flight.fetch_sub(1, Ordering::AcqRel) - 1;
        self.0.metrics.http_requests_in_flight.set(now as i64);
    }
}

/// The middleware. Outside authentication: a request refused here costs no
/// token verification and no Redis call.
pub async fn shed_load(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let exempt = req.method() == Method::OPTIONS
        || req
            .match_pattern()
            .is_some_and(|route| crate::rate_limit::is_exempt_route(&route));
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let (Some(state), false) = (state, exempt) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let monitor = state.load.clone();
    let _in_flight = monitor.enter();
    if let Some(reason) = monitor.overloaded(req.method(), state.db.waiters()) {
        state
            .metrics
            .load_shed
            .with_label_values(&[reason.as_str()])
            .inc();
        tracing::warn!(reason = reason.as_str(), "request shed");
        let retry_after_secs = monitor.settings.retry_after_secs;
        let error = ApiError::ServiceUnavailable {
            code: "overloaded",
            detail: format!("The service is overloaded; retry in {retry_after_secs} s"),
            retry_after_secs: Some(retry_after_secs),
        };
        return Ok(req
            .into_response(error.error_response())
            .map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
