use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_sane_request_id_is_echoed() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/v1/health"))
        .header("x-request-id", "client-trace.42_A-b")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-trace.42_A-b");
}

#[tokio::test]
async fn an_insane_request_id_is_replaced_by_a_uuid_v7() {
    let app = spawn_app().await;
    for insane in [
        "has spaces in it",
        "<script>alert(1)</script>",
        &"a".repeat(129),
    ] {
        let response = app
            .client
            .get(app.url("/api/v1/does-not-exist"))
            .header("x-request-id", insane)
            .send()
            .await
            .unwrap();
        let echoed = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_ne!(echoed, insane);
        let parsed = uuid::Uuid::parse_str(&echoed).expect("a generated UUID");
        assert_eq!(parsed.get_version_num(), 7);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["request_id"], echoed);
    }
}

#[tokio::test]
async fn every_response_gets_a_fresh_id_when_none_is_sent() {
    let app = spawn_app().await;
    let first = app.get("/api/v1/health").await.headers()["x-request-id"].clone();
    let second = app.get("/api/v1/health").await.headers()["x-request-id"].clone();
    assert_ne!(first, second);
}
