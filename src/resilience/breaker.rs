//! A circuit breaker per dependency (PostgreSQL, Redis).
//!
//! **Closed**: calls go through; `failure_threshold` consecutive failures
//! open it. **Open**: calls fail at once, without touching the dependency —
//! a dead database costs nothing instead of a pool timeout per request.
//! After `open_timeout_ms` the next call is let through as a probe
//! (**half-open**, one probe at a time): success closes the breaker, failure
//! opens it for another period.
//!
//! Waiting out the open timeout alone would keep a recovered dependency
//! refused for up to a minute, so [`CircuitBreaker::watch_recovery`] also
//! checks the dependency in the background every `probe_interval_ms` while
//! the breaker is not closed, and closes it as soon as the check succeeds.
//! Readiness's own successful check counts the same way, so a replica never
//! reports ready while its breaker still refuses the traffic that follows.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::BreakerSettings;
use crate::telemetry::metrics::{MetricDef, Metrics};

pub const CIRCUIT_BREAKER_STATE: MetricDef = MetricDef::gauge(
    "stock_tracker_circuit_breaker_state",
    "Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open",
    &["dependency"],
);

pub const CIRCUIT_BREAKER_TRANSITIONS: MetricDef = MetricDef::counter(
    "stock_tracker_circuit_breaker_transitions_total",
    "Circuit breaker state changes per dependency, by the state entered",
    &["dependency", "to"],
);

pub const METRICS: &[MetricDef] = &[CIRCUIT_BREAKER_STATE, CIRCUIT_BREAKER_TRANSITIONS];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The gauge value: 0 closed, 1 half-open, 2 open.
    fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

pub struct CircuitBreaker {
    dependency: &'static str,
    failure_threshold: u32,
    open_timeout: Duration,
    probe_interval: Duration,
    inner: Mutex<Inner>,
    state_gauge: prometheus::IntGauge,
    transitions: prometheus::IntCounterVec,
}

impl CircuitBreaker {
    pub fn new(dependency: &'static str, settings: &BreakerSettings, metrics: &Metrics) -> Self {
        let state_gauge = metrics
            .int_gauge_vec(&CIRCUIT_BREAKER_STATE)
            .with_label_values(&[dependency]);
        state_gauge.set(BreakerState::Closed.gauge());
        let transitions = metrics.counter_vec(&CIRCUIT_BREAKER_TRANSITIONS);
        // Every transition exists from the start, so `increase()` sees the first one.
        for to in [
            BreakerState::Open,
            BreakerState::HalfOpen,
            BreakerState::Closed,
        ] {
            transitions.with_label_values(&[dependency, to.as_str()]);
        }
        Self {
            dependency,
            failure_threshold: settings.failure_threshold.max(1),
            open_timeout: Duration::from_millis(settings.open_timeout_ms),
            probe_interval: Duration::from_millis(settings.probe_interval_ms.max(1)),
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: None,
                probe_in_flight: false,
            }),
            state_gauge,
            transitions,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Whether a call may go to the dependency now. A `true` must be followed
    /// by [`Self::record_success`] or [`Self::record_failure`].
    pub fn allow(&self) -> bool {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => {
                let waited = inner
                    .opened_at
                    .is_none_or(|at| at.elapsed() >= self.open_timeout);
                if waited {
                    self.transition(&mut inner, BreakerState::HalfOpen);
                    inner.probe_in_flight = true;
                }
                waited
            }
            BreakerState::HalfOpen => {
                if inner.probe_in_flight {
                    false
                } else {
                    inner.probe_in_flight = true;
                    true
                }
            }
        }
    }

    pub fn record_success(&self) {
        let mut inner = self.lock();
        inner.consecutive_failures = 0;
        inner.probe_in_flight = false;
        if inner.state != BreakerState::Closed {
            self.transition(&mut inner, BreakerState::Closed);
        }
    }

    pub fn record_failure(&self) {
        let mut inner = self.lock();
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        inner.probe_in_flight = false;
        let trips = match inner.state {
            BreakerState::HalfOpen => true,
            BreakerState::Closed => inner.consecutive_failures >= self.failure_threshold,
            BreakerState::Open => false,
        };
        if trips {
            inner.opened_at = Some(Instant::now());
            self.transition(&mut inner, BreakerState::Open);
        }
    }

    /// A check outside the request path (the recovery probe, readiness)
    /// found the dependency answering: an open or half-open breaker closes.
    /// A closed one is left alone: its failure count belongs to real calls.
    pub fn dependency_answered(&self) {
        let mut inner = self.lock();
        if inner.state != BreakerState::Closed {
            inner.consecutive_failures = 0;
            inner.probe_in_flight = false;
            self.transition(&mut inner, BreakerState::Closed);
        }
    }

    /// Checks the dependency every `probe_interval_ms` while the breaker is
    /// not closed, and closes it as soon as `check` answers `true`. Each
    /// check is bounded by the interval, so checks never pile up. A failed
    /// check changes nothing: the breaker stays open (calls keep failing
    /// fast). The task ends when the breaker is dropped.
    pub fn watch_recovery<F, Fut>(self: &Arc<Self>, check: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        let breaker = Arc::downgrade(self);
        let interval = self.probe_interval;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(open) = breaker
                    .upgrade()
                    .map(|breaker| breaker.state() != BreakerState::Closed)
                else {
                    return;
                };
                if open
                    && tokio::time::timeout(interval, check()).await == Ok(true)
                    && let Some(breaker) = breaker.upgrade()
                {
                    breaker.dependency_answered();
                }
            }
        });
    }

    fn transition(&self, inner: &mut Inner, to: BreakerState) {
        let from = inner.state;
        inner.state = to;
        self.state_gauge.set(to.gauge());
        self.transitions
            .with_label_values(&[self.dependency, to.as_str()])
            .inc();
        match to {
            BreakerState::Open => tracing::warn!(
                dependency = self.dependency,
                from = from.as_str(),
                failures = inner.consecutive_failures,
                "circuit breaker opened: calls fail fast until a probe succeeds"
            ),
            BreakerState::HalfOpen => tracing::info!(
                dependency = self.dependency,
                "circuit breaker half-open: probing"
            ),
            BreakerState::Closed => tracing::info!(
                dependency = self.dependency,
                "circuit breaker closed: dependency recovered"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, open_ms: u64) -> CircuitBreaker {
        breaker_in(&Metrics::new(), threshold, open_ms)
    }

    fn breaker_in(metrics: &Metrics, threshold: u32, open_ms: u64) -> CircuitBreaker {
        CircuitBreaker::new(
            "database",
            &BreakerSettings {
                failure_threshold: threshold,
                open_timeout_ms: open_ms,
                probe_interval_ms: 10,
            },
            metrics,
        )
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let b = breaker(3, 60_000);
        for _ in 0..2 {
            assert!(b.allow());
            b.record_failure();
        }
        // A success in between resets the count.
        assert!(b.allow());
        b.record_success();
        for _ in 0..3 {
            assert_eq!(b.state(), BreakerState::Closed);
            assert!(b.allow());
            b.record_failure();
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
    }

    #[test]
    fn half_opens_after_the_timeout_with_one_probe_at_a_time() {
        let b = breaker(1, 20);
        assert!(b.allow());
        b.record_failure();
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.allow(), "the probe goes through");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.allow(), "only one probe at a time");
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.allow());
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow() && b.allow());
    }

    #[tokio::test]
    async fn the_recovery_probe_closes_the_breaker_as_soon_as_the_dependency_answers() {
        let b = Arc::new(breaker(1, 60_000));
        let answering = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checks = Arc::new(std::sync::atomic::AtomicU32::new(0));
        b.watch_recovery({
            let (answering, checks) = (answering.clone(), checks.clone());
            move || {
                let (answering, checks) = (answering.clone(), checks.clone());
                async move {
                    checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    answering.load(std::sync::atomic::Ordering::Relaxed)
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            checks.load(std::sync::atomic::Ordering::Relaxed),
            0,
            "a closed breaker is not probed"
        );
        assert!(b.allow());
        b.record_failure();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(checks.load(std::sync::atomic::Ordering::Relaxed) > 0);
        assert_eq!(b.state(), BreakerState::Open, "failed checks keep it open");
        answering.store(true, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
    }

    #[test]
    fn a_successful_outside_check_closes_an_open_breaker_only() {
        let b = breaker(2, 60_000);
        assert!(b.allow());
        b.record_failure();
        b.dependency_answered();
        assert!(b.allow());
        b.record_failure();
        assert_eq!(
            b.state(),
            BreakerState::Open,
            "a check does not reset the failures of real calls"
        );
        b.dependency_answered();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn states_are_exported() {
        let metrics = Metrics::new();
        let b = breaker_in(&metrics, 1, 60_000);
        b.allow();
        b.record_failure();
        let text = metrics.render();
        assert!(
            text.contains(r#"stock_tracker_circuit_breaker_state{dependency="database"} 2"#),
            "{text}"
        );
        assert!(text.contains(
            r#"stock_tracker_circuit_breaker_transitions_total{dependency="database",to="open"} 1"#
        ));
    }
}
