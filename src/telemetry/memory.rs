//! Memory and CPU signals for the leak and saturation alerts: jemalloc's own
//! statistics, the resident memory's growth rate over a sliding window, and
//! the container's limits read from its cgroup.
//!
//! The growth rate is the least-squares slope of RSS samples taken every
//! `metrics.memory_sample_interval_secs` over `metrics.memory_growth_window_secs`:
//! a burst of allocations moves it little, a steady rise (a leak) moves it
//! for as long as it lasts.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tikv_jemalloc_ctl::{epoch, stats};

use super::metrics::{MetricDef, Metrics};
use crate::config::MetricsSettings;

/// jemalloc's statistics, read at scrape time after advancing its epoch.
pub const JEMALLOC_ALLOCATED: MetricDef = MetricDef::gauge(
    "stock_tracker_jemalloc_allocated_bytes",
    "Bytes allocated by the application through jemalloc",
    &[],
);

pub const JEMALLOC_ACTIVE: MetricDef = MetricDef::gauge(
    "stock_tracker_jemalloc_active_bytes",
    "Bytes in jemalloc's active pages (allocated plus fragmentation within pages)",
    &[],
);

pub const JEMALLOC_RESIDENT: MetricDef = MetricDef::gauge(
    "stock_tracker_jemalloc_resident_bytes",
    "Bytes in physically resident pages mapped by jemalloc (data and metadata)",
    &[],
);

pub const JEMALLOC_RETAINED: MetricDef = MetricDef::gauge(
    "stock_tracker_jemalloc_retained_bytes",
    "Bytes of virtual memory jemalloc retained for reuse instead of returning it to the system",
    &[],
);

pub const MEMORY_GROWTH: MetricDef = MetricDef::gauge(
    "stock_tracker_memory_growth_bytes_per_second",
    "Growth rate of the resident memory: the least-squares slope of RSS samples over metrics.memory_growth_window_secs",
    &[],
);

pub const MEMORY_LIMIT: MetricDef = MetricDef::gauge(
    "stock_tracker_memory_limit_bytes",
    "The container's memory limit (cgroup memory.max); 0 when unlimited",
    &[],
);

pub const CPU_LIMIT: MetricDef = MetricDef::gauge(
    "stock_tracker_cpu_limit_cores",
    "CPU cores the process may use: the cgroup quota (cpu.max), else the cores available",
    &[],
);

pub const METRICS: &[MetricDef] = &[
    JEMALLOC_ALLOCATED,
    JEMALLOC_ACTIVE,
    JEMALLOC_RESIDENT,
    JEMALLOC_RETAINED,
    MEMORY_GROWTH,
    MEMORY_LIMIT,
    CPU_LIMIT,
];

/// Registers the memory and CPU gauges (read at each scrape by [`observe`]).
pub(super) fn register(metrics: &Metrics) {
    for def in [
        JEMALLOC_ALLOCATED,
        JEMALLOC_ACTIVE,
        JEMALLOC_RESIDENT,
        JEMALLOC_RETAINED,
        MEMORY_LIMIT,
    ] {
        metrics.int_gauge(&def);
    }
    metrics.gauge(&MEMORY_GROWTH);
    metrics.gauge(&CPU_LIMIT);
}

/// Reads jemalloc's statistics, the memory trend and the cgroup limits into
/// their gauges (at every scrape).
pub(super) fn observe(metrics: &Metrics, trend: &MemoryTrend) {
    if let Some(stats) = jemalloc_stats() {
        metrics
            .int_gauge(&JEMALLOC_ALLOCATED)
            .set(stats.allocated as i64);
        metrics.int_gauge(&JEMALLOC_ACTIVE).set(stats.active as i64);
        metrics
            .int_gauge(&JEMALLOC_RESIDENT)
            .set(stats.resident as i64);
        metrics
            .int_gauge(&JEMALLOC_RETAINED)
            .set(stats.retained as i64);
    }
    metrics.gauge(&MEMORY_GROWTH).set(trend.bytes_per_second());
    metrics
        .int_gauge(&MEMORY_LIMIT)
        .set(memory_limit_bytes().unwrap_or(0) as i64);
    metrics.gauge(&CPU_LIMIT).set(cpu_limit_cores());
}

/// jemalloc's counters, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct JemallocStats {
    pub allocated: usize,
    pub active: usize,
    pub resident: usize,
    pub retained: usize,
}

/// Reads jemalloc's statistics. They are cached by jemalloc and refreshed
/// only when its epoch advances, so it is advanced first.
pub fn jemalloc_stats() -> Option<JemallocStats> {
    epoch::advance().ok()?;
    Some(JemallocStats {
        allocated: stats::allocated::read().ok()?,
        active: stats::active::read().ok()?,
        resident: stats::resident::read().ok()?,
        retained: stats::retained::read().ok()?,
    })
}

/// The process's resident set size, from `/proc/self/status` (Linux).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The cgroup's memory limit, if there is one (v2 `memory.max`, else v1).
pub fn memory_limit_bytes() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let limit = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))?;
    // "max" (v2) or a huge page-rounded number (v1) mean unlimited.
    limit
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|&bytes| bytes < (1 << 60))
}

/// The CPU cores the process may use: the cgroup quota when there is one,
/// otherwise the cores the scheduler offers it.
pub fn cpu_limit_cores() -> f64 {
    let quota = std::fs::read_to_string("/sys/fs/cgroup/cpu.max")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace();
            let quota: f64 = parts.next()?.parse().ok()?;
            let period: f64 = parts.next()?.parse().ok()?;
            (period > 0.0).then(|| quota / period)
        });
    quota.unwrap_or_else(|| std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64))
}

/// RSS samples within the window, and the slope through them.
#[derive(Debug, Default)]
pub struct MemoryTrend {
    samples: Mutex<VecDeque<(Instant, f64)>>,
    window: Mutex<Duration>,
}

impl MemoryTrend {
    /// Adds a sample and forgets those older than the window.
    pub fn record(&self, at: Instant, bytes: u64) {
        let window = *self.window.lock().unwrap_or_else(|e| e.into_inner());
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.push_back((at, bytes as f64));
        while samples
            .front()
            .is_some_and(|(t, _)| at.duration_since(*t) > window)
        {
            samples.pop_front();
        }
    }

    /// Bytes per second: the least-squares slope of the samples; 0 until
    /// they span half the window (start-up growth is not a leak).
    pub fn bytes_per_second(&self) -> f64 {
        let window = *self.window.lock().unwrap_or_else(|e| e.into_inner());
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(&(origin, _)), Some(&(newest, _))) = (samples.front(), samples.back()) else {
            return 0.0;
        };
        if newest.duration_since(origin) < window / 2 {
            return 0.0;
        }
        let n = samples.len() as f64;
        let points = samples
            .iter()
            .map(|(t, bytes)| (t.duration_since(origin).as_secs_f64(), *bytes));
        let (sum_t, sum_b) = points
            .clone()
            .fold((0.0, 0.0), |(st, sb), (t, b)| (st + t, sb + b));
        let (mean_t, mean_b) = (sum_t / n, sum_b / n);
        let (cov, var) = points.fold((0.0, 0.0), |(cov, var), (t, b)| {
            (
                cov + (t - mean_t) * (b - mean_b),
                var + (t - mean_t).powi(2),
            )
        });
        if var == 0.0 { 0.0 } else { cov / var }
    }

    /// Samples the RSS every interval, for as long as the runtime lives.
    pub fn spawn_sampler(self: std::sync::Arc<Self>, settings: &MetricsSettings) {
        *self.window.lock().unwrap_or_else(|e| e.into_inner()) = settings.memory_growth_window();
        let interval = settings.memory_sample_interval();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Some(bytes) = rss_bytes() {
                    self.record(Instant::now(), bytes);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trend(window_secs: u64) -> MemoryTrend {
        let trend = MemoryTrend::default();
        *trend.window.lock().unwrap() = Duration::from_secs(window_secs);
        trend
    }

    #[test]
    fn a_steady_rise_is_its_slope_and_a_flat_line_is_zero() {
        let start = Instant::now();
        let rising = trend(600);
        let flat = trend(600);
        for i in 0..60u64 {
            let at = start + Duration::from_secs(i * 10);
            rising.record(at, 100_000_000 + i * 10 * 2_000_000);
            flat.record(at, 100_000_000);
        }
        assert!((rising.bytes_per_second() - 2_000_000.0).abs() < 1.0);
        assert_eq!(flat.bytes_per_second(), 0.0);
    }

    #[test]
    fn a_single_spike_barely_moves_the_slope_and_old_samples_leave_the_window() {
        let start = Instant::now();
        let spiky = trend(600);
        for i in 0..60u64 {
            let bytes = if i == 30 { 500_000_000 } else { 100_000_000 };
            spiky.record(start + Duration::from_secs(i * 10), bytes);
        }
        assert!(spiky.bytes_per_second().abs() < 100_000.0);

        let short = trend(30);
        short.record(start, 0);
        short.record(start + Duration::from_secs(100), 1_000);
        short.record(start + Duration::from_secs(120), 1_000);
        // The first sample is out of the window: the rest is flat.
        assert_eq!(short.bytes_per_second(), 0.0);
    }

    #[test]
    fn nothing_is_published_until_the_samples_span_half_the_window() {
        let start = Instant::now();
        let young = trend(600);
        // Start-up: 50 MB in the first minute.
        for i in 0..7u64 {
            young.record(
                start + Duration::from_secs(i * 10),
                100_000_000 + i * 8_000_000,
            );
        }
        assert_eq!(young.bytes_per_second(), 0.0);
        for i in 7..31u64 {
            young.record(start + Duration::from_secs(i * 10), 150_000_000);
        }
        assert!(young.bytes_per_second() > 0.0);
    }

    #[test]
    fn jemalloc_and_rss_are_read() {
        let stats = jemalloc_stats().expect("jemalloc statistics");
        assert!(stats.allocated > 0 && stats.resident >= stats.active);
        assert!(rss_bytes().is_some_and(|bytes| bytes > 0));
        assert!(cpu_limit_cores() > 0.0);
    }
}
