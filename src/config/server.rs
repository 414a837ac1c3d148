//! `[server]`: the API's listener, its workers and request limits.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use garde::Validate;
use serde::Deserialize;

#[cfg(feature = "bench-layers")]
use super::list_or_comma_separated;

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    #[garde(skip)]
    pub host: IpAddr,
    #[garde(skip)]
    pub port: u16,
    /// HTTP worker threads; 0: one per core.
    #[garde(skip)]
    pub workers: usize,
    #[garde(skip)]
    pub shutdown_timeout_secs: u64,
    #[garde(range(min = 1))]
    pub max_body_bytes: usize,
    #[garde(skip)]
    pub keep_alive_secs: u64,
    /// Where clients reach the service: links in emails are built on it.
    #[garde(skip)]
    pub public_base_url: url::Url,
    /// Middleware layers left out of the stack, for the benchmark's layer
    /// costs: only in builds with the `bench-layers` feature (others refuse
    /// the key as unknown). Production refuses any.
    #[cfg(feature = "bench-layers")]
    #[serde(default, deserialize_with = "list_or_comma_separated")]
    #[garde(skip)]
    pub disabled_layers: Vec<Layer>,
}

/// The middleware layers (authentication, which handlers need, is not one:
/// it is always on). Order and purpose: the header of `crate::app`. Only
/// `bench-layers` builds can switch them off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    RequestContext,
    Cors,
    Compression,
    Sentry,
    Metrics,
    LoadShedding,
    RateLimit,
    TenantContext,
    PanicGuard,
}

impl ServerSettings {
    pub(super) fn check(&self, production: bool) -> Result<(), super::ConfigError> {
        let url = &self.public_base_url;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return super::invalid(
                "server.public_base_url",
                "must be an http(s) URL with a host",
            );
        }
        if url.query().is_some() || url.fragment().is_some() {
            return super::invalid(
                "server.public_base_url",
                "must have no query or fragment (links add their own)",
            );
        }
        if production && url.scheme() != "https" {
            return super::invalid(
                "server.public_base_url",
                "must be https in production: emailed links carry tokens",
            );
        }
        Ok(())
    }

    /// A link under the public base URL: `path` (relative to it) with `token=`.
    pub fn public_link(&self, path: &str, token: &str) -> String {
        let mut url = self.public_base_url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}/{}", path.trim_start_matches('/')));
        url.query_pairs_mut().append_pair("token", token);
        url.into()
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    /// Whether `layer` is part of the stack: always, but in a `bench-layers`
    /// build that was told to leave it out.
    #[cfg(feature = "bench-layers")]
    pub fn layer_enabled(&self, layer: Layer) -> bool {
        !self.disabled_layers.contains(&layer)
    }

    /// Whether `layer` is part of the stack: always, in this build.
    #[cfg(not(feature = "bench-layers"))]
    pub fn layer_enabled(&self, _layer: Layer) -> bool {
        true
    }
}
