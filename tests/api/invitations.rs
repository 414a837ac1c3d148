//! Invitations by email: the link, the role, and every way one stops working.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use stock_tracker::accounts::first_admin;
use stock_tracker::config::Registration;
use time::OffsetDateTime;

use crate::accounts::{deliver_pending, error_code, post, smtp_to, token_in};
use crate::helpers::{PASSWORD, TestApp, spawn_app_with};
use crate::processes::SmtpSink;

async fn invite(app: &TestApp, bearer: &str, email: &str, role: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/invitations",
        Some(bearer),
        &json!({"email": email, "role": role}),
    )
    .await
}

/// The token of the latest invitation emailed to `email`.
async fn emailed_token(app: &TestApp, sink: &SmtpSink, email: &str) -> String {
    deliver_pending(app, OffsetDateTime::now_utc()).await;
    let messages: Vec<Value> = sink
        .messages()
        .into_iter()
        .filter(|m| {
            m["rcpt_tos"] == json!([email])
                && m["subject"].as_str().unwrap().contains("invited you")
        })
        .collect();
    token_in(messages.last().expect("an invitation email"))
}

async fn accept(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    post(
        app,
        "/api/v1/invitations/accept",
        json!({"token": token, "password": password, "full_name": "Bob Invited"}),
    )
    .await
}

#[tokio::test]
async fn an_invitation_lets_the_invitee_join_with_its_role_even_when_registration_is_closed() {
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let app = spawn_app_with(|s| {
        smtp_to(s, port);
        s.auth.registration = Registration::Closed;
        s.auth.require_verified_email = Some(true);
        s.server.public_base_url = "https://st.example.com".parse().unwrap();
    })
    .await;
    let refused = post(
        &app,
        "/api/v1/auth/register",
        json!({"email": "someone@inviting.example", "password": PASSWORD, "tenant_name": "No"}),
    )
    .await;
    assert_eq!(
        error_code(refused).await,
        (403, "registration_closed".into())
    );
    // Registration is closed: the first account is the configured administrator.
    let owner_email = "olga@inviting.example";
    let password_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(password_file.path(), format!("{PASSWORD}\n")).unwrap();
    let mut settings = (*app.state.settings).clone();
    settings.auth.first_admin.email = owner_email.into();
    settings.auth.first_admin.password_file = Some(password_file.path().to_owned());
    first_admin::ensure(&settings).await.unwrap();
    let tokens = app.login(owner_email, PASSWORD).await;
    let bearer = format!("Bearer {}", tokens.access_token);

    let bob = "bob@inviting.example";
    let created = invite(&app, &bearer, bob, "member").await;
    assert_eq!(created.status(), 201);
    let invitation: Value = created.json().await.unwrap();
    assert_eq!(invitation["status"], "pending");
    assert_eq!(invitation["role"], "member");
    deliver_pending(&app, OffsetDateTime::now_utc()).await;
    let message = sink
        .wait_for(bob, "invited you", Duration::from_secs(5))
        .await;
    assert_eq!(
        message["subject"],
        "olga@inviting.example invited you to Platform operators on Stock Tracker"
    );
    let text = message["text"].as_str().unwrap();
    assert!(
        text.contains("https://st.example.com/accept-invitation?token=et_"),
        "{text}"
    );
    assert!(text.contains("as member"), "{text}");

    let accepted = accept(&app, &token_in(&message), "bobs-own-passphrase-1").await;
    assert_eq!(accepted.status(), 201);
    let body: Value = accepted.json().await.unwrap();
    assert_eq!(body["user"]["email"], bob);
    assert_eq!(body["user"]["role"], "member");
    assert_eq!(body["user"]["full_name"], "Bob Invited");
    assert!(
        body["user"]["email_verified_at"].is_string(),
        "the link proved the address"
    );
    // Signs in at once (the invitation verified the address), in the inviter's tenant.
    let bob_tokens = app.login(bob, "bobs-own-passphrase-1").await;
    let me: Value = app
        .get_as(
            "/api/v1/users/me",
            &format!("Bearer {}", bob_tokens.access_token),
        )
        .await
        .json()
        .await
        .unwrap();
    let owner_me: Value = app
        .get_as("/api/v1/users/me", &bearer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["tenant_id"], owner_me["tenant_id"]);

    let again = accept(&app, &token_in(&message), "bobs-own-passphrase-2").await;
    assert_eq!(error_code(again).await, (400, "token_used".into()));
    let listed: Value = app
        .get_as("/api/v1/invitations", &bearer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["status"], "accepted");
    assert_eq!(listed["items"][0]["accepted_user_id"], me["id"]);
}

#[tokio::test]
async fn invitations_fail_clearly_when_replaced_revoked_expired_taken_or_above_the_inviter() {
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let app = spawn_app_with(|s| smtp_to(s, port)).await;
    let owner = app.register("owner@invites.example").await;
    let bearer = owner.bearer();
    let admin = app.add_user(&owner, "admin@invites.example", "admin").await;

    // No one invites above their own role.
    let above = invite(&app, &admin.bearer(), "x@invites.example", "owner").await;
    assert_eq!(error_code(above).await, (403, "role_above_own".into()));
    assert_eq!(
        invite(&app, &admin.bearer(), "y@invites.example", "admin")
            .await
            .status(),
        201
    );
    // An API key invites nobody.
    let (_, key) = app.create_api_key(&owner, "admin").await;
    let by_key = app
        .send_with_key(
            Method::POST,
            "/api/v1/invitations",
            &key,
            Some(&json!({"email": "z@invites.example", "role": "viewer"})),
        )
        .await;
    assert_eq!(
        error_code(by_key).await,
        (403, "api_key_not_allowed".into())
    );
    // An address with an account cannot be invited.
    let taken = invite(&app, &bearer, "admin@invites.example", "member").await;
    assert_eq!(error_code(taken).await, (409, "email_taken".into()));

    // Inviting again replaces the pending invitation.
    let carol = "carol@invites.example";
    assert_eq!(invite(&app, &bearer, carol, "viewer").await.status(), 201);
    let first = emailed_token(&app, &sink, carol).await;
    let second_invitation: Value = invite(&app, &bearer, carol, "member")
        .await
        .json()
        .await
        .unwrap();
    let second = emailed_token(&app, &sink, carol).await;
    assert_ne!(first, second);
    let replaced = accept(&app, &first, "carols-passphrase-1").await;
    assert_eq!(
        error_code(replaced).await,
        (400, "invitation_revoked".into())
    );
    // Revoked: the link stops working.
    let path = format!(
        "/api/v1/invitations/{}",
        second_invitation["id"].as_str().unwrap()
    );
    assert_eq!(
        app.send(Method::DELETE, &path, Some(&bearer), None)
            .await
            .status(),
        204
    );
    assert_eq!(
        app.send(Method::DELETE, &path, Some(&bearer), None)
            .await
            .status(),
        204
    );
    let revoked = accept(&app, &second, "carols-passphrase-1").await;
    assert_eq!(
        error_code(revoked).await,
        (400, "invitation_revoked".into())
    );

    // Expired.
    let dave = "dave@invites.example";
    let dave_invitation: Value = invite(&app, &bearer, dave, "viewer")
        .await
        .json()
        .await
        .unwrap();
    let token = emailed_token(&app, &sink, dave).await;
    let mut db = app.database.owner_connection().await;
    sqlx::query(
        "UPDATE invitations SET expires_at = now() - interval '1 second' WHERE lower(email) = $1",
    )
    .bind(dave)
    .execute(&mut db)
    .await
    .unwrap();
    let expired = accept(&app, &token, "daves-passphrase-12").await;
    assert_eq!(error_code(expired).await, (400, "token_expired".into()));
    let forged = accept(&app, "et_forged", "daves-passphrase-12").await;
    assert_eq!(error_code(forged).await, (400, "token_invalid".into()));
    let listed: Value = app
        .get_as("/api/v1/invitations", &bearer)
        .await
        .json()
        .await
        .unwrap();
    let dave_listed = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == dave_invitation["id"])
        .unwrap();
    assert_eq!(dave_listed["status"], "expired");

    // Another tenant sees none of it.
    let other = app.register("other@elsewhere.example").await;
    let foreign = app
        .send(Method::DELETE, &path, Some(&other.bearer()), None)
        .await;
    assert_eq!(foreign.status(), 404);
    let theirs: Value = app
        .get_as("/api/v1/invitations", &other.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["items"], json!([]));

    // An accepted invitation is the user's now: 409.
    let erin = "erin@invites.example";
    let erin_invitation: Value = invite(&app, &bearer, erin, "viewer")
        .await
        .json()
        .await
        .unwrap();
    let token = emailed_token(&app, &sink, erin).await;
    assert_eq!(
        accept(&app, &token, "erins-passphrase-12").await.status(),
        201
    );
    let path = format!(
        "/api/v1/invitations/{}",
        erin_invitation["id"].as_str().unwrap()
    );
    let gone = app.send(Method::DELETE, &path, Some(&bearer), None).await;
    assert_eq!(error_code(gone).await, (409, "invitation_accepted".into()));
}

/// `/invitations/accept` is a route of its own: it advertises its own
/// methods, not those of `/invitations/{id}` it also fits.
#[tokio::test]
async fn a_fixed_path_advertises_only_its_own_methods() {
    let app = crate::helpers::spawn_app().await;
    let response = app
        .client
        .request(Method::OPTIONS, app.url("/api/v1/invitations/accept"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let response = app
        .client
        .delete(app.url("/api/v1/invitations/accept"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let response = app
        .client
        .request(
            Method::PUT,
            app.url(&format!("/api/v1/invitations/{}", uuid::Uuid::nil())),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "DELETE");
}
