//! User management rules, API keys, and how both are cut off.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, spawn_app, spawn_app_with};

#[tokio::test]
async fn admins_list_users_page_by_page() {
    let app = spawn_app().await;
    let owner = app.register("own@example.com").await;
    for i in 0..4 {
        app.add_user(&owner, &format!("u{i}@example.com"), "viewer")
            .await;
    }
    let first: Value = app
        .get_as("/api/v1/users?limit=2", &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let mut seen: Vec<Value> = first["items"].as_array().unwrap().clone();
    let mut next = Some(cursor.to_owned());
    while let Some(cursor) = next {
        let page: Value = app
            .get_as(
                &format!("/api/v1/users?limit=2&cursor={cursor}"),
                &owner.bearer(),
            )
            .await
            .json()
            .await
            .unwrap();
        seen.extend(page["items"].as_array().unwrap().iter().cloned());
        next = page["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen.len(), 5);
    let bad = app.get_as("/api/v1/users?limit=500", &owner.bearer()).await;
    assert_eq!(bad.status(), 422);
    let bad = app
        .get_as("/api/v1/users?cursor=%%%", &owner.bearer())
        .await;
    assert_eq!(bad.status(), 422);
}

#[tokio::test]
async fn an_admin_cannot_create_or_promote_owners() {
    let app = spawn_app().await;
    let owner = app.register("o@example.com").await;
    let admin = app.add_user(&owner, "a@example.com", "admin").await;
    let member = app.add_user(&owner, "m@example.com", "member").await;

    let create_owner = app
        .post_json(
            "/api/v1/users",
            Some(&admin.bearer()),
            &json!({"email": "x@example.com", "password": PASSWORD, "role": "owner"}),
        )
        .await;
    assert_eq!(create_owner.status(), 403);
    let promote = app
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{}", member.user_id),
            Some(&admin.bearer()),
            Some(&json!({"role": "owner"})),
        )
        .await;
    assert_eq!(promote.status(), 403);
    let demote_owner = app
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{}", owner.user_id),
            Some(&admin.bearer()),
            Some(&json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(demote_owner.status(), 403);
    // An admin can change a member's role.
    let to_viewer = app
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{}", member.user_id),
            Some(&admin.bearer()),
            Some(&json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(to_viewer.status(), 200);
    let body: Value = to_viewer.json().await.unwrap();
    assert_eq!(body["role"], "viewer");
}

#[tokio::test]
async fn the_last_owner_can_be_neither_demoted_nor_deactivated() {
    let app = spawn_app().await;
    let owner = app.register("solo@example.com").await;
    let demote = app
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{}", owner.user_id),
            Some(&owner.bearer()),
            Some(&json!({"role": "admin"})),
        )
        .await;
    assert_eq!(demote.status(), 409);
    let body: Value = demote.json().await.unwrap();
    assert_eq!(body["code"], "last_owner");
    let deactivate = app
        .send(
            Method::POST,
            &format!("/api/v1/users/{}/deactivate", owner.user_id),
            Some(&owner.bearer()),
            None,
        )
        .await;
    assert_eq!(deactivate.status(), 409);
}

#[tokio::test]
async fn a_role_change_applies_at_once_and_after_refresh() {
    let app = spawn_app().await;
    let owner = app.register("rc-owner@example.com").await;
    let admin = app.add_user(&owner, "rc-admin@example.com", "admin").await;
    assert_eq!(
        app.get_as("/api/v1/users", &admin.bearer()).await.status(),
        200
    );
    app.send(
        Method::PATCH,
        &format!("/api/v1/users/{}", admin.user_id),
        Some(&owner.bearer()),
        Some(&json!({"role": "viewer"})),
    )
    .await;
    // The admin-era token no longer works…
    assert_eq!(
        app.get_as("/api/v1/users", &admin.bearer()).await.status(),
        401
    );
    // …and a refreshed one carries the new role.
    let refreshed: Value = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": admin.tokens.refresh_token}),
        )
        .await
        .json()
        .await
        .unwrap();
    let bearer = format!("Bearer {}", refreshed["access_token"].as_str().unwrap());
    assert_eq!(app.get_as("/api/v1/users", &bearer).await.status(), 403);
    assert_eq!(app.get_as("/api/v1/users/me", &bearer).await.status(), 200);
}

#[tokio::test]
async fn deactivation_cuts_off_tokens_sessions_and_api_keys_at_once() {
    let app = spawn_app().await;
    let owner = app.register("cut-owner@example.com").await;
    let admin = app.add_user(&owner, "cut-admin@example.com", "admin").await;
    let (_, key) = app.create_api_key(&admin, "member").await;
    assert_eq!(
        app.get_with_key("/api/v1/tenants/me", &key).await.status(),
        200
    );

    let response = app
        .send(
            Method::POST,
            &format!("/api/v1/users/{}/deactivate", admin.user_id),
            Some(&owner.bearer()),
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["is_active"], false);

    assert_eq!(
        app.get_as("/api/v1/users/me", &admin.bearer())
            .await
            .status(),
        401
    );
    assert_eq!(
        app.get_with_key("/api/v1/tenants/me", &key).await.status(),
        401
    );
    let refresh = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": admin.tokens.refresh_token}),
        )
        .await;
    assert_eq!(refresh.status(), 401);
    let login = app
        .post_json(
            "/api/v1/auth/login",
            None,
            &json!({"email": "cut-admin@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status(), 401);
}

#[tokio::test]
async fn a_password_change_needs_the_current_one_and_ends_sessions() {
    let app = spawn_app().await;
    let account = app.register("pw@example.com").await;
    let path = "/api/v1/users/me";
    let missing = app
        .send(
            Method::PATCH,
            path,
            Some(&account.bearer()),
            Some(&json!({"new_password": "a-brand-new-secret"})),
        )
        .await;
    assert_eq!(missing.status(), 422);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "current_password"])
    );
    let wrong = app
        .send(
            Method::PATCH,
            path,
            Some(&account.bearer()),
            Some(&json!({"current_password": "not-the-password", "new_password": "a-brand-new-secret"})),
        )
        .await;
    assert_eq!(wrong.status(), 403);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["code"], "invalid_current_password");
    let weak = app
        .send(
            Method::PATCH,
            path,
            Some(&account.bearer()),
            Some(&json!({"current_password": PASSWORD, "new_password": "password123"})),
        )
        .await;
    assert_eq!(weak.status(), 422);
    let body: Value = weak.json().await.unwrap();
    assert_eq!(body["detail"][0]["type"], "value_error");
    assert!(
        body["detail"][0]["ctx"]["error"]
            .as_str()
            .unwrap()
            .contains("too common")
    );
    let ok = app
        .send(
            Method::PATCH,
            path,
            Some(&account.bearer()),
            Some(&json!({"current_password": PASSWORD, "new_password": "a-brand-new-secret"})),
        )
        .await;
    assert_eq!(ok.status(), 200);
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
    let old = app
        .post_json(
            "/api/v1/auth/login",
            None,
            &json!({"email": "pw@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(old.status(), 401);
    let tokens = app.login("pw@example.com", "a-brand-new-secret").await;
    let renamed = app
        .send(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&format!("Bearer {}", tokens.access_token)),
            Some(&json!({"full_name": "Renamed"})),
        )
        .await;
    assert_eq!(renamed.status(), 200);
    let body: Value = renamed.json().await.unwrap();
    assert_eq!(body["full_name"], "Renamed");
    let blank = app
        .send(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&format!("Bearer {}", tokens.access_token)),
            Some(&json!({"full_name": "   "})),
        )
        .await;
    assert_eq!(blank.status(), 422);
}

#[tokio::test]
async fn api_keys_are_shown_once_listed_by_prefix_and_revocable() {
    let app = spawn_app().await;
    let owner = app.register("keys@example.com").await;
    let (id, key) = app.create_api_key(&owner, "viewer").await;
    assert!(key.starts_with("stk_"));

    let me = app.get_with_key("/api/v1/tenants/me", &key).await;
    assert_eq!(me.status(), 200);
    let tenant: Value = me.json().await.unwrap();
    assert_eq!(tenant["id"], owner.tenant_id.to_string());

    let list: Value = app
        .get_as("/api/v1/api-keys", &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    let listed = &list["items"][0];
    assert_eq!(listed["id"], id.to_string());
    assert!(key.starts_with(listed["prefix"].as_str().unwrap()));
    assert!(listed.get("key").is_none(), "the key is never shown again");
    assert!(!list.to_string().contains(&key));
    assert!(listed["last_used_at"].is_string());

    let revoke = app
        .send(
            Method::DELETE,
            &format!("/api/v1/api-keys/{id}"),
            Some(&owner.bearer()),
            None,
        )
        .await;
    assert_eq!(revoke.status(), 204);
    let after = app.get_with_key("/api/v1/tenants/me", &key).await;
    assert_eq!(after.status(), 401);
    let body: Value = after.json().await.unwrap();
    assert_eq!(body["code"], "invalid_api_key");
    let again = app
        .send(
            Method::DELETE,
            &format!("/api/v1/api-keys/{id}"),
            Some(&owner.bearer()),
            None,
        )
        .await;
    assert_eq!(again.status(), 404);
}

#[tokio::test]
async fn api_keys_carry_their_role_and_no_session() {
    let app = spawn_app().await;
    let owner = app.register("kr@example.com").await;
    let (_, viewer_key) = app.create_api_key(&owner, "viewer").await;
    let (_, admin_key) = app.create_api_key(&owner, "admin").await;
    assert_eq!(
        app.get_with_key("/api/v1/users", &viewer_key)
            .await
            .status(),
        403
    );
    assert_eq!(
        app.get_with_key("/api/v1/users", &admin_key).await.status(),
        200
    );
    // No "me" and no logout for a key.
    assert_eq!(
        app.get_with_key("/api/v1/users/me", &admin_key)
            .await
            .status(),
        403
    );
    // A key cannot be an owner, nor outrank its creator.
    let owner_key = app
        .post_json(
            "/api/v1/api-keys",
            Some(&owner.bearer()),
            &json!({"name": "k", "role": "owner"}),
        )
        .await;
    assert_eq!(owner_key.status(), 422);
    let admin = app.add_user(&owner, "kr-admin@example.com", "admin").await;
    let (_, _) = app.create_api_key(&admin, "admin").await;
    let garbage = app
        .get_with_key("/api/v1/tenants/me", "stk_notreal_xxxxxxxx")
        .await;
    assert_eq!(garbage.status(), 401);
}

/// A made-up key of the right shape (never issued).
fn unknown_key(n: u8) -> String {
    format!("stk_unknwn{n:02}_{}", "A".repeat(43))
}

async fn with_key_from(app: &TestApp, address: &str, key: &str) -> reqwest::Response {
    app.client
        .get(app.url("/api/v1/tenants/me"))
        .header("x-forwarded-for", address)
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
}

/// Bad keys cost no database work once seen: a malformed one never does,
/// an unknown one is remembered, and an address trying many unknown keys
/// is limited before PostgreSQL is asked. (Proven by taking the database
/// away: a lookup would then answer 503.)
#[tokio::test]
async fn bad_api_keys_cost_no_database_work_once_seen() {
    let app = spawn_app_with(|s| {
        s.rate_limit.trusted_proxies = vec!["127.0.0.1".into()];
        s.rate_limit.api_key_lookups.limit = 3;
    })
    .await;
    let seen = unknown_key(1);
    assert_eq!(seen.len(), 4 + 8 + 1 + 43, "{seen}");
    assert_eq!(
        with_key_from(&app, "198.51.100.1", &seen).await.status(),
        401
    );
    // Another address tries three more unknown keys: its lookups are spent.
    for n in 2..=4 {
        let response = with_key_from(&app, "198.51.100.2", &unknown_key(n)).await;
        assert_eq!(response.status(), 401);
    }

    app.database.make_unreachable().await;
    for (address, key, status) in [
        // Remembered as unknown: refused without asking.
        ("198.51.100.1", seen.as_str(), 401),
        // Malformed: refused unparsed.
        ("198.51.100.1", "stk_nonsense", 401),
        ("198.51.100.1", "stk_abcdefgh_short", 401),
        // Past its address's lookups: refused before any database work.
        ("198.51.100.2", unknown_key(5).as_str(), 429),
        // A new key from a fresh address is looked up: the database is
        // gone, so that lookup fails — which the answers above never did.
        ("198.51.100.3", unknown_key(6).as_str(), 503),
    ] {
        let response = with_key_from(&app, address, key).await;
        assert_eq!(response.status(), status, "{key} from {address}");
        if status == 429 {
            let body: Value = response.json().await.unwrap();
            assert!(
                body["detail"].as_str().unwrap().contains("api-key-lookup"),
                "{body}"
            );
        }
    }
}

/// A key's use is recorded at most once a minute, however often its cached
/// grant expires.
#[tokio::test]
async fn a_keys_last_use_is_written_at_most_once_a_minute() {
    let app = spawn_app_with(|s| s.auth.api_key_cache_ttl_secs = 1).await;
    let owner = app.register("last-used@example.com").await;
    let (id, key) = app.create_api_key(&owner, "viewer").await;
    let last_used = || async {
        let at: Option<time::OffsetDateTime> =
            sqlx::query_scalar("SELECT last_used_at FROM api_keys WHERE id = $1")
                .bind(id)
                .fetch_one(&mut app.database.owner_connection().await)
                .await
                .unwrap();
        at.expect("the use was recorded")
    };
    assert_eq!(
        app.get_with_key("/api/v1/tenants/me", &key).await.status(),
        200
    );
    let first = last_used().await;
    // The cached grant expires; the next use reads the key again.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(
        app.get_with_key("/api/v1/tenants/me", &key).await.status(),
        200
    );
    assert_eq!(last_used().await, first, "written again within the minute");

    sqlx::query("UPDATE api_keys SET last_used_at = now() - interval '2 minutes' WHERE id = $1")
        .bind(id)
        .execute(&mut app.database.owner_connection().await)
        .await
        .unwrap();
    let stale = last_used().await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(
        app.get_with_key("/api/v1/tenants/me", &key).await.status(),
        200
    );
    assert!(last_used().await > stale, "a minute later it is written");
}

/// A key can hand out no access that would outlive it: it creates and
/// changes no credentials — keys, users, roles, ownership — whatever its role.
#[tokio::test]
async fn an_api_key_cannot_create_or_change_credentials() {
    let app = spawn_app().await;
    let owner = app.register("key-limits@example.com").await;
    let member = app
        .add_user(&owner, "key-limits-member@example.com", "member")
        .await;
    let (own_id, admin_key) = app.create_api_key(&owner, "admin").await;
    let user = format!("/api/v1/users/{}", member.user_id);
    let attempts = [
        (
            Method::POST,
            "/api/v1/api-keys".to_owned(),
            Some(json!({"name": "k", "role": "viewer"})),
        ),
        (Method::DELETE, format!("/api/v1/api-keys/{own_id}"), None),
        (
            Method::POST,
            "/api/v1/users".to_owned(),
            Some(
                json!({"email": "made-by-key@example.com", "password": PASSWORD, "role": "viewer"}),
            ),
        ),
        (Method::PATCH, user.clone(), Some(json!({"role": "viewer"}))),
        (Method::POST, format!("{user}/deactivate"), None),
    ];
    for (method, path, body) in attempts {
        let response = app
            .send_with_key(method.clone(), &path, &admin_key, body.as_ref())
            .await;
        assert_eq!(response.status(), 403, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "api_key_not_allowed", "{method} {path}");
    }
    // What is not a credential stays open to it.
    let renamed = app
        .send_with_key(
            Method::PATCH,
            &user,
            &admin_key,
            Some(&json!({"full_name": "M"})),
        )
        .await;
    assert_eq!(renamed.status(), 200);
    assert_eq!(
        app.get_with_key("/api/v1/users", &admin_key).await.status(),
        200
    );
}

/// Admin-level credentials need a password sign-in within
/// `auth.reauthentication_secs`; a session refreshed for hours does not do.
#[tokio::test]
async fn admin_level_credentials_need_a_recent_password_sign_in() {
    let app = spawn_app_with(|s| s.auth.reauthentication_secs = 600).await;
    let owner = app.register("reauth@example.com").await;
    let member = app
        .add_user(&owner, "reauth-member@example.com", "member")
        .await;
    // The session signed in two hours ago, and has refreshed since.
    sqlx::query(
        "UPDATE refresh_tokens SET authenticated_at = now() - interval '2 hours' WHERE user_id = $1",
    )
    .bind(owner.user_id)
    .execute(&mut app.database.owner_connection().await)
    .await
    .unwrap();
    let refreshed: Value = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": owner.tokens.refresh_token}),
        )
        .await
        .json()
        .await
        .unwrap();
    let stale = format!("Bearer {}", refreshed["access_token"].as_str().unwrap());
    let user = format!("/api/v1/users/{}", member.user_id);
    let admin_level = [
        (
            Method::POST,
            "/api/v1/api-keys".to_owned(),
            json!({"name": "k", "role": "admin"}),
        ),
        (
            Method::POST,
            "/api/v1/users".to_owned(),
            json!({"email": "new-admin@example.com", "password": PASSWORD, "role": "admin"}),
        ),
        (Method::PATCH, user.clone(), json!({"role": "admin"})),
        (
            Method::POST,
            "/api/v1/tenants/me/transfer-ownership".to_owned(),
            json!({"user_id": member.user_id}),
        ),
    ];
    for (method, path, body) in &admin_level {
        let response = app
            .send(method.clone(), path, Some(&stale), Some(body))
            .await;
        assert_eq!(response.status(), 403, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "reauthentication_required", "{method} {path}");
    }
    // Lesser credentials need no fresh sign-in.
    let viewer_key = app
        .send(
            Method::POST,
            "/api/v1/api-keys",
            Some(&stale),
            Some(&json!({"name": "v", "role": "viewer"})),
        )
        .await;
    assert_eq!(viewer_key.status(), 201);
    // Signing in again with the password opens them.
    let fresh = app.login("reauth@example.com", PASSWORD).await;
    let fresh = format!("Bearer {}", fresh.access_token);
    let (method, path, body) = &admin_level[0];
    let response = app
        .send(method.clone(), path, Some(&fresh), Some(body))
        .await;
    assert_eq!(response.status(), 201);
}

/// Keys may expire, and listings say who made each and when it was last used.
#[tokio::test]
async fn keys_expire_and_list_their_creator_and_last_use() {
    let app = spawn_app().await;
    let owner = app.register("expiring@example.com").await;
    let past = (time::OffsetDateTime::now_utc() - time::Duration::minutes(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let refused = app
        .post_json(
            "/api/v1/api-keys",
            Some(&owner.bearer()),
            &json!({"name": "old", "role": "viewer", "expires_at": past}),
        )
        .await;
    assert_eq!(refused.status(), 422);
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::seconds(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let created: Value = app
        .post_json(
            "/api/v1/api-keys",
            Some(&owner.bearer()),
            &json!({"name": "short", "role": "viewer", "expires_at": soon}),
        )
        .await
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap();
    assert!(created["expires_at"].is_string(), "{created}");
    assert_eq!(
        app.get_with_key("/api/v1/tenants/me", key).await.status(),
        200
    );
    let listed: Value = app
        .get_as("/api/v1/api-keys", &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    let item = &listed["items"][0];
    assert_eq!(item["created_by"], owner.user_id.to_string());
    assert!(item["last_used_at"].is_string(), "{item}");
    assert!(item["expires_at"].is_string(), "{item}");
    // Past its expiry the key is refused, cached grant or not.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(
        app.get_with_key("/api/v1/tenants/me", key).await.status(),
        401
    );
}

/// A password change can end the user's API keys with the sessions.
#[tokio::test]
async fn a_password_change_can_revoke_the_users_api_keys() {
    let app = spawn_app().await;
    let owner = app.register("pw-keys@example.com").await;
    let admin = app
        .add_user(&owner, "pw-keys-admin@example.com", "admin")
        .await;
    let (_, owners_key) = app.create_api_key(&owner, "viewer").await;
    let (_, admins_key) = app.create_api_key(&admin, "viewer").await;
    let alone = app
        .send(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&owner.bearer()),
            Some(&json!({"revoke_api_keys": true})),
        )
        .await;
    assert_eq!(alone.status(), 422);
    let change = json!({
        "current_password": PASSWORD,
        "new_password": "a-brand-new-secret",
        "revoke_api_keys": true
    });
    let changed = app
        .send(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&owner.bearer()),
            Some(&change),
        )
        .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(
        app.get_with_key("/api/v1/tenants/me", &owners_key)
            .await
            .status(),
        401
    );
    assert_eq!(
        app.get_with_key("/api/v1/tenants/me", &admins_key)
            .await
            .status(),
        200
    );
}
