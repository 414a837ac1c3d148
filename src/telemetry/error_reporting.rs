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
//! credential or key; and wherever text goes (exception and log messages,
//! breadcrumbs, URLs, bodies, tags, extra values), every token-shaped value:
//! JWTs, API keys (`stk_`), refresh tokens (`rt_`), webhook secrets
//! (`whsec_`) and Telegram bot tokens, whatever their field is called.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use regex::Regex;

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

/// Credentials recognisable by their shape, wherever they appear in text.
static TOKEN_SHAPED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        // A JWT: three base64url parts, the header starting `{"`.
        r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
        // API keys and refresh tokens (src/auth/tokens.rs).
        r"|\b(?:stk|rt)_[A-Za-z0-9_-]+",
        // Webhook signing secrets: `whsec_` + standard base64.
        r"|\bwhsec_[A-Za-z0-9+/=]+",
        // Telegram bot tokens: `<bot id>:<secret>`, as BotFather issues them.
        r"|[0-9]{3,}:[A-Za-z0-9_-]{20,}",
    ))
    .expect("the token pattern compiles")
});

/// `text` with every token-shaped value replaced by `[Filtered]`.
pub fn scrub_text(text: &str) -> Cow<'_, str> {
    TOKEN_SHAPED.replace_all(text, FILTERED)
}

fn scrub_string(text: &mut String) {
    if let Cow::Owned(scrubbed) = scrub_text(text) {
        *text = scrubbed;
    }
}

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
        Value::String(text) => scrub_string(text),
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
        if let Some(url) = request.url.as_mut() {
            if let Some(query) = url.query().map(scrub_query) {
                url.set_query(Some(&query));
            }
            // A token in the path (or a query parameter of any name).
            if let Cow::Owned(scrubbed) = scrub_text(url.as_str())
                && let Ok(scrubbed) = scrubbed.parse()
            {
                *url = scrubbed;
            }
        }
        if let Some(query) = request.query_string.as_mut() {
            scrub_string(query);
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
        request.headers.values_mut().for_each(scrub_string);
    }
    scrub_map(&mut event.extra);
    event.tags.values_mut().for_each(scrub_string);
    if let Some(message) = event.message.as_mut() {
        scrub_string(message);
    }
    if let Some(entry) = event.logentry.as_mut() {
        scrub_string(&mut entry.message);
        entry.params.iter_mut().for_each(scrub_value);
    }
    for exception in event.exception.values.iter_mut() {
        if let Some(value) = exception.value.as_mut() {
            scrub_string(value);
        }
    }
    if let Some(transaction) = event.transaction.as_mut() {
        scrub_string(transaction);
    }
    for breadcrumb in event.breadcrumbs.values.iter_mut() {
        scrub_breadcrumb_in_place(breadcrumb);
    }
    event
}

fn scrub_breadcrumb_in_place(breadcrumb: &mut Breadcrumb) {
    scrub_map(&mut breadcrumb.data);
    if let Some(message) = breadcrumb.message.as_mut() {
        scrub_string(message);
    }
}

fn scrub_breadcrumb(mut breadcrumb: Breadcrumb) -> Breadcrumb {
    scrub_breadcrumb_in_place(&mut breadcrumb);
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

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLWJ5dGVz";
    const API_KEY: &str = "stk_a1b2c3d4_Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eA";
    const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw+/Q=";
    const BOT_TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
    const REFRESH_TOKEN: &str = "rt_Q2FuIHlvdSByZWFkIHRoaXM_IE5pY2Uu";

    #[test]
    fn token_shaped_values_are_scrubbed_whatever_field_holds_them() {
        let mut event = Event::new();
        event.message = Some(format!("sending with {WEBHOOK_SECRET} failed"));
        event.exception.values.push(sentry::protocol::Exception {
            ty: "panic".into(),
            value: Some(format!("bearer {JWT} and key {API_KEY}")),
            ..Default::default()
        });
        event.request = Some(Request {
            url: format!("http://api/bot{BOT_TOKEN}/send?next={JWT}")
                .parse()
                .ok(),
            query_string: Some(format!("next={REFRESH_TOKEN}")),
            ..Default::default()
        });
        event.tags.insert("note".into(), API_KEY.into());
        event.extra.insert(
            "body".into(),
            format!("{{\"k\":\"{REFRESH_TOKEN}\"}}").into(),
        );
        event.breadcrumbs.values.push(Breadcrumb {
            message: Some(format!(
                "POST https://api.telegram.org/bot{BOT_TOKEN}/sendMessage"
            )),
            ..Default::default()
        });
        let text = serde_json::to_string(&scrub_event(event)).unwrap();
        for secret in [JWT, API_KEY, WEBHOOK_SECRET, BOT_TOKEN, REFRESH_TOKEN] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("sending with [Filtered] failed"), "{text}");
        assert!(
            text.contains("api.telegram.org/bot[Filtered]/sendMessage"),
            "{text}"
        );
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "connection refused at 127.0.0.1:5432 after 12:30:45",
            "product 0191b2c3-d4e5-7f00-8000-000000000000 not found",
            "stock_tracker_app may not read tenants",
        ] {
            assert_eq!(scrub_text(text), text);
        }
    }
}
