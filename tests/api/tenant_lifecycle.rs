//! Deleting users and tenants, restoring a tenant, the purge after the grace
//! period (beat's retention with a clock of the test's), and exports.

use std::io::Read;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use stock_tracker::worker::retention;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::accounts::{error_code, post};
use crate::helpers::{Account, PASSWORD, TestApp, spawn_app, spawn_app_with};
use crate::workers::TestQueues;

async fn login_status(app: &TestApp, email: &str, password: &str) -> (u16, String) {
    let response = post(
        app,
        "/api/v1/auth/login",
        json!({"email": email, "password": password}),
    )
    .await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

async fn count(app: &TestApp, sql: &str, id: Uuid) -> i64 {
    let mut db = app.database.owner_connection().await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(id)
        .fetch_one(&mut db)
        .await
        .unwrap()
}

#[tokio::test]
async fn users_delete_themselves_or_are_deleted_by_admins_under_the_owner_rules() {
    let app = spawn_app().await;
    let owner = app.register("owner@deleting.example").await;
    let admin = app
        .add_user(&owner, "admin@deleting.example", "admin")
        .await;
    let member = app
        .add_user(&owner, "member@deleting.example", "member")
        .await;
    let leaver = app
        .add_user(&owner, "leaver@deleting.example", "viewer")
        .await;

    let alone = app
        .send(
            Method::DELETE,
            "/api/v1/users/me",
            Some(&owner.bearer()),
            None,
        )
        .await;
    assert_eq!(error_code(alone).await, (409, "last_owner".into()));
    let owner_path = format!("/api/v1/users/{}", owner.user_id);
    let by_admin = app
        .send(Method::DELETE, &owner_path, Some(&admin.bearer()), None)
        .await;
    assert_eq!(error_code(by_admin).await, (403, "owner_required".into()));

    let member_path = format!("/api/v1/users/{}", member.user_id);
    let deleted = app
        .send(Method::DELETE, &member_path, Some(&admin.bearer()), None)
        .await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        app.get_as("/api/v1/users/me", &member.bearer())
            .await
            .status(),
        401
    );
    assert_eq!(
        login_status(&app, "member@deleting.example", PASSWORD)
            .await
            .0,
        401
    );
    assert_eq!(
        app.get_as(&member_path, &admin.bearer()).await.status(),
        404
    );

    let gone = app
        .send(
            Method::DELETE,
            "/api/v1/users/me",
            Some(&leaver.bearer()),
            None,
        )
        .await;
    assert_eq!(gone.status(), 204);
    assert_eq!(
        app.get_as("/api/v1/users/me", &leaver.bearer())
            .await
            .status(),
        401
    );

    // Another tenant cannot reach these users.
    let other = app.register("other@elsewhere.example").await;
    let foreign = app
        .send(
            Method::DELETE,
            &format!("/api/v1/users/{}", admin.user_id),
            Some(&other.bearer()),
            None,
        )
        .await;
    assert_eq!(foreign.status(), 404);

    let events: Value = app
        .get_as("/api/v1/audit-events?event=user.deleted", &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    let targets: Vec<&Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["target_id"])
        .collect();
    assert_eq!(
        targets,
        vec![&json!(leaver.user_id), &json!(member.user_id)]
    );
}

#[tokio::test]
async fn a_deleted_tenant_is_disabled_at_once_restorable_then_purged_after_its_grace_period() {
    let app = spawn_app().await;
    let owner = app.register("owner@leaving.example").await;
    let member = app
        .add_user(&owner, "member@leaving.example", "member")
        .await;
    let (_, key) = app.create_api_key(&owner, "member").await;
    app.create_product(&owner, "SKU-1", "Kept product", "10.00", 3)
        .await;
    let bystander = app.register("owner@staying.example").await;
    app.create_product(&bystander, "SKU-1", "Other product", "10.00", 3)
        .await;
    app.create_api_key(&bystander, "viewer").await;

    let refused = app
        .send(
            Method::DELETE,
            "/api/v1/tenants/me",
            Some(&member.bearer()),
            None,
        )
        .await;
    assert_eq!(refused.status(), 403);
    let deleted = app
        .send(
            Method::DELETE,
            "/api/v1/tenants/me",
            Some(&owner.bearer()),
            None,
        )
        .await;
    assert_eq!(deleted.status(), 202);
    let scheduled: Value = deleted.json().await.unwrap();
    let purge_after = OffsetDateTime::parse(
        scheduled["purge_after"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let in_days = (purge_after - OffsetDateTime::now_utc()).whole_days();
    assert!((29..=30).contains(&in_days), "{scheduled}");

    // Disabled at once: every token, every key, every sign-in.
    assert_eq!(
        app.get_as("/api/v1/products", &owner.bearer())
            .await
            .status(),
        401
    );
    assert_eq!(
        app.get_as("/api/v1/products", &member.bearer())
            .await
            .status(),
        401
    );
    assert_eq!(
        app.get_with_key("/api/v1/products", &key).await.status(),
        401
    );
    assert_eq!(
        login_status(&app, "member@leaving.example", PASSWORD).await,
        (403, "tenant_deleted".into())
    );
    assert_eq!(
        login_status(&app, "owner@leaving.example", PASSWORD).await,
        (403, "tenant_deleted".into())
    );

    // Restored by its owner, with email and password.
    let restore = |email: &'static str, password: &'static str| {
        let app = &app;
        async move {
            post(
                app,
                "/api/v1/tenants/me/restore",
                json!({"email": email, "password": password}),
            )
            .await
        }
    };
    let by_member = restore("member@leaving.example", PASSWORD).await;
    assert_eq!(error_code(by_member).await, (403, "owner_required".into()));
    assert_eq!(
        restore("owner@leaving.example", "wrong-password")
            .await
            .status(),
        401
    );
    let restored = restore("owner@leaving.example", PASSWORD).await;
    assert_eq!(restored.status(), 200);
    let again = restore("owner@leaving.example", PASSWORD).await;
    assert_eq!(error_code(again).await, (409, "tenant_not_deleted".into()));
    let owner = Account {
        tokens: app.login("owner@leaving.example", PASSWORD).await,
        ..owner
    };
    let products: Value = app
        .get_as("/api/v1/products", &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(products["items"][0]["name"], "Kept product");
    assert_eq!(
        app.get_with_key("/api/v1/products", &key).await.status(),
        200
    );

    // Deleted again, and left: beat's retention purges it after the grace
    // period, with everything of it, and nothing of anyone else.
    let deleted = app
        .send(
            Method::DELETE,
            "/api/v1/tenants/me",
            Some(&owner.bearer()),
            None,
        )
        .await;
    assert_eq!(deleted.status(), 202);
    let purged = retention::register(&stock_tracker::telemetry::metrics::Metrics::new());
    let settings = &app.state.settings;
    let early = retention::run(
        &app.state.db,
        settings,
        &purged,
        OffsetDateTime::now_utc() + Duration::from_secs(29 * 86_400),
        None,
    )
    .await
    .unwrap();
    assert_eq!(early.of("deleted_tenants"), 0);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM tenants WHERE id = $1",
            owner.tenant_id
        )
        .await,
        1
    );
    let late = retention::run(
        &app.state.db,
        settings,
        &purged,
        OffsetDateTime::now_utc() + Duration::from_secs(31 * 86_400),
        None,
    )
    .await
    .unwrap();
    assert_eq!(late.of("deleted_tenants"), 1);
    for table in ["tenants", "users", "products", "api_keys", "audit_events"] {
        let column = if table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        let sql = format!("SELECT count(*) FROM {table} WHERE {column} = $1");
        assert_eq!(count(&app, &sql, owner.tenant_id).await, 0, "{table}");
        assert!(count(&app, &sql, bystander.tenant_id).await > 0, "{table}");
    }
    assert_eq!(
        login_status(&app, "owner@leaving.example", PASSWORD)
            .await
            .0,
        401
    );
}

/// The archive's files, by name.
fn unpack(archive: &[u8]) -> Vec<(String, String)> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    tar.entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            (name, text)
        })
        .collect()
}

#[tokio::test]
async fn an_export_holds_the_tenants_data_without_secrets_for_its_admins_only() {
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| {
        queues.apply(s);
        s.webhooks.allowed_ports = vec![];
    })
    .await;
    let owner = app.register("owner@exporting.example").await;
    app.create_product(&owner, "EXP-1", "Exported product", "12.50", 7)
        .await;
    let (_, key) = app.create_api_key(&owner, "admin").await;
    let secrets = [
        (
            "/api/v1/marketplaces",
            json!({"kind": "wildberries", "name": "WB", "credentials": {"api_token": "wb-secret-token-123"}}),
        ),
        (
            "/api/v1/webhooks",
            json!({"url": "https://93.184.216.34/hooks", "events": ["stock.low"]}),
        ),
        (
            "/api/v1/invitations",
            json!({"email": "invitee@exporting.example", "role": "viewer"}),
        ),
    ];
    for (path, body) in secrets {
        let created = app.post_json(path, Some(&owner.bearer()), &body).await;
        assert_eq!(
            created.status(),
            201,
            "{path}: {}",
            created.text().await.unwrap()
        );
    }

    let by_key = app
        .send_with_key(Method::POST, "/api/v1/tenants/me/export", &key, None)
        .await;
    assert_eq!(by_key.status(), 403);
    let started = app
        .post_json(
            "/api/v1/tenants/me/export",
            Some(&owner.bearer()),
            &json!({}),
        )
        .await;
    assert_eq!(started.status(), 202);
    let export: Value = started.json().await.unwrap();
    assert_eq!(export["status"], "queued");
    let id: Uuid = export["id"].as_str().unwrap().parse().unwrap();
    // Asked again while under way: the same export.
    let same: Value = app
        .post_json(
            "/api/v1/tenants/me/export",
            Some(&owner.bearer()),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(same["id"], export["id"]);
    let path = format!("/api/v1/tenants/me/exports/{id}");
    let early = app
        .get_as(&format!("{path}?download=true"), &owner.bearer())
        .await;
    assert_eq!(error_code(early).await, (409, "export_not_ready".into()));

    // The worker's task body builds it; a second delivery does nothing.
    assert!(
        stock_tracker::exports::service::build(&app.state, owner.tenant_id, id)
            .await
            .unwrap()
    );
    assert!(
        !stock_tracker::exports::service::build(&app.state, owner.tenant_id, id)
            .await
            .unwrap()
    );
    let status: Value = app
        .get_as(&path, &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "succeeded", "{status}");
    let download = app
        .get_as(&format!("{path}?download=true"), &owner.bearer())
        .await;
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "application/gzip");
    let bytes = download.bytes().await.unwrap();
    assert_eq!(status["size_bytes"], json!(bytes.len()));
    let files = unpack(&bytes);
    let file = |name: &str| {
        files
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .1
            .clone()
    };
    let manifest: Value = serde_json::from_str(&file("manifest.json")).unwrap();
    assert_eq!(manifest["tenant_id"], json!(owner.tenant_id));
    assert_eq!(manifest["rows"]["products"], 1);
    let product: Value =
        serde_json::from_str(file("products.jsonl").lines().next().unwrap()).unwrap();
    assert_eq!(product["name"], "Exported product");
    assert!(file("users.jsonl").contains("owner@exporting.example"));
    assert!(file("invitations.jsonl").contains("invitee@exporting.example"));
    assert!(file("audit_events.jsonl").contains("tenant.export_requested"));
    // No secret, and no hash of one, anywhere.
    let everything: String = files.iter().map(|(_, text)| text.as_str()).collect();
    for secret in [
        "gAAAAA",
        "$argon2",
        "wb-secret-token-123",
        key.as_str(),
        "password_hash",
        "key_hash",
        "token_hash",
        "secret_encrypted",
        "credentials_encrypted",
    ] {
        assert!(!everything.contains(secret), "the archive holds {secret}");
    }

    // Admins of this tenant only.
    let other = app.register("owner@elsewhere.example").await;
    assert_eq!(app.get_as(&path, &other.bearer()).await.status(), 404);
    let member = app
        .add_user(&owner, "member@exporting.example", "member")
        .await;
    assert_eq!(app.get_as(&path, &member.bearer()).await.status(), 403);
    // Kept for retention.tenant_export_hours, then gone.
    let mut db = app.database.owner_connection().await;
    sqlx::query("UPDATE tenant_exports SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&mut db)
        .await
        .unwrap();
    let expired = app
        .get_as(&format!("{path}?download=true"), &owner.bearer())
        .await;
    assert_eq!(error_code(expired).await, (409, "export_expired".into()));
}

/// Every table holding a tenant's rows is exported or deliberately left out:
/// a new table cannot be forgotten by exports.
#[tokio::test]
async fn every_tenant_table_is_exported_or_deliberately_left_out() {
    use stock_tracker::exports::archive::{EXPORTED_TABLES, NOT_EXPORTED};
    let app = spawn_app().await;
    let mut db = app.database.owner_connection().await;
    let mut tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.table_name::text FROM information_schema.columns c
         JOIN pg_class t ON t.relname = c.table_name AND t.relnamespace = 'public'::regnamespace
         WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id'
           AND NOT t.relispartition AND t.relkind IN ('r', 'p')",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    tables.push("tenants".into());
    tables.sort();
    let mut listed: Vec<String> = EXPORTED_TABLES
        .iter()
        .map(|t| t.table)
        .chain(NOT_EXPORTED.iter().copied())
        .map(str::to_owned)
        .collect();
    listed.sort();
    assert_eq!(tables, listed);
}
