//! The binary's roles, run as an operator would run them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use stock_tracker::app::Application;

use crate::helpers::{TestDatabase, base_settings, settings_for, spawn_app};

const BIN: &str = env!("CARGO_BIN_EXE_stock-tracker");

fn stock_tracker() -> Command {
    let mut command = Command::new(BIN);
    // Start from a clean slate: only what each test sets.
    for (key, _) in std::env::vars() {
        if key.starts_with("STOCK_TRACKER") {
            command.env_remove(key);
        }
    }
    command
}

#[test]
fn production_refuses_the_default_jwt_secret() {
    let output = stock_tracker()
        .arg("serve")
        .env("STOCK_TRACKER__ENVIRONMENT", "production")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`auth.jwt_secret`"), "{stderr}");
}

/// `environment` left at its default on a public listener: the built-in
/// development secrets would let anyone mint tokens.
#[test]
fn the_built_in_development_secrets_are_refused_on_a_public_listener() {
    let output = stock_tracker()
        .arg("serve")
        .env("STOCK_TRACKER__SERVER__HOST", "0.0.0.0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`auth.jwt_secret`")
            && stderr.contains("`server.host` (0.0.0.0)")
            && stderr.contains("STOCK_TRACKER__SECRETS__FERNET_KEYS"),
        "{stderr}"
    );
}

#[test]
fn production_refuses_a_short_jwt_secret() {
    let output = stock_tracker()
        .arg("serve")
        .env("STOCK_TRACKER__ENVIRONMENT", "production")
        .env("STOCK_TRACKER__AUTH__JWT_SECRET", "too-short")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`auth.jwt_secret`") && stderr.contains("at least 32"),
        "{stderr}"
    );
}

#[test]
fn a_bad_value_is_reported_with_its_key_and_source() {
    let output = stock_tracker()
        .arg("serve")
        .env("STOCK_TRACKER__SERVER__PORT", "eighty")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`server.port`"), "{stderr}");
    assert!(stderr.contains("STOCK_TRACKER__SERVER__PORT"), "{stderr}");
}

#[test]
fn a_config_file_is_layered_under_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stock-tracker.toml");
    std::fs::write(&file, "[server]\nport = 9999\n[redis]\nkey_prefix = \"\"\n").unwrap();
    let output = stock_tracker()
        .args(["--config", file.to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`redis.key_prefix`"), "{stderr}");
    // The environment overrides the file.
    let output = stock_tracker()
        .args(["--config", file.to_str().unwrap(), "serve"])
        .env("STOCK_TRACKER__REDIS__KEY_PREFIX", "ok:")
        .env("STOCK_TRACKER__SERVER__PORT", "nope")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`server.port`") && !stderr.contains("key_prefix"),
        "{stderr}"
    );
}

#[test]
fn openapi_prints_the_served_document() {
    let output = stock_tracker().arg("openapi").output().unwrap();
    assert!(output.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(doc["paths"].get("/api/v1/health/ready").is_some());
}

#[tokio::test]
async fn healthcheck_exits_0_when_live_and_1_otherwise() {
    let app = spawn_app().await;
    let live = app.url("/api/v1/health/live");
    let status = tokio::task::spawn_blocking(move || {
        stock_tracker()
            .args(["healthcheck", "--url", &live])
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(status.success());
    let status = stock_tracker()
        .args([
            "healthcheck",
            "--url",
            "http://127.0.0.1:1/api/v1/health/live",
            "--timeout-secs",
            "1",
        ])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
}

#[tokio::test]
async fn serve_refuses_a_database_that_is_not_migrated() {
    let settings = base_settings();
    let database = TestDatabase::empty(&settings).await;
    let err = Application::build(settings_for(&database))
        .await
        .err()
        .expect("an unmigrated database is refused");
    let message = format!("{err:#}");
    assert!(message.contains("stock-tracker migrate"), "{message}");
}

#[tokio::test]
async fn serve_tolerates_migrations_from_a_newer_release() {
    let settings = base_settings();
    let database = TestDatabase::migrated(&settings).await;
    let mut owner = database.owner_connection().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101000000, 'from a newer release', true, '\\x00', 0)",
    )
    .execute(&mut owner)
    .await
    .unwrap();
    Application::build(settings_for(&database))
        .await
        .expect("a schema ahead of this release is served (rolling deploys)");
}

#[tokio::test]
async fn migrate_creates_the_schema_and_is_idempotent() {
    let settings = base_settings();
    let database = TestDatabase::empty(&settings).await;
    let url = settings_for(&database)
        .database
        .url
        .expose_secret()
        .to_owned();
    for _ in 0..2 {
        let output = tokio::task::spawn_blocking({
            let url = url.clone();
            move || {
                stock_tracker()
                    .arg("migrate")
                    .env("DATABASE_URL", url)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Application::build(settings_for(&database))
        .await
        .expect("serve accepts a migrated database");
}

#[tokio::test]
async fn serve_shuts_down_gracefully_on_sigterm() {
    let settings = base_settings();
    let database = TestDatabase::migrated(&settings).await;
    let url = settings_for(&database)
        .database
        .url
        .expose_secret()
        .to_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut child = stock_tracker()
        .arg("serve")
        .env("DATABASE_URL", url)
        .env("STOCK_TRACKER__SERVER__PORT", port.to_string())
        .env(
            "STOCK_TRACKER__REDIS__KEY_PREFIX",
            &settings.redis.key_prefix,
        )
        // Only the configuration turns error reporting on, never the SDK's variable.
        .env("SENTRY_DSN", "http://public@127.0.0.1:9/1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let live = format!("http://127.0.0.1:{port}/api/v1/health/live");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if client
            .get(&live)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        assert!(Instant::now() < deadline, "serve did not become live");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
        .get(format!("http://127.0.0.1:{port}/api/v1/health"))
        .header("x-request-id", "access-log-probe")
        .send()
        .await
        .unwrap();
    // An authenticated request: its line also names the tenant and the user.
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let registered: serde_json::Value = client
        .post(format!("{api}/auth/register"))
        .json(&serde_json::json!({"email": "log@example.com", "password": crate::helpers::PASSWORD, "tenant_name": "Logs"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tokens: serde_json::Value = client
        .post(format!("{api}/auth/login"))
        .json(
            &serde_json::json!({"email": "log@example.com", "password": crate::helpers::PASSWORD}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    client
        .get(format!("{api}/users/me"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .header("x-request-id", "authenticated-log-probe")
        .send()
        .await
        .unwrap();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if started.elapsed() > Duration::from_secs(15) {
                child.kill().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "exit: {:?}", output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("\"stopped\""), "{stdout}");
    let serving: serde_json::Value = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "serving")
        .unwrap_or_else(|| panic!("no serving line: {stdout}"));
    assert_eq!(serving["error_reporting"], false, "{serving}");

    // One JSON access-log line per request, carrying the request's span.
    let access: serde_json::Value = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["span"]["request_id"] == "access-log-probe")
        .unwrap_or_else(|| panic!("no log line for the request: {stdout}"));
    assert_eq!(access["message"], "request completed");
    assert_eq!(access["status"], 200);
    assert_eq!(access["route"], "/api/v1/health");
    assert_eq!(access["span"]["method"], "GET");
    assert!(access["latency_ms"].as_f64().is_some(), "{access}");

    let authenticated: serde_json::Value = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["span"]["request_id"] == "authenticated-log-probe")
        .unwrap_or_else(|| panic!("no log line for the authenticated request: {stdout}"));
    assert_eq!(
        authenticated["span"]["tenant_id"],
        registered["tenant"]["id"]
    );
    assert_eq!(authenticated["span"]["user_id"], registered["user"]["id"]);
    assert_eq!(authenticated["route"], "/api/v1/users/me");
}

/// `migrate` creates the configured first administrator once: without a
/// password file it prints a one-time setup link, which sets the password.
#[tokio::test]
async fn migrate_creates_the_first_administrator_once_with_a_setup_link() {
    let settings = base_settings();
    let database = TestDatabase::empty(&settings).await;
    let url = settings_for(&database)
        .database
        .url
        .expose_secret()
        .to_owned();
    let run = |url: String| {
        tokio::task::spawn_blocking(move || {
            stock_tracker()
                .arg("migrate")
                .env("DATABASE_URL", url)
                .env(
                    "STOCK_TRACKER__AUTH__FIRST_ADMIN__EMAIL",
                    "Root@Platform.example",
                )
                .env(
                    "STOCK_TRACKER__SERVER__PUBLIC_BASE_URL",
                    "https://st.example.com",
                )
                .output()
                .unwrap()
        })
    };
    let first = run(url.clone()).await.unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let printed = String::from_utf8_lossy(&first.stdout);
    let link = printed
        .lines()
        .find(|line| line.starts_with("https://st.example.com/reset-password?token=et_"))
        .unwrap_or_else(|| panic!("no setup link in {printed}"));
    let token = link.split("token=").nth(1).unwrap().to_owned();
    // Again: nothing new, no second link.
    let second = run(url).await.unwrap();
    assert!(second.status.success());
    assert!(!String::from_utf8_lossy(&second.stdout).contains("token="));

    let app = crate::helpers::spawn_app_on(database).await;
    let set = app
        .post_json(
            "/api/v1/auth/password-reset/confirm",
            None,
            &serde_json::json!({"token": token, "new_password": "the-first-admins-passphrase"}),
        )
        .await;
    assert_eq!(set.status(), 204, "{}", set.text().await.unwrap());
    let tokens = app
        .login("root@platform.example", "the-first-admins-passphrase")
        .await;
    // A platform administrator: it may change a tenant's tier.
    let tenant = app.register("customer@example.com").await;
    let tier = app
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/admin/tenants/{}/tier", tenant.tenant_id),
            Some(&format!("Bearer {}", tokens.access_token)),
            Some(&serde_json::json!({"tier": "premium"})),
        )
        .await;
    assert_eq!(tier.status(), 200, "{}", tier.text().await.unwrap());
}
