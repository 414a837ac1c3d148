//! The audit log: who did what, from where, in which request; newest first
//! with keyset pagination and filters; admins only; each tenant its own.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts::post;
use crate::helpers::{Account, PASSWORD, TestApp, spawn_app};

async fn events(app: &TestApp, who: &Account, query: &str) -> Value {
    let response = app
        .get_as(&format!("/api/v1/audit-events{query}"), &who.bearer())
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_audit_log_records_who_did_what_from_where_and_stays_in_its_tenant() {
    let app = spawn_app().await;
    let owner = app.register("audited@example.com").await;
    // A failed sign-in of an existing account (recorded after the answer).
    let failed = post(
        &app,
        "/api/v1/auth/login",
        json!({"email": "audited@example.com", "password": "not-the-password"}),
    )
    .await;
    assert_eq!(failed.status(), 401);
    let member = app
        .add_user(&owner, "member@audited.example", "member")
        .await;
    let created = app
        .post_json(
            "/api/v1/api-keys",
            Some(&owner.bearer()),
            &json!({"name": "ci", "role": "member"}),
        )
        .await;
    let request_id = created.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let key: Value = created.json().await.unwrap();
    let key_path = format!("/api/v1/api-keys/{}", key["id"].as_str().unwrap());
    assert_eq!(
        app.send(Method::DELETE, &key_path, Some(&owner.bearer()), None)
            .await
            .status(),
        204
    );
    let promoted = app
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{}", member.user_id),
            Some(&owner.bearer()),
            Some(&json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(promoted.status(), 200);
    let invited = app
        .post_json(
            "/api/v1/invitations",
            Some(&owner.bearer()),
            &json!({"email": "invitee@audited.example", "role": "viewer"}),
        )
        .await;
    assert_eq!(invited.status(), 201);
    let hook: Value = app
        .post_json(
            "/api/v1/webhooks",
            Some(&owner.bearer()),
            &json!({"url": "https://93.184.216.34/hooks", "events": ["stock.low"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let rotated = app
        .post_json(
            &format!(
                "/api/v1/webhooks/{}/rotate-secret",
                hook["id"].as_str().unwrap()
            ),
            Some(&owner.bearer()),
            &json!({}),
        )
        .await;
    assert_eq!(rotated.status(), 200);
    let changed = app
        .send(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&owner.bearer()),
            Some(&json!({"current_password": PASSWORD, "new_password": "a-fresh-passphrase-9"})),
        )
        .await;
    assert_eq!(changed.status(), 200);
    let owner = crate::helpers::Account {
        tokens: app
            .login("audited@example.com", "a-fresh-passphrase-9")
            .await,
        ..owner
    };

    // The failed sign-in lands shortly after its answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = events(&app, &owner, "?limit=200").await;
        if names(&page).iter().any(|n| n == "auth.login_failed") {
            break page;
        }
        assert!(Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let listed = names(&page);
    for expected in [
        "auth.login_succeeded",
        "auth.login_failed",
        "user.created",
        "api_key.created",
        "api_key.revoked",
        "user.role_changed",
        "invitation.created",
        "webhook.secret_rotated",
        "auth.password_changed",
    ] {
        assert!(
            listed.iter().any(|n| n == expected),
            "{expected} missing from {listed:?}"
        );
    }
    // Newest first: the sign-in after the password change leads.
    assert_eq!(listed[0], "auth.login_succeeded");
    let created_event = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "api_key.created")
        .unwrap();
    assert_eq!(created_event["actor_user_id"], json!(owner.user_id));
    assert_eq!(created_event["target_type"], "api_key");
    assert_eq!(created_event["target_id"], key["id"]);
    assert_eq!(created_event["ip"], "127.0.0.1");
    assert_eq!(created_event["request_id"], json!(request_id));
    assert_eq!(created_event["details"]["name"], "ci");
    let role_change = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "user.role_changed")
        .unwrap();
    assert_eq!(
        role_change["details"],
        json!({"from": "member", "to": "viewer"})
    );
    assert_eq!(role_change["target_id"], json!(member.user_id));

    // Filters and pages.
    let only = events(&app, &owner, "?event=api_key.created").await;
    assert_eq!(names(&only), vec!["api_key.created"]);
    let about_member = events(&app, &owner, &format!("?target_id={}", member.user_id)).await;
    assert_eq!(
        names(&about_member),
        vec!["user.role_changed", "auth.login_succeeded", "user.created"]
    );
    let future = events(&app, &owner, "?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future["items"], json!([]));
    let first = events(&app, &owner, "?limit=3").await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = events(&app, &owner, &format!("?limit=3&cursor={cursor}")).await;
    assert_eq!(names(&first), listed[..3].to_vec());
    assert_eq!(names(&second), listed[3..6].to_vec());
    let bad = app
        .get_as("/api/v1/audit-events?event=made.up", &owner.bearer())
        .await;
    assert_eq!(bad.status(), 422);

    // Admins only; and another tenant sees only its own.
    // (The demotion ended the member's tokens: they sign in again.)
    let tokens = app.login("member@audited.example", PASSWORD).await;
    let viewer = app
        .get_as(
            "/api/v1/audit-events",
            &format!("Bearer {}", tokens.access_token),
        )
        .await;
    assert_eq!(viewer.status(), 403);
    let other = app.register("elsewhere@example.com").await;
    let theirs = events(&app, &other, "").await;
    assert_eq!(names(&theirs), vec!["auth.login_succeeded"]);
}
