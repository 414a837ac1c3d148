//! Load shedding, circuit breakers and degradation, driven for real: slow and
//! blocking handlers, a held connection pool, and PostgreSQL and Redis cut
//! off mid-test by a TCP proxy.

use std::time::{Duration, Instant};

use reqwest::{Method, Response};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{TestApp, limits_out_of_reach, sample, spawn_app_with};
use crate::processes::{RedisServer, TcpProxy};

const ORIGIN: &str = "http://localhost:3000";

async fn get_with_origin(app: &TestApp, path: &str) -> Response {
    app.client
        .get(app.url(path))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap()
}

async fn assert_overloaded(response: Response) {
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.headers()["access-control-allow-origin"], ORIGIN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "overloaded");
}

#[tokio::test]
async fn too_many_requests_in_flight_shed_reads_first_then_recover() {
    let app = spawn_app_with(|s| {
        s.load_shedding.max_in_flight = 4;
        s.load_shedding.write_reserve = 0.5;
    })
    .await;
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let request = app.client.get(app.url("/__probe/slow")).send();
            tokio::spawn(request)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Two reads in flight use the read capacity (half of four): reads are shed...
    assert_overloaded(get_with_origin(&app, "/api/v1/rate-limits/me").await).await;
    // ...writes still have the reserved half...
    let response = app
        .post_json(
            "/__probe/echo",
            None,
            &json!({"name": "x", "count": 1, "tags": []}),
        )
        .await;
    assert_eq!(response.status(), 200);
    // ...and probes, metrics and preflights are never shed.
    assert_eq!(app.get("/api/v1/health/ready").await.status(), 200);
    assert_eq!(app.get("/metrics").await.status(), 200);
    let preflight = app
        .client
        .request(Method::OPTIONS, app.url("/api/v1/products"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());

    for request in slow {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(app.get("/api/v1/rate-limits/me").await.status(), 200);
    let metrics = app.metrics_text().await;
    for line in [
        r#"stock_tracker_load_shed_total{reason="in_flight"} 1"#,
        r#"stock_tracker_http_requests_total{endpoint="/api/v1/rate-limits/me",method="GET",status="503"} 1"#,
        "stock_tracker_http_requests_in_flight 0",
    ] {
        assert!(metrics.contains(line), "missing {line}");
    }
}

#[tokio::test]
async fn a_blocked_worker_sheds_until_its_lag_has_passed() {
    let app = spawn_app_with(|s| {
        s.load_shedding.max_runtime_lag_ms = 200;
        s.load_shedding.lag_probe_interval_ms = 20;
        s.load_shedding.lag_window_ms = 500;
    })
    .await;
    assert_eq!(app.get("/api/v1/rate-limits/me").await.status(), 200);
    // The only worker is blocked for 600 ms: its lag probe wakes that late.
    assert_eq!(app.get("/__probe/block").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_overloaded(get_with_origin(&app, "/api/v1/rate-limits/me").await).await;
    assert_eq!(app.get("/api/v1/health/live").await.status(), 200);
    let metrics = app.metrics_text().await;
    assert!(metrics.contains(r#"stock_tracker_load_shed_total{reason="runtime_lag"} 1"#));
    let lag_line = metrics
        .lines()
        .find(|l| l.starts_with("stock_tracker_runtime_lag_seconds{worker="))
        .unwrap();
    let lag: f64 = lag_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(lag > 0.2, "{lag_line}");
    assert!(metrics.contains("stock_tracker_runtime_alive_tasks "));

    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(app.get("/api/v1/rate-limits/me").await.status(), 200);
}

#[tokio::test]
async fn callers_queueing_for_the_database_shed_new_requests() {
    let app = spawn_app_with(|s| {
        s.database.max_connections = 1;
        s.database.min_connections = 0;
        s.load_shedding.max_db_pool_waiters = 0;
        // Only the requests below compete for the one connection.
        s.auth.invalidation_replay_ms = 60_000;
    })
    .await;
    let owner = app.register("queue@example.com").await;
    let holders: Vec<_> = (0..2)
        .map(|_| tokio::spawn(app.client.get(app.url("/__probe/hold-db")).send()))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // One holds the only connection, the other waits for it.
    assert_overloaded(
        app.client
            .get(app.url("/api/v1/users/me"))
            .header("authorization", owner.bearer())
            .header("origin", ORIGIN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    for holder in holders {
        assert_eq!(holder.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(
        app.get_as("/api/v1/users/me", &owner.bearer())
            .await
            .status(),
        200
    );
    assert!(
        app.metrics_text()
            .await
            .contains(r#"stock_tracker_load_shed_total{reason="db_pool_waiters"} 1"#)
    );
}

async fn readiness(app: &TestApp) -> (u16, Value) {
    let response = app.get("/api/v1/health/ready").await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn losing_postgres_fails_fast_behind_the_breaker_and_recovers_by_itself() {
    let proxy = TcpProxy::start("127.0.0.1:5432".into()).await;
    let port = proxy.port;
    let app = spawn_app_with(move |s| {
        let mut url = url::Url::parse(s.database.url.expose_secret()).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(port)).unwrap();
        s.database.url = url.to_string().into();
        s.database.acquire_timeout_ms = 500;
        s.health.check_timeout_ms = 500;
        s.circuit_breakers.database.failure_threshold = 2;
        s.circuit_breakers.database.open_timeout_ms = 1_500;
    })
    .await;
    let owner = app.register("outage@example.com").await;
    assert_eq!(
        app.get_as("/api/v1/users/me", &owner.bearer())
            .await
            .status(),
        200
    );
    // Revocation state is in Redis from here on: tokens verify without PostgreSQL.
    app.wait_for_revocation_sync(owner.tenant_id).await;

    proxy.cut();
    let started = Instant::now();
    let (status, body) = readiness(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["components"]["database"]["status"], "down");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(app.get("/api/v1/health/live").await.status(), 200);

    // The first failures wait for the pool; then the breaker answers at once.
    for _ in 0..2 {
        let response = app.get_as("/api/v1/users/me", &owner.bearer()).await;
        assert_eq!(response.status(), 503);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "database_unavailable");
    }
    let started = Instant::now();
    let response = app.get_as("/api/v1/users/me", &owner.bearer()).await;
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    let (_, body) = readiness(&app).await;
    assert_eq!(body["components"]["database"]["circuit_breaker"], "open");
    assert!(
        app.metrics_text()
            .await
            .contains(r#"stock_tracker_circuit_breaker_state{dependency="database"} 2"#)
    );

    proxy.restore();
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    // The recovery probe found PostgreSQL answering and closed the breaker.
    assert_eq!(
        app.get_as("/api/v1/users/me", &owner.bearer())
            .await
            .status(),
        200
    );
    let (status, body) = readiness(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["components"]["database"]["circuit_breaker"], "closed");
    let metrics = app.metrics_text().await;
    for to in ["open", "closed"] {
        let line = format!(
            r#"stock_tracker_circuit_breaker_transitions_total{{dependency="database",to="{to}"}} 1"#
        );
        assert!(metrics.contains(&line), "missing {line}");
    }
}

/// What an operator did: PostgreSQL cut off under load (through a proxy),
/// then back — with Redis restarted empty at the same time, or not. The
/// breakers keep their default open timeouts (60 s, 30 s): the service must
/// serve again within 2 s of PostgreSQL's return anyway, and once readiness
/// answers 200 a read must not be refused.
async fn outage_under_load(restart_redis_empty: bool) {
    let proxy = TcpProxy::start("127.0.0.1:5432".into()).await;
    let port = proxy.port;
    let mut redis = RedisServer::start().await;
    let redis_url = redis.url();
    let app = spawn_app_with(move |s| {
        let mut url = url::Url::parse(s.database.url.expose_secret()).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(port)).unwrap();
        s.database.url = url.to_string().into();
        s.redis.url = redis_url.into();
        s.database.acquire_timeout_ms = 500;
        s.health.check_timeout_ms = 500;
        limits_out_of_reach(s);
    })
    .await;
    let owner = app.register("outage-load@example.com").await;
    let product = app
        .create_product(&owner, "OUT-1", "Outage", "1.00", 5)
        .await;
    // Never read before the outage, so never cached: every read needs PostgreSQL.
    let read = format!("/api/v1/products/{}", product["id"].as_str().unwrap());
    app.wait_for_revocation_sync(owner.tenant_id).await;

    proxy.cut();
    if restart_redis_empty {
        redis.stop();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = [
        "/api/v1/users/me",
        read.as_str(),
        "/api/v1/users/me",
        read.as_str(),
    ]
    .into_iter()
    .map(|path| {
        let (client, url, bearer, stop) = (
            app.client.clone(),
            app.url(path),
            owner.bearer(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = client
                    .get(&url)
                    .header("authorization", &bearer)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    })
    .collect();
    let open = |metrics: &str, dependency: &str| {
        let series = format!(r#"stock_tracker_circuit_breaker_state{{dependency="{dependency}"}}"#);
        sample(metrics, &series) == Some(2.0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = app.metrics_text().await;
        if open(&metrics, "database") && (!restart_redis_empty || open(&metrics, "redis")) {
            break;
        }
        assert!(Instant::now() < deadline, "the breakers never opened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.get_as(&read, &owner.bearer()).await.status(), 503);

    if restart_redis_empty {
        redis.restart().await;
    }
    proxy.restore();
    let restored = Instant::now();
    let (mut ready_after, mut read_after) = (None, None);
    while (ready_after.is_none() || read_after.is_none())
        && restored.elapsed() < Duration::from_secs(10)
    {
        if read_after.is_none() && app.get_as(&read, &owner.bearer()).await.status() == 200 {
            read_after = Some(restored.elapsed());
        }
        if ready_after.is_none() && readiness(&app).await.0 == 200 {
            ready_after = Some(restored.elapsed());
            // Readiness admits traffic again: the breaker must not refuse it.
            let response = app.get_as(&read, &owner.bearer()).await;
            let status = response.status();
            assert_eq!(
                status,
                200,
                "ready, yet: {}",
                response.text().await.unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let limit = Duration::from_secs(2);
    assert!(
        read_after.is_some_and(|after| after <= limit),
        "first 200 on a product read: {read_after:?} after PostgreSQL returned"
    );
    assert!(
        ready_after.is_some_and(|after| after <= limit),
        "first 200 on readiness: {ready_after:?} after PostgreSQL returned"
    );
    let (_, body) = readiness(&app).await;
    assert_eq!(body["components"]["database"]["circuit_breaker"], "closed");
}

#[tokio::test]
async fn reads_answer_within_two_seconds_of_postgres_returning_from_an_outage() {
    outage_under_load(false).await;
}

#[tokio::test]
async fn reads_answer_within_two_seconds_of_postgres_returning_with_redis_restarted_empty() {
    outage_under_load(true).await;
}

#[tokio::test]
async fn losing_redis_opens_its_breaker_and_the_service_keeps_serving() {
    let proxy = TcpProxy::start("127.0.0.1:6379".into()).await;
    let port = proxy.port;
    let app = spawn_app_with(move |s| {
        s.redis.url = format!("redis://127.0.0.1:{port}").into();
        s.circuit_breakers.redis.failure_threshold = 3;
        s.circuit_breakers.redis.open_timeout_ms = 500;
    })
    .await;
    let owner = app.register("redis-outage@example.com").await;
    let products = app.get_as("/api/v1/products", &owner.bearer()).await;
    assert_eq!(products.headers()["x-cache"], "MISS");

    proxy.cut();
    for _ in 0..5 {
        let response = app.get_as("/api/v1/products", &owner.bearer()).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-cache"], "BYPASS");
    }
    // Open: no request waits for Redis any more.
    let started = Instant::now();
    let response = app.get_as("/api/v1/products", &owner.bearer()).await;
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    let (status, body) = readiness(&app).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["components"]["redis"]["circuit_breaker"], "open");

    proxy.restore();
    let mut cache = String::new();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let response = app.get_as("/api/v1/products", &owner.bearer()).await;
        cache = response.headers()["x-cache"].to_str().unwrap().to_owned();
        if cache != "BYPASS" {
            break;
        }
    }
    assert_ne!(cache, "BYPASS");
    let (_, body) = readiness(&app).await;
    assert_eq!(body["components"]["redis"]["circuit_breaker"], "closed");
}

#[tokio::test]
async fn malformed_or_oversized_credentials_are_401_never_500() {
    let app = spawn_app_with(|_| {}).await;
    let huge = format!("Bearer {}", "a".repeat(10_000));
    let cases: Vec<(&str, reqwest::header::HeaderValue)> = vec![
        ("authorization", "Bearer".parse().unwrap()),
        ("authorization", "Bearer    ".parse().unwrap()),
        ("authorization", "Basic dXNlcjpwYXNz".parse().unwrap()),
        ("authorization", "Bearer not.a.jwt".parse().unwrap()),
        ("authorization", huge.parse().unwrap()),
        (
            "authorization",
            reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        ),
        ("x-api-key", "stk_".parse().unwrap()),
        ("x-api-key", "not-a-key".parse().unwrap()),
        (
            "x-api-key",
            format!("stk_{}", "x".repeat(10_000)).parse().unwrap(),
        ),
        (
            "x-api-key",
            reqwest::header::HeaderValue::from_bytes(b"stk_\xff").unwrap(),
        ),
    ];
    for (name, value) in cases {
        let response = app
            .client
            .get(app.url("/api/v1/users/me"))
            .header(name, value.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{name}: {value:?}");
        assert!(response.headers().contains_key("www-authenticate"));
        let body: Value = response.json().await.unwrap();
        assert!(body["code"].is_string() && body["request_id"].is_string());
    }
}
