//! Account emails end to end: password reset and email verification against
//! real PostgreSQL, Redis, RabbitMQ, a real `stock-tracker worker` and a real
//! SMTP server (aiosmtpd, `tests/smtp_sink.py`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stock_tracker::config::{EmailMode, Registration, Settings, SmtpTls};
use stock_tracker::email::delivery::{Outcome, attempt};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::helpers::{PASSWORD, TestApp, sample, spawn_app_with};
use crate::processes::SmtpSink;
use crate::workers::{Role, TestQueues};

const NEW_PASSWORD: &str = "a-brand-new-passphrase-42";

/// Sends account emails to `port` on loopback, in plain SMTP.
pub fn smtp_to(settings: &mut Settings, port: u16) {
    settings.email.mode = EmailMode::Smtp;
    settings.email.smtp_host = "127.0.0.1".into();
    settings.email.smtp_port = port;
    settings.email.smtp_tls = SmtpTls::None;
}

/// The `token` of the (one) link in an email's text.
pub fn token_in(message: &Value) -> String {
    let text = message["text"].as_str().unwrap();
    let start = text.find("token=").expect("the email carries a token") + "token=".len();
    text[start..]
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap()
        .to_owned()
}

/// Attempts every pending email at `now`, as the worker's task would.
pub async fn deliver_pending(app: &TestApp, now: OffsetDateTime) -> Vec<Outcome> {
    let mut owner = app.database.owner_connection().await;
    let pending: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT tenant_id, id FROM email_messages WHERE status = 'pending' ORDER BY id",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    let mut outcomes = Vec::new();
    for (tenant, id) in pending {
        outcomes.push(attempt(&app.state, tenant, id, now).await.unwrap());
    }
    outcomes
}

/// Waits until `sql` (one count) reaches `n`: the work a 202 left running.
pub async fn wait_for_count(app: &TestApp, sql: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut owner = app.database.owner_connection().await;
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut owner)
            .await
            .unwrap();
        if count >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`{sql}` stayed at {count}, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.post_json(path, None, &body).await
}

pub async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

/// The whole path a user takes: the request, the task on the notifications
/// queue, the worker's SMTP delivery, the link, the new password; every
/// earlier session ends.
#[tokio::test]
async fn password_reset_reaches_the_inbox_through_the_worker_and_ends_every_session() {
    let sink = SmtpSink::start().await;
    let queues = TestQueues::new();
    let port = sink.port;
    let app = spawn_app_with(|s| {
        queues.apply(s);
        smtp_to(s, port);
        s.server.public_base_url = "https://st.example.com/app".parse().unwrap();
    })
    .await;
    let worker = Role::start(
        "worker",
        &app.state.settings,
        &[
            ("STOCK_TRACKER__EMAIL__MODE", "smtp".into()),
            ("STOCK_TRACKER__EMAIL__SMTP_HOST", "127.0.0.1".into()),
            ("STOCK_TRACKER__EMAIL__SMTP_PORT", port.to_string()),
            ("STOCK_TRACKER__EMAIL__SMTP_TLS", "none".into()),
        ],
    );
    worker
        .wait_for_log("worker consuming", Duration::from_secs(30))
        .await;
    let email = "reset@example.com";
    let owner = app.register(email).await;
    // Registration mailed a verification link the same way.
    sink.wait_for(email, "Confirm your email", Duration::from_secs(30))
        .await;

    let asked = post(&app, "/api/v1/auth/password-reset", json!({"email": email})).await;
    assert_eq!(asked.status(), 202);
    let message = sink
        .wait_for(
            email,
            "Reset your Stock Tracker password",
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(message["rcpt_tos"], json!([email]));
    assert!(
        message["from"]
            .as_str()
            .unwrap()
            .contains("no-reply@stock-tracker.invalid"),
        "{message}"
    );
    let text = message["text"].as_str().unwrap();
    assert!(
        text.contains("https://st.example.com/app/reset-password?token=et_"),
        "{text}"
    );
    assert!(
        message["html"]
            .as_str()
            .unwrap()
            .contains("Reset my password")
    );
    let token = token_in(&message);

    let confirmed = post(
        &app,
        "/api/v1/auth/password-reset/confirm",
        json!({"token": token, "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(
        confirmed.status(),
        204,
        "{}",
        confirmed.text().await.unwrap()
    );

    // Every earlier session is over: its access and its refresh token.
    let me = app.get_as("/api/v1/users/me", &owner.bearer()).await;
    assert_eq!(me.status(), 401);
    let refreshed = post(
        &app,
        "/api/v1/auth/refresh",
        json!({"refresh_token": owner.tokens.refresh_token}),
    )
    .await;
    assert_eq!(refreshed.status(), 401);
    let old = post(
        &app,
        "/api/v1/auth/login",
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(old.status(), 401);
    app.login(email, NEW_PASSWORD).await;

    let again = post(
        &app,
        "/api/v1/auth/password-reset/confirm",
        json!({"token": token, "new_password": "yet-another-passphrase-7"}),
    )
    .await;
    assert_eq!(error_code(again).await, (400, "token_used".into()));

    let metrics = worker.metrics_text().await;
    assert_eq!(
        sample(
            &metrics,
            r#"stock_tracker_emails_total{kind="password_reset",outcome="sent"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
}

/// Unknown and known addresses get the same answer in the same time: the
/// work runs after the answer. Each address gets at most its hourly share.
#[tokio::test]
async fn password_reset_answers_unknown_addresses_as_known_ones() {
    let app = spawn_app_with(|_| {}).await;
    let known = "known@example.com";
    let owner = app.register(known).await;
    let unknown = "nobody-here@example.com";
    let (mut known_times, mut unknown_times) = (Vec::new(), Vec::new());
    for _ in 0..8 {
        for (email, times) in [(known, &mut known_times), (unknown, &mut unknown_times)] {
            let started = Instant::now();
            let response = post(&app, "/api/v1/auth/password-reset", json!({"email": email})).await;
            times.push(started.elapsed());
            assert_eq!(response.status(), 202);
            assert_eq!(response.text().await.unwrap(), "");
        }
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (known_median, unknown_median) = (median(&mut known_times), median(&mut unknown_times));
    let gap = known_median.abs_diff(unknown_median);
    assert!(
        gap < Duration::from_millis(25),
        "known {known_median:?}, unknown {unknown_median:?}"
    );

    // Eight asked, five sent (auth.account_emails_per_address_per_hour);
    // nothing for the unknown address.
    let resets = format!(
        "SELECT count(*) FROM email_messages WHERE tenant_id = '{}' AND kind = 'password_reset'",
        owner.tenant_id
    );
    wait_for_count(&app, &resets, 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut db = app.database.owner_connection().await;
    let sent: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(resets))
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(sent, 5);
    let to_unknown: i64 =
        sqlx::query_scalar("SELECT count(*) FROM email_messages WHERE recipient = $1")
            .bind(unknown)
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(to_unknown, 0);
    // In development (email.mode = log) the API wrote them to its log itself.
    let metrics = app.metrics_text().await;
    assert_eq!(
        sample(
            &metrics,
            r#"stock_tracker_emails_total{kind="password_reset",outcome="sent"}"#
        ),
        Some(5.0)
    );
}

#[tokio::test]
async fn a_reset_link_works_once_and_only_until_it_expires_or_a_newer_one_is_sent() {
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let app = spawn_app_with(|s| smtp_to(s, port)).await;
    let email = "once@example.com";
    let owner = app.register(email).await;
    let reset_pending = format!(
        "SELECT count(*) FROM email_messages WHERE tenant_id = '{}' AND kind = 'password_reset'",
        owner.tenant_id
    );
    let request = |n: i64| {
        let (app, sql, sink) = (&app, reset_pending.clone(), &sink);
        async move {
            let asked = post(app, "/api/v1/auth/password-reset", json!({"email": email})).await;
            assert_eq!(asked.status(), 202);
            wait_for_count(app, &sql, n).await;
            deliver_pending(app, OffsetDateTime::now_utc()).await;
            let messages = sink.messages();
            let resets: Vec<&Value> = messages
                .iter()
                .filter(|m| m["subject"].as_str().unwrap().starts_with("Reset"))
                .collect();
            assert_eq!(resets.len() as i64, n);
            token_in(resets.last().unwrap())
        }
    };
    let confirm = |token: String, password: &'static str| {
        let app = &app;
        async move {
            post(
                app,
                "/api/v1/auth/password-reset/confirm",
                json!({"token": token, "new_password": password}),
            )
            .await
        }
    };

    let first = request(1).await;
    // A forged token, and a verification token, are not reset tokens.
    let forged = confirm("et_forged-token".into(), NEW_PASSWORD).await;
    assert_eq!(error_code(forged).await, (400, "token_invalid".into()));
    let verification = sink
        .wait_for(email, "Confirm your email", Duration::from_secs(5))
        .await;
    let wrong_kind = confirm(token_in(&verification), NEW_PASSWORD).await;
    assert_eq!(error_code(wrong_kind).await, (400, "token_invalid".into()));
    // A password the policy refuses spends nothing.
    let weak = confirm(first.clone(), "short").await;
    assert_eq!(weak.status(), 422);
    assert_eq!(confirm(first.clone(), NEW_PASSWORD).await.status(), 204);
    let reused = confirm(first, "another-passphrase-99").await;
    assert_eq!(error_code(reused).await, (400, "token_used".into()));

    // Only the newest link works.
    let older = request(2).await;
    let newer = request(3).await;
    let retired = confirm(older, "another-passphrase-99").await;
    assert_eq!(error_code(retired).await, (400, "token_used".into()));

    // Past its lifetime the newest fails too.
    let mut db = app.database.owner_connection().await;
    sqlx::query(
        "UPDATE account_tokens SET expires_at = now() - interval '1 second'
         WHERE purpose = 'password_reset' AND used_at IS NULL",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let expired = confirm(newer, "another-passphrase-99").await;
    assert_eq!(error_code(expired).await, (400, "token_expired".into()));
    app.login(email, NEW_PASSWORD).await;
}

#[tokio::test]
async fn sign_in_waits_for_a_verified_address_where_required() {
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let app = spawn_app_with(|s| {
        smtp_to(s, port);
        s.auth.require_verified_email = Some(true);
    })
    .await;
    let email = "verify@example.com";
    let registered = post(
        &app,
        "/api/v1/auth/register",
        json!({"email": email, "password": PASSWORD, "tenant_name": "Verify Co"}),
    )
    .await;
    assert_eq!(registered.status(), 201);
    let body: Value = registered.json().await.unwrap();
    assert_eq!(body["user"]["email_verified_at"], Value::Null);
    let login = json!({"email": email, "password": PASSWORD});
    let refused = post(&app, "/api/v1/auth/login", login.clone()).await;
    let (status, code) = error_code(refused).await;
    assert_eq!((status, code.as_str()), (403, "email_not_verified"));
    // A wrong password still says only that the credentials are wrong.
    let wrong = post(
        &app,
        "/api/v1/auth/login",
        json!({"email": email, "password": "not-the-password"}),
    )
    .await;
    assert_eq!(wrong.status(), 401);

    deliver_pending(&app, OffsetDateTime::now_utc()).await;
    let first = token_in(
        &sink
            .wait_for(email, "Confirm your email", Duration::from_secs(5))
            .await,
    );
    let resent = post(
        &app,
        "/api/v1/auth/verify-email/resend",
        json!({"email": email}),
    )
    .await;
    assert_eq!(resent.status(), 202);
    let verifications = format!(
        "SELECT count(*) FROM email_messages WHERE tenant_id = '{}' AND kind = 'email_verification'",
        body["tenant"]["id"].as_str().unwrap()
    );
    wait_for_count(&app, &verifications, 2).await;
    deliver_pending(&app, OffsetDateTime::now_utc()).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    let second = token_in(&messages[1]);
    assert_ne!(first, second);

    let verify = |token: String| {
        let app = &app;
        async move { post(app, "/api/v1/auth/verify-email", json!({"token": token})).await }
    };
    assert_eq!(
        error_code(verify(first).await).await,
        (400, "token_used".into())
    );
    assert_eq!(verify(second.clone()).await.status(), 204);
    assert_eq!(
        error_code(verify(second).await).await,
        (400, "token_used".into())
    );
    let tokens = app.login(email, PASSWORD).await;
    let me: Value = app
        .get_as(
            "/api/v1/users/me",
            &format!("Bearer {}", tokens.access_token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(me["email_verified_at"].is_string(), "{me}");
}

/// An SMTP server refusing or absent never fails the request: the email
/// waits for its next try (5 s, ... as notifications.retry_schedule_secs),
/// then fails for good, is counted, and loses its link.
#[tokio::test]
async fn a_failing_smtp_server_delays_the_email_never_the_request() {
    let sink = SmtpSink::rejecting_first(2).await;
    let port = sink.port;
    let app = spawn_app_with(|s| {
        smtp_to(s, port);
        s.notifications.retry_schedule_secs = vec![5, 60];
    })
    .await;
    let email = "greylisted@example.com";
    app.register(email).await;
    let now = OffsetDateTime::now_utc();
    let first = deliver_pending(&app, now).await;
    let [
        Outcome::Failed {
            error,
            next_attempt_at,
        },
    ] = first.as_slice()
    else {
        panic!("{first:?}");
    };
    assert!(error.contains("451"), "{error}");
    assert_eq!(*next_attempt_at, Some(now + Duration::from_secs(5)));
    // Not due yet: nothing is tried.
    assert_eq!(deliver_pending(&app, now).await, vec![Outcome::Skipped]);
    let second = deliver_pending(&app, now + Duration::from_secs(6)).await;
    assert!(matches!(
        second[0],
        Outcome::Failed {
            next_attempt_at: Some(_),
            ..
        }
    ));
    assert_eq!(
        deliver_pending(&app, now + Duration::from_secs(70)).await,
        vec![Outcome::Sent]
    );
    sink.wait_for(email, "Confirm your email", Duration::from_secs(5))
        .await;
    let metrics = app.metrics_text().await;
    assert_eq!(
        sample(
            &metrics,
            r#"stock_tracker_emails_total{kind="email_verification",outcome="retried"}"#
        ),
        Some(2.0)
    );

    // No server at all: registration still succeeds; out of tries, the
    // email fails for good and its link (a token) is gone.
    drop(sink);
    let other = app.register("nobody-listens@example.com").await;
    let later = now + Duration::from_secs(100);
    deliver_pending(&app, later).await;
    deliver_pending(&app, later + Duration::from_secs(6)).await;
    let last = deliver_pending(&app, later + Duration::from_secs(70)).await;
    assert!(
        matches!(
            last.as_slice(),
            [Outcome::Failed {
                next_attempt_at: None,
                ..
            }]
        ),
        "{last:?}"
    );
    let mut db = app.database.owner_connection().await;
    let (status, link): (String, Option<String>) =
        sqlx::query_as("SELECT status, link_encrypted FROM email_messages WHERE tenant_id = $1")
            .bind(other.tenant_id)
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!((status.as_str(), link), ("failed", None));
    let metrics = app.metrics_text().await;
    assert_eq!(
        sample(
            &metrics,
            r#"stock_tracker_emails_total{kind="email_verification",outcome="failed"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn registration_can_be_invite_only_or_closed() {
    for (policy, detail) in [
        (Registration::InviteOnly, "invitation"),
        (Registration::Closed, "closed"),
    ] {
        let app = spawn_app_with(move |s| s.auth.registration = policy).await;
        let response = post(
            &app,
            "/api/v1/auth/register",
            json!({"email": "new@example.com", "password": PASSWORD, "tenant_name": "New"}),
        )
        .await;
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "registration_closed", "{body}");
        assert!(body["detail"].as_str().unwrap().contains(detail), "{body}");
    }
}

#[tokio::test]
async fn changing_the_email_needs_the_password_and_verifies_the_new_address() {
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let app = spawn_app_with(|s| smtp_to(s, port)).await;
    let owner = app.register("before@example.com").await;
    app.register("taken@example.com").await;
    let patch = |body: Value| {
        let (app, bearer) = (&app, owner.bearer());
        async move {
            app.send(
                reqwest::Method::PATCH,
                "/api/v1/users/me",
                Some(&bearer),
                Some(&body),
            )
            .await
        }
    };
    let without = patch(json!({"email": "after@example.com"})).await;
    assert_eq!(without.status(), 422);
    let wrong =
        patch(json!({"email": "after@example.com", "current_password": "nope-nope-nope"})).await;
    assert_eq!(
        error_code(wrong).await,
        (403, "invalid_current_password".into())
    );
    let taken = patch(json!({"email": "taken@example.com", "current_password": PASSWORD})).await;
    assert_eq!(error_code(taken).await, (409, "email_taken".into()));

    let changed = patch(json!({"email": "After@Example.com", "current_password": PASSWORD})).await;
    assert_eq!(changed.status(), 200);
    let me: Value = changed.json().await.unwrap();
    assert_eq!(me["email"], "after@example.com");
    assert_eq!(me["email_verified_at"], Value::Null);
    deliver_pending(&app, OffsetDateTime::now_utc()).await;
    let link = sink
        .wait_for(
            "after@example.com",
            "Confirm your email",
            Duration::from_secs(5),
        )
        .await;
    let verified = post(
        &app,
        "/api/v1/auth/verify-email",
        json!({"token": token_in(&link)}),
    )
    .await;
    assert_eq!(verified.status(), 204);
    let old = post(
        &app,
        "/api/v1/auth/login",
        json!({"email": "before@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(old.status(), 401);
    let tokens = app.login("after@example.com", PASSWORD).await;
    let bearer = format!("Bearer {}", tokens.access_token);
    let me: Value = app
        .get_as("/api/v1/users/me", &bearer)
        .await
        .json()
        .await
        .unwrap();
    assert!(me["email_verified_at"].is_string(), "{me}");
    let events: Value = app
        .get_as("/api/v1/audit-events?event=auth.email_changed", &bearer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        events["items"][0]["details"],
        json!({"from": "before@example.com", "to": "after@example.com"})
    );
}
