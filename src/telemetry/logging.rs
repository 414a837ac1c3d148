//! Structured logs with tracing: JSON lines for log shippers, or a pretty
//! format for a terminal. Fields of the enclosing request span (request id,
//! route, tenant, user) are attached to every line logged inside it. Lines
//! at INFO and above also become Sentry breadcrumbs (a no-op while Sentry is
//! off), so an error report shows what led to it. When tracing is on, the
//! service's spans also go to OpenTelemetry ([`super::traces`]).
//!
//! Lines are written off the request path: a request only queues its line
//! (the access line included) for a writer thread, through a buffer of
//! `logging.buffer_lines`. When the buffer is full (stdout slower than the
//! traffic), lines are dropped and counted
//! (`stock_tracker_log_lines_dropped_total`), never waited for; what is
//! queued is flushed when the [`LogGuard`] drops, at shutdown.

use std::io::Write;
use std::sync::OnceLock;

use tracing::Level;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::metrics::{MetricDef, Metrics};
use crate::config::{LogFormat, LoggingSettings};

pub const LOG_LINES_DROPPED: MetricDef = MetricDef::counter(
    "stock_tracker_log_lines_dropped_total",
    "Log lines dropped because the log writer's buffer (logging.buffer_lines) was full",
    &[],
);

pub const METRICS: &[MetricDef] = &[LOG_LINES_DROPPED];

/// The drop count of the installed writer.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Flushes the queued lines when dropped: keep it until the process ends.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _writer: WorkerGuard,
}

/// Registers the drop count in `metrics` and brings it up to date (at
/// registry creation and at every scrape).
pub(super) fn observe(metrics: &Metrics) {
    let counter = metrics.counter(&LOG_LINES_DROPPED);
    let dropped = DROPPED.get().map_or(0, |c| c.dropped_lines() as u64);
    counter.inc_by(dropped.saturating_sub(counter.get()));
}

/// A writer that hands lines to a thread of its own writing them to `sink`,
/// holding at most `buffer_lines`, dropping (and counting) what does not fit.
pub fn non_blocking<W: Write + Send + 'static>(
    sink: W,
    buffer_lines: usize,
) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(buffer_lines)
        .thread_name("log-writer")
        .finish(sink)
}

/// Installs the global subscriber, writing to stdout. Returns an error if
/// one is already set (tests call this once per process). `quiet` keeps the
/// log output off while still feeding Sentry's breadcrumbs (tests that do
/// not print logs).
pub fn init(
    settings: &LoggingSettings,
    quiet: bool,
) -> Result<LogGuard, tracing_subscriber::util::TryInitError> {
    init_with_tracer(settings, quiet, None)
}

/// As [`init`], also sending the service's spans to `tracer`.
pub fn init_with_tracer(
    settings: &LoggingSettings,
    quiet: bool,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> Result<LogGuard, tracing_subscriber::util::TryInitError> {
    let (writer, guard) = non_blocking(std::io::stdout(), settings.buffer_lines);
    let counter = writer.error_counter();
    subscriber(settings, quiet, tracer, writer).try_init()?;
    let _ = DROPPED.set(counter);
    Ok(LogGuard { _writer: guard })
}

/// The subscriber [`init_with_tracer`] installs, writing lines to `writer`.
pub fn subscriber(
    settings: &LoggingSettings,
    quiet: bool,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    writer: NonBlocking,
) -> impl tracing::Subscriber + Send + Sync {
    let filter = if quiet {
        EnvFilter::new("off")
    } else {
        EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"))
    };
    let output = match settings.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_span_events(FmtSpan::NONE)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .pretty()
            .boxed(),
    }
    .with_filter(filter);
    // Errors are reported explicitly (see `error_reporting`); log lines only
    // become breadcrumbs, so nothing is reported twice.
    let breadcrumbs = sentry::integrations::tracing::layer()
        .event_filter(|metadata| match *metadata.level() {
            Level::ERROR | Level::WARN | Level::INFO => {
                sentry::integrations::tracing::EventFilter::Breadcrumb
            }
            _ => sentry::integrations::tracing::EventFilter::Ignore,
        })
        .span_filter(|_| false)
        .with_filter(LevelFilter::INFO);
    let spans = tracer.map(super::traces::layer);
    tracing_subscriber::registry()
        .with(output)
        .with(breadcrumbs)
        .with(spans)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};

    use super::*;

    /// Whether the gate is open, and what was written through it.
    type Passage = Mutex<(bool, Vec<u8>)>;

    /// A sink that blocks every write until it is opened, then keeps the lines.
    #[derive(Clone, Default)]
    struct Gate {
        state: Arc<(Passage, Condvar)>,
    }

    impl Gate {
        fn open(&self) {
            self.state.0.lock().unwrap().0 = true;
            self.state.1.notify_all();
        }

        fn lines(&self) -> usize {
            let state = self.state.0.lock().unwrap();
            state.1.iter().filter(|b| **b == b'\n').count()
        }
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (lock, opened) = &*self.state;
            let mut state = opened.wait_while(lock.lock().unwrap(), |s| !s.0).unwrap();
            state.1.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_buffer_drops_and_counts_lines_instead_of_waiting_and_the_rest_is_flushed() {
        let gate = Gate::default();
        let (mut writer, guard) = non_blocking(gate.clone(), 10);
        let dropped = writer.error_counter();
        let started = Instant::now();
        // One write per line, as the formatting layer writes each event.
        for i in 0..100 {
            writer.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        // The sink is stuck, yet writing took no time: lines beyond the
        // buffer (and the one the writer thread holds) were dropped.
        assert!(started.elapsed() < Duration::from_secs(1));
        let lost = dropped.dropped_lines();
        assert!((89..=90).contains(&lost), "{lost} dropped");
        gate.open();
        drop(guard);
        assert_eq!(gate.lines(), 100 - lost);
    }
}
