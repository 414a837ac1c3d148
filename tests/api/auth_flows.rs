//! Register, sign in, rotate, sign out — end to end.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, Tokens, spawn_app, spawn_app_with};

#[tokio::test]
async fn register_creates_a_free_tenant_and_its_owner() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/auth/register",
            None,
            &json!({"email": "Ann@Example.com", "password": PASSWORD, "tenant_name": "Acme", "full_name": "Ann"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["email"], "ann@example.com");
    assert_eq!(body["user"]["role"], "owner");
    assert_eq!(body["tenant"]["name"], "Acme");
    assert_eq!(body["tenant"]["tier"], "free");
    assert_eq!(body["user"]["tenant_id"], body["tenant"]["id"]);
    assert!(body["user"].get("password_hash").is_none());
}

#[tokio::test]
async fn a_duplicate_email_is_409_whatever_its_case() {
    let app = spawn_app().await;
    app.register("bob@example.com").await;
    let response = app
        .post_json(
            "/api/v1/auth/register",
            None,
            &json!({"email": "BOB@example.com", "password": PASSWORD, "tenant_name": "Other"}),
        )
        .await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "email_taken");
    // Nothing was half-created: the second tenant does not exist.
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&mut app.database.owner_connection().await)
        .await
        .unwrap();
    assert_eq!(tenants, 1);
}

#[tokio::test]
async fn the_password_policy_names_the_failing_rule() {
    let app = spawn_app().await;
    for (password, rule, says) in [
        ("short1", "string_too_short", "at least"),
        ("carol@example.com", "value_error", "email address"),
        ("password123", "value_error", "too common"),
    ] {
        let response = app
            .post_json(
                "/api/v1/auth/register",
                None,
                &json!({"email": "carol@example.com", "password": password, "tenant_name": "C"}),
            )
            .await;
        assert_eq!(response.status(), 422, "{password}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["detail"][0]["type"], rule);
        assert_eq!(body["detail"][0]["loc"], json!(["body", "password"]));
        assert!(
            body["detail"][0]["msg"].as_str().unwrap().contains(says),
            "{body}"
        );
        assert!(
            body["detail"][0].get("input").is_none(),
            "a password is never echoed"
        );
    }
}

#[tokio::test]
async fn register_validates_every_field() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/auth/register",
            None,
            &json!({"email": "not-an-email", "password": PASSWORD, "tenant_name": "", "role": "owner"}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    // Unknown fields are refused before anything else.
    assert_eq!(body["detail"][0]["type"], "extra_forbidden");

    let response = app
        .post_json(
            "/api/v1/auth/register",
            None,
            &json!({"email": "not-an-email", "password": PASSWORD, "tenant_name": ""}),
        )
        .await;
    let body: Value = response.json().await.unwrap();
    let locs: Vec<Value> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["loc"].clone())
        .collect();
    assert!(locs.contains(&json!(["body", "email"])), "{body}");
    assert!(locs.contains(&json!(["body", "tenant_name"])), "{body}");
}

#[tokio::test]
async fn login_returns_a_bearer_token_pair() {
    let app = spawn_app().await;
    let account = app.register("dan@example.com").await;
    let tokens = &account.tokens;
    assert_eq!(tokens.token_type, "bearer");
    assert_eq!(tokens.expires_in, 900);
    assert!(tokens.refresh_token.starts_with("rt_"));
    let me = app.get_as("/api/v1/users/me", &account.bearer()).await;
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["email"], "dan@example.com");
}

#[tokio::test]
async fn login_failures_never_say_which_part_was_wrong() {
    let app = spawn_app().await;
    app.register("erin@example.com").await;
    let wrong_password = app
        .post_json(
            "/api/v1/auth/login",
            None,
            &json!({"email": "erin@example.com", "password": "wrong-password-1"}),
        )
        .await;
    let unknown_email = app
        .post_json(
            "/api/v1/auth/login",
            None,
            &json!({"email": "nobody@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(wrong_password.status(), 401);
    assert_eq!(unknown_email.status(), 401);
    assert!(wrong_password.headers().contains_key("www-authenticate"));
    let a: Value = wrong_password.json().await.unwrap();
    let b: Value = unknown_email.json().await.unwrap();
    assert_eq!(a["detail"], b["detail"]);
    assert_eq!(a["code"], "invalid_credentials");
    assert_eq!(b["code"], "invalid_credentials");
}

#[tokio::test]
async fn the_oauth2_password_form_signs_in() {
    let app = spawn_app().await;
    app.register("fay@example.com").await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "fay@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let tokens: Tokens = response.json().await.unwrap();
    assert_eq!(tokens.token_type, "bearer");

    let wrong_grant = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("username", "fay@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_grant.status(), 422);
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_family() {
    let app = spawn_app().await;
    let account = app.register("gus@example.com").await;
    let first = account.tokens.refresh_token.clone();

    let response = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": first}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let second: Tokens = response.json().await.unwrap();
    assert_ne!(second.refresh_token, first);
    assert_eq!(
        app.get_as(
            "/api/v1/users/me",
            &format!("Bearer {}", second.access_token)
        )
        .await
        .status(),
        200
    );

    // The spent token is presented again: theft. The whole family is revoked…
    let reuse = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": first}),
        )
        .await;
    assert_eq!(reuse.status(), 401);
    assert!(reuse.headers().contains_key("www-authenticate"));
    // …including the legitimate successor.
    let successor = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": second.refresh_token}),
        )
        .await;
    assert_eq!(successor.status(), 401);
    assert!(app.metrics_text().await.contains(
        r#"stock_tracker_auth_events_total{event="refresh",outcome="reuse_detected"} 1"#
    ));
    // The access token minted from the stolen refresh token ends at once,
    // not when it expires.
    assert_eq!(
        app.get_as(
            "/api/v1/users/me",
            &format!("Bearer {}", second.access_token)
        )
        .await
        .status(),
        401
    );
}

async fn refreshed(app: &crate::helpers::TestApp, refresh_token: &str) -> Tokens {
    let response = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": refresh_token}),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Logout ends the session: every access token it minted, not only the one
/// presented; another session of the same user lives on.
#[tokio::test]
async fn logout_ends_every_access_token_of_the_session() {
    let app = spawn_app().await;
    let account = app.register("siblings@example.com").await;
    // Two live access tokens of one session: the first, and the one its
    // refresh minted.
    let sibling = refreshed(&app, &account.tokens.refresh_token).await;
    let other_session = app.login("siblings@example.com", PASSWORD).await;
    for token in [&account.tokens.access_token, &sibling.access_token] {
        let response = app
            .get_as("/api/v1/users/me", &format!("Bearer {token}"))
            .await;
        assert_eq!(response.status(), 200);
    }

    let response = app
        .send(
            reqwest::Method::POST,
            "/api/v1/auth/logout",
            Some(&format!("Bearer {}", sibling.access_token)),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    for token in [&account.tokens.access_token, &sibling.access_token] {
        let response = app
            .get_as("/api/v1/users/me", &format!("Bearer {token}"))
            .await;
        assert_eq!(
            response.status(),
            401,
            "a token of the ended session still works"
        );
    }
    let other = format!("Bearer {}", other_session.access_token);
    assert_eq!(app.get_as("/api/v1/users/me", &other).await.status(), 200);
}

#[tokio::test]
async fn an_unknown_refresh_token_is_401() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": "rt_made-up"}),
        )
        .await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "invalid_refresh_token");
}

#[tokio::test]
async fn logout_revokes_the_access_token_and_the_session() {
    let app = spawn_app().await;
    let account = app.register("hal@example.com").await;
    let other_session = app.login("hal@example.com", PASSWORD).await;

    let response = app
        .send(
            reqwest::Method::POST,
            "/api/v1/auth/logout",
            Some(&account.bearer()),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);

    let reused = app.get_as("/api/v1/users/me", &account.bearer()).await;
    assert_eq!(reused.status(), 401);
    assert_eq!(
        reused.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    let refresh = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": account.tokens.refresh_token}),
        )
        .await;
    assert_eq!(refresh.status(), 401);
    // Other sessions of the same user are untouched.
    let other = app
        .get_as(
            "/api/v1/users/me",
            &format!("Bearer {}", other_session.access_token),
        )
        .await;
    assert_eq!(other.status(), 200);
}

#[tokio::test]
async fn with_redis_down_logout_still_revokes_through_postgresql() {
    let app = spawn_app_with(|s| s.redis.url = "redis://127.0.0.1:1".to_owned().into()).await;
    let account = app.register("ida@example.com").await;
    assert_eq!(
        app.get_as("/api/v1/users/me", &account.bearer())
            .await
            .status(),
        200
    );
    let response = app
        .send(
            reqwest::Method::POST,
            "/api/v1/auth/logout",
            Some(&account.bearer()),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        app.get_as("/api/v1/users/me", &account.bearer())
            .await
            .status(),
        401
    );
    let refresh = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": account.tokens.refresh_token}),
        )
        .await;
    assert_eq!(refresh.status(), 401);
}

#[tokio::test]
async fn revocations_survive_redis_losing_its_data() {
    let app = spawn_app().await;
    let account = app.register("jay@example.com").await;
    app.send(
        reqwest::Method::POST,
        "/api/v1/auth/logout",
        Some(&account.bearer()),
        None,
    )
    .await;
    assert_eq!(
        app.get_as("/api/v1/users/me", &account.bearer())
            .await
            .status(),
        401
    );

    // Redis restarts empty: every key of this deployment is gone.
    let prefix = app.state.settings.redis.key_prefix.clone();
    let mut conn = app.state.redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();

    // The token stays refused (PostgreSQL answers), and Redis is refilled in
    // the background (at most one attempt per second).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        assert_eq!(
            app.get_as("/api/v1/users/me", &account.bearer())
                .await
                .status(),
            401
        );
        let refilled: bool = redis::cmd("EXISTS")
            .arg(format!("{prefix}auth:{{{}}}:synced", account.tenant_id))
            .query_async(&mut conn)
            .await
            .unwrap();
        if refilled {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Redis was not refilled from PostgreSQL"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Answered from the refilled Redis now, and still refused.
    assert_eq!(
        app.get_as("/api/v1/users/me", &account.bearer())
            .await
            .status(),
        401
    );
}

async fn sign_in_from(
    app: &crate::helpers::TestApp,
    address: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/login"))
        .header("x-forwarded-for", address)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

/// Guessing from many addresses still backs off, per account, and an
/// unknown account answers exactly like a real one; the current-password
/// check of `PATCH /users/me` counts towards the same account.
#[tokio::test]
async fn password_guessing_backs_off_per_account_from_any_address() {
    let app = spawn_app_with(|s| {
        s.rate_limit.trusted_proxies = vec!["127.0.0.1".into()];
        s.auth.login_backoff.free_attempts = 3;
        s.auth.login_backoff.base_ms = 1500;
    })
    .await;
    let victim = app.register("victim@example.com").await;
    for email in ["victim@example.com", "nobody-here@example.com"] {
        for n in 1..=3 {
            let address = format!("198.51.100.{n}");
            let guess = sign_in_from(&app, &address, email, "wrong-guess-123").await;
            assert_eq!(guess.status(), 401, "{email}, attempt {n}");
        }
        // Locked now, from any address, even with the right password.
        let locked = sign_in_from(&app, "203.0.113.50", email, PASSWORD).await;
        assert_eq!(locked.status(), 429, "{email}");
        let retry_after: u64 = locked.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry_after), "{retry_after}");
    }

    // Once the lock has passed, the right password signs in and clears the count.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let signed_in = sign_in_from(&app, "203.0.113.50", "victim@example.com", PASSWORD).await;
    assert_eq!(signed_in.status(), 200);
    let guess = sign_in_from(
        &app,
        "203.0.113.51",
        "victim@example.com",
        "wrong-guess-123",
    )
    .await;
    assert_eq!(guess.status(), 401, "the count started over");

    // The current password asked by PATCH /users/me counts for the account.
    let change =
        json!({"current_password": "wrong-guess-123", "new_password": "a-brand-new-secret"});
    for _ in 0..2 {
        let response = app
            .send(
                reqwest::Method::PATCH,
                "/api/v1/users/me",
                Some(&victim.bearer()),
                Some(&change),
            )
            .await;
        assert_eq!(response.status(), 403);
    }
    let response = app
        .send(
            reqwest::Method::PATCH,
            "/api/v1/users/me",
            Some(&victim.bearer()),
            Some(&change),
        )
        .await;
    assert_eq!(response.status(), 429);
    let locked = sign_in_from(&app, "203.0.113.52", "victim@example.com", PASSWORD).await;
    assert_eq!(locked.status(), 429, "sign-in shares the account's lock");
}
