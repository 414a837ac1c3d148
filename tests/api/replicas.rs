//! Revocations across API replicas: the test's application and a second
//! `stock-tracker serve` process share PostgreSQL and Redis; the first one's
//! Redis is cut at the moment of a logout or a key's revocation, so the
//! Redis write that should tell the other replica is lost.

use std::time::{Duration, Instant};

use stock_tracker::auth::revocation::{ApiKeyGrant, RevocationStore};
use stock_tracker::auth::roles::{Role as UserRole, Tier};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app_with};
use crate::processes::TcpProxy;
use crate::workers::Role;

/// A second API process on the same database and Redis (directly, not
/// through the first one's proxy).
async fn second_replica(app: &TestApp) -> Role {
    let mut settings = (*app.state.settings).clone();
    settings.redis.url = std::env::var("REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
        .into();
    let replica = Role::start("serve", &settings, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live = reqwest::get(format!(
            "http://127.0.0.1:{}/api/v1/health/live",
            replica.port
        ))
        .await;
        if live.is_ok_and(|r| r.status() == 200) {
            return replica;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never came up:\n{}",
            replica.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the replica answers to `GET /api/v1/products` with `header`.
async fn status_on(replica: &Role, header: (&str, &str)) -> u16 {
    reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/api/v1/products", replica.port))
        .header(header.0, header.1)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls until the replica refuses `header`: how long that took.
async fn refused_within(replica: &Role, header: (&str, &str), bound: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if status_on(replica, header).await == 401 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < bound,
            "the other replica still accepts the revoked credential after {bound:?}:\n{}",
            replica.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn redis_url_through(proxy: &TcpProxy) -> String {
    format!("redis://127.0.0.1:{}", proxy.port)
}

#[tokio::test]
async fn a_logout_whose_redis_write_was_lost_holds_on_every_replica_within_the_replay_interval() {
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let target = redis
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = TcpProxy::start(target).await;
    let app = spawn_app_with(|s| s.redis.url = redis_url_through(&proxy).into()).await;
    let replica = second_replica(&app).await;
    let owner = app.register("replicas@example.com").await;
    let bearer = owner.bearer();
    let header = ("Authorization", bearer.as_str());
    // The replica trusts Redis for this tenant (its state refilled).
    assert_eq!(status_on(&replica, header).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status_on(&replica, header).await, 200);

    // The first replica signs out with its Redis cut: PostgreSQL has the
    // revocation, Redis does not, and only this process knows.
    proxy.cut();
    let logout = app
        .post_json("/api/v1/auth/logout", Some(&bearer), &serde_json::json!({}))
        .await;
    assert_eq!(logout.status(), 204);
    let took = refused_within(&replica, header, Duration::from_secs(5)).await;
    eprintln!("the other replica refused the signed-out token after {took:?}");
}

#[tokio::test]
async fn a_key_revoked_while_redis_was_cut_is_refused_by_every_replica_within_the_replay_interval()
{
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let target = redis
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = TcpProxy::start(target).await;
    let app = spawn_app_with(|s| s.redis.url = redis_url_through(&proxy).into()).await;
    let replica = second_replica(&app).await;
    let owner = app.register("replica-keys@example.com").await;
    let (key_id, key) = app.create_api_key(&owner, "viewer").await;
    let header = ("X-API-Key", key.as_str());
    // The replica caches the key's grant in Redis.
    assert_eq!(status_on(&replica, header).await, 200);
    assert_eq!(status_on(&replica, header).await, 200);

    proxy.cut();
    let revoked = app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/api-keys/{key_id}"),
            Some(&owner.bearer()),
            None,
        )
        .await;
    assert_eq!(revoked.status(), 204);
    let took = refused_within(&replica, header, Duration::from_secs(5)).await;
    eprintln!("the other replica refused the revoked key after {took:?}");
}

#[tokio::test]
async fn a_lookup_that_missed_before_a_revocation_cannot_cache_the_revoked_key() {
    let app = spawn_app_with(|_| {}).await;
    let state = &app.state;
    let store = RevocationStore::new(
        &state.settings,
        state.redis.clone(),
        state.redis_guard.clone(),
        state.db.clone(),
    );
    let hash = Uuid::new_v4().as_bytes().to_vec();
    let grant = ApiKeyGrant {
        key_id: Uuid::new_v4(),
        tenant_id: Uuid::new_v4(),
        user_id: Uuid::new_v4(),
        role: UserRole::Viewer,
        tier: Tier::Free,
        expires_at: None,
    };
    // A request misses and reads the key from PostgreSQL...
    let missed = store.cached_api_key(&hash).await;
    assert!(missed.grant.is_none());
    // ...meanwhile the key is revoked...
    store.forget_api_keys(std::slice::from_ref(&hash)).await;
    // ...then the request stores what it read: refused.
    store.cache_api_key(&hash, &grant, missed.stamp).await;
    assert!(store.cached_api_key(&hash).await.grant.is_none());

    // A miss after the revocation caches as usual.
    let later = store.cached_api_key(&hash).await;
    store.cache_api_key(&hash, &grant, later.stamp).await;
    let cached = store.cached_api_key(&hash).await.grant.expect("cached");
    assert_eq!(cached.key_id, grant.key_id);
}
