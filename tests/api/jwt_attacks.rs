//! Every way a bearer token can be wrong is refused with 401 and
//! `WWW-Authenticate: Bearer error="invalid_token"`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Account, TestApp, spawn_app, spawn_app_with};

const DEV_SECRET: &str = "dev-only-insecure-jwt-secret-change-me";
const PRIVATE_PEM: &str = include_str!("../fixtures/jwt-test-rs256-private.pem");
const PUBLIC_PEM: &str = include_str!("../fixtures/jwt-test-rs256-public.pem");

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Claims as the service issues them, for `account`.
fn claims(account: &Account) -> Value {
    json!({
        "sub": account.user_id,
        "tid": account.tenant_id,
        "role": "owner",
        "tier": "free",
        "sid": Uuid::now_v7(),
        "jti": Uuid::now_v7(),
        "iat": now(),
        "exp": now() + 600,
        "iss": "stock-tracker",
        "aud": "stock-tracker-api",
    })
}

fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn assert_refused(app: &TestApp, token: &str, case: &str) {
    let response = app
        .get_as("/api/v1/users/me", &format!("Bearer {token}"))
        .await;
    assert_eq!(response.status(), 401, "{case}");
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#,
        "{case}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "invalid_token", "{case}");
}

#[tokio::test]
async fn a_correctly_signed_token_is_accepted() {
    // The control case: the forgeries below differ from this in one way each.
    let app = spawn_app().await;
    let account = app.register("ctl@example.com").await;
    let token = sign(&claims(&account), DEV_SECRET);
    assert_eq!(
        app.get_as("/api/v1/users/me", &format!("Bearer {token}"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn alg_none_is_refused() {
    let app = spawn_app().await;
    let account = app.register("none@example.com").await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(&account).to_string());
    assert_refused(&app, &format!("{header}.{payload}."), "alg none").await;
}

#[tokio::test]
async fn a_wrong_signature_is_refused() {
    let app = spawn_app().await;
    let account = app.register("sig@example.com").await;
    assert_refused(
        &app,
        &sign(&claims(&account), "some-other-secret-of-enough-length!"),
        "wrong key",
    )
    .await;
    // A genuine token with its payload swapped.
    let genuine = account.tokens.access_token.clone();
    let mut parts: Vec<&str> = genuine.split('.').collect();
    let mut forged = claims(&account);
    forged["role"] = json!("owner");
    let payload = URL_SAFE_NO_PAD.encode(forged.to_string());
    parts[1] = &payload;
    assert_refused(&app, &parts.join("."), "swapped payload").await;
}

#[tokio::test]
async fn a_forged_tenant_claim_signed_with_a_wrong_key_is_refused() {
    let app = spawn_app().await;
    let victim = app.register("victim@example.com").await;
    let attacker = app.register("attacker@example.com").await;
    let mut forged = claims(&attacker);
    forged["tid"] = json!(victim.tenant_id);
    assert_refused(
        &app,
        &sign(&forged, "attacker-guessed-secret-value-xxxx"),
        "forged tid",
    )
    .await;
}

#[tokio::test]
async fn another_algorithm_than_the_configured_one_is_refused() {
    let app = spawn_app().await;
    let account = app.register("alg@example.com").await;
    let rs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims(&account),
        &EncodingKey::from_rsa_pem(PRIVATE_PEM.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_refused(&app, &rs256, "RS256 when HS256 is configured").await;
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims(&account),
        &EncodingKey::from_secret(DEV_SECRET.as_bytes()),
    )
    .unwrap();
    assert_refused(&app, &hs512, "HS512 with the right secret").await;
}

#[tokio::test]
async fn wrong_issuer_or_audience_is_refused() {
    let app = spawn_app().await;
    let account = app.register("iss@example.com").await;
    let mut wrong_iss = claims(&account);
    wrong_iss["iss"] = json!("someone-else");
    assert_refused(&app, &sign(&wrong_iss, DEV_SECRET), "iss").await;
    let mut wrong_aud = claims(&account);
    wrong_aud["aud"] = json!("another-api");
    assert_refused(&app, &sign(&wrong_aud, DEV_SECRET), "aud").await;
}

#[tokio::test]
async fn an_expired_token_is_refused_beyond_the_leeway() {
    let app = spawn_app().await;
    let account = app.register("exp@example.com").await;
    let mut expired = claims(&account);
    expired["exp"] = json!(now() - 120);
    assert_refused(&app, &sign(&expired, DEV_SECRET), "expired").await;
    // Within the configured leeway (30 s) it is still accepted.
    let mut just_expired = claims(&account);
    just_expired["exp"] = json!(now() - 5);
    let ok = app
        .get_as(
            "/api/v1/users/me",
            &format!("Bearer {}", sign(&just_expired, DEV_SECRET)),
        )
        .await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn missing_claims_are_refused() {
    let app = spawn_app().await;
    let account = app.register("claims@example.com").await;
    let mut no_exp = claims(&account);
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_refused(&app, &sign(&no_exp, DEV_SECRET), "no exp").await;
    let mut no_tid = claims(&account);
    no_tid.as_object_mut().unwrap().remove("tid");
    assert_refused(&app, &sign(&no_tid, DEV_SECRET), "no tid").await;
}

#[tokio::test]
async fn a_revoked_jti_is_refused() {
    let app = spawn_app().await;
    let account = app.register("jti@example.com").await;
    app.send(
        reqwest::Method::POST,
        "/api/v1/auth/logout",
        Some(&account.bearer()),
        None,
    )
    .await;
    assert_refused(&app, &account.tokens.access_token, "revoked jti").await;
}

#[tokio::test]
async fn a_user_deactivated_after_issue_is_refused() {
    let app = spawn_app().await;
    let owner = app.register("boss@example.com").await;
    let member = app.add_user(&owner, "leaver@example.com", "member").await;
    assert_eq!(
        app.get_as("/api/v1/users/me", &member.bearer())
            .await
            .status(),
        200
    );
    let response = app
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/users/{}/deactivate", member.user_id),
            Some(&owner.bearer()),
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_refused(&app, &member.tokens.access_token, "deactivated user").await;
}

#[tokio::test]
async fn garbage_and_other_schemes_are_refused() {
    let app = spawn_app().await;
    assert_refused(&app, "not.a.jwt", "garbage").await;
    let basic = app
        .client
        .get(app.url("/api/v1/users/me"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    let missing = app.get("/api/v1/users/me").await;
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["code"], "not_authenticated");
}

#[tokio::test]
async fn rs256_can_be_configured_and_refuses_the_key_confusion_attack() {
    let app = spawn_app_with(|s| {
        s.auth.jwt_algorithm = stock_tracker::config::JwtAlgorithm::RS256;
        s.auth.jwt_private_key_pem = PRIVATE_PEM.to_owned().into();
        s.auth.jwt_public_key_pem = PUBLIC_PEM.to_owned();
    })
    .await;
    let account = app.register("rsa@example.com").await;
    let header = jsonwebtoken::decode_header(&account.tokens.access_token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(
        app.get_as("/api/v1/users/me", &account.bearer())
            .await
            .status(),
        200
    );
    // HS256 "signed" with the public key: the classic algorithm-confusion forgery.
    assert_refused(
        &app,
        &sign(&claims(&account), PUBLIC_PEM),
        "HS256 with the public key",
    )
    .await;
}
