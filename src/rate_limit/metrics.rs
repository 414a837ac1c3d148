//! The rate limiter's metric families: its decisions, the script's latency,
//! the Redis/in-process fallback, and the active-tenant estimate it keeps.

use prometheus::{HistogramVec, IntCounterVec, IntGauge};

use super::limiter::Scope;
use crate::telemetry::metrics::{MetricDef, Metrics};

pub const RATE_LIMIT_DECISIONS: MetricDef = MetricDef::counter(
    "stock_tracker_rate_limit_decisions_total",
    "Rate-limit decisions by deciding scope (tenant, user, ip, endpoint, global), tier (or anonymous) and outcome: allowed, limited, or fallback (allowed by the in-process limiter while Redis is unavailable)",
    &["scope", "tier", "outcome"],
);

pub const RATE_LIMIT_SCRIPT_DURATION: MetricDef = MetricDef::histogram(
    "stock_tracker_rate_limit_script_duration_seconds",
    "Duration of the rate-limit script call to Redis, round trip included",
    &[],
    SCRIPT_LATENCY_BUCKETS,
);

pub const RATE_LIMIT_FALLBACK_SWITCHES: MetricDef = MetricDef::counter(
    "stock_tracker_rate_limit_fallback_switches_total",
    "Switches of the rate limiter between Redis and the in-process fallback, by the backend switched to",
    &["to"],
);

pub const RATE_LIMIT_FALLBACK_ACTIVE: MetricDef = MetricDef::gauge(
    "stock_tracker_rate_limit_fallback_active",
    "1 while the rate limiter counts in process because Redis is unavailable",
    &[],
);

pub const ACTIVE_TENANTS: MetricDef = MetricDef::gauge(
    "stock_tracker_active_tenants",
    "Tenants with at least one authenticated request within metrics.active_tenant_window_secs, across all API replicas (every replica reports the same estimate: aggregate with max)",
    &[],
);

/// Buckets for the rate-limit script, in seconds: it runs on every request
/// and should take well under a millisecond on a local network.
pub const SCRIPT_LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

pub const METRICS: &[MetricDef] = &[
    RATE_LIMIT_DECISIONS,
    RATE_LIMIT_SCRIPT_DURATION,
    RATE_LIMIT_FALLBACK_SWITCHES,
    RATE_LIMIT_FALLBACK_ACTIVE,
];

/// The API's estimate of tenants active across replicas (only the API sees
/// their traffic).
pub const ACTIVITY_METRICS: &[MetricDef] = &[ACTIVE_TENANTS];

/// The limiter's collectors.
pub(super) struct LimiterMetrics {
    decisions: IntCounterVec,
    pub(super) script_duration: HistogramVec,
    fallback_switches: IntCounterVec,
    fallback_active: IntGauge,
    pub(super) active_tenants: IntGauge,
}

impl LimiterMetrics {
    pub(super) fn register(metrics: &Metrics) -> Self {
        let fallback_switches = metrics.counter_vec(&RATE_LIMIT_FALLBACK_SWITCHES);
        // Both directions exist from the start, so `increase()` sees the first switch.
        for to in ["fallback", "redis"] {
            fallback_switches.with_label_values(&[to]);
        }
        let fallback_active = metrics.int_gauge(&RATE_LIMIT_FALLBACK_ACTIVE);
        fallback_active.set(0);
        let decisions = metrics.counter_vec(&RATE_LIMIT_DECISIONS);
        let tiers = crate::auth::roles::Tier::ALL.map(|tier| tier.as_str());
        for scope in Scope::ALL.map(Scope::as_str) {
            for tier in tiers.iter().chain(&["anonymous"]) {
                for outcome in ["allowed", "limited", "fallback"] {
                    decisions.with_label_values(&[scope, tier, outcome]);
                }
            }
        }
        let script_duration = metrics.histogram_vec(&RATE_LIMIT_SCRIPT_DURATION);
        script_duration.with_label_values::<&str>(&[]);
        Self {
            decisions,
            script_duration,
            fallback_switches,
            fallback_active,
            active_tenants: metrics.int_gauge(&ACTIVE_TENANTS),
        }
    }

    /// Counts one decision (see [`RATE_LIMIT_DECISIONS`]).
    pub(super) fn decision(&self, scope: &str, tier: &str, outcome: &str) {
        self.decisions
            .with_label_values(&[scope, tier, outcome])
            .inc();
    }

    /// Counts a switch of the backend and sets the fallback gauge.
    pub(super) fn fallback_switch(&self, to: &str) {
        self.fallback_switches.with_label_values(&[to]).inc();
        self.fallback_active.set(i64::from(to == "fallback"));
    }
}
