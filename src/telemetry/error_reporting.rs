//! Error reporting to Sentry.
//!
//! On only when `sentry.dsn` is set; the SDK is never initialised otherwise,
//! so an ambient `SENTRY_DSN` cannot switch it on behind the configuration's
//! back. What is sent:
//! - **internal errors** (a 500 from [`crate::http::error::ApiError::Internal`]),
//!   with their cause chain, captured where the response is made;
//! - **panics**, by the SDK's panic hook (level fatal) — the panic guard
//!   then answers the 500 without reporting it a second time;
//! - never 404s, 429s or the 503s of an overload or an outage (expected
//!   answers, counted in metrics instead).
//!
//! Each request runs in its own hub (sentry-actix); the tenant-context layer
//! tags it with the request id, tenant and user. Log lines at INFO and above
//! become breadcrumbs. Credentials are scrubbed from every event before it
//! leaves: `Authorization`, `X-API-Key`, cookies, and any header, query
//! parameter, body or extra field whose name says password, secret, token,
//! credential or key.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use sentry::TransportOptions;
use sentry::protocol::{Event, Map, Value};
use sentry::transports::ReqwestHttpTransportOptions;
use sentry::{Breadcrumb, ClientInitGuard, ClientOptions};

use crate::config::{Environment, Settings};

/// Starts the Sentry client when a DSN is configured. Keep the guard for the
/// life of the process: dropping it flushes what is queued.
pub fn init(settings: &Settings) -> Option<ClientInitGuard> {
    let dsn = settings.sentry.dsn.expose_secret();
    if dsn.is_empty() {
        return None;
    }
    let dsn = dsn.parse().ok()?;
    let environment = match (settings.sentry.environment.as_str(), settings.environment) {
        ("", Environment::Development) => "development".to_owned(),
        ("", Environment::Production) => "production".to_owned(),
        (configured, _) => configured.to_owned(),
    };
    let timeout = Duration::from_millis(settings.sentry.timeout_ms);
    let client = reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .ok()?;
    let mut options = ClientOptions::new()
        .sample_rate(settings.sentry.sample_rate)
        .traces_sample_rate(settings.sentry.traces_sample_rate);
    options.dsn = Some(dsn);
    options.release = Some(concat!("stock-tracker@", env!("CARGO_PKG_VERSION")).into());
    options.environment = Some(environment.into());
    options.send_default_pii = false;
    options.shutdown_timeout = timeout;
    options.before_send = Some(Arc::new(|event| Some(scrub_event(event))));
    options.before_breadcrumb = Some(Arc::new(|breadcrumb| Some(scrub_breadcrumb(breadcrumb))));
    // The SDK's own client has no timeouts: a slow Sentry must not hold events forever.
    options.transport = Some(Arc::new(move |options: &ClientOptions| {
        match TransportOptions::try_from_client_options(options) {
            Some(general) => Arc::new(
                ReqwestHttpTransportOptions::from(general)
                    .with_client(client.clone())
                    .build(),
            ) as Arc<dyn sentry::Transport>,
            // No DSN: nothing to send.
            None => Arc::new(NoTransport),
        }
    }));
    let guard = sentry::init(options);
    // `init` binds the client to the calling thread's hub, which is the
    // process-wide one only on the thread that touched Sentry first. Bind it
    // there too: worker threads derive their hubs from it.
    let main = sentry::Hub::main();
    if main.client().is_none() {
        main.bind_client(sentry::Hub::current().client());
    }
    Some(guard)
}

struct NoTransport;

impl sentry::Transport for NoTransport {
    fn send_envelope(&self, _: sentry::Envelope) {}
}

/// Whether a header, parameter or field name holds a credential.
pub fn is_sensitive(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "api-key",
        "api_key",
        "apikey",
        "session",
    ]
    .iter()
    .any(|word| name.contains(word))
}

const FILTERED: &str = "[Filtered]";

fn scrub_map(map: &mut Map<String, Value>) {
    for (key, value) in map.iter_mut() {
        if is_sensitive(key) {
            *value = Value::String(FILTERED.into());
        } else {
            scrub_value(value);
        }
    }
}

fn scrub_value(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if is_sensitive(key) {
                    *value = Value::String(FILTERED.into());
                } else {
                    scrub_value(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub_value),
        _ => {}
    }
}

/// `a=1&password=x` → `a=1&password=[Filtered]`.
fn scrub_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_sensitive(name) => format!("{name}={FILTERED}"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

pub fn scrub_event(mut event: Event<'static>) -> Event<'static> {
    if let Some(request) = event.request.as_mut() {
        request.cookies = None;
        request
            .headers
            .retain(|name, _| !is_sensitive(name) && !name.eq_ignore_ascii_case("x-api-key"));
        if let Some(query) = request.query_string.as_mut() {
            *query = scrub_query(query);
        }
        if let Some(url) = request.url.as_mut()
            && let Some(query) = url.query().map(scrub_query)
        {
            url.set_query(Some(&query));
        }
        if let Some(data) = request.data.as_mut() {
            match serde_json::from_str::<Value>(data) {
                Ok(mut body) => {
                    scrub_value(&mut body);
                    *data = body.to_string();
                }
                Err(_) => *data = FILTERED.into(),
            }
        }
        request.env.retain(|name, _| !is_sensitive(name));
    }
    scrub_map(&mut event.extra);
    for breadcrumb in event.breadcrumbs.values.iter_mut() {
        scrub_map(&mut breadcrumb.data);
    }
    event
}

fn scrub_breadcrumb(mut breadcrumb: Breadcrumb) -> Breadcrumb {
    scrub_map(&mut breadcrumb.data);
    breadcrumb
}

#[cfg(test)]
mod tests {
    use sentry::protocol::Request;

    use super::*;

    #[test]
    fn credentials_never_leave() {
        let mut event = Event::new();
        let mut request = Request {
            url: "http://api/x?password=hunter2&page=2".parse().ok(),
            query_string: Some("password=hunter2&page=2".into()),
            data: Some(
                r#"{"email":"a@b.c","credentials":{"token":"t0p"},"nested":[{"api_key":"k"}]}"#
                    .into(),
            ),
            cookies: Some("session=abc".into()),
            ..Default::default()
        };
        for (name, value) in [
            ("Authorization", "Bearer eyJ"),
            ("X-API-Key", "stk_secret"),
            ("Cookie", "session=abc"),
            ("Accept", "application/json"),
        ] {
            request.headers.insert(name.into(), value.into());
        }
        event.request = Some(request);
        event.extra.insert("refresh_token".into(), "rt_x".into());
        let text = serde_json::to_string(&scrub_event(event)).unwrap();
        for secret in [
            "hunter2",
            "eyJ",
            "stk_secret",
            "session=abc",
            "t0p",
            "\"k\"",
            "rt_x",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("application/json") && text.contains("page=2"));
    }
}
