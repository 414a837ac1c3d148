//! Webhook deliveries, against a real local HTTP receiver: signatures checked
//! by an independent implementation (Python's standard library), the retry
//! schedule driven by a clock of the test's own (no sleeping), disabling,
//! and the SSRF check at delivery time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use stock_tracker::config::Settings;
use stock_tracker::notifications;
use stock_tracker::webhooks::delivery::{self, Attempt};
use stock_tracker::worker::CHANNELS;
use stock_tracker::worker::runner;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::helpers::{Account, TestApp, spawn_app_with};

/// A request the receiver got: lower-case headers, the body, and when.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: String,
    at: std::time::Instant,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        &self.headers.iter().find(|(n, _)| n == name).unwrap().1
    }
}

/// A local HTTP server answering every request with `status`.
struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(status: u16, extra_header: &'static str) -> Self {
        Self::answering(vec![status], extra_header)
    }

    /// Answers the n-th request with `statuses[n]`, and the rest with the last.
    fn answering(statuses: Vec<u16>, extra_header: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests: Arc<Mutex<Vec<Received>>> = Arc::default();
        let sink = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut headers = Vec::new();
                let mut line = String::new();
                reader.read_line(&mut line).unwrap_or(0);
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                    }
                }
                let length = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let status = {
                    let mut requests = sink.lock().unwrap();
                    requests.push(Received {
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                        at: std::time::Instant::now(),
                    });
                    statuses[(requests.len() - 1).min(statuses.len() - 1)]
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n{extra_header}\r\n"
                );
                let _ = reader.get_mut().write_all(reply.as_bytes());
            }
        });
        Self { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks?token=receiver-secret", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }
}

fn local_receivers(settings: &mut Settings) {
    settings.webhooks.allow_http = true;
    settings.webhooks.allow_private_networks = true;
    settings.webhooks.allowed_ports = vec![];
    settings.notifications.retry_schedule_secs = vec![5, 300];
    settings.notifications.disable_after_secs = 600;
    settings.notifications.timeout_ms = 2_000;
}

async fn subscribe(app: &TestApp, owner: &Account, url: &str, events: Value) -> Value {
    let response = app
        .post_json(
            "/api/v1/webhooks",
            Some(&owner.bearer()),
            &json!({"url": url, "events": events}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

/// Writes an outbox event as a sync would.
async fn emit(app: &TestApp, tenant: Uuid, event_type: &str, payload: Value) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO outbox_events (id, tenant_id, event_type, payload) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(tenant)
    .bind(event_type)
    .bind(payload)
    .execute(&mut app.database.owner_connection().await)
    .await
    .unwrap();
    id
}

/// Verifies a Standard Webhooks signature with Python's hmac, hashlib and base64.
fn verified_by_python(secret: &str, received: &Received) -> bool {
    let script = r#"
import base64, hashlib, hmac, sys
secret, msg_id, timestamp, signature = sys.argv[1:5]
body = sys.stdin.buffer.read()
key = base64.b64decode(secret[len("whsec_"):])
signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
ok = any(s.split(",", 1) == ["v1", expected] for s in signature.split())
sys.exit(0 if ok else 1)
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, secret])
        .arg(received.header("webhook-id"))
        .arg(received.header("webhook-timestamp"))
        .arg(received.header("webhook-signature"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(received.body.as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

#[tokio::test]
async fn deliveries_are_signed_in_the_standard_webhooks_scheme() {
    let receiver = Receiver::start(204, "");
    let app = spawn_app_with(local_receivers).await;
    let owner = app.register("signed@example.com").await;
    let subscription = subscribe(&app, &owner, &receiver.url(), json!(["sync.completed"])).await;
    let ignored = subscribe(&app, &owner, &receiver.url(), json!(["stock.low"])).await;
    let ctx = runner::context(&app.state.settings).await.unwrap();
    let job = Uuid::now_v7();
    emit(
        &app,
        owner.tenant_id,
        "sync.completed",
        json!({"job_id": job, "status": "succeeded"}),
    )
    .await;

    let dispatched = notifications::dispatch(&ctx, CHANNELS, 100).await.unwrap();
    assert_eq!(
        dispatched.len(),
        1,
        "only the subscription to sync.completed"
    );
    assert!(
        notifications::dispatch(&ctx, CHANNELS, 100)
            .await
            .unwrap()
            .is_empty(),
        "dispatched once"
    );
    let (tenant, delivery_id) = dispatched[0];
    let now = OffsetDateTime::now_utc();
    let outcome = delivery::attempt(&ctx, tenant, delivery_id, now)
        .await
        .unwrap();
    assert_eq!(outcome, Attempt::Delivered { status_code: 204 });
    // A duplicate task finds nothing left to do.
    assert_eq!(
        delivery::attempt(&ctx, tenant, delivery_id, now)
            .await
            .unwrap(),
        Attempt::Skipped
    );

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.header("webhook-id"), delivery_id.to_string());
    assert_eq!(
        request.header("webhook-timestamp"),
        now.unix_timestamp().to_string()
    );
    assert!(verified_by_python(
        subscription["secret"].as_str().unwrap(),
        request
    ));
    assert!(!verified_by_python(
        ignored["secret"].as_str().unwrap(),
        request
    ));
    let body: Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(body["type"], "sync.completed");
    assert_eq!(body["data"]["job_id"], job.to_string());
    assert!(body["timestamp"].is_string());
}

async fn delivery_row(
    app: &TestApp,
    id: Uuid,
) -> (
    String,
    i32,
    Option<i32>,
    Option<String>,
    Option<OffsetDateTime>,
) {
    sqlx::query_as("SELECT status, attempts, status_code, error, next_attempt_at FROM webhook_deliveries WHERE id = $1")
        .bind(id)
        .fetch_one(&mut app.database.owner_connection().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn failures_follow_the_retry_schedule_then_fail_and_the_subscription_is_disabled() {
    let receiver = Receiver::start(500, "");
    let app = spawn_app_with(local_receivers).await;
    let owner = app.register("retries@example.com").await;
    let subscription = subscribe(&app, &owner, &receiver.url(), json!(["stock.low"])).await;
    let ctx = runner::context(&app.state.settings).await.unwrap();
    emit(&app, owner.tenant_id, "stock.low", json!({"sku": "A"})).await;
    let (tenant, id) = notifications::dispatch(&ctx, CHANNELS, 100).await.unwrap()[0];
    let start = OffsetDateTime::now_utc();
    let at = |secs: u64| start + Duration::from_secs(secs);

    match delivery::attempt(&ctx, tenant, id, start).await.unwrap() {
        Attempt::Failed {
            error,
            next_attempt_at,
        } => {
            assert_eq!(error, "the receiver answered 500");
            assert_eq!(next_attempt_at, Some(at(5)));
        }
        other => panic!("{other:?}"),
    }
    // Not due yet: nothing happens.
    assert_eq!(
        delivery::attempt(&ctx, tenant, id, at(4)).await.unwrap(),
        Attempt::Skipped
    );
    let second = delivery::attempt(&ctx, tenant, id, at(5)).await.unwrap();
    assert!(
        matches!(second, Attempt::Failed { next_attempt_at: Some(next), .. } if next == at(305))
    );
    let last = delivery::attempt(&ctx, tenant, id, at(305)).await.unwrap();
    assert!(
        matches!(
            last,
            Attempt::Failed {
                next_attempt_at: None,
                ..
            }
        ),
        "{last:?}"
    );
    let (status, attempts, code, error, next) = delivery_row(&app, id).await;
    assert_eq!(
        (status.as_str(), attempts, code, next),
        ("failed", 3, Some(500), None)
    );
    // No secret of the URL (its query) in what the tenant reads.
    assert!(!error.unwrap().contains("receiver-secret"));
    assert_eq!(receiver.received().len(), 3);

    // Still failing 600 s after the first failure: the subscription is disabled.
    emit(&app, owner.tenant_id, "stock.low", json!({"sku": "B"})).await;
    let (_, id) = notifications::dispatch(&ctx, CHANNELS, 100).await.unwrap()[0];
    delivery::attempt(&ctx, tenant, id, at(700)).await.unwrap();
    let path = format!("/api/v1/webhooks/{}", subscription["id"].as_str().unwrap());
    let shown: Value = app
        .get_as(&path, &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["enabled"], false);
    assert!(
        shown["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("failed"),
        "{shown}"
    );
    // New events no longer become deliveries for it.
    emit(&app, owner.tenant_id, "stock.low", json!({"sku": "C"})).await;
    assert!(
        notifications::dispatch(&ctx, CHANNELS, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn redirects_are_not_followed_and_private_targets_are_refused_at_delivery_time() {
    let redirecting = Receiver::start(302, "location: http://169.254.169.254/latest\r\n");
    let app = spawn_app_with(local_receivers).await;
    let owner = app.register("redirect@example.com").await;
    subscribe(&app, &owner, &redirecting.url(), json!(["sync.failed"])).await;
    let ctx = runner::context(&app.state.settings).await.unwrap();
    emit(&app, owner.tenant_id, "sync.failed", json!({})).await;
    let (tenant, id) = notifications::dispatch(&ctx, CHANNELS, 100).await.unwrap()[0];
    let outcome = delivery::attempt(&ctx, tenant, id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(
        matches!(&outcome, Attempt::Failed { error, .. } if error == "the receiver answered 302"),
        "{outcome:?}"
    );
    assert_eq!(redirecting.received().len(), 1);

    // The same subscription, delivered by a worker with production rules.
    let mut strict = (*app.state.settings).clone();
    strict.webhooks.allow_http = false;
    strict.webhooks.allow_private_networks = false;
    let strict_ctx = runner::context(&strict).await.unwrap();
    emit(&app, owner.tenant_id, "sync.failed", json!({})).await;
    let (tenant, id) = notifications::dispatch(&strict_ctx, CHANNELS, 100)
        .await
        .unwrap()[0];
    match delivery::attempt(&strict_ctx, tenant, id, OffsetDateTime::now_utc())
        .await
        .unwrap()
    {
        Attempt::Failed { error, .. } => {
            assert!(error.starts_with("the URL is refused"), "{error}");
            assert!(!error.contains("127.0.0.1"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        redirecting.received().len(),
        1,
        "nothing sent to a refused target"
    );
}

#[tokio::test]
async fn a_finished_sync_reaches_the_receiver_through_beat_and_a_worker() {
    use crate::workers::{Role, TestQueues};
    let receiver = Receiver::start(200, "");
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| {
        local_receivers(s);
        queues.apply(s);
    })
    .await;
    let owner = app.register("e2e-hooks@example.com").await;
    let subscription = subscribe(&app, &owner, &receiver.url(), json!(["sync.completed"])).await;
    let connection: Value = app
        .post_json(
            "/api/v1/marketplaces",
            Some(&owner.bearer()),
            &json!({"kind": "demo", "name": "Demo"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let env = [
        ("STOCK_TRACKER__WEBHOOKS__ALLOW_HTTP", "true".to_owned()),
        ("STOCK_TRACKER__WEBHOOKS__ALLOWED_PORTS", String::new()),
        (
            "STOCK_TRACKER__WEBHOOKS__ALLOW_PRIVATE_NETWORKS",
            "true".to_owned(),
        ),
        (
            "STOCK_TRACKER__NOTIFICATIONS__DISPATCH_INTERVAL_SECS",
            "1".to_owned(),
        ),
    ];
    let worker = Role::start("worker", &app.state.settings, &env);
    let _beat = Role::start("beat", &app.state.settings, &env);
    let response = app
        .post_json(
            "/api/v1/sync",
            Some(&owner.bearer()),
            &json!({"connection_id": connection["id"]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while receiver.received().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery reached the receiver"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let request = &receiver.received()[0];
    assert!(verified_by_python(
        subscription["secret"].as_str().unwrap(),
        request
    ));
    let body: Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(body["type"], "sync.completed");
    assert_eq!(body["data"]["status"], "succeeded");

    // The worker counted the delivery and the outbound call behind it (the
    // attempt is recorded just after the receiver answers: poll briefly).
    // Beat's own first round may sync the connection once more, so: at least one.
    let expected = [
        r#"stock_tracker_webhook_deliveries_total{event="sync.completed",outcome="delivered"} "#,
        r#"stock_tracker_external_api_requests_total{operation="deliver",service="webhook",status="200"} "#,
        r#"stock_tracker_external_api_duration_seconds_count{operation="deliver",service="webhook"} "#,
    ];
    let counted = |metrics: &str, series: &str| {
        crate::helpers::sample(metrics, series).is_some_and(|n| n >= 1.0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = worker.metrics_text().await;
        if expected.iter().all(|series| counted(&metrics, series)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "missing {expected:?} in {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Both channels, each failing once: the retry comes on the schedule (1 s
/// here), not when beat's guard against lost hand-overs (60 s) expires.
#[tokio::test]
async fn a_failed_delivery_is_retried_on_its_schedule_through_beat_and_a_worker() {
    use crate::workers::{Role, TestQueues};
    use wiremock::matchers::{method, path_regex};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let receiver = Receiver::answering(vec![500, 204], "");
    let bot_api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("^/bot.*/sendMessage$"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&bot_api)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/bot.*/sendMessage$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {}})))
        .mount(&bot_api)
        .await;
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| {
        local_receivers(s);
        queues.apply(s);
    })
    .await;
    let owner = app.register("on-schedule@example.com").await;
    subscribe(&app, &owner, &receiver.url(), json!(["stock.low"])).await;
    let chat = app
        .post_json(
            "/api/v1/telegram/chats",
            Some(&owner.bearer()),
            &json!({"bot_token": "123456:ABC-token", "chat_id": "-100", "events": ["stock.low"]}),
        )
        .await;
    assert_eq!(chat.status(), 201);
    // The schedule in the comma form an operator would write.
    let env = [
        ("STOCK_TRACKER__WEBHOOKS__ALLOW_HTTP", "true".to_owned()),
        ("STOCK_TRACKER__WEBHOOKS__ALLOWED_PORTS", String::new()),
        (
            "STOCK_TRACKER__WEBHOOKS__ALLOW_PRIVATE_NETWORKS",
            "true".to_owned(),
        ),
        (
            "STOCK_TRACKER__NOTIFICATIONS__DISPATCH_INTERVAL_SECS",
            "1".to_owned(),
        ),
        (
            "STOCK_TRACKER__NOTIFICATIONS__RETRY_SCHEDULE_SECS",
            "1,1,1".to_owned(),
        ),
        ("STOCK_TRACKER__TELEGRAM__API_BASE_URL", bot_api.uri()),
    ];
    let _worker = Role::start("worker", &app.state.settings, &env);
    let _beat = Role::start("beat", &app.state.settings, &env);
    // An event beat dispatches, as a real one would be.
    emit(
        &app,
        owner.tenant_id,
        "stock.low",
        json!({"name": "Mug", "sku": "M-1", "stock": 2, "threshold": 10}),
    )
    .await;

    // The Bot API mock keeps no arrival times: poll for them.
    let mut telegram_at = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while receiver.received().len() < 2 || telegram_at.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "webhook attempts: {}, Telegram attempts: {}",
            receiver.received().len(),
            telegram_at.len()
        );
        let sent = bot_api.received_requests().await.unwrap_or_default().len();
        while telegram_at.len() < sent {
            telegram_at.push(std::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let attempts = receiver.received();
    for (channel, gap) in [
        ("webhook", attempts[1].at - attempts[0].at),
        ("telegram", telegram_at[1] - telegram_at[0]),
    ] {
        assert!(
            gap >= Duration::from_millis(900) && gap <= Duration::from_secs(3),
            "the {channel} retry came {gap:?} after the failure; the schedule says 1 s"
        );
    }
    assert_eq!(
        attempts[0].header("webhook-id"),
        attempts[1].header("webhook-id")
    );
}

#[tokio::test]
async fn the_delivery_log_shows_each_attempt_and_a_delivery_can_be_retried_or_tested() {
    let receiver = Receiver::start(503, "");
    let app = spawn_app_with(local_receivers).await;
    let owner = app.register("log@example.com").await;
    let subscription = subscribe(&app, &owner, &receiver.url(), json!(["stock.low"])).await;
    let hooks = format!("/api/v1/webhooks/{}", subscription["id"].as_str().unwrap());
    let ctx = runner::context(&app.state.settings).await.unwrap();
    emit(&app, owner.tenant_id, "stock.low", json!({"sku": "X"})).await;
    let (tenant, id) = notifications::dispatch(&ctx, CHANNELS, 100).await.unwrap()[0];
    let now = OffsetDateTime::now_utc();
    delivery::attempt(&ctx, tenant, id, now).await.unwrap();

    let log: Value = app
        .get_as(&format!("{hooks}/deliveries"), &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    let item = &log["items"][0];
    assert_eq!(item["id"], id.to_string());
    assert_eq!(item["status"], "pending");
    assert_eq!(item["attempts"], 1);
    assert_eq!(item["status_code"], 503);
    assert_eq!(item["error"], "the receiver answered 503");
    assert!(item["next_attempt_at"].is_string());
    assert_eq!(item["delivered_at"], Value::Null);

    // A manual retry makes it due at once (no broker here: beat would hand it over).
    let retried = app
        .send(
            reqwest::Method::POST,
            &format!("{hooks}/deliveries/{id}/retry"),
            Some(&owner.bearer()),
            None,
        )
        .await;
    assert_eq!(retried.status(), 202);
    let outcome = delivery::attempt(&ctx, tenant, id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(matches!(outcome, Attempt::Failed { .. }), "{outcome:?}");
    assert_eq!(receiver.received().len(), 2);

    // A test event.
    let test = app
        .send(
            reqwest::Method::POST,
            &format!("{hooks}/test"),
            Some(&owner.bearer()),
            None,
        )
        .await;
    assert_eq!(test.status(), 202);
    let test: Value = test.json().await.unwrap();
    assert_eq!(test["event_type"], "webhook.test");
    let test_id: Uuid = test["id"].as_str().unwrap().parse().unwrap();
    delivery::attempt(&ctx, tenant, test_id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&receiver.received()[2].body).unwrap();
    assert_eq!(body["type"], "webhook.test");

    // Another tenant sees none of it.
    let other = app.register("log-other@example.com").await;
    for (method, path) in [
        (reqwest::Method::GET, format!("{hooks}/deliveries")),
        (
            reqwest::Method::POST,
            format!("{hooks}/deliveries/{id}/retry"),
        ),
        (reqwest::Method::POST, format!("{hooks}/test")),
    ] {
        let response = app.send(method, &path, Some(&other.bearer()), None).await;
        assert_eq!(response.status(), 404, "{path}");
    }
}

async fn add_webhook(app: &TestApp, bearer: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/webhooks",
        Some(bearer),
        &json!({"url": "https://93.184.216.34/hooks", "events": ["stock.low"]}),
    )
    .await
}

async fn add_chat(app: &TestApp, bearer: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/telegram/chats",
        Some(bearer),
        &json!({"bot_token": "123456:ABC-token", "chat_id": "-100", "events": ["stock.low"]}),
    )
    .await
}

async fn assert_limit_reached(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "limit_reached", "{body}");
    let msg = body["detail"].as_str().unwrap();
    assert!(msg.contains(what), "{msg}");
}

/// Every target receives every event it subscribes to: a tenant's targets
/// are capped by its tier, concurrent creations included.
#[tokio::test]
async fn a_tenant_cannot_fan_out_past_its_tiers_cap_of_subscriptions_and_chats() {
    let app = spawn_app_with(|s| {
        s.notifications.max_targets.free.webhook_subscriptions = 2;
        s.notifications.max_targets.free.telegram_chats = 1;
        s.notifications.max_targets.premium.webhook_subscriptions = 3;
    })
    .await;
    let owner = app.register("fanout@example.com").await;
    let bearer = owner.bearer();
    let first = add_webhook(&app, &bearer).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(add_webhook(&app, &bearer).await.status(), 201);
    assert_limit_reached(
        add_webhook(&app, &bearer).await,
        "2 webhook subscriptions, the most its free tier allows",
    )
    .await;
    assert_eq!(add_chat(&app, &bearer).await.status(), 201);
    assert_limit_reached(add_chat(&app, &bearer).await, "1 Telegram chats").await;

    // Deleting one makes room again.
    let path = format!("/api/v1/webhooks/{}", first["id"].as_str().unwrap());
    let deleted = app
        .send(reqwest::Method::DELETE, &path, Some(&bearer), None)
        .await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(add_webhook(&app, &bearer).await.status(), 201);

    // The cap follows the tier (read from a token minted after the change).
    sqlx::query("UPDATE tenants SET tier = 'premium' WHERE id = $1")
        .bind(owner.tenant_id)
        .execute(&mut app.database.owner_connection().await)
        .await
        .unwrap();
    let premium = app
        .login("fanout@example.com", crate::helpers::PASSWORD)
        .await;
    let premium = format!("Bearer {}", premium.access_token);
    assert_eq!(add_webhook(&app, &premium).await.status(), 201);
    assert_limit_reached(add_webhook(&app, &premium).await, "premium tier").await;

    // Another tenant's concurrent creations take exactly the free places.
    let other = app.register("fanout-race@example.com").await.bearer();
    let attempts = futures_util::future::join_all((0..6).map(|_| add_webhook(&app, &other))).await;
    let mut created = 0;
    for response in attempts {
        match response.status().as_u16() {
            201 => created += 1,
            422 => assert_limit_reached(response, "free tier").await,
            status => panic!("unexpected {status}"),
        }
    }
    assert_eq!(created, 2);
}

/// A host whose DNS answer changes between the check and the delivery (DNS
/// rebinding) gets nothing: the delivery connects only to what its own
/// resolver checked, and that answer is loopback.
#[tokio::test]
async fn a_webhook_host_rebinding_to_loopback_receives_nothing() {
    let receiver = Receiver::start(204, "");
    let app = spawn_app_with(local_receivers).await;
    let owner = app.register("rebind@example.com").await;
    // Saved while its name resolved to a public address; the test's
    // receiver is what it resolves to now.
    let url = format!("http://hooks.rebind.test:{}/hooks", receiver.port);
    let secret = app.state.secrets.encrypt(b"whsec_cmViaW5kLXRlc3Qtc2VjcmV0");
    sqlx::query(
        "INSERT INTO webhook_subscriptions (id, tenant_id, url, secret_encrypted, events)
         VALUES ($1, $2, $3, $4, ARRAY['stock.low'])",
    )
    .bind(Uuid::now_v7())
    .bind(owner.tenant_id)
    .bind(&url)
    .bind(&secret)
    .execute(&mut app.database.owner_connection().await)
    .await
    .unwrap();

    // A worker with production's address rules, its resolver answering loopback.
    let mut strict = (*app.state.settings).clone();
    strict.webhooks.allow_private_networks = false;
    let mut ctx = Arc::into_inner(runner::context(&strict).await.unwrap()).unwrap();
    let loopback: stock_tracker::ssrf::Lookup =
        Arc::new(|_| Box::pin(async { Ok(vec![std::net::IpAddr::from([127, 0, 0, 1])]) }));
    ctx.webhook_client =
        stock_tracker::ssrf::client(loopback, false, Duration::from_secs(2)).unwrap();
    emit(&app, owner.tenant_id, "stock.low", json!({})).await;
    let (tenant, id) = notifications::dispatch(&ctx, CHANNELS, 100).await.unwrap()[0];
    match delivery::attempt(&ctx, tenant, id, OffsetDateTime::now_utc())
        .await
        .unwrap()
    {
        Attempt::Failed { error, .. } => assert_eq!(
            error,
            "the URL is refused: the host resolves to a private, loopback, link-local or otherwise non-public address"
        ),
        other => panic!("{other:?}"),
    }
    assert!(receiver.received().is_empty(), "the receiver was reached");
}
