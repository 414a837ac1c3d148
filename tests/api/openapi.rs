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

#[tokio::test]
async fn both_credential_schemes_are_documented_and_authorize_uses_the_token_route() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["type"], "apiKey");
    assert_eq!(schemes["api_key"]["in"], "header");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    // Swagger UI's Authorize button signs in through the OAuth2 password flow.
    assert_eq!(
        schemes["oauth2_password"]["flows"]["password"]["tokenUrl"],
        "/api/v1/auth/token"
    );
    let me = &doc["paths"]["/api/v1/users/me"]["get"];
    assert_eq!(me["security"].as_array().unwrap().len(), 3);
    assert!(me["responses"].get("401").is_some());
    assert!(
        me["responses"]["401"]["headers"]
            .get("WWW-Authenticate")
            .is_some()
    );
    // Public routes declare no security.
    assert!(
        doc["paths"]["/api/v1/auth/login"]["post"]
            .get("security")
            .is_none()
    );

    // What Swagger UI posts when Authorize is used (client credentials as Basic auth).
    app.register("swagger@example.com").await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .header("authorization", "Basic Og==")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&username=swagger%40example.com&password={}&scope=",
            crate::helpers::PASSWORD
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
