//! `[sentry]`: error reporting.

use garde::Validate;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct SentrySettings {
    /// Empty: error reporting off (an ambient `SENTRY_DSN` is ignored).
    #[garde(custom(sentry_dsn))]
    pub dsn: SecretString,
    /// Defaults to `environment` when empty.
    #[garde(skip)]
    pub environment: String,
    #[garde(range(min = 0.0, max = 1.0))]
    pub sample_rate: f32,
    #[garde(range(min = 0.0, max = 1.0))]
    pub traces_sample_rate: f32,
    #[garde(skip)]
    pub timeout_ms: u64,
}

fn sentry_dsn(value: &SecretString, _: &()) -> garde::Result {
    let dsn = value.expose_secret();
    if dsn.is_empty() || dsn.parse::<sentry::types::Dsn>().is_ok() {
        Ok(())
    } else {
        Err(garde::Error::new(
            "is not a Sentry DSN (https://<key>@<host>/<project>)",
        ))
    }
}
