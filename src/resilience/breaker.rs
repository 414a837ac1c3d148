//! A circuit breaker per dependency (PostgreSQL, Redis).
//!
//! **Closed**: calls go through; `failure_threshold` consecutive failures
//! open it. **Open**: calls fail at once, without touching the dependency —
//! a dead database costs nothing instead of a pool timeout per request.
//! After `open_timeout_ms` the next call is let through as a probe
//! (**half-open**, one probe at a time): success closes the breaker, failure
//! opens it for another period.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::telemetry::metrics::Metrics;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    pub failure_threshold: u32,
    pub open_timeout_ms: u64,
}

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
    inner: Mutex<Inner>,
    metrics: Metrics,
}

impl CircuitBreaker {
    pub fn new(dependency: &'static str, settings: &BreakerSettings, metrics: Metrics) -> Self {
        metrics.breaker_state(dependency, BreakerState::Closed.gauge());
        // Every transition exists from the start, so `increase()` sees the first one.
        for to in [
            BreakerState::Open,
            BreakerState::HalfOpen,
            BreakerState::Closed,
        ] {
            metrics
                .circuit_breaker_transitions
                .with_label_values(&[dependency, to.as_str()]);
        }
        Self {
            dependency,
            failure_threshold: settings.failure_threshold.max(1),
            open_timeout: Duration::from_millis(settings.open_timeout_ms),
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: None,
                probe_in_flight: false,
            }),
            metrics,
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

    fn transition(&self, inner: &mut Inner, to: BreakerState) {
        let from = inner.state;
        inner.state = to;
        self.metrics.breaker_state(self.dependency, to.gauge());
        self.metrics
            .breaker_transition(self.dependency, to.as_str());
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
        CircuitBreaker::new(
            "database",
            &BreakerSettings {
                failure_threshold: threshold,
                open_timeout_ms: open_ms,
            },
            Metrics::new(),
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

    #[test]
    fn states_are_exported() {
        let b = breaker(1, 60_000);
        b.allow();
        b.record_failure();
        let text = b.metrics.render();
        assert!(
            text.contains(r#"stock_tracker_circuit_breaker_state{dependency="database"} 2"#),
            "{text}"
        );
        assert!(text.contains(
            r#"stock_tracker_circuit_breaker_transitions_total{dependency="database",to="open"} 1"#
        ));
    }
}
