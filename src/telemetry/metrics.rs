//! The metrics registry and the shape of a metric definition. Each module
//! declares the families it records next to the code that records them (a
//! `METRICS` list of [`MetricDef`]s and the collectors built from them); each
//! role assembles its catalogue from those lists (`app::metrics_catalog`,
//! `worker::metrics_catalog`), and `/metrics/catalog` serves it, so the
//! definitions and the exposition cannot drift apart.
//!
//! Naming: the `stock_tracker_` prefix, base units in names (`_seconds`,
//! `_bytes`, `_total`), and labels with bounded values only — never a tenant
//! id, user id or raw path.
//!
//! Each [`Metrics`] owns its registry, so every role (and every test) counts
//! on its own. A family is registered the first time a module asks for it
//! and shared by every later caller of the same registry; what belongs to the
//! process (CPU, memory, statement timings) is shared by every registry.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::logging;
use super::memory::{self, MemoryTrend};

/// Prefix of every metric name.
pub const NAMESPACE: &str = "stock_tracker";

/// Buckets for dependency checks, cache lookups and webhook requests, in
/// seconds (readiness probes time out at 1 s by default; cache lookups at 250 ms).
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
    /// Histogram buckets, in the family's unit (empty for the other kinds).
    #[serde(skip)]
    pub buckets: &'static [f64],
}

impl MetricDef {
    pub const fn counter(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            kind: MetricKind::Counter,
            help,
            labels,
            buckets: &[],
        }
    }

    pub const fn gauge(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            kind: MetricKind::Gauge,
            help,
            labels,
            buckets: &[],
        }
    }

    pub const fn histogram(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Self {
        Self {
            name,
            kind: MetricKind::Histogram,
            help,
            labels,
            buckets,
        }
    }

    fn opts(&self) -> Opts {
        Opts::new(self.name, self.help)
    }

    /// A collector of this family outside any registry (for the
    /// process-wide ones, which every registry then adopts).
    pub fn new_counter_vec(&self) -> IntCounterVec {
        debug_assert_eq!(self.kind, MetricKind::Counter);
        IntCounterVec::new(self.opts(), self.labels).expect("valid counter definition")
    }

    /// See [`MetricDef::new_counter_vec`].
    pub fn new_histogram_vec(&self) -> HistogramVec {
        debug_assert_eq!(self.kind, MetricKind::Histogram);
        let opts = HistogramOpts::new(self.name, self.help).buckets(self.buckets.to_vec());
        HistogramVec::new(opts, self.labels).expect("valid histogram definition")
    }
}

pub const BUILD_INFO: MetricDef = MetricDef::gauge(
    "stock_tracker_build_info",
    "Always 1; labels carry the running version",
    &["version"],
);

/// Exported by the process collector (Linux): CPU, memory, file descriptors,
/// under the names every generic dashboard and alert reads (`process_*`,
/// no namespace; Prometheus's `job` and `instance` tell processes apart).
pub const PROCESS_CPU: MetricDef = MetricDef::counter(
    "process_cpu_seconds_total",
    "Total user and system CPU time spent in seconds.",
    &[],
);

pub const PROCESS_RSS: MetricDef = MetricDef::gauge(
    "process_resident_memory_bytes",
    "Resident memory size in bytes.",
    &[],
);

pub const PROCESS_VIRTUAL_MEMORY: MetricDef = MetricDef::gauge(
    "process_virtual_memory_bytes",
    "Virtual memory size in bytes.",
    &[],
);

pub const PROCESS_OPEN_FDS: MetricDef =
    MetricDef::gauge("process_open_fds", "Number of open file descriptors.", &[]);

pub const PROCESS_MAX_FDS: MetricDef = MetricDef::gauge(
    "process_max_fds",
    "Maximum number of open file descriptors.",
    &[],
);

pub const PROCESS_START_TIME: MetricDef = MetricDef::gauge(
    "process_start_time_seconds",
    "Start time of the process since unix epoch in seconds.",
    &[],
);

pub const PROCESS_THREADS: MetricDef = MetricDef::gauge(
    "process_threads",
    "Number of OS threads in the process.",
    &[],
);

/// What every process exports about itself: its version and the process
/// collector's families (memory: [`super::memory::METRICS`], log writer:
/// [`super::logging::METRICS`]).
pub const METRICS: &[MetricDef] = &[
    BUILD_INFO,
    PROCESS_CPU,
    PROCESS_RSS,
    PROCESS_VIRTUAL_MEMORY,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    PROCESS_START_TIME,
    PROCESS_THREADS,
];

type Families = HashMap<&'static str, Box<dyn Any + Send + Sync>>;

/// A role's registry and the families registered in it so far.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    families: Arc<Mutex<Families>>,
    /// The RSS samples the memory growth rate is computed from.
    memory_trend: Arc<MemoryTrend>,
}

impl Metrics {
    /// A registry with what belongs to the process: build info, the process
    /// collector, memory and CPU.
    pub fn new() -> Self {
        let registry = Registry::new();
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::new(std::process::id() as i32, ""),
            ))
            .expect("metric names are unique");
        let metrics = Self {
            registry,
            families: Arc::default(),
            memory_trend: Arc::default(),
        };
        metrics
            .int_gauge_vec(&BUILD_INFO)
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        memory::register(&metrics);
        logging::observe(&metrics);
        metrics
    }

    /// The family `def` of this registry: registered by the first caller,
    /// shared by the later ones. A family asked for as two collector types
    /// is a programming error, caught by the first test that builds both.
    pub fn family<C>(&self, def: &MetricDef, build: impl FnOnce() -> C) -> C
    where
        C: Collector + Clone + Send + Sync + 'static,
    {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = families.get(def.name) {
            return existing
                .downcast_ref::<C>()
                .unwrap_or_else(|| panic!("{} is registered as another collector type", def.name))
                .clone();
        }
        let collector = build();
        self.registry
            .register(Box::new(collector.clone()))
            .expect("metric names are unique");
        families.insert(def.name, Box::new(collector.clone()));
        collector
    }

    pub fn counter_vec(&self, def: &MetricDef) -> IntCounterVec {
        self.family(def, || def.new_counter_vec())
    }

    /// A counter without labels.
    pub fn counter(&self, def: &MetricDef) -> IntCounter {
        debug_assert!(def.kind == MetricKind::Counter && def.labels.is_empty());
        self.family(def, || {
            IntCounter::with_opts(def.opts()).expect("valid counter definition")
        })
    }

    pub fn gauge_vec(&self, def: &MetricDef) -> GaugeVec {
        debug_assert_eq!(def.kind, MetricKind::Gauge);
        self.family(def, || {
            GaugeVec::new(def.opts(), def.labels).expect("valid gauge definition")
        })
    }

    /// A gauge without labels.
    pub fn gauge(&self, def: &MetricDef) -> Gauge {
        debug_assert!(def.kind == MetricKind::Gauge && def.labels.is_empty());
        self.family(def, || {
            Gauge::with_opts(def.opts()).expect("valid gauge definition")
        })
    }

    pub fn int_gauge_vec(&self, def: &MetricDef) -> IntGaugeVec {
        debug_assert_eq!(def.kind, MetricKind::Gauge);
        self.family(def, || {
            IntGaugeVec::new(def.opts(), def.labels).expect("valid gauge definition")
        })
    }

    /// A gauge without labels.
    pub fn int_gauge(&self, def: &MetricDef) -> IntGauge {
        debug_assert!(def.kind == MetricKind::Gauge && def.labels.is_empty());
        self.family(def, || {
            IntGauge::with_opts(def.opts()).expect("valid gauge definition")
        })
    }

    pub fn histogram_vec(&self, def: &MetricDef) -> HistogramVec {
        self.family(def, || def.new_histogram_vec())
    }

    /// A scrape: the process gauges read at scrape time, then the text
    /// exposition of every registered family.
    pub fn scrape(&self) -> String {
        memory::observe(self, &self.memory_trend);
        logging::observe(self);
        self.render()
    }

    /// Starts sampling the resident memory for the growth-rate gauge.
    pub fn start_memory_sampler(&self, settings: &crate::config::MetricsSettings) {
        self.memory_trend.clone().spawn_sampler(settings);
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

/// Checks a role's catalogue: unique names, the prefix, unit suffixes, no
/// tenant label (each role's tests call it on its catalogue).
#[cfg(test)]
pub(crate) fn check_catalog(catalog: &[MetricDef]) {
    let mut names: Vec<_> = catalog.iter().map(|d| d.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), catalog.len(), "duplicate metric names");
    for def in catalog {
        // The process collector's families keep their standard names.
        assert!(
            def.name.starts_with("stock_tracker_") || def.name.starts_with("process_"),
            "{}",
            def.name
        );
        if def.kind == MetricKind::Counter {
            assert!(def.name.ends_with("_total"), "{}", def.name);
        }
        if def.kind == MetricKind::Histogram {
            assert!(
                def.name.ends_with("_seconds") || def.name.ends_with("_bytes"),
                "{}",
                def.name
            );
            assert!(!def.buckets.is_empty(), "{} has no buckets", def.name);
        }
        assert!(
            !def.labels.contains(&"tenant_id"),
            "{} is labelled by tenant",
            def.name
        );
    }
}
