use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn basic_and_liveness_answer_200() {
    let app = spawn_app().await;
    for path in ["/api/v1/health", "/api/v1/health/live"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "ok");
    }
}

#[tokio::test]
async fn readiness_reports_each_component_with_its_response_time() {
    // The real broker (tests point at an unreachable one by default).
    let app = spawn_app_with(|s| {
        s.broker.url = "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned().into()
    })
    .await;
    let response = app.get("/api/v1/health/ready").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    for component in ["database", "redis", "broker"] {
        assert_eq!(body["components"][component]["status"], "up", "{body}");
        assert_eq!(
            body["components"][component]["circuit_breaker"], "closed",
            "{body}"
        );
        assert!(
            body["components"][component]["response_time_ms"].is_number(),
            "{body}"
        );
    }
}

#[tokio::test]
async fn readiness_is_503_when_the_database_is_unreachable() {
    let app = spawn_app().await;
    app.database.make_unreachable().await;
    let response = app.get("/api/v1/health/ready").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["components"]["database"]["status"], "down");
    assert_eq!(body["components"]["redis"]["status"], "up");
    // No connection details leak into the probe's body.
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
    // Liveness does not depend on the database.
    assert_eq!(app.get("/api/v1/health/live").await.status(), 200);
}

#[tokio::test]
async fn readiness_is_degraded_but_200_when_redis_is_unreachable() {
    // Port 1 on loopback: connection refused.
    let app = spawn_app_with(|s| s.redis.url = "redis://127.0.0.1:1".to_owned().into()).await;
    let response = app.get("/api/v1/health/ready").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["components"]["redis"]["status"], "down");
    assert_eq!(body["components"]["database"]["status"], "up");
}

#[tokio::test]
async fn readiness_never_hangs_on_a_dependency_that_stops_answering() {
    // A "Redis" that accepts connections and never replies.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let app = spawn_app_with(|s| {
        s.redis.url = format!("redis://127.0.0.1:{silent_port}").into();
        s.health.check_timeout_ms = 300;
    })
    .await;
    let started = Instant::now();
    let response = app.get("/api/v1/health/ready").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["components"]["redis"]["status"], "down", "{body}");
}
