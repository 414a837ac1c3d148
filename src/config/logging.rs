//! `[logging]`: the log format and filter.

use garde::Validate;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct LoggingSettings {
    #[garde(skip)]
    pub format: LogFormat,
    /// A tracing filter directive, e.g. `info,sqlx=warn`.
    #[garde(custom(filter_directive))]
    pub level: String,
    /// Lines queued for the log writer thread at most; beyond, lines are
    /// dropped and counted rather than waited for.
    #[garde(range(min = 1))]
    pub buffer_lines: usize,
}

fn filter_directive(value: &str, _: &()) -> garde::Result {
    tracing_subscriber::EnvFilter::try_new(value)
        .map(drop)
        .map_err(|_| {
            garde::Error::new("is not a valid filter directive (for example `info,sqlx=warn`)")
        })
}
