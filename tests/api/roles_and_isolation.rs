//! The role matrix, and tenants never seeing each other.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Account, TestApp, spawn_app};

const ROLES: [&str; 4] = ["viewer", "member", "admin", "owner"];

fn rank(role: &str) -> usize {
    ROLES.iter().position(|r| *r == role).unwrap()
}

/// Every protected route with the least role it needs. Transferring
/// ownership is covered below (it changes who the owner is).
const PROTECTED: &[(&str, &str)] = &[
    ("GET /users/me", "viewer"),
    ("PATCH /users/me", "viewer"),
    ("GET /tenants/me", "viewer"),
    ("GET /users", "admin"),
    ("POST /users", "admin"),
    ("GET /users/{id}", "admin"),
    ("PATCH /users/{id}", "admin"),
    ("POST /users/{id}/deactivate", "admin"),
    ("GET /api-keys", "admin"),
    ("POST /api-keys", "admin"),
    ("DELETE /api-keys/{id}", "admin"),
    ("PATCH /tenants/me", "owner"),
    ("POST /auth/logout", "viewer"),
];

/// Calls `route` as `caller` with a request that passes validation and
/// targets something that exists, so the answer is about the role alone.
async fn call(
    app: &TestApp,
    owner: &Account,
    route: &str,
    caller: Option<&Account>,
    n: usize,
) -> reqwest::Response {
    let auth = caller.map(Account::bearer);
    let auth = auth.as_deref();
    let fresh_user = || async {
        app.add_user(
            owner,
            &format!("target-{n}-{}@example.com", Uuid::now_v7().simple()),
            "viewer",
        )
        .await
    };
    let v1 = "/api/v1";
    match route {
        "GET /users/me" => {
            app.send(Method::GET, &format!("{v1}/users/me"), auth, None)
                .await
        }
        "PATCH /users/me" => {
            app.send(
                Method::PATCH,
                &format!("{v1}/users/me"),
                auth,
                Some(&json!({"full_name": "Same"})),
            )
            .await
        }
        "GET /tenants/me" => {
            app.send(Method::GET, &format!("{v1}/tenants/me"), auth, None)
                .await
        }
        "GET /users" => {
            app.send(Method::GET, &format!("{v1}/users"), auth, None)
                .await
        }
        "POST /users" => {
            let email = format!("created-{}@example.com", Uuid::now_v7().simple());
            let body =
                json!({"email": email, "password": crate::helpers::PASSWORD, "role": "viewer"});
            app.send(Method::POST, &format!("{v1}/users"), auth, Some(&body))
                .await
        }
        "GET /users/{id}" => {
            let target = fresh_user().await;
            app.send(
                Method::GET,
                &format!("{v1}/users/{}", target.user_id),
                auth,
                None,
            )
            .await
        }
        "PATCH /users/{id}" => {
            let target = fresh_user().await;
            let body = json!({"full_name": "T"});
            app.send(
                Method::PATCH,
                &format!("{v1}/users/{}", target.user_id),
                auth,
                Some(&body),
            )
            .await
        }
        "POST /users/{id}/deactivate" => {
            let target = fresh_user().await;
            app.send(
                Method::POST,
                &format!("{v1}/users/{}/deactivate", target.user_id),
                auth,
                None,
            )
            .await
        }
        "GET /api-keys" => {
            app.send(Method::GET, &format!("{v1}/api-keys"), auth, None)
                .await
        }
        "POST /api-keys" => {
            let body = json!({"name": "k", "role": "viewer"});
            app.send(Method::POST, &format!("{v1}/api-keys"), auth, Some(&body))
                .await
        }
        "DELETE /api-keys/{id}" => {
            let (id, _) = app.create_api_key(owner, "viewer").await;
            app.send(Method::DELETE, &format!("{v1}/api-keys/{id}"), auth, None)
                .await
        }
        "PATCH /tenants/me" => {
            app.send(
                Method::PATCH,
                &format!("{v1}/tenants/me"),
                auth,
                Some(&json!({"name": "Renamed"})),
            )
            .await
        }
        "POST /auth/logout" => {
            app.send(Method::POST, &format!("{v1}/auth/logout"), auth, None)
                .await
        }
        other => panic!("no request for {other}"),
    }
}

#[tokio::test]
async fn each_role_gets_exactly_the_routes_it_is_allowed() {
    let app = spawn_app().await;
    let owner = app.register("matrix-owner@example.com").await;
    let mut callers: Vec<(&str, Account)> = Vec::new();
    for role in ["viewer", "member", "admin"] {
        callers.push((
            role,
            app.add_user(&owner, &format!("matrix-{role}@example.com"), role)
                .await,
        ));
    }
    // The owner's own session signs out last; use a second one for the matrix.
    let owner_session = Account {
        tokens: app
            .login("matrix-owner@example.com", crate::helpers::PASSWORD)
            .await,
        ..owner.clone()
    };
    callers.push(("owner", owner_session));

    for (n, (role, caller)) in callers.iter().enumerate() {
        for (route, least) in PROTECTED {
            let response = call(&app, &owner, route, Some(caller), n).await;
            let status = response.status().as_u16();
            if rank(role) >= rank(least) {
                assert!((200..300).contains(&status), "{role} {route}: {status}");
            } else {
                assert_eq!(status, 403, "{role} {route}");
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["code"], "insufficient_role", "{role} {route}");
            }
        }
    }
    // Anonymous callers get 401 with a challenge everywhere.
    for (route, _) in PROTECTED {
        let response = call(&app, &owner, route, None, 99).await;
        assert_eq!(response.status(), 401, "anonymous {route}");
        assert!(
            response.headers().contains_key("www-authenticate"),
            "anonymous {route}"
        );
    }
}

#[tokio::test]
async fn deactivate_and_ownership_transfer_need_their_roles() {
    let app = spawn_app().await;
    let owner = app.register("roles2@example.com").await;
    let member = app
        .add_user(&owner, "roles2-member@example.com", "member")
        .await;
    let admin = app
        .add_user(&owner, "roles2-admin@example.com", "admin")
        .await;
    let victim = app
        .add_user(&owner, "roles2-victim@example.com", "viewer")
        .await;
    let path = format!("/api/v1/users/{}/deactivate", victim.user_id);
    assert_eq!(
        app.send(Method::POST, &path, Some(&member.bearer()), None)
            .await
            .status(),
        403
    );
    assert_eq!(
        app.send(Method::POST, &path, Some(&admin.bearer()), None)
            .await
            .status(),
        200
    );
    let transfer = json!({"user_id": member.user_id});
    let path = "/api/v1/tenants/me/transfer-ownership";
    assert_eq!(
        app.send(Method::POST, path, Some(&admin.bearer()), Some(&transfer))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.send(Method::POST, path, Some(&owner.bearer()), Some(&transfer))
            .await
            .status(),
        200
    );
}

async fn status(
    app: &TestApp,
    method: Method,
    path: &str,
    who: &Account,
    body: Option<Value>,
) -> u16 {
    app.send(method, path, Some(&who.bearer()), body.as_ref())
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn another_tenants_users_and_keys_are_404_never_403() {
    let app = spawn_app().await;
    let alpha = app.register("alpha@example.com").await;
    let bravo = app.register("bravo@example.com").await;
    let bravo_user = app
        .add_user(&bravo, "bravo-user@example.com", "member")
        .await;
    let (bravo_key, bravo_secret) = app.create_api_key(&bravo, "viewer").await;

    let user_path = format!("/api/v1/users/{}", bravo_user.user_id);
    assert_eq!(
        status(&app, Method::GET, &user_path, &alpha, None).await,
        404
    );
    assert_eq!(
        status(
            &app,
            Method::PATCH,
            &user_path,
            &alpha,
            Some(json!({"role": "viewer"}))
        )
        .await,
        404
    );
    assert_eq!(
        status(
            &app,
            Method::POST,
            &format!("{user_path}/deactivate"),
            &alpha,
            None
        )
        .await,
        404
    );
    assert_eq!(
        status(
            &app,
            Method::DELETE,
            &format!("/api/v1/api-keys/{bravo_key}"),
            &alpha,
            None
        )
        .await,
        404
    );
    let transfer = json!({"user_id": bravo_user.user_id});
    assert_eq!(
        status(
            &app,
            Method::POST,
            "/api/v1/tenants/me/transfer-ownership",
            &alpha,
            Some(transfer)
        )
        .await,
        404
    );

    // Nothing of bravo's changed, and listings never show it.
    let bravo_view: Value = app
        .get_as(&user_path, &bravo.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bravo_view["role"], "member");
    assert_eq!(bravo_view["is_active"], true);
    assert_eq!(
        app.get_with_key("/api/v1/tenants/me", &bravo_secret)
            .await
            .status(),
        200
    );
    let listed: Value = app
        .get_as("/api/v1/users", &alpha.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let keys: Value = app
        .get_as("/api/v1/api-keys", &alpha.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert!(keys["items"].as_array().unwrap().is_empty());
    let me: Value = app
        .get_as("/api/v1/tenants/me", &alpha.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], alpha.tenant_id.to_string());
}

#[tokio::test]
async fn the_tenant_manages_its_settings_but_not_its_tier() {
    let app = spawn_app().await;
    let owner = app.register("settings@example.com").await;
    let patched = app
        .send(
            Method::PATCH,
            "/api/v1/tenants/me",
            Some(&owner.bearer()),
            Some(&json!({"name": "New name", "settings": {"low_stock_threshold": 3, "timezone": "Europe/Moscow"}})),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let body: Value = patched.json().await.unwrap();
    assert_eq!(body["name"], "New name");
    assert_eq!(
        body["settings"],
        json!({"low_stock_threshold": 3, "timezone": "Europe/Moscow"})
    );

    let tier = app
        .send(
            Method::PATCH,
            "/api/v1/tenants/me",
            Some(&owner.bearer()),
            Some(&json!({"tier": "enterprise"})),
        )
        .await;
    assert_eq!(tier.status(), 422);
    let bad_tz = app
        .send(
            Method::PATCH,
            "/api/v1/tenants/me",
            Some(&owner.bearer()),
            Some(&json!({"settings": {"timezone": "Mars/Base"}})),
        )
        .await;
    assert_eq!(bad_tz.status(), 422);
    let body: Value = bad_tz.json().await.unwrap();
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "settings", "timezone"])
    );

    // The platform route refuses tenants' own users.
    let own_tier = app
        .send(
            Method::PATCH,
            &format!("/api/v1/admin/tenants/{}/tier", owner.tenant_id),
            Some(&owner.bearer()),
            Some(&json!({"tier": "enterprise"})),
        )
        .await;
    assert_eq!(own_tier.status(), 403);
}

#[tokio::test]
async fn a_platform_admin_changes_tiers() {
    let app = spawn_app().await;
    let operator = app.register("operator@example.com").await;
    let seller = app.register("seller@example.com").await;
    // An operator command: PostgreSQL itself, never a pooler.
    let database_url =
        secrecy::ExposeSecret::expose_secret(app.state.settings.database.session_url()).to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_stock-tracker"))
            .args(["grant-platform-admin", "operator@example.com"])
            .env("DATABASE_URL", database_url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let path = format!("/api/v1/admin/tenants/{}/tier", seller.tenant_id);
    let changed = app
        .send(
            Method::PATCH,
            &path,
            Some(&operator.bearer()),
            Some(&json!({"tier": "premium"})),
        )
        .await;
    assert_eq!(changed.status(), 200);
    let body: Value = changed.json().await.unwrap();
    assert_eq!(body["tier"], "premium");
    let seen: Value = app
        .get_as("/api/v1/tenants/me", &seller.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["tier"], "premium");
    let missing = format!("/api/v1/admin/tenants/{}/tier", Uuid::now_v7());
    assert_eq!(
        app.send(
            Method::PATCH,
            &missing,
            Some(&operator.bearer()),
            Some(&json!({"tier": "premium"}))
        )
        .await
        .status(),
        404
    );
}
