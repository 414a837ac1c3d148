//! The per-tenant response cache: HIT/MISS/BYPASS, byte-identical bodies,
//! invalidation on writes.

use reqwest::Method;
use serde_json::json;

use std::time::Duration;

use crate::helpers::{spawn_app, spawn_app_with};
use crate::processes::{PgRoundTrips, RedisMonitor, RedisServer};

async fn read(app: &crate::helpers::TestApp, path: &str, bearer: &str) -> (String, Vec<u8>) {
    let response = app.get_as(path, bearer).await;
    assert_eq!(response.status(), 200);
    let cache = response.headers()["x-cache"].to_str().unwrap().to_owned();
    (cache, response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn reads_miss_then_hit_with_identical_bytes() {
    let app = spawn_app().await;
    let owner = app.register("cache@example.com").await;
    let product = app.create_product(&owner, "C-1", "Cached", "3.50", 2).await;
    let bearer = owner.bearer();
    for path in [
        "/api/v1/products?limit=5&sort=price",
        &format!("/api/v1/products/{}", product["id"].as_str().unwrap()),
    ] {
        let (first, miss_body) = read(&app, path, &bearer).await;
        let (second, hit_body) = read(&app, path, &bearer).await;
        assert_eq!((first.as_str(), second.as_str()), ("MISS", "HIT"), "{path}");
        assert_eq!(miss_body, hit_body, "{path}: cached bytes differ");
    }
    // The same parameters in another order are the same entry.
    assert_eq!(
        read(&app, "/api/v1/products?sort=price&limit=5", &bearer)
            .await
            .0,
        "HIT"
    );
    let text = app.metrics_text().await;
    assert!(
        text.contains(
            r#"stock_tracker_cache_requests_total{cache="products_list",result="hit"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"stock_tracker_cache_requests_total{cache="product",result="miss"} 1"#)
    );
    assert!(text.contains("stock_tracker_cache_lookup_duration_seconds_bucket"));
}

#[tokio::test]
async fn a_write_invalidates_every_cached_read_of_the_tenant() {
    let app = spawn_app().await;
    let owner = app.register("inval@example.com").await;
    let other = app.register("inval-other@example.com").await;
    let product = app.create_product(&owner, "I-1", "Before", "1", 1).await;
    let detail = format!("/api/v1/products/{}", product["id"].as_str().unwrap());
    let bearer = owner.bearer();
    read(&app, "/api/v1/products", &bearer).await;
    read(&app, &detail, &bearer).await;
    read(&app, "/api/v1/products", &other.bearer()).await;
    assert_eq!(read(&app, &detail, &bearer).await.0, "HIT");

    app.send(
        Method::PATCH,
        &detail,
        Some(&bearer),
        Some(&json!({"name": "After"})),
    )
    .await;
    let (state, body) = read(&app, &detail, &bearer).await;
    assert_eq!(state, "MISS");
    assert!(String::from_utf8_lossy(&body).contains("After"));
    let (state, body) = read(&app, "/api/v1/products", &bearer).await;
    assert_eq!(state, "MISS");
    assert!(String::from_utf8_lossy(&body).contains("After"));
    // Another tenant's cache is untouched.
    assert_eq!(
        read(&app, "/api/v1/products", &other.bearer()).await.0,
        "HIT"
    );

    app.create_product(&owner, "I-2", "New", "1", 1).await;
    assert_eq!(read(&app, "/api/v1/products", &bearer).await.0, "MISS");
    app.send(Method::DELETE, &detail, Some(&bearer), None).await;
    assert_eq!(app.get_as(&detail, &bearer).await.status(), 404);
}

#[tokio::test]
async fn with_redis_down_reads_bypass_the_cache_without_error() {
    let app = spawn_app_with(|s| s.redis.url = "redis://127.0.0.1:1".to_owned().into()).await;
    let owner = app.register("bypass@example.com").await;
    let product = app.create_product(&owner, "B-1", "Bypassed", "1", 1).await;
    for path in [
        "/api/v1/products".to_owned(),
        format!("/api/v1/products/{}", product["id"].as_str().unwrap()),
    ] {
        let (state, body) = read(&app, &path, &owner.bearer()).await;
        assert_eq!(state, "BYPASS");
        assert!(String::from_utf8_lossy(&body).contains("Bypassed"));
    }
}

/// The hot path's budget: an authenticated cached read is two Redis commands
/// (the rate-limit script, which also reads the token's revocation state, and
/// the cache lookup's `MGET`) and no SQL at all — it is still served with
/// PostgreSQL unreachable.
#[tokio::test]
async fn a_cached_read_is_two_redis_round_trips_and_no_sql() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let app = spawn_app_with(move |s| s.redis.url = url.into()).await;
    let owner = app.register("budget@example.com").await;
    let product = app.create_product(&owner, "B-1", "Budget", "1", 1).await;
    let bearer = owner.bearer();
    let paths = [
        "/api/v1/products?limit=50".to_owned(),
        format!("/api/v1/products/{}", product["id"].as_str().unwrap()),
    ];
    // Warm: the entries are cached, and the revocation state this fresh
    // Redis lacked has been refilled from PostgreSQL (a background task).
    app.wait_for_revocation_sync(owner.tenant_id).await;
    for path in &paths {
        read(&app, path, &bearer).await;
        assert_eq!(read(&app, path, &bearer).await.0, "HIT", "{path}");
    }
    app.database.make_unreachable().await;

    let monitor = RedisMonitor::start(redis.port).await;
    for path in &paths {
        assert_eq!(read(&app, path, &bearer).await.0, "HIT", "{path}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (global, own) = monitor.take_split_at_global();
        assert_eq!(own, ["evalsha", "mget"], "{path}");
        // At most one lease of the global budget (they last 100 ms).
        assert!(global.len() <= 1, "{global:?}");
    }
}

#[tokio::test]
async fn an_uncached_read_is_at_most_two_postgresql_round_trips_under_row_level_security() {
    use secrecy::ExposeSecret;
    let proxy = PgRoundTrips::start("127.0.0.1:5432".into()).await;
    let port = proxy.port;
    let app = spawn_app_with(move |s| {
        let mut url = url::Url::parse(s.database.url.expose_secret()).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(port)).unwrap();
        // In clear, so the proxy can read the messages.
        url.query_pairs_mut().append_pair("sslmode", "disable");
        s.database.url = url.to_string().into();
        // Requests only: the periodic replay of recorded revocations (its
        // own round trip each second) stays out of the count.
        s.auth.invalidation_replay_ms = 60_000;
    })
    .await;
    let owner = app.register("round-trips@example.com").await;
    let other = app.register("round-trips-other@example.com").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let product = app
            .create_product(&owner, &format!("RT-{n}"), "Counted", "1", 1)
            .await;
        ids.push(product["id"].as_str().unwrap().to_owned());
    }
    let foreign = app.create_product(&other, "RT-X", "Foreign", "1", 1).await;
    app.wait_for_revocation_sync(owner.tenant_id).await;
    let bearer = owner.bearer();
    // Warm: a connection is open and idle in the pool.
    read(&app, &format!("/api/v1/products/{}", ids[0]), &bearer).await;
    for id in &ids[1..] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.take();
        let (cache, body) = read(&app, &format!("/api/v1/products/{id}"), &bearer).await;
        assert_eq!(cache, "MISS");
        assert!(String::from_utf8_lossy(&body).contains(id.as_str()));
        // The connection's return to the pool happens after the response.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let round_trips = proxy.take();
        assert!(
            round_trips <= 2,
            "an uncached read took {round_trips} round trips"
        );
    }
    // Row-level security as before: another tenant's product is not found.
    let path = format!("/api/v1/products/{}", foreign["id"].as_str().unwrap());
    assert_eq!(app.get_as(&path, &bearer).await.status(), 404);
}
