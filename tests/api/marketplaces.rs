//! Marketplace connections: credentials encrypted at rest, never returned,
//! keys rotated by the operator command.

use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use stock_tracker::crypto::SecretBox;
use stock_tracker::key_rotation::ENCRYPTED_COLUMNS;
use uuid::Uuid;

use crate::helpers::spawn_app;

const TOKEN: &str = "wb-secret-token-do-not-leak-123";

#[tokio::test]
async fn connections_are_created_listed_and_never_show_credentials() {
    let app = spawn_app().await;
    let owner = app.register("mk@example.com").await;
    let created = app
        .post_json(
            "/api/v1/marketplaces",
            Some(&owner.bearer()),
            &json!({"kind": "wildberries", "name": "WB main", "credentials": {"api_token": TOKEN}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let text = created.text().await.unwrap();
    assert!(!text.contains(TOKEN), "{text}");
    let connection: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(connection["kind"], "wildberries");
    assert_eq!(connection["has_credentials"], true);
    let demo = app
        .post_json(
            "/api/v1/marketplaces",
            Some(&owner.bearer()),
            &json!({"kind": "demo", "name": "Demo", "credentials": {}}),
        )
        .await;
    assert_eq!(demo.status(), 201);

    let list = app
        .get_as("/api/v1/marketplaces", &owner.bearer())
        .await
        .text()
        .await
        .unwrap();
    assert!(!list.contains(TOKEN));
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let path = format!(
        "/api/v1/marketplaces/{}",
        connection["id"].as_str().unwrap()
    );
    let one = app
        .get_as(&path, &owner.bearer())
        .await
        .text()
        .await
        .unwrap();
    assert!(!one.contains(TOKEN));
    assert!(!app.metrics_text().await.contains(TOKEN));

    assert_eq!(
        app.send(Method::DELETE, &path, Some(&owner.bearer()), None)
            .await
            .status(),
        204
    );
    assert_eq!(app.get_as(&path, &owner.bearer()).await.status(), 404);
}

#[tokio::test]
async fn has_credentials_says_whether_credentials_are_stored() {
    let app = spawn_app().await;
    let owner = app.register("mk-has@example.com").await;
    let mut ids = Vec::new();
    for (body, stored) in [
        (json!({"kind": "demo", "name": "No credentials"}), false),
        (
            json!({"kind": "demo", "name": "Empty credentials", "credentials": {}}),
            false,
        ),
        (
            json!({"kind": "wildberries", "name": "WB", "credentials": {"api_token": TOKEN}}),
            true,
        ),
    ] {
        let response = app
            .post_json("/api/v1/marketplaces", Some(&owner.bearer()), &body)
            .await;
        assert_eq!(response.status(), 201);
        let created: Value = response.json().await.unwrap();
        assert_eq!(created["has_credentials"], stored, "{body}");
        let path = format!("/api/v1/marketplaces/{}", created["id"].as_str().unwrap());
        let one: Value = app
            .get_as(&path, &owner.bearer())
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(one["has_credentials"], stored, "{body}");
        ids.push((created["id"].clone(), stored));
    }
    let list: Value = app
        .get_as("/api/v1/marketplaces", &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    for (id, stored) in ids {
        let listed = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["id"] == id)
            .unwrap();
        assert_eq!(listed["has_credentials"], stored, "{listed}");
    }
    // Nothing is stored for the demo connections: no encrypted empty object.
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM marketplace_connections WHERE credentials_encrypted IS NOT NULL",
    )
    .fetch_one(&mut app.database.owner_connection().await)
    .await
    .unwrap();
    assert_eq!(stored, 1);

    // A demo connection made by an earlier release stored an encrypted `{}`:
    // it holds no credentials either.
    let older: Uuid = sqlx::query_scalar(
        "INSERT INTO marketplace_connections (id, tenant_id, kind, name, credentials_encrypted)
         VALUES ($1, $2, 'demo', 'Older demo', $3) RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(owner.tenant_id)
    .bind(SecretBox::new(&[key()]).unwrap().encrypt(b"{}"))
    .fetch_one(&mut app.database.owner_connection().await)
    .await
    .unwrap();
    let one: Value = app
        .get_as(&format!("/api/v1/marketplaces/{older}"), &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["has_credentials"], false);
}

#[tokio::test]
async fn credentials_must_match_the_kind() {
    let app = spawn_app().await;
    let owner = app.register("mk-bad@example.com").await;
    for (body, loc) in [
        (
            json!({"kind": "wildberries", "name": "WB", "credentials": {}}),
            json!(["body", "credentials", "api_token"]),
        ),
        (
            json!({"kind": "wildberries", "name": "WB", "credentials": {"api_token": "  "}}),
            json!(["body", "credentials", "api_token"]),
        ),
        (
            json!({"kind": "demo", "name": "D", "credentials": {"api_token": "x"}}),
            json!(["body", "credentials", "api_token"]),
        ),
        (
            json!({"kind": "amazon", "name": "A", "credentials": {}}),
            json!(["body", "kind"]),
        ),
        (
            json!({"kind": "demo", "name": "", "credentials": {}}),
            json!(["body", "name"]),
        ),
    ] {
        let response = app
            .post_json("/api/v1/marketplaces", Some(&owner.bearer()), &body)
            .await;
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["detail"][0]["loc"], loc, "{body}: {error}");
    }
}

#[tokio::test]
async fn only_admins_connect_and_other_tenants_get_404() {
    let app = spawn_app().await;
    let owner = app.register("mk-roles@example.com").await;
    let member = app
        .add_user(&owner, "mk-member@example.com", "member")
        .await;
    let body = json!({"kind": "demo", "name": "Demo", "credentials": {}});
    assert_eq!(
        app.post_json("/api/v1/marketplaces", Some(&member.bearer()), &body)
            .await
            .status(),
        403
    );
    let created: Value = app
        .post_json("/api/v1/marketplaces", Some(&owner.bearer()), &body)
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/marketplaces/{}", created["id"].as_str().unwrap());
    assert_eq!(app.get_as(&path, &member.bearer()).await.status(), 200);
    assert_eq!(
        app.send(Method::DELETE, &path, Some(&member.bearer()), None)
            .await
            .status(),
        403
    );

    let stranger = app.register("mk-stranger@example.com").await;
    assert_eq!(app.get_as(&path, &stranger.bearer()).await.status(), 404);
    assert_eq!(
        app.send(Method::DELETE, &path, Some(&stranger.bearer()), None)
            .await
            .status(),
        404
    );
    assert_eq!(app.get_as(&path, &owner.bearer()).await.status(), 200);
}

#[tokio::test]
async fn deleting_a_connection_removes_its_synced_products_and_they_are_read_only() {
    let app = spawn_app().await;
    let owner = app.register("mk-sync@example.com").await;
    let created: Value = app
        .post_json(
            "/api/v1/marketplaces",
            Some(&owner.bearer()),
            &json!({"kind": "demo", "name": "Demo", "credentials": {}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let connection: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let product = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO products (id, tenant_id, marketplace_id, sku, name, price, stock)
         VALUES ($1, $2, $3, 'SYNCED-1', 'Synced', 5, 5)",
    )
    .bind(product)
    .bind(owner.tenant_id)
    .bind(connection)
    .execute(&mut app.database.owner_connection().await)
    .await
    .unwrap();
    let path = format!("/api/v1/products/{product}");
    let edit = app
        .send(
            Method::PATCH,
            &path,
            Some(&owner.bearer()),
            Some(&json!({"stock": 1})),
        )
        .await;
    assert_eq!(edit.status(), 409);
    let filtered: Value = app
        .get_as(
            &format!("/api/v1/products?marketplace_id={connection}"),
            &owner.bearer(),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["items"][0]["id"], product.to_string());

    app.send(
        Method::DELETE,
        &format!("/api/v1/marketplaces/{connection}"),
        Some(&owner.bearer()),
        None,
    )
    .await;
    assert_eq!(app.get_as(&path, &owner.bearer()).await.status(), 404);
}

fn key() -> SecretString {
    SecretString::from(fernet::Fernet::generate_key())
}

/// Every (table, column) whose values are Fernet tokens (`gAAAAA…`: the
/// version byte and a timestamp's high bytes, base64url).
async fn columns_holding_fernet_tokens(app: &crate::helpers::TestApp) -> Vec<(String, String)> {
    let mut owner = app.database.owner_connection().await;
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text FROM information_schema.columns c
         JOIN pg_class t ON t.relname = c.table_name AND t.relnamespace = 'public'::regnamespace
         WHERE c.table_schema = 'public' AND c.data_type IN ('text', 'character varying')
           AND NOT t.relispartition
         ORDER BY 1, 2",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    let mut holding = Vec::new();
    for (table, column) in columns {
        let found: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            r#"SELECT EXISTS (SELECT 1 FROM "{table}" WHERE "{column}" LIKE 'gAAAAA%')"#
        )))
        .fetch_one(&mut owner)
        .await
        .unwrap();
        if found {
            holding.push((table, column));
        }
    }
    holding
}

async fn stored_tokens(app: &crate::helpers::TestApp) -> Vec<String> {
    let mut owner = app.database.owner_connection().await;
    let mut tokens = Vec::new();
    for column in ENCRYPTED_COLUMNS {
        let token: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM {}",
            column.column, column.table
        )))
        .fetch_one(&mut owner)
        .await
        .unwrap();
        tokens.push(token);
    }
    tokens
}

/// After `rotate-keys` the old key can be dropped: every stored secret —
/// whichever column holds it — is under the new key.
#[tokio::test]
async fn rotation_moves_every_stored_secret_to_the_new_key() {
    let (old, new) = (key(), key());
    let old_for_app = old.clone();
    let app = crate::helpers::spawn_app_with(move |s| {
        s.secrets.fernet_keys = vec![old_for_app];
        // No SMTP server listens there: the registration's verification
        // email stays unsent, its link encrypted in the outbox.
        s.email.mode = stock_tracker::config::EmailMode::Smtp;
        s.email.smtp_host = "127.0.0.1".into();
        s.email.smtp_port = 1;
        s.email.smtp_tls = stock_tracker::config::SmtpTls::None;
    })
    .await;
    let owner = app.register("rotate@example.com").await;
    for (path, body) in [
        (
            "/api/v1/marketplaces",
            json!({"kind": "wildberries", "name": "WB", "credentials": {"api_token": TOKEN}}),
        ),
        (
            "/api/v1/webhooks",
            json!({"url": "https://93.184.216.34/hooks", "events": ["stock.low"]}),
        ),
        (
            "/api/v1/telegram/chats",
            json!({"bot_token": "123456:ABC-token", "chat_id": "-100", "events": ["stock.low"]}),
        ),
    ] {
        let created = app.post_json(path, Some(&owner.bearer()), &body).await;
        assert_eq!(created.status(), 201, "{path}");
    }

    // The list is complete: no other column holds a Fernet token.
    let mut expected: Vec<(String, String)> = ENCRYPTED_COLUMNS
        .iter()
        .map(|c| (c.table.to_owned(), c.column.to_owned()))
        .collect();
    expected.sort();
    assert_eq!(columns_holding_fernet_tokens(&app).await, expected);

    let stored = stored_tokens(&app).await;
    let plaintexts: Vec<Vec<u8>> = stored
        .iter()
        .map(|token| {
            SecretBox::new(std::slice::from_ref(&old))
                .unwrap()
                .decrypt(token)
                .unwrap()
        })
        .collect();
    assert!(String::from_utf8_lossy(&plaintexts[0]).contains(TOKEN));
    assert!(!stored[0].contains(TOKEN), "the column holds plaintext");

    // The operator puts a new key first and rotates.
    let keys = format!(
        "{},{}",
        secrecy::ExposeSecret::expose_secret(&new),
        secrecy::ExposeSecret::expose_secret(&old)
    );
    // An operator command: PostgreSQL itself, never a pooler.
    let url =
        secrecy::ExposeSecret::expose_secret(app.state.settings.database.session_url()).to_owned();
    let rotate = |keys: String, url: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_stock-tracker"))
                .arg("rotate-keys")
                .env("DATABASE_URL", url)
                .env("STOCK_TRACKER__SECRETS__FERNET_KEYS", keys)
                .output()
                .unwrap()
        })
    };
    let output = rotate(keys.clone(), url.clone()).await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = String::from_utf8_lossy(&output.stdout);
    for column in ENCRYPTED_COLUMNS {
        let line = format!(
            "{}: 1 re-encrypted, 0 already under the current key",
            column.holds
        );
        assert!(report.contains(&line), "{report}");
    }

    // The new key alone decrypts each of them; the old one none.
    let rotated = stored_tokens(&app).await;
    for ((token, before), plaintext) in rotated.iter().zip(&stored).zip(&plaintexts) {
        assert_ne!(token, before);
        assert_eq!(
            &SecretBox::new(std::slice::from_ref(&new))
                .unwrap()
                .decrypt(token)
                .unwrap(),
            plaintext
        );
        assert!(
            SecretBox::new(std::slice::from_ref(&old))
                .unwrap()
                .decrypt(token)
                .is_err()
        );
    }
    // Running it again changes nothing.
    let again = rotate(keys, url).await.unwrap();
    let report = String::from_utf8_lossy(&again.stdout);
    assert_eq!(
        report.matches("0 re-encrypted, 1 already").count(),
        ENCRYPTED_COLUMNS.len(),
        "{report}"
    );
    assert_eq!(stored_tokens(&app).await, rotated);
}

#[tokio::test]
async fn null_credentials_are_refused_but_demo_may_omit_them() {
    let app = spawn_app().await;
    let owner = app.register("mk-null@example.com").await;
    let null = app
        .post_json(
            "/api/v1/marketplaces",
            Some(&owner.bearer()),
            &json!({"kind": "demo", "name": "D", "credentials": null}),
        )
        .await;
    assert_eq!(null.status(), 422);
    let body: Value = null.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"], json!(["body", "credentials"]));
    let omitted = app
        .post_json(
            "/api/v1/marketplaces",
            Some(&owner.bearer()),
            &json!({"kind": "demo", "name": "D"}),
        )
        .await;
    assert_eq!(omitted.status(), 201);
}

#[tokio::test]
async fn production_refuses_a_demo_connection_and_development_keeps_it() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.environment = stock_tracker::config::Environment::Production;
        // Signs in without following the emailed link (production requires it by default).
        s.auth.require_verified_email = Some(false);
    })
    .await;
    let owner = app.register("mk-prod@example.com").await;
    let demo = app
        .post_json(
            "/api/v1/marketplaces",
            Some(&owner.bearer()),
            &json!({"kind": "demo", "name": "Demo"}),
        )
        .await;
    assert_eq!(demo.status(), 422);
    let error: Value = demo.json().await.unwrap();
    assert_eq!(error["detail"][0]["loc"], json!(["body", "kind"]));
    assert!(
        error["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("not available in production"),
        "{error}"
    );
    let real = app
        .post_json(
            "/api/v1/marketplaces",
            Some(&owner.bearer()),
            &json!({"kind": "wildberries", "name": "WB", "credentials": {"api_token": TOKEN}}),
        )
        .await;
    assert_eq!(real.status(), 201);
    let list: Value = app
        .get_as("/api/v1/marketplaces", &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "nothing partial"
    );

    // Development keeps the simulator for trying the product.
    let dev = crate::helpers::spawn_app().await;
    let owner = dev.register("mk-dev@example.com").await;
    let demo = dev
        .post_json(
            "/api/v1/marketplaces",
            Some(&owner.bearer()),
            &json!({"kind": "demo", "name": "Demo"}),
        )
        .await;
    assert_eq!(demo.status(), 201);
}
