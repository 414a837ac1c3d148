use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/does-not-exist").await;
    assert_eq!(response.status(), 404);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["detail"], "Not found");
    assert_eq!(body["request_id"], request_id);
}

#[tokio::test]
async fn wrong_method_is_a_json_405_with_allow() {
    let app = spawn_app().await;
    let response = app
        .client
        .delete(app.url("/api/v1/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "method_not_allowed");
}

#[tokio::test]
async fn malformed_json_is_a_422_in_fastapi_shape() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/__probe/echo"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "validation_error");
    assert_eq!(body["detail"][0]["type"], "json_invalid");
    assert_eq!(body["detail"][0]["loc"], json!(["body"]));
    assert!(body["request_id"].is_string());
}

#[tokio::test]
async fn missing_unknown_and_mistyped_fields_name_their_location() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"count": 1, "tags": []}),
            json!(["body", "name"]),
            "missing",
        ),
        (
            json!({"name": "a", "count": 1, "tags": [], "admin": true}),
            json!(["body", "admin"]),
            "extra_forbidden",
        ),
        (
            json!({"name": "a", "count": 1, "tags": ["x", 7]}),
            json!(["body", "tags", 1]),
            "string_type",
        ),
    ];
    for (input, loc, kind) in cases {
        let response = app
            .client
            .post(app.url("/__probe/echo"))
            .json(&input)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{input}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["detail"][0]["loc"], loc, "{body}");
        assert_eq!(body["detail"][0]["type"], kind, "{body}");
    }
}

#[tokio::test]
async fn every_failing_rule_is_listed() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/__probe/echo"))
        .json(&json!({"name": "", "count": 99, "tags": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    let locs: Vec<&Value> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["loc"])
        .collect();
    assert!(locs.contains(&&json!(["body", "name"])), "{body}");
    assert!(locs.contains(&&json!(["body", "count"])), "{body}");
}

#[tokio::test]
async fn a_valid_body_is_accepted() {
    let app = spawn_app().await;
    let input = json!({"name": "widget", "count": 3, "tags": ["a"]});
    let response = app
        .client
        .post(app.url("/__probe/echo"))
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), input);
}

#[tokio::test]
async fn wrong_content_type_is_a_json_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/__probe/echo"))
        .header("content-type", "text/plain")
        .body(r#"{"name": "a", "count": 1, "tags": []}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "unsupported_media_type");
}

#[tokio::test]
async fn an_oversized_body_is_a_json_413() {
    let app = spawn_app().await;
    let limit = app.state.settings.server.max_body_bytes;
    let big = format!(
        r#"{{"name": "{}", "count": 1, "tags": []}}"#,
        "x".repeat(limit)
    );
    let response = app
        .client
        .post(app.url("/__probe/echo"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large");
}

#[tokio::test]
async fn bad_path_and_query_parameters_are_422() {
    let app = spawn_app().await;
    let id = uuid::Uuid::new_v4();

    let response = app.get("/__probe/items/not-a-uuid?limit=5").await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"][0], "path", "{body}");

    let response = app.get(&format!("/__probe/items/{id}?limit=many")).await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"][0], "query", "{body}");

    let response = app.get(&format!("/__probe/items/{id}")).await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["query", "limit"]),
        "{body}"
    );
    assert_eq!(body["detail"][0]["type"], "missing", "{body}");

    assert_eq!(
        app.get(&format!("/__probe/items/{id}?limit=5"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_panic_becomes_a_json_500_without_internals() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/__probe/panic"))
        .header("x-request-id", "panic-probe-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(response.headers()["x-request-id"], "panic-probe-1");
    let text = response.text().await.unwrap();
    for secret in ["hunter2", "SELECT", "panicked", "src/"] {
        assert!(!text.contains(secret), "500 body leaks `{secret}`: {text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["code"], "internal_error");
    assert_eq!(body["detail"], "Internal server error");
    assert_eq!(body["request_id"], "panic-probe-1");

    // The server keeps serving after the panic.
    assert_eq!(app.get("/api/v1/health/live").await.status(), 200);
}

#[tokio::test]
async fn nul_characters_are_refused_with_their_location() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/__probe/echo"))
        .json(&json!({"name": "a", "count": 1, "tags": ["ok", "bad\u{0}"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"], json!(["body", "tags", 1]));
    assert_eq!(body["detail"][0]["type"], "string_pattern_mismatch");
    assert_eq!(body["detail"][0]["input"], "bad\u{0}");
}

#[tokio::test]
async fn a_body_must_be_an_object_not_an_array_of_fields() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/__probe/echo"))
        .json(&json!(["widget", 3, []]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"][0]["type"], "model_type", "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body"]));
    assert_eq!(body["detail"][0]["input"], json!(["widget", 3, []]));
}
