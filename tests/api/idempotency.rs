//! `Idempotency-Key` on creating POSTs: replays, refusals, one run under
//! concurrency, expiry, tenants apart, and Redis down.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{Account, TestApp, spawn_app, spawn_app_with};
use crate::processes::TcpProxy;

const KEY: &str = "0b6f1e1c-order-42";

impl TestApp {
    /// A POST with an `Idempotency-Key`, as the account.
    async fn post_with_key(
        &self,
        account: &Account,
        path: &str,
        key: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("authorization", account.bearer())
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    async fn product_count(&self, account: &Account) -> i64 {
        let mut db = self.database.owner_connection().await;
        sqlx::query_scalar("SELECT count(*) FROM products WHERE tenant_id = $1")
            .bind(account.tenant_id)
            .fetch_one(&mut db)
            .await
            .unwrap()
    }
}

fn product(sku: &str) -> Value {
    json!({"sku": sku, "name": "Blue mug", "price": "12.50", "stock": 7})
}

fn replayed(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

async fn code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_retried_create_replays_the_first_answer_and_creates_once() {
    let app = spawn_app().await;
    let owner = app.register("idem-replay@example.com").await;

    let first = app
        .post_with_key(&owner, "/api/v1/products", KEY, &product("MUG-1"))
        .await;
    assert_eq!(first.status(), 201);
    assert!(!replayed(&first));
    let location = first.headers().get("content-type").cloned();
    let first: Value = first.json().await.unwrap();

    let retry = app
        .post_with_key(&owner, "/api/v1/products", KEY, &product("MUG-1"))
        .await;
    assert_eq!(retry.status(), 201);
    assert!(replayed(&retry));
    assert_eq!(retry.headers().get("content-type").cloned(), location);
    assert!(retry.headers().contains_key("x-request-id"));
    assert_eq!(retry.json::<Value>().await.unwrap(), first);
    assert_eq!(app.product_count(&owner).await, 1);

    // An answer carrying a secret replays it too, and Redis holds it
    // encrypted only.
    let body = json!({"name": "ci", "role": "member"});
    let created = app
        .post_with_key(&owner, "/api/v1/api-keys", "key-for-api-key", &body)
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let again = app
        .post_with_key(&owner, "/api/v1/api-keys", "key-for-api-key", &body)
        .await;
    assert!(replayed(&again));
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], created["id"]);
    assert_eq!(again["key"], created["key"]);
    let secret = created["key"].as_str().unwrap();
    let prefix = format!("{}idem:*", app.state.settings.redis.key_prefix);
    let mut redis = app.state.redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&prefix)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in keys {
        let value: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(value.starts_with("done:"), "{value}");
        assert!(!value.contains(secret) && !value.contains("MUG-1"));
        assert!(!key.contains(KEY), "the key is stored hashed: {key}");
    }

    // Without a key, the same body is a new request (here: the SKU is taken).
    let plain = app
        .post_json("/api/v1/products", Some(&owner.bearer()), &product("MUG-1"))
        .await;
    assert_eq!(plain.status(), 409);
}

#[tokio::test]
async fn the_same_key_with_another_request_is_refused() {
    let app = spawn_app().await;
    let owner = app.register("idem-mismatch@example.com").await;
    let colleague = app
        .add_user(&owner, "idem-colleague@example.com", "admin")
        .await;
    let first = app
        .post_with_key(&owner, "/api/v1/products", KEY, &product("MUG-1"))
        .await;
    assert_eq!(first.status(), 201);

    // Another body.
    let other = app
        .post_with_key(&owner, "/api/v1/products", KEY, &product("MUG-2"))
        .await;
    assert_eq!(other.status(), 422);
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["code"], "idempotency_key_reused");
    assert!(body["detail"].as_str().unwrap().contains("Idempotency-Key"));
    assert!(body["request_id"].is_string());
    // Another route.
    let other = app
        .post_with_key(
            &owner,
            "/api/v1/marketplaces",
            KEY,
            &json!({"kind": "demo", "name": "Demo"}),
        )
        .await;
    assert_eq!(code(other).await, "idempotency_key_reused");
    // Another caller of the same tenant, same body.
    let other = app
        .post_with_key(&colleague, "/api/v1/products", KEY, &product("MUG-1"))
        .await;
    assert_eq!(code(other).await, "idempotency_key_reused");
    assert_eq!(app.product_count(&owner).await, 1);
}

#[tokio::test]
async fn a_failed_request_leaves_its_key_free_for_the_corrected_retry() {
    let app = spawn_app().await;
    let owner = app.register("idem-failed@example.com").await;
    let invalid = app
        .post_with_key(
            &owner,
            "/api/v1/products",
            KEY,
            &json!({"sku": "MUG-1", "name": "Blue mug", "price": "-1", "stock": 7}),
        )
        .await;
    assert_eq!(invalid.status(), 422);
    let corrected = app
        .post_with_key(&owner, "/api/v1/products", KEY, &product("MUG-1"))
        .await;
    assert_eq!(corrected.status(), 201);
    assert!(!replayed(&corrected));
}

#[tokio::test]
async fn concurrent_requests_with_one_key_run_once() {
    let app = spawn_app_with(|s| s.idempotency.wait_ms = 300).await;
    let owner = app.register("idem-concurrent@example.com").await;

    // A burst: one runs, the others wait for its answer.
    let body = product("MUG-1");
    let burst = (0..8).map(|_| app.post_with_key(&owner, "/api/v1/products", KEY, &body));
    let answers = futures_util::future::join_all(burst).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|r| r.status() == 201 && !replayed(r))
            .count(),
        1
    );
    assert_eq!(app.product_count(&owner).await, 1);

    // The first request held up in PostgreSQL (its table locked): the
    // second waits `wait_ms`, then 409 with Retry-After; once the first
    // answers, a retry replays it.
    let mut lock = app.database.owner_connection().await;
    let mut transaction = lock.begin().await.unwrap();
    sqlx::query("LOCK TABLE products IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *transaction)
        .await
        .unwrap();
    let body = product("MUG-2");
    let first = app.post_with_key(&owner, "/api/v1/products", "held-key", &body);
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let response = app
            .post_with_key(&owner, "/api/v1/products", "held-key", &body)
            .await;
        transaction.rollback().await.unwrap();
        response
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(second.status(), 409);
    assert_eq!(second.headers()["retry-after"], "1");
    assert_eq!(code(second).await, "idempotency_key_in_use");
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let retry = app
        .post_with_key(&owner, "/api/v1/products", "held-key", &body)
        .await;
    assert!(replayed(&retry));
    assert_eq!(retry.json::<Value>().await.unwrap(), first);
    assert_eq!(app.product_count(&owner).await, 2);
}

#[tokio::test]
async fn answers_are_kept_for_the_ttl_then_the_key_runs_anew() {
    let app = spawn_app_with(|s| s.idempotency.ttl_secs = 1).await;
    let owner = app.register("idem-expiry@example.com").await;
    let body = json!({"name": "ci", "role": "member"});
    let first: Value = app
        .post_with_key(&owner, "/api/v1/api-keys", KEY, &body)
        .await
        .json()
        .await
        .unwrap();
    let replay = app
        .post_with_key(&owner, "/api/v1/api-keys", KEY, &body)
        .await;
    assert!(replayed(&replay));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = app
        .post_with_key(&owner, "/api/v1/api-keys", KEY, &body)
        .await;
    assert_eq!(after.status(), 201);
    assert!(!replayed(&after));
    let after: Value = after.json().await.unwrap();
    assert_ne!(after["id"], first["id"]);
}

#[tokio::test]
async fn keys_belong_to_their_tenant() {
    let app = spawn_app().await;
    let acme = app.register("idem-acme@example.com").await;
    let globex = app.register("idem-globex@example.com").await;
    for account in [&acme, &globex] {
        let response = app
            .post_with_key(account, "/api/v1/products", KEY, &product("MUG-1"))
            .await;
        assert_eq!(response.status(), 201);
        assert!(!replayed(&response));
        assert_eq!(app.product_count(account).await, 1);
    }
}

#[tokio::test]
async fn with_redis_down_a_request_with_a_key_is_refused_and_one_without_is_served() {
    let proxy = TcpProxy::start("127.0.0.1:6379".into()).await;
    let port = proxy.port;
    let app = spawn_app_with(move |s| {
        s.redis.url = format!("redis://127.0.0.1:{port}").into();
        s.circuit_breakers.redis.open_timeout_ms = 500;
    })
    .await;
    let owner = app.register("idem-redis-down@example.com").await;

    proxy.cut();
    let refused = app
        .post_with_key(&owner, "/api/v1/products", KEY, &product("MUG-1"))
        .await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(code(refused).await, "idempotency_unavailable");
    let served = app
        .post_json("/api/v1/products", Some(&owner.bearer()), &product("MUG-2"))
        .await;
    assert_eq!(served.status(), 201);
    assert_eq!(app.product_count(&owner).await, 1);

    proxy.restore();
    let mut status = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let response = app
            .post_with_key(&owner, "/api/v1/products", KEY, &product("MUG-1"))
            .await;
        status = response.status().as_u16();
        if status != 503 {
            break;
        }
    }
    assert_eq!(status, 201);
    let metrics = app.metrics_text().await;
    for outcome in ["unavailable", "executed"] {
        let series = format!("stock_tracker_idempotent_requests_total{{outcome=\"{outcome}\"}}");
        assert!(
            crate::helpers::sample(&metrics, &series).unwrap() >= 1.0,
            "{series}"
        );
    }
}

#[tokio::test]
async fn malformed_keys_are_refused_with_the_headers_location() {
    let app = spawn_app().await;
    let owner = app.register("idem-malformed@example.com").await;
    for (key, kind) in [
        ("k".repeat(256), "string_too_long"),
        ("tab\there".to_owned(), "string_pattern_mismatch"),
    ] {
        let response = app
            .post_with_key(&owner, "/api/v1/products", &key, &product("MUG-1"))
            .await;
        assert_eq!(response.status(), 422);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["header", "Idempotency-Key"])
        );
        assert_eq!(body["detail"][0]["type"], kind);
    }
    // Routes that do not take the header ignore it, as reads do.
    let response = app
        .client
        .request(Method::GET, app.url("/api/v1/products"))
        .header("authorization", owner.bearer())
        .header("idempotency-key", "k".repeat(300))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.product_count(&owner).await, 0);
}
