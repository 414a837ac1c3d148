//! Telegram chats against a local mock of the Bot API: readable messages,
//! the bot token kept secret, retries honouring Telegram's `retry_after`.

use std::time::Duration;

use serde_json::{Value, json};
use stock_tracker::notifications;
use stock_tracker::webhooks::delivery::Attempt;
use stock_tracker::worker::CHANNELS;
use stock_tracker::worker::runner;
use time::OffsetDateTime;
use uuid::Uuid;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TestApp, spawn_app_with};

const TOKEN: &str = "123456:ABC-secret_token";

async fn telegram_delivery(app: &TestApp, tenant: Uuid) -> Uuid {
    sqlx::query_scalar(
        "SELECT id FROM telegram_deliveries WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(tenant)
    .fetch_one(&mut app.database.owner_connection().await)
    .await
    .unwrap()
}

async fn emit_low_stock(app: &TestApp, tenant: Uuid) {
    sqlx::query("INSERT INTO outbox_events (id, tenant_id, event_type, payload) VALUES ($1, $2, 'stock.low', $3)")
        .bind(Uuid::now_v7())
        .bind(tenant)
        .bind(json!({"name": "Mug", "sku": "M-1", "stock": 2, "threshold": 10}))
        .execute(&mut app.database.owner_connection().await)
        .await
        .unwrap();
}

#[tokio::test]
async fn chats_receive_readable_messages_and_retries_honour_retry_after() {
    let bot_api = MockServer::start().await;
    let uri = bot_api.uri();
    let app = spawn_app_with(move |s| {
        s.telegram.api_base_url = uri;
        s.notifications.retry_schedule_secs = vec![5, 300];
    })
    .await;
    let owner = app.register("telegram@example.com").await;
    let response = app
        .post_json(
            "/api/v1/telegram/chats",
            Some(&owner.bearer()),
            &json!({"bot_token": TOKEN, "chat_id": "-1001234", "events": ["stock.low"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let chat: Value = response.json().await.unwrap();
    assert!(
        !chat.to_string().contains("secret_token"),
        "the token is never returned"
    );
    let ctx = runner::context(&app.state.settings).await.unwrap();

    // Delivered: the message is readable.
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/sendMessage")))
        .and(body_partial_json(json!({
            "chat_id": "-1001234",
            "text": "⚠️ Low stock: Mug (M-1) has 2 left (threshold 10)."
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {}})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&bot_api)
        .await;
    emit_low_stock(&app, owner.tenant_id).await;
    notifications::dispatch(&ctx, CHANNELS, 100).await.unwrap();
    let first = telegram_delivery(&app, owner.tenant_id).await;
    let now = OffsetDateTime::now_utc();
    let outcome = stock_tracker::telegram::delivery::attempt(&ctx, owner.tenant_id, first, now)
        .await
        .unwrap();
    assert_eq!(outcome, Attempt::Delivered { status_code: 200 });

    // Rate limited by Telegram: the retry waits as long as it asks.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "ok": false, "error_code": 429, "description": "Too Many Requests: retry after 60",
            "parameters": {"retry_after": 60}
        })))
        .with_priority(2)
        .mount(&bot_api)
        .await;
    emit_low_stock(&app, owner.tenant_id).await;
    notifications::dispatch(&ctx, CHANNELS, 100).await.unwrap();
    let second = telegram_delivery(&app, owner.tenant_id).await;
    let later = OffsetDateTime::now_utc();
    match stock_tracker::telegram::delivery::attempt(&ctx, owner.tenant_id, second, later)
        .await
        .unwrap()
    {
        Attempt::Failed {
            error,
            next_attempt_at,
        } => {
            assert_eq!(next_attempt_at, Some(later + Duration::from_secs(60)));
            assert!(
                error.contains("429") && !error.contains("secret_token"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }

    let log: Value = app
        .get_as(
            &format!(
                "/api/v1/telegram/chats/{}/deliveries",
                chat["id"].as_str().unwrap()
            ),
            &owner.bearer(),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(log["items"].as_array().unwrap().len(), 2);
    assert_eq!(log["items"][0]["status_code"], 429);
    assert_eq!(log["items"][1]["status"], "succeeded");

    let other = app.register("telegram-other@example.com").await;
    let path = format!("/api/v1/telegram/chats/{}", chat["id"].as_str().unwrap());
    assert_eq!(app.get_as(&path, &other.bearer()).await.status(), 404);
    let bad = app
        .post_json(
            "/api/v1/telegram/chats",
            Some(&owner.bearer()),
            &json!({"bot_token": "not-a-token", "chat_id": "1", "events": ["stock.low"]}),
        )
        .await;
    assert_eq!(bad.status(), 422);
}

#[tokio::test]
async fn the_delivery_log_shows_each_attempt_and_a_message_can_be_retried_or_tested() {
    let bot_api = MockServer::start().await;
    let uri = bot_api.uri();
    let app = spawn_app_with(move |s| {
        s.telegram.api_base_url = uri;
        s.notifications.retry_schedule_secs = vec![5, 300];
    })
    .await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/sendMessage")))
        .respond_with(
            ResponseTemplate::new(502).set_body_json(
                json!({"ok": false, "error_code": 502, "description": "Bad Gateway"}),
            ),
        )
        .mount(&bot_api)
        .await;
    let owner = app.register("telegram-log@example.com").await;
    let chat: Value = app
        .post_json(
            "/api/v1/telegram/chats",
            Some(&owner.bearer()),
            &json!({"bot_token": TOKEN, "chat_id": "-100777", "events": ["stock.low"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let chats = format!("/api/v1/telegram/chats/{}", chat["id"].as_str().unwrap());
    let ctx = runner::context(&app.state.settings).await.unwrap();
    emit_low_stock(&app, owner.tenant_id).await;
    notifications::dispatch(&ctx, CHANNELS, 100).await.unwrap();
    let id = telegram_delivery(&app, owner.tenant_id).await;
    let attempt = |id| {
        stock_tracker::telegram::delivery::attempt(
            &ctx,
            owner.tenant_id,
            id,
            OffsetDateTime::now_utc(),
        )
    };
    attempt(id).await.unwrap();

    let log: Value = app
        .get_as(&format!("{chats}/deliveries"), &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    let item = &log["items"][0];
    assert_eq!(item["id"], id.to_string());
    assert_eq!(item["status"], "pending");
    assert_eq!(item["attempts"], 1);
    assert_eq!(item["status_code"], 502);
    assert_eq!(item["error"], "Telegram answered 502: Bad Gateway");
    assert!(item["next_attempt_at"].is_string());

    // A manual retry makes it due at once (no broker here: beat would hand it over).
    let retried = app
        .send(
            reqwest::Method::POST,
            &format!("{chats}/deliveries/{id}/retry"),
            Some(&owner.bearer()),
            None,
        )
        .await;
    assert_eq!(retried.status(), 202);
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["status"], "pending");
    let outcome = attempt(id).await.unwrap();
    assert!(matches!(outcome, Attempt::Failed { .. }), "{outcome:?}");
    assert_eq!(bot_api.received_requests().await.unwrap().len(), 2);

    // A test message, readable, to the registered chat.
    let test = app
        .send(
            reqwest::Method::POST,
            &format!("{chats}/test"),
            Some(&owner.bearer()),
            None,
        )
        .await;
    assert_eq!(test.status(), 202);
    let test: Value = test.json().await.unwrap();
    assert_eq!(test["event_type"], "telegram.test");
    let test_id: Uuid = test["id"].as_str().unwrap().parse().unwrap();
    attempt(test_id).await.unwrap();
    let sent = bot_api.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&sent[2].body).unwrap();
    assert_eq!(body["chat_id"], "-100777");
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("test message from Stock Tracker"),
        "{body}"
    );

    // Another tenant sees none of it.
    let other = app.register("telegram-log-other@example.com").await;
    for (verb, route) in [
        (reqwest::Method::GET, format!("{chats}/deliveries")),
        (
            reqwest::Method::POST,
            format!("{chats}/deliveries/{id}/retry"),
        ),
        (reqwest::Method::POST, format!("{chats}/test")),
    ] {
        let response = app.send(verb, &route, Some(&other.bearer()), None).await;
        assert_eq!(response.status(), 404, "{route}");
    }
    // Routes documented.
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    for documented in [
        "/api/v1/telegram/chats/{id}/deliveries/{delivery_id}/retry",
        "/api/v1/telegram/chats/{id}/test",
    ] {
        assert!(doc["paths"][documented]["post"].is_object(), "{documented}");
    }
}
