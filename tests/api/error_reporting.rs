//! Sentry reports, received by a real HTTP server standing in for Sentry:
//! what reaches it, with which context, and what never does. (That an
//! ambient `SENTRY_DSN` does not switch reporting on is checked on the real
//! binary, in `cli.rs`.)
//!
//! The Sentry client is one per process, so it is started once, pointed at
//! a capture server that lives as long as the test process; reports are told
//! apart by the request id each test sends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{PROBE_TOKENS, base_settings, spawn_app_with};

/// Envelopes received, as text.
type Received = Arc<Mutex<Vec<String>>>;

fn serve_captures(listener: TcpListener, received: Received) {
    for stream in listener.incoming().flatten() {
        let received = received.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            loop {
                let mut length = 0usize;
                let mut line = String::new();
                // Request line and headers.
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                received
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
                let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                if reader.get_mut().write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        });
    }
}

/// Starts the capture server and the Sentry client, once.
fn sentry_capture() -> Received {
    static CAPTURE: OnceLock<Received> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let received: Received = Arc::default();
            let sink = received.clone();
            std::thread::spawn(move || serve_captures(listener, sink));
            let mut settings = base_settings();
            settings.sentry.dsn = format!("http://public@127.0.0.1:{port}/1").into();
            let guard = stock_tracker::telemetry::error_reporting::init(&settings)
                .expect("a DSN starts the client");
            // The client lives as long as the test process.
            std::mem::forget(guard);
            received
        })
        .clone()
}

/// The events received that mention `request_id`.
async fn events_for(received: &Received, request_id: &str) -> Vec<Value> {
    sentry::Hub::main()
        .client()
        .expect("the Sentry client is bound")
        .flush(Some(Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|envelope| envelope.contains(request_id))
        .flat_map(|envelope| envelope.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
        .filter(|item| item.get("event_id").is_some() && item.get("level").is_some())
        .collect()
}

#[tokio::test]
async fn a_panic_reaches_sentry_with_tenant_and_user_and_without_secrets() {
    let received = sentry_capture();
    let app = spawn_app_with(|_| {}).await;
    let owner = app.register("sentry@example.com").await;

    let request_id = "sentry-panic-0001";
    let response = app
        .client
        .get(app.url("/__probe/panic?password=p4ssw0rd-in-query&page=1"))
        .header("authorization", owner.bearer())
        .header("cookie", "session=cookie-value-123")
        .header("x-request-id", request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "internal_error");

    let events = events_for(&received, request_id).await;
    assert_eq!(events.len(), 1, "one report per panic: {events:#?}");
    let event = &events[0];
    assert_eq!(event["level"], "fatal");
    assert_eq!(event["tags"]["request_id"], request_id);
    assert_eq!(event["tags"]["tenant_id"], owner.tenant_id.to_string());
    assert_eq!(event["tags"]["role"], "owner");
    assert_eq!(event["user"]["id"], owner.user_id.to_string());
    assert_eq!(event["environment"], "development");
    assert!(
        event["release"]
            .as_str()
            .unwrap()
            .starts_with("stock-tracker@")
    );
    let text = event.to_string();
    assert!(
        text.contains("hunter2"),
        "the panic message is the report: {text}"
    );
    assert!(
        text.contains("probe handler about to panic"),
        "log lines before the panic are breadcrumbs: {text}"
    );
    let token = &owner.tokens.access_token;
    for secret in [token.as_str(), "p4ssw0rd-in-query", "cookie-value-123"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

/// Credentials whose field name says nothing: in the panic message, a log
/// line before it (a breadcrumb), the URL's path and an innocuous parameter.
#[tokio::test]
async fn token_shaped_values_never_reach_sentry_in_messages_breadcrumbs_or_urls() {
    let received = sentry_capture();
    let app = spawn_app_with(|_| {}).await;
    let request_id = "sentry-tokens-0001";
    let [jwt, _, _, bot_token] = PROBE_TOKENS;
    let response = app
        .client
        .get(app.url(&format!(
            "/__probe/panic-with-tokens/{bot_token}?next={jwt}"
        )))
        .header("x-request-id", request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);

    let events = events_for(&received, request_id).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let text = events[0].to_string();
    for secret in PROBE_TOKENS {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(
        text.contains("delivery signed with [Filtered] failed"),
        "the message is reported, scrubbed: {text}"
    );
    assert!(
        text.contains("api.telegram.org/bot[Filtered]/sendMessage"),
        "the breadcrumb is reported, scrubbed: {text}"
    );
}

#[tokio::test]
async fn not_found_unauthorized_and_rate_limited_requests_are_never_reported() {
    let received = sentry_capture();
    let app = spawn_app_with(|s| s.rate_limit.anonymous.minute = 2).await;
    let send = |path: &'static str, id: &'static str| {
        app.client
            .get(app.url(path))
            .header("x-request-id", id)
            .send()
    };
    assert_eq!(
        send("/api/v1/nowhere", "sentry-404-0001")
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        send("/api/v1/products", "sentry-401-0001")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        send("/api/v1/products", "sentry-429-0001")
            .await
            .unwrap()
            .status(),
        429
    );
    for id in ["sentry-404-0001", "sentry-401-0001", "sentry-429-0001"] {
        assert!(
            events_for(&received, id).await.is_empty(),
            "{id} was reported"
        );
    }
}
