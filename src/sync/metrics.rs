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

pub const METRICS: &[MetricDef] = &[SYNC_JOBS, SYNC_PRODUCTS];

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
