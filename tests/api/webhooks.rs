//! Webhook subscriptions: the admin API, the signing secret shown once,
//! URL checks against SSRF, and tenant isolation.

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

async fn subscribe(app: &TestApp, auth: &str, body: Value) -> reqwest::Response {
    app.post_json("/api/v1/webhooks", Some(auth), &body).await
}

#[tokio::test]
async fn admins_manage_subscriptions_and_see_the_secret_once() {
    let app = spawn_app_with(|_| {}).await;
    let owner = app.register("hooks@example.com").await;
    let response = subscribe(
        &app,
        &owner.bearer(),
        json!({"url": "https://93.184.216.34/hooks", "events": ["sync.completed", "stock.low"], "description": "ERP"}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .unwrap();
    assert!(key.len() >= 24);
    assert_eq!(created["events"], json!(["sync.completed", "stock.low"]));
    assert_eq!(created["enabled"], true);
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/webhooks/{id}");

    // Never shown again, never stored in clear.
    let fetched: Value = app
        .get_as(&path, &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert!(fetched.get("secret").is_none());
    let listed: Value = app
        .get_as("/api/v1/webhooks", &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(secret));
    let stored: String = sqlx::query_scalar("SELECT secret_encrypted FROM webhook_subscriptions")
        .fetch_one(&mut app.database.owner_connection().await)
        .await
        .unwrap();
    assert!(!stored.contains(secret.strip_prefix("whsec_").unwrap()));

    let rotated: Value = app
        .send(
            Method::POST,
            &format!("{path}/rotate-secret"),
            Some(&owner.bearer()),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(rotated["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_ne!(rotated["secret"], created["secret"]);

    let updated = app
        .send(
            Method::PATCH,
            &path,
            Some(&owner.bearer()),
            Some(&json!({"events": ["sync.failed"], "enabled": false})),
        )
        .await;
    assert_eq!(updated.status(), 200);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["events"], json!(["sync.failed"]));
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["description"], "ERP");

    // Members cannot; other tenants see nothing.
    let member = app
        .add_user(&owner, "hooks-member@example.com", "member")
        .await;
    assert_eq!(
        app.get_as("/api/v1/webhooks", &member.bearer())
            .await
            .status(),
        403
    );
    let other = app.register("hooks-other@example.com").await;
    assert_eq!(app.get_as(&path, &other.bearer()).await.status(), 404);
    let patch = app
        .send(
            Method::PATCH,
            &path,
            Some(&other.bearer()),
            Some(&json!({"enabled": true})),
        )
        .await;
    assert_eq!(patch.status(), 404);
    assert_eq!(
        app.send(Method::DELETE, &path, Some(&other.bearer()), None)
            .await
            .status(),
        404
    );

    assert_eq!(
        app.send(Method::DELETE, &path, Some(&owner.bearer()), None)
            .await
            .status(),
        204
    );
    assert_eq!(app.get_as(&path, &owner.bearer()).await.status(), 404);
}

#[tokio::test]
async fn urls_must_be_https_on_public_addresses() {
    let app = spawn_app_with(|_| {}).await;
    let owner = app.register("ssrf@example.com").await;
    for (url, problem) in [
        ("http://93.184.216.34/h", "https"),
        ("https://127.0.0.1/h", "non-public"),
        ("https://localhost:8443/h", "non-public"),
        ("https://169.254.169.254/latest/meta-data/", "non-public"),
        ("https://10.0.0.7/h", "non-public"),
        ("https://[::1]/h", "non-public"),
        ("https://user:pass@93.184.216.34/h", "credentials"),
        ("file:///etc/passwd", "http(s)"),
    ] {
        let response = subscribe(
            &app,
            &owner.bearer(),
            json!({"url": url, "events": ["stock.low"]}),
        )
        .await;
        assert_eq!(response.status(), 422, "{url}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["detail"][0]["loc"], json!(["body", "url"]), "{url}");
        assert!(
            body["detail"][0]["msg"].as_str().unwrap().contains(problem),
            "{url}: {body}"
        );
    }
    for body in [
        json!({"url": "https://93.184.216.34/h", "events": []}),
        json!({"url": "https://93.184.216.34/h", "events": ["stock.high"]}),
        json!({"url": "https://93.184.216.34/h", "events": ["stock.low", "stock.low"]}),
    ] {
        assert_eq!(subscribe(&app, &owner.bearer(), body).await.status(), 422);
    }
}

#[tokio::test]
async fn development_settings_allow_a_local_receiver() {
    let app = spawn_app_with(|s| {
        s.webhooks.allow_http = true;
        s.webhooks.allow_private_networks = true;
        s.webhooks.allowed_ports = vec![];
    })
    .await;
    let owner = app.register("local-hooks@example.com").await;
    let response = subscribe(
        &app,
        &owner.bearer(),
        json!({"url": "http://127.0.0.1:9999/hooks", "events": ["sync.failed"]}),
    )
    .await;
    assert_eq!(response.status(), 201);
}
