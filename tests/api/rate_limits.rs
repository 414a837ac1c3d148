//! Rate limits against real Redis: every scope and window at its exact
//! boundary, the headers, replicas sharing a limit, one round trip per
//! request, NOSCRIPT recovery, the fallback when Redis goes away, and the
//! client address behind proxies.

use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{Value, json};
use stock_tracker::config::Settings;

use crate::helpers::{Account, PASSWORD, TestApp, spawn_app_with};
use crate::processes::{RedisMonitor, RedisServer, TcpProxy};

const ME: &str = "/api/v1/users/me";
const LIMITS: &str = "/api/v1/rate-limits/me";

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// Asserts a 429 that names `policy`, and returns its Retry-After.
async fn assert_limited(response: Response, policy: &str) -> u64 {
    assert_eq!(response.status(), 429);
    let retry_after: u64 = header(&response, "retry-after").parse().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(header(&response, "x-ratelimit-remaining"), "0");
    assert!(
        header(&response, "ratelimit").starts_with(&format!("\"{policy}\";r=0;")),
        "{}",
        header(&response, "ratelimit")
    );
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("`{policy}`")), "{detail}");
    retry_after
}

async fn set_tier(app: &TestApp, account: &Account, tier: &str) -> Account {
    sqlx::query("UPDATE tenants SET tier = $1 WHERE id = $2")
        .bind(tier)
        .bind(account.tenant_id)
        .execute(&mut app.database.owner_connection().await)
        .await
        .unwrap();
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(account.user_id)
        .fetch_one(&mut app.database.owner_connection().await)
        .await
        .unwrap();
    // The tier travels in the access token: sign in again.
    Account {
        tokens: app.login(&email, PASSWORD).await,
        ..account.clone()
    }
}

#[tokio::test]
async fn each_tier_gets_its_own_limits_to_the_exact_request() {
    let app = spawn_app_with(|s| {
        s.rate_limit.user_share = 1.0;
        s.rate_limit.tiers.free.minute = 3;
        s.rate_limit.tiers.premium.minute = 4;
        s.rate_limit.tiers.enterprise.minute = 5;
        s.rate_limit.tiers.internal.minute = 6;
    })
    .await;
    for (tier, limit) in [
        ("free", 3),
        ("premium", 4),
        ("enterprise", 5),
        ("internal", 6),
    ] {
        let owner = app.register(&format!("owner-{tier}@example.com")).await;
        let owner = set_tier(&app, &owner, tier).await;
        for sent in 1..=limit {
            let response = app.get_as(ME, &owner.bearer()).await;
            assert_eq!(response.status(), 200, "{tier}: request {sent}");
            assert_eq!(header(&response, "x-ratelimit-limit"), limit.to_string());
            assert_eq!(
                header(&response, "x-ratelimit-remaining"),
                (limit - sent).to_string()
            );
            assert_eq!(
                header(&response, "x-ratelimit-tenant"),
                owner.tenant_id.to_string()
            );
            let policy = header(&response, "ratelimit-policy");
            assert!(
                policy.contains(&format!("\"tenant-minute\";q={limit};w=60")),
                "{policy}"
            );
        }
        let retry_after =
            assert_limited(app.get_as(ME, &owner.bearer()).await, "tenant-minute").await;
        assert!(retry_after <= 66, "{retry_after}");
    }
}

#[tokio::test]
async fn the_second_window_refuses_at_its_limit_and_admits_after_retry_after() {
    let app = spawn_app_with(|s| {
        s.rate_limit.user_share = 1.0;
        s.rate_limit.tiers.free.second = 3;
    })
    .await;
    let owner = app.register("second@example.com").await;
    for _ in 0..3 {
        assert_eq!(app.get_as(ME, &owner.bearer()).await.status(), 200);
    }
    let retry_after = assert_limited(app.get_as(ME, &owner.bearer()).await, "tenant-second").await;
    // One second, plus at most one 100 ms sub-window, rounded up.
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(app.get_as(ME, &owner.bearer()).await.status(), 200);
}

#[tokio::test]
async fn the_hour_window_is_tested_with_a_short_configured_length() {
    let app = spawn_app_with(|s| {
        s.rate_limit.user_share = 1.0;
        s.rate_limit.windows.hour = 2;
        s.rate_limit.tiers.free.hour = 4;
    })
    .await;
    let owner = app.register("hour@example.com").await;
    for _ in 0..4 {
        let response = app.get_as(ME, &owner.bearer()).await;
        assert_eq!(response.status(), 200);
        assert!(header(&response, "ratelimit-policy").contains("\"tenant-hour\";q=4;w=2"));
    }
    let retry_after = assert_limited(app.get_as(ME, &owner.bearer()).await, "tenant-hour").await;
    assert!((1..=3).contains(&retry_after), "{retry_after}");
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(app.get_as(ME, &owner.bearer()).await.status(), 200);
}

#[tokio::test]
async fn one_user_gets_only_its_share_of_the_tenant() {
    let app = spawn_app_with(|s| {
        s.rate_limit.user_share = 0.6;
        s.rate_limit.tiers.free.minute = 10;
    })
    .await;
    let owner = app.register("share@example.com").await;
    let colleague = app
        .add_user(&owner, "colleague@example.com", "viewer")
        .await;
    // A share of 0.6 of 10 is 6; the owner spent one creating the colleague.
    for _ in 0..5 {
        let response = app.get_as(ME, &owner.bearer()).await;
        assert_eq!(response.status(), 200);
        assert!(header(&response, "ratelimit-policy").contains("\"user-minute\";q=6;w=60"));
    }
    assert_limited(app.get_as(ME, &owner.bearer()).await, "user-minute").await;
    // The colleague has its own share, and uses the tenant's last four.
    for _ in 0..4 {
        assert_eq!(app.get_as(ME, &colleague.bearer()).await.status(), 200);
    }
    assert_limited(app.get_as(ME, &colleague.bearer()).await, "tenant-minute").await;
}

#[tokio::test]
async fn api_keys_count_against_their_tenant_and_their_own_share() {
    let app = spawn_app_with(|s| {
        s.rate_limit.user_share = 0.5;
        s.rate_limit.tiers.free.minute = 6;
    })
    .await;
    let owner = app.register("keys@example.com").await;
    let (_, key) = app.create_api_key(&owner, "viewer").await;
    for _ in 0..3 {
        let response = app.get_with_key("/api/v1/products", &key).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "x-ratelimit-tenant"),
            owner.tenant_id.to_string()
        );
    }
    assert_limited(
        app.get_with_key("/api/v1/products", &key).await,
        "user-minute",
    )
    .await;
    // The owner (one request spent on the key) still has its own share.
    assert_eq!(app.get_as(ME, &owner.bearer()).await.status(), 200);
}

#[tokio::test]
async fn anonymous_calls_are_limited_per_client_ip() {
    let app = spawn_app_with(|s| s.rate_limit.anonymous.minute = 3).await;
    for _ in 0..3 {
        let response = app.get("/api/v1/products").await;
        assert_eq!(response.status(), 401);
        assert!(header(&response, "ratelimit-policy").contains("\"ip-minute\";q=3;w=60"));
        assert!(response.headers().get("x-ratelimit-tenant").is_none());
    }
    assert_limited(app.get("/api/v1/products").await, "ip-minute").await;
}

async fn post_login(app: &TestApp, path: &str, forwarded_for: Option<&str>) -> Response {
    let mut request = app.client.post(app.url(path));
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    request = if path.ends_with("/token") {
        request.form(&[
            ("username", "nobody@example.com"),
            ("password", "wrong-password"),
        ])
    } else {
        request.json(&json!({"email": "nobody@example.com", "password": "wrong-password"}))
    };
    request.send().await.unwrap()
}

fn default_rule(settings: &mut Settings, name: &str) {
    let defaults = Settings::load(None).unwrap();
    settings
        .rate_limit
        .rules
        .insert(name.into(), defaults.rate_limit.rules[name].clone());
}

#[tokio::test]
async fn login_is_limited_to_five_attempts_per_five_minutes_per_ip() {
    let app = spawn_app_with(|s| {
        default_rule(s, "login");
        s.rate_limit.trusted_proxies = vec!["127.0.0.1".into()];
        // The per-IP rule alone (every attempt names one account, whose
        // own backoff `auth_flows` tests).
        s.auth.login_backoff.free_attempts = 100;
    })
    .await;
    for attempt in 1..=5 {
        let path = if attempt % 2 == 0 {
            "/api/v1/auth/token"
        } else {
            "/api/v1/auth/login"
        };
        let response = post_login(&app, path, Some("203.0.113.10")).await;
        assert_eq!(response.status(), 401, "attempt {attempt}");
        // The window empties 300 s after the newest hit, rounded up to its 30 s sub-window.
        let ratelimit = header(&response, "ratelimit");
        let prefix = format!("\"login\";r={};t=", 5 - attempt);
        let t: u64 = ratelimit
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{ratelimit}"))
            .parse()
            .unwrap();
        assert!((300..=330).contains(&t), "{ratelimit}");
    }
    let retry_after = assert_limited(
        post_login(&app, "/api/v1/auth/login", Some("203.0.113.10")).await,
        "login",
    )
    .await;
    assert!((300..=330).contains(&retry_after), "{retry_after}");
    assert_limited(
        post_login(&app, "/api/v1/auth/token", Some("203.0.113.10")).await,
        "login",
    )
    .await;
    // Another client address has its own attempts.
    assert_eq!(
        post_login(&app, "/api/v1/auth/login", Some("203.0.113.11"))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn registration_is_limited_to_ten_per_hour_per_ip() {
    let app = spawn_app_with(|s| default_rule(s, "register")).await;
    for n in 0..10 {
        let response = app
            .post_json(
                "/api/v1/auth/register",
                None,
                &json!({"email": format!("reg{n}@example.com"), "password": PASSWORD, "tenant_name": "T"}),
            )
            .await;
        assert_eq!(response.status(), 201);
    }
    let response = app
        .post_json(
            "/api/v1/auth/register",
            None,
            &json!({"email": "reg10@example.com", "password": PASSWORD, "tenant_name": "T"}),
        )
        .await;
    let retry_after = assert_limited(response, "register").await;
    assert!(retry_after > 3_000, "{retry_after}");
    // Nothing was created for the refused request.
    let users: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE email = 'reg10@example.com'")
            .fetch_one(&mut app.database.owner_connection().await)
            .await
            .unwrap();
    assert_eq!(users, 0);
}

async fn demo_connection(app: &TestApp, owner: &Account) -> String {
    let response = app
        .post_json(
            "/api/v1/marketplaces",
            Some(&owner.bearer()),
            &json!({"kind": "demo", "name": "Demo"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn sync_is_limited_to_five_per_five_minutes_per_tenant() {
    let app = spawn_app_with(|s| default_rule(s, "sync")).await;
    let owner = app.register("sync@example.com").await;
    let other = app.register("other-sync@example.com").await;
    let connection = demo_connection(&app, &owner).await;
    let other_connection = demo_connection(&app, &other).await;
    let app = &app;
    let start = |account: &Account, connection: &str| {
        let body = json!({"connection_id": connection});
        let auth = account.bearer();
        async move {
            app.send(Method::POST, "/api/v1/sync", Some(&auth), Some(&body))
                .await
        }
    };
    // The first starts a job; the next four find it (no broker runs here).
    for n in 0..5 {
        let response = start(&owner, &connection).await;
        assert_eq!(response.status(), if n == 0 { 202 } else { 200 });
    }
    assert_limited(start(&owner, &connection).await, "sync").await;
    // Other routes of the tenant, and other tenants, are not affected.
    assert_eq!(app.get_as(ME, &owner.bearer()).await.status(), 200);
    assert_eq!(start(&other, &other_connection).await.status(), 202);
}

#[tokio::test]
async fn the_global_limit_caps_every_tenant_together() {
    let app = spawn_app_with(|s| {
        s.rate_limit.global.limit = 4;
    })
    .await;
    let first = app.register("global-1@example.com").await;
    let second = app.register("global-2@example.com").await;
    for n in 0..4 {
        let owner = if n % 2 == 0 { &first } else { &second };
        let response = app.get_as(ME, &owner.bearer()).await;
        assert_eq!(response.status(), 200);
        // The global policy describes the service, not the caller: not shown until it refuses.
        assert!(!header(&response, "ratelimit-policy").contains("global"));
    }
    assert_limited(app.get_as(ME, &first.bearer()).await, "global").await;
}

/// Anonymous traffic has a global budget of its own: ten addresses each at
/// their own limit, together at that budget, leave tenants unaffected.
#[tokio::test]
async fn anonymous_addresses_at_their_limits_leave_tenants_unaffected() {
    let app = spawn_app_with(|s| {
        s.rate_limit.trusted_proxies = vec!["127.0.0.1".into()];
        s.rate_limit.anonymous.minute = 5;
        s.rate_limit.global.limit = 50;
        s.rate_limit.anonymous_global.limit = 50;
    })
    .await;
    let owner = app.register("unaffected@example.com").await;
    // Registering was anonymous: 1 of the 50.
    let mut refused_by_ip = 0;
    for n in 0..10 {
        for _ in 0..6 {
            let response = app
                .client
                .get(app.url("/api/v1/products"))
                .header("x-forwarded-for", format!("198.51.100.{n}"))
                .send()
                .await
                .unwrap();
            if response.status() == 429 {
                refused_by_ip += 1;
            } else {
                assert_eq!(response.status(), 401);
            }
        }
    }
    assert!(refused_by_ip >= 10, "each address went past its own limit");
    // The anonymous budget is spent: an eleventh address is refused by it…
    let response = app
        .client
        .get(app.url("/api/v1/products"))
        .header("x-forwarded-for", "203.0.113.99")
        .send()
        .await
        .unwrap();
    assert_limited(response, "global-anonymous").await;
    // …while the tenant is served as if nothing happened.
    for _ in 0..5 {
        assert_eq!(app.get_as(ME, &owner.bearer()).await.status(), 200);
    }
}

#[tokio::test]
async fn two_instances_enforce_one_shared_limit() {
    let app = spawn_app_with(|s| {
        s.rate_limit.user_share = 1.0;
        s.rate_limit.tiers.free.minute = 4;
    })
    .await;
    let replica = app.spawn_replica().await;
    let owner = app.register("replicas@example.com").await;
    for n in 0..4 {
        let base = if n % 2 == 0 { &app.address } else { &replica };
        let response = app
            .client
            .get(format!("{base}{ME}"))
            .header("authorization", owner.bearer())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "x-ratelimit-remaining"),
            (3 - n).to_string()
        );
    }
    for base in [&app.address, &replica] {
        let response = app
            .client
            .get(format!("{base}{ME}"))
            .header("authorization", owner.bearer())
            .send()
            .await
            .unwrap();
        assert_limited(response, "tenant-minute").await;
    }
}

#[tokio::test]
async fn a_request_costs_one_redis_round_trip_that_also_checks_revocation() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let app = spawn_app_with(move |s| {
        s.redis.url = url.into();
        // Requests only: the periodic replay of recorded revocations (its own
        // commands, tested in `replicas.rs`) stays out of the count.
        s.auth.invalidation_replay_ms = 60_000;
    })
    .await;
    let owner = app.register("roundtrip@example.com").await;
    assert_eq!(app.get_as(ME, &owner.bearer()).await.status(), 200);
    // The first check found this fresh Redis without the tenant's
    // revocation state and refilled it from PostgreSQL in the background;
    // wait for that to finish.
    let marker = format!(
        "{}auth:{{{}}}:synced",
        app.state.settings.redis.key_prefix, owner.tenant_id
    );
    let mut conn = redis.connection().await.unwrap();
    for _ in 0..100 {
        let exists: bool = redis::cmd("EXISTS")
            .arg(&marker)
            .query_async(&mut conn)
            .await
            .unwrap();
        if exists {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let monitor = RedisMonitor::start(redis.port).await;
    for _ in 0..5 {
        assert_eq!(app.get_as(ME, &owner.bearer()).await.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (global, own) = monitor.take_split_at_global();
    assert_eq!(own, vec!["evalsha"; 5]);
    // Leases of the global budget double while they run out: 1, 2, 4, ...
    assert!(global.len() <= 3, "{global:?}");

    // Sign out: the same single call now finds the token revoked.
    let response = app
        .send(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&owner.bearer()),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    tokio::time::sleep(Duration::from_millis(200)).await;
    monitor.take_commands();
    let response = app.get_as(ME, &owner.bearer()).await;
    assert_eq!(response.status(), 401);
    // Counted as an anonymous call from its address, not against the tenant.
    assert!(
        header(&response, "ratelimit-policy").contains("\"ip-minute\""),
        "{:?}",
        response.headers()
    );
    assert!(response.headers().get("x-ratelimit-tenant").is_none());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One call finds the token revoked; one counts it against its address.
    assert_eq!(monitor.take_split_at_global().1, vec!["evalsha"; 2]);
}

#[tokio::test]
async fn the_script_is_reloaded_after_redis_forgets_it() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let app = spawn_app_with(move |s| s.redis.url = url.into()).await;
    let owner = app.register("noscript@example.com").await;
    assert_eq!(app.get_as(ME, &owner.bearer()).await.status(), 200);

    let mut conn = redis.connection().await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let response = app.get_as(ME, &owner.bearer()).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("ratelimit"));
    // Answered by Redis again, not by the fallback.
    let limits: Value = app
        .get_as(LIMITS, &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(limits["backend"], "redis");
    assert!(
        app.metrics_text()
            .await
            .contains("stock_tracker_rate_limit_fallback_switches_total{to=\"fallback\"} 0")
    );
}

#[tokio::test]
async fn losing_redis_falls_back_to_bounded_local_limits_and_recovers() {
    let proxy = TcpProxy::start("127.0.0.1:6379".into()).await;
    let port = proxy.port;
    let app = spawn_app_with(move |s| {
        s.redis.url = format!("redis://127.0.0.1:{port}").into();
        s.rate_limit.user_share = 1.0;
        s.rate_limit.tiers.free.minute = 5;
        s.circuit_breakers.redis.open_timeout_ms = 200;
    })
    .await;
    let owner = app.register("outage@example.com").await;
    assert_eq!(app.get_as(ME, &owner.bearer()).await.status(), 200);

    proxy.cut();
    // The fallback counts from zero: five more, then refused — never a 5xx.
    for _ in 0..5 {
        let response = app.get_as(ME, &owner.bearer()).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("x-ratelimit-remaining"));
    }
    assert_limited(app.get_as(ME, &owner.bearer()).await, "tenant-minute").await;
    let limits: Value = app
        .get_as(LIMITS, &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(limits["backend"], "fallback");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("stock_tracker_rate_limit_fallback_switches_total{to=\"fallback\"} 1")
    );
    assert!(metrics.contains("stock_tracker_rate_limit_fallback_active 1"));
    assert!(metrics.contains("outcome=\"fallback\""));

    proxy.restore();
    let mut backend = Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let limits: Value = app
            .get_as(LIMITS, &owner.bearer())
            .await
            .json()
            .await
            .unwrap();
        backend = limits["backend"].clone();
        if backend == "redis" {
            break;
        }
    }
    assert_eq!(backend, "redis");
    // Redis still holds the hit made before the outage.
    let response = app.get_as(ME, &owner.bearer()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-ratelimit-remaining"), "3");
    let metrics = app.metrics_text().await;
    assert!(metrics.contains("stock_tracker_rate_limit_fallback_switches_total{to=\"redis\"} 1"));
    assert!(metrics.contains("stock_tracker_rate_limit_fallback_active 0"));
}

#[tokio::test]
async fn a_redis_that_stops_answering_costs_one_timeout_then_the_fallback() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let app = spawn_app_with(move |s| {
        s.redis.url = url.into();
        s.circuit_breakers.redis.open_timeout_ms = 5_000;
    })
    .await;
    let owner = app.register("slow@example.com").await;
    assert_eq!(app.get_as(ME, &owner.bearer()).await.status(), 200);

    let mut blocker = redis.connection().await.unwrap();
    let sleeping = tokio::spawn(async move {
        let _: redis::RedisResult<()> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(2)
            .query_async(&mut blocker)
            .await;
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The first request waits out the command timeout (250 ms); the next ones
    // do not wait at all until the retry interval has passed.
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let response = app.get_as(ME, &owner.bearer()).await;
        assert_eq!(response.status(), 200);
        assert!(
            started.elapsed() < Duration::from_millis(1_000),
            "{:?}",
            started.elapsed()
        );
    }
    let limits: Value = app
        .get_as(LIMITS, &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(limits["backend"], "fallback");
    sleeping.await.unwrap();
}

async fn seen_as(app: &TestApp, forwarded_for: &[&str]) -> String {
    let mut request = app.client.get(app.url(LIMITS));
    for value in forwarded_for {
        request = request.header("x-forwarded-for", *value);
    }
    let body: Value = request.send().await.unwrap().json().await.unwrap();
    body["client_ip"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = spawn_app_with(|s| s.rate_limit.anonymous.minute = 2).await;
    assert_eq!(seen_as(&app, &["203.0.113.5"]).await, "127.0.0.1");
    assert_eq!(seen_as(&app, &["not an address"]).await, "127.0.0.1");
    // Rotating spoofed addresses does not escape the per-IP limit.
    for n in 0..2 {
        let response = app
            .client
            .get(app.url("/api/v1/products"))
            .header("x-forwarded-for", format!("203.0.113.{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let response = app
        .client
        .get(app.url("/api/v1/products"))
        .header("x-forwarded-for", "203.0.113.77")
        .send()
        .await
        .unwrap();
    assert_limited(response, "ip-minute").await;
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_names_the_client() {
    let app = spawn_app_with(|s| {
        s.rate_limit.trusted_proxies = vec!["127.0.0.1/32".into(), "10.0.0.0/8".into()];
        s.rate_limit.anonymous.minute = 2;
    })
    .await;
    assert_eq!(seen_as(&app, &["203.0.113.5"]).await, "203.0.113.5");
    // The right-most address that is not a trusted proxy; the left is the client's own claim.
    assert_eq!(
        seen_as(&app, &["6.6.6.6, 203.0.113.6, 10.1.2.3"]).await,
        "203.0.113.6"
    );
    assert_eq!(
        seen_as(&app, &["6.6.6.6", "203.0.113.7"]).await,
        "203.0.113.7"
    );
    // Malformed: the last verified hop.
    assert_eq!(seen_as(&app, &["203.0.113.8, garbage"]).await, "127.0.0.1");
    assert_eq!(seen_as(&app, &["garbage, 10.9.9.9"]).await, "10.9.9.9");
    assert_eq!(seen_as(&app, &[]).await, "127.0.0.1");
    // IPv6 clients count per /64.
    assert_eq!(
        seen_as(&app, &["2001:db8:1:2::abcd"]).await,
        "2001:db8:1:2::abcd"
    );

    // Each client behind the proxy has its own limit.
    for client in ["192.0.2.1", "192.0.2.2"] {
        for _ in 0..2 {
            let response = app
                .client
                .get(app.url("/api/v1/products"))
                .header("x-forwarded-for", client)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401);
        }
    }
    let response = app
        .client
        .get(app.url("/api/v1/products"))
        .header("x-forwarded-for", "192.0.2.1")
        .send()
        .await
        .unwrap();
    assert_limited(response, "ip-minute").await;
}

#[tokio::test]
async fn preflights_probes_metrics_and_docs_are_never_limited() {
    let app = spawn_app_with(|s| {
        s.rate_limit.anonymous.second = 1;
        s.rate_limit.anonymous.minute = 1;
    })
    .await;
    for _ in 0..5 {
        let response = app
            .client
            .request(Method::OPTIONS, app.url("/api/v1/products"))
            .header("origin", "http://localhost:3000")
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        assert!(response.headers().get("ratelimit").is_none());
        for path in [
            "/api/v1/health/live",
            "/api/v1/health/ready",
            "/metrics",
            "/openapi.json",
        ] {
            let response = app.get(path).await;
            assert!(response.status().is_success(), "{path}");
            assert!(response.headers().get("ratelimit").is_none(), "{path}");
        }
    }
    // None of that was counted: the first limited request still has its one.
    let response = app.get("/api/v1/products").await;
    assert_eq!(response.status(), 401);
    assert_eq!(header(&response, "x-ratelimit-remaining"), "0");
}

#[tokio::test]
async fn asking_for_your_limits_does_not_use_them() {
    let app = spawn_app_with(|s| {
        s.rate_limit.tiers.free.minute = 10;
        s.rate_limit.user_share = 1.0;
        default_rule(s, "login");
    })
    .await;
    let owner = app.register("peek@example.com").await;
    let remaining = |body: &Value, name: &str| {
        body["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {body}"))["remaining"]
            .as_u64()
            .unwrap()
    };
    let first: Value = app
        .get_as(LIMITS, &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["tier"], "free");
    assert_eq!(remaining(&first, "tenant-minute"), 10);
    for _ in 0..3 {
        let again: Value = app
            .get_as(LIMITS, &owner.bearer())
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(remaining(&again, "tenant-minute"), 10);
    }
    assert_eq!(app.get_as(ME, &owner.bearer()).await.status(), 200);
    let after: Value = app
        .get_as(LIMITS, &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(remaining(&after, "tenant-minute"), 9);
    let policy = after["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tenant-minute")
        .unwrap()
        .clone();
    assert_eq!(policy["limit"], 10);
    assert_eq!(policy["window_secs"], 60);
    assert_eq!(policy["scope"], "tenant");

    // Anonymous callers see their per-IP policies and the login rule (one
    // sign-in was spent by registering).
    let anonymous: Value = app.get(LIMITS).await.json().await.unwrap();
    assert_eq!(anonymous["tier"], Value::Null);
    assert_eq!(remaining(&anonymous, "login"), 4);
    assert!(remaining(&anonymous, "ip-minute") > 0);
}

#[tokio::test]
async fn decisions_are_counted_by_scope_tier_and_outcome() {
    let app = spawn_app_with(|s| s.rate_limit.anonymous.minute = 1).await;
    assert_eq!(app.get("/api/v1/products").await.status(), 401);
    // A refusal is a normal response to the outer layers: CORS applies to it.
    let response = app
        .client
        .get(app.url("/api/v1/products"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        "http://localhost:3000"
    );
    let exposed = header(&response, "access-control-expose-headers");
    assert!(exposed.contains("retry-after") && exposed.contains("ratelimit"));
    let metrics = app.metrics_text().await;
    for line in [
        r#"stock_tracker_rate_limit_decisions_total{outcome="allowed",scope="ip",tier="anonymous"} 1"#,
        r#"stock_tracker_rate_limit_decisions_total{outcome="limited",scope="ip",tier="anonymous"} 1"#,
        r#"stock_tracker_http_requests_total{endpoint="/api/v1/products",method="GET",status="429"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line}");
    }
    assert!(metrics.contains("stock_tracker_rate_limit_script_duration_seconds_count"));
}

#[tokio::test]
async fn the_openapi_document_describes_429_where_limits_apply() {
    let app = spawn_app_with(|_| {}).await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let products = &doc["paths"]["/api/v1/products"]["get"]["responses"];
    assert_eq!(
        products["429"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    assert!(products["429"]["headers"]["Retry-After"].is_object());
    assert!(products["200"]["headers"]["RateLimit-Policy"].is_object());
    let live = &doc["paths"]["/api/v1/health/live"]["get"]["responses"];
    assert!(live.get("429").is_none());
    assert!(live["200"]["headers"].get("RateLimit").is_none());
    assert!(doc["paths"]["/api/v1/rate-limits/me"]["get"].is_object());
}

/// With the limiter switched off (the benchmark's layer costs), nothing is
/// counted, yet a bearer token's revocation state is still read: a signed-out
/// token is refused.
#[tokio::test]
#[cfg(feature = "bench-layers")]
async fn without_the_rate_limit_layer_revoked_tokens_are_still_refused() {
    let app = spawn_app_with(|s| {
        s.server.disabled_layers = vec![stock_tracker::config::Layer::RateLimit];
    })
    .await;
    let owner = app.register("unlimited@example.com").await;
    let response = app.get_as("/api/v1/users/me", &owner.bearer()).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("ratelimit-policy").is_none());

    let response = app
        .send(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&owner.bearer()),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    let response = app.get_as("/api/v1/users/me", &owner.bearer()).await;
    assert_eq!(response.status(), 401);
}
