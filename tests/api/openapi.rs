use serde_json::Value;

use crate::helpers::spawn_app;

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

#[tokio::test]
async fn every_served_route_is_documented() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/api/v1/health",
        "/api/v1/health/live",
        "/api/v1/health/ready",
        "/metrics",
        "/metrics/catalog",
        "/openapi.json",
        "/docs",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    // The converse: every documented operation is really served (not the
    // fallback's 404/405), and answers only with documented statuses.
    for (path, item) in paths {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            if path.contains('{') {
                continue;
            }
            let response = app
                .client
                .request(method.to_uppercase().parse().unwrap(), app.url(path))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16().to_string();
            assert!(
                item[*method]["responses"].get(&status).is_some(),
                "{method} {path} answered {status}, which is not documented"
            );
        }
    }
}

#[tokio::test]
async fn every_operation_documents_its_errors_and_request_id() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            let responses = &item[*method]["responses"];
            assert!(responses.get("500").is_some(), "{method} {path} lacks 500");
            for (status, response) in responses.as_object().unwrap() {
                assert!(
                    response["headers"].get("X-Request-ID").is_some(),
                    "{method} {path} {status} lacks X-Request-ID"
                );
            }
        }
    }
    for schema in ["ErrorBody", "ValidationErrorBody", "ValidationIssue"] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema}"
        );
    }
}

#[tokio::test]
async fn the_docs_render_offline() {
    let app = spawn_app().await;
    let redirect = app.get("/docs").await;
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/docs/");

    let page = app.get("/docs/").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    // The assets are served by the binary itself, pointing at our document.
    let init = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
    let bundle = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(bundle.status(), 200);
}
