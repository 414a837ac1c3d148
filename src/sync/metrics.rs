//! The sync jobs' metric families, recorded by [`super::service`].

use crate::marketplaces::model::KINDS;
use crate::telemetry::metrics::{MetricDef, Metrics};
use crate::telemetry::outbound;

pub const SYNC_JOBS: MetricDef = MetricDef::counter(
    "stock_tracker_sync_jobs_total",
    "Sync jobs finished by the worker, by marketplace kind and outcome: succeeded or failed",
    &["marketplace", "outcome"],
);

pub const SYNC_PRODUCTS: MetricDef = MetricDef::counter(
    "stock_tracker_sync_products_total",
    "Products read from a marketplace by sync jobs, by marketplace kind and outcome: created, updated (price, name or stock changed) or unchanged",
    &["marketplace", "outcome"],
);

pub const SYNC_LEASES_EXPIRED: MetricDef = MetricDef::counter(
    "stock_tracker_sync_leases_expired_total",
    "Running sync jobs whose worker stopped renewing the lease (frozen, cut off or dead), reaped by beat, by outcome: requeued, or failed once retries were used up",
    &["outcome"],
);

pub const METRICS: &[MetricDef] = &[SYNC_JOBS, SYNC_PRODUCTS, SYNC_LEASES_EXPIRED];

/// Registers the reaper's family (beat's) with both outcomes.
pub fn register_reaper(metrics: &Metrics) {
    let expired = metrics.counter_vec(&SYNC_LEASES_EXPIRED);
    for outcome in ["requeued", "failed"] {
        expired.with_label_values(&[outcome]);
    }
}

/// Registers the sync families with every marketplace kind and outcome (and
/// the marketplace API calls a sync makes), so they read 0 before the first job.
pub fn register(metrics: &Metrics) {
    let jobs = metrics.counter_vec(&SYNC_JOBS);
    let products = metrics.counter_vec(&SYNC_PRODUCTS);
    for marketplace in KINDS {
        for outcome in ["succeeded", "failed"] {
            jobs.with_label_values(&[marketplace, outcome]);
        }
        for outcome in ["created", "updated", "unchanged"] {
            products.with_label_values(&[marketplace, outcome]);
        }
    }
    outbound::register(
        metrics,
        "wildberries",
        &["content", "marketplace", "prices"],
    );
}
