//! `[tracing]`: OpenTelemetry export.

use garde::Validate;
use serde::Deserialize;

use super::rules::optional_url_of;

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct TracingSettings {
    /// OTLP/HTTP collector base URL (e.g. `http://otel-collector:4318`);
    /// spans go to `<endpoint>/v1/traces`. Empty: tracing off.
    #[garde(custom(optional_url_of(&["http", "https"])))]
    pub otlp_endpoint: String,
    /// The `service.name` resource attribute; defaults to `stock-tracker-<role>`.
    #[garde(skip)]
    pub service_name: String,
    /// Share of new traces recorded (a caller's sampled `traceparent` is always followed).
    #[garde(range(min = 0.0, max = 1.0))]
    pub sample_ratio: f64,
    /// An export batch is abandoned after this long.
    #[garde(skip)]
    pub export_timeout_ms: u64,
}
