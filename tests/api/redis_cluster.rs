//! The service on a real Redis Cluster (three masters on loopback, started
//! per test): limits at their boundary and shared by two replicas, the
//! global budget, revocation (with a node's data loss), the response cache
//! and the API-key cache — then a master killed mid-test: nothing fails,
//! and everything is back on Redis once the master returns.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use stock_tracker::config::Settings;

use crate::helpers::{TestApp, spawn_app_with};
use crate::processes::RedisCluster;

const ME: &str = "/api/v1/users/me";

async fn on_cluster(customize: impl FnOnce(&mut Settings)) -> (RedisCluster, TestApp) {
    let cluster = RedisCluster::start().await;
    let nodes = cluster.nodes();
    let app = spawn_app_with(move |s| {
        s.redis.cluster_nodes = nodes;
        // Nothing listens there: every Redis call must go to the cluster.
        s.redis.url = "redis://127.0.0.1:1".to_owned().into();
        customize(s);
    })
    .await;
    (cluster, app)
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers()[name].to_str().unwrap().to_owned()
}

/// The key of the tenant's revocation marker, whose slot holds all its keys.
fn tenant_key(app: &TestApp, tenant: uuid::Uuid) -> String {
    format!(
        "{}auth:{{{tenant}}}:synced",
        app.state.settings.redis.key_prefix
    )
}

#[tokio::test]
async fn limits_hold_to_the_exact_request_and_two_replicas_share_them() {
    let (_cluster, app) = on_cluster(|s| {
        s.rate_limit.user_share = 1.0;
        s.rate_limit.tiers.free.minute = 6;
    })
    .await;
    let replica = app.spawn_replica().await;
    let owner = app.register("cluster-limits@example.com").await;
    let me_from = |base: &str| {
        app.client
            .get(format!("{base}{ME}"))
            .header("authorization", owner.bearer())
            .send()
    };
    for n in 0..6 {
        let base = if n % 2 == 0 { &app.address } else { &replica };
        let response = me_from(base).await.unwrap();
        assert_eq!(response.status(), 200, "request {n}");
        assert_eq!(
            header(&response, "x-ratelimit-remaining"),
            (5 - n).to_string()
        );
    }
    for base in [&app.address, &replica] {
        let response = me_from(base).await.unwrap();
        assert_eq!(response.status(), 429);
        assert!(header(&response, "ratelimit").starts_with("\"tenant-minute\";r=0;"));
    }
    // Another tenant (another slot, most likely another master) is untouched.
    let other = app.register("cluster-limits-2@example.com").await;
    assert_eq!(app.get_as(ME, &other.bearer()).await.status(), 200);
    let text = app.metrics_text().await;
    let fallback: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(r#"outcome="fallback""#) && !l.ends_with(" 0"))
        .collect();
    assert!(fallback.is_empty(), "{fallback:?}");
}

#[tokio::test]
async fn anonymous_limits_and_the_global_budget_work_per_slot() {
    let (_cluster, app) = on_cluster(|s| {
        s.rate_limit.anonymous.minute = 3;
        s.rate_limit.anonymous_global.limit = 8;
        s.rate_limit.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let from = |ip: &str| {
        app.client
            .get(app.url("/api/v1/products"))
            .header("x-forwarded-for", ip.to_owned())
    };
    for _ in 0..3 {
        assert_eq!(from("198.51.100.1").send().await.unwrap().status(), 401);
    }
    assert_eq!(from("198.51.100.1").send().await.unwrap().status(), 429);
    // Other addresses until the anonymous global budget of 8 is spent (4 used so far,
    // the refused one included: it was admitted by the global limit).
    let mut admitted = 0;
    for n in 2..10 {
        let status = from(&format!("198.51.100.{n}"))
            .send()
            .await
            .unwrap()
            .status();
        if status == 401 {
            admitted += 1;
        } else {
            assert_eq!(status, 429);
        }
    }
    assert_eq!(admitted, 4);
}

#[tokio::test]
async fn revocation_holds_and_refills_after_a_node_loses_its_data() {
    let (cluster, app) = on_cluster(|_| {}).await;
    let account = app.register("cluster-revoke@example.com").await;
    assert_eq!(app.get_as(ME, &account.bearer()).await.status(), 200);
    app.send(
        Method::POST,
        "/api/v1/auth/logout",
        Some(&account.bearer()),
        None,
    )
    .await;
    assert_eq!(app.get_as(ME, &account.bearer()).await.status(), 401);

    // The master holding the tenant's slot restarts empty.
    let marker = tenant_key(&app, account.tenant_id);
    let port = cluster.master_of(&marker).await;
    let mut cluster = cluster;
    cluster.restart(port).await;

    // Still refused (PostgreSQL answers), and the tenant is refilled.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = app.get_as(ME, &account.bearer()).await.status();
        assert!(status == 401, "a revoked token got {status}");
        let mut node = cluster.node(port).await;
        let refilled: bool = redis::cmd("EXISTS")
            .arg(&marker)
            .query_async(&mut node)
            .await
            .unwrap();
        if refilled {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the tenant was not refilled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.get_as(ME, &account.bearer()).await.status(), 401);
    // A fresh sign-in works.
    let tokens = app
        .login("cluster-revoke@example.com", crate::helpers::PASSWORD)
        .await;
    let bearer = format!("Bearer {}", tokens.access_token);
    assert_eq!(app.get_as(ME, &bearer).await.status(), 200);
}

#[tokio::test]
async fn the_response_cache_and_the_api_key_cache_work_on_a_cluster() {
    let (_cluster, app) = on_cluster(|_| {}).await;
    let owner = app.register("cluster-cache@example.com").await;
    let product = app.create_product(&owner, "CC-1", "Before", "1", 1).await;
    let detail = format!("/api/v1/products/{}", product["id"].as_str().unwrap());
    let cache_of = |response: &reqwest::Response| header(response, "x-cache");
    let first = app.get_as(&detail, &owner.bearer()).await;
    assert_eq!(cache_of(&first), "MISS");
    assert_eq!(cache_of(&app.get_as(&detail, &owner.bearer()).await), "HIT");
    app.send(
        Method::PATCH,
        &detail,
        Some(&owner.bearer()),
        Some(&json!({"name": "After"})),
    )
    .await;
    let after = app.get_as(&detail, &owner.bearer()).await;
    assert_eq!(cache_of(&after), "MISS");
    assert!(after.text().await.unwrap().contains("After"));

    let (key_id, key) = app.create_api_key(&owner, "viewer").await;
    for _ in 0..2 {
        assert_eq!(
            app.get_with_key("/api/v1/products", &key).await.status(),
            200
        );
    }
    app.send(
        Method::DELETE,
        &format!("/api/v1/api-keys/{key_id}"),
        Some(&owner.bearer()),
        None,
    )
    .await;
    assert_eq!(
        app.get_with_key("/api/v1/products", &key).await.status(),
        401
    );
}

#[tokio::test]
async fn a_master_killed_mid_test_degrades_nothing_to_errors_and_recovers() {
    let (mut cluster, app) = on_cluster(|s| {
        s.circuit_breakers.redis.open_timeout_ms = 200;
    })
    .await;
    let owner = app.register("cluster-kill@example.com").await;
    let product = app.create_product(&owner, "K-1", "Kept", "1", 1).await;
    let detail = format!("/api/v1/products/{}", product["id"].as_str().unwrap());
    assert_eq!(app.get_as(&detail, &owner.bearer()).await.status(), 200);

    let port = cluster.master_of(&tenant_key(&app, owner.tenant_id)).await;
    cluster.kill(port);
    for _ in 0..20 {
        let response = app.get_as(&detail, &owner.bearer()).await;
        assert_eq!(response.status(), 200, "with a master down");
        assert_ne!(header(&response, "x-cache"), "HIT");
    }
    cluster.restart(port).await;
    // Back on Redis without a restart: the cache stores and hits again.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let response = app.get_as(&detail, &owner.bearer()).await;
        assert_eq!(response.status(), 200);
        if header(&response, "x-cache") == "HIT" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never back on Redis");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = app.metrics_text().await;
    assert!(
        text.contains(r#"stock_tracker_rate_limit_fallback_switches_total{to="redis"}"#),
        "{text}"
    );
}
