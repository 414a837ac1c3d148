//! Password reset and email verification.

use garde::Validate;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sqlx::PgConnection;
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;
use uuid::Uuid;

use super::repository::{self, Purpose};
use super::throttle;
use crate::audit::{self, Actor, Event, Origin, Target};
use crate::auth::repository as sessions;
use crate::auth::tokens::{hash_secret, new_emailed_token};
use crate::auth::{AuthState, TenantCtx, password};
use crate::db;
use crate::email::{self, Kind, Queued};
use crate::http::error::ApiError;
use crate::http::validation::no_nul;
use crate::infra::Infra;

/// The path of each link, under `server.public_base_url` (what a front end
/// serves: a page that reads `token` and calls the API).
pub const RESET_PASSWORD_PATH: &str = "reset-password";
pub const VERIFY_EMAIL_PATH: &str = "verify-email";

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    #[garde(email, length(max = 320))]
    #[schema(example = "owner@acme.example", format = Email, max_length = 320)]
    pub email: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirmation {
    /// The `token` of the emailed link.
    #[garde(length(min = 1, max = 256), custom(no_nul))]
    #[schema(min_length = 1, max_length = 256)]
    pub token: String,
    /// At least 10 characters, not the email, not a common password.
    #[garde(skip)]
    #[schema(schema_with = password::new_password_schema)]
    pub new_password: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationRequest {
    /// The `token` of the emailed link.
    #[garde(length(min = 1, max = 256), custom(no_nul))]
    #[schema(min_length = 1, max_length = 256)]
    pub token: String,
}

fn token_error(code: &'static str, detail: &str) -> ApiError {
    ApiError::BadRequest {
        code,
        detail: detail.to_owned(),
    }
}

/// The token behind a presented one, if it is of `purpose` and still
/// usable; otherwise why not (400 `token_invalid`, `token_expired`,
/// `token_used`).
async fn usable_token(
    infra: &Infra,
    token: &str,
    purpose: Purpose,
) -> Result<repository::TokenRow, ApiError> {
    let invalid = || token_error("token_invalid", "This link is not valid: ask for a new one");
    let row = repository::find_token(&infra.db, &hash_secret(token))
        .await?
        .filter(|row| row.purpose == purpose.as_str())
        .ok_or_else(invalid)?;
    if row.used_at.is_some() {
        return Err(token_error(
            "token_used",
            "This link was already used, or a newer one was sent: ask for a new one if needed",
        ));
    }
    if row.expires_at <= OffsetDateTime::now_utc() {
        return Err(token_error(
            "token_expired",
            "This link has expired: ask for a new one",
        ));
    }
    Ok(row)
}

/// Writes a verification email for a user in the caller's transaction (hand
/// it over after commit).
pub async fn queue_verification(
    infra: &Infra,
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    user_id: Uuid,
    email: &str,
    full_name: &str,
) -> Result<Queued, sqlx::Error> {
    let ttl = infra.settings.auth.email_verification_ttl_secs;
    let (token, hash) = new_emailed_token();
    let expires_at = OffsetDateTime::now_utc() + Duration::seconds(ttl as i64);
    repository::insert_token(
        tenant,
        conn,
        user_id,
        Purpose::EmailVerification,
        email,
        &hash,
        expires_at,
    )
    .await?;
    let link = infra.settings.server.public_link(VERIFY_EMAIL_PATH, &token);
    let context = context(json!({"full_name": full_name, "expires_in_hours": ttl.div_ceil(3600)}));
    email::queue(
        infra,
        tenant,
        conn,
        Kind::EmailVerification,
        email,
        context,
        &link,
    )
    .await
}

fn context(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The account an address names, if it is active; `None` otherwise.
async fn active_account(
    infra: &Infra,
    email: &str,
) -> anyhow::Result<Option<crate::auth::repository::LoginRow>> {
    Ok(sessions::find_login(&infra.db, email.trim())
        .await?
        .filter(|account| account.is_active))
}

/// After `POST /auth/password-reset` has answered: mails a reset link if
/// the address has an active account and its hourly share left.
pub async fn send_password_reset(infra: &Infra, email: &str) -> anyhow::Result<()> {
    if !throttle::allow(infra, email).await {
        tracing::info!("password reset not sent: the address had its hourly share");
        return Ok(());
    }
    let Some(account) = active_account(infra, email).await? else {
        tracing::info!("password reset asked for an address without an active account");
        return Ok(());
    };
    let tenant = TenantCtx::new(account.tenant_id);
    let ttl = infra.settings.auth.password_reset_ttl_secs;
    let (token, hash) = new_emailed_token();
    let expires_at = OffsetDateTime::now_utc() + Duration::seconds(ttl as i64);
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let Some(holder) = repository::lock_holder(&tenant, &mut tx, account.user_id).await? else {
        return Ok(());
    };
    repository::insert_token(
        &tenant,
        &mut tx,
        account.user_id,
        Purpose::PasswordReset,
        &holder.email,
        &hash,
        expires_at,
    )
    .await?;
    let link = infra
        .settings
        .server
        .public_link(RESET_PASSWORD_PATH, &token);
    let queued = email::queue(
        infra,
        &tenant,
        &mut tx,
        Kind::PasswordReset,
        &holder.email,
        context(json!({
            "full_name": account.full_name,
            "expires_in_minutes": ttl.div_ceil(60),
        })),
        &link,
    )
    .await?;
    tx.commit().await?;
    email::hand_over(infra, queued).await;
    tracing::info!(user_id = %account.user_id, "password reset link sent");
    Ok(())
}

/// Sets a new password with an emailed token, and ends every session of the user.
pub async fn confirm_password_reset(
    infra: &Infra,
    auth_state: &AuthState,
    origin: &Origin,
    input: ResetConfirmation,
) -> Result<(), ApiError> {
    let row = usable_token(infra, &input.token, Purpose::PasswordReset).await?;
    password::check_policy(&input.new_password, &row.email, "new_password")?;
    let hash = auth_state.passwords.hash(input.new_password).await?;
    let tenant = TenantCtx::new(row.tenant_id);
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let holder = repository::lock_holder(&tenant, &mut tx, row.user_id).await?;
    let same_address = holder
        .as_ref()
        .is_some_and(|h| h.is_active && h.email.eq_ignore_ascii_case(&row.email));
    if !same_address {
        return Err(token_error(
            "token_invalid",
            "This link is not valid: ask for a new one",
        ));
    }
    // Two confirmations racing: one spends the token, the other is refused.
    if !repository::spend_token(&tenant, &mut tx, row.id).await? {
        return Err(token_error(
            "token_used",
            "This link was already used, or a newer one was sent: ask for a new one if needed",
        ));
    }
    repository::reset_password(&tenant, &mut tx, row.user_id, &hash).await?;
    audit::record(
        &tenant,
        &mut tx,
        Event::PasswordReset,
        Actor::user(row.user_id),
        Some(Target::user(row.user_id)),
        origin,
        json!({"via": "emailed link"}),
    )
    .await?;
    let mark_ms = sessions::end_user_sessions(&tenant, &mut tx, row.user_id).await?;
    tx.commit().await?;
    auth_state
        .revocations
        .invalidate_user_tokens(tenant.id(), row.user_id, mark_ms)
        .await;
    // The owner proved the address: earlier wrong guesses no longer lock it.
    auth_state.login_backoff.succeeded(&row.email).await;
    auth_state.events.count("password_reset", "success");
    tracing::info!(user_id = %row.user_id, "password reset; every session ended");
    Ok(())
}

/// Marks the address an emailed verification token was sent to as verified.
pub async fn verify_email(
    infra: &Infra,
    origin: &Origin,
    input: VerificationRequest,
) -> Result<(), ApiError> {
    let row = usable_token(infra, &input.token, Purpose::EmailVerification).await?;
    let tenant = TenantCtx::new(row.tenant_id);
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let holder = repository::lock_holder(&tenant, &mut tx, row.user_id).await?;
    if !holder.is_some_and(|h| h.email.eq_ignore_ascii_case(&row.email)) {
        return Err(token_error(
            "token_invalid",
            "This link is for an address the account no longer has",
        ));
    }
    if !repository::spend_token(&tenant, &mut tx, row.id).await? {
        return Err(token_error(
            "token_used",
            "This link was already used, or a newer one was sent: ask for a new one if needed",
        ));
    }
    repository::mark_verified(&tenant, &mut tx, row.user_id).await?;
    audit::record(
        &tenant,
        &mut tx,
        Event::EmailVerified,
        Actor::user(row.user_id),
        Some(Target::user(row.user_id)),
        origin,
        json!({"email": row.email}),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(user_id = %row.user_id, "email address verified");
    Ok(())
}

/// After `POST /auth/verify-email/resend` has answered: mails a new
/// verification link if the address has an active, unverified account and
/// its hourly share left.
pub async fn resend_verification(infra: &Infra, email: &str) -> anyhow::Result<()> {
    if !throttle::allow(infra, email).await {
        tracing::info!("verification not sent: the address had its hourly share");
        return Ok(());
    }
    let Some(account) = active_account(infra, email)
        .await?
        .filter(|account| account.email_verified_at.is_none())
    else {
        tracing::info!("verification asked for an address without an unverified account");
        return Ok(());
    };
    let tenant = TenantCtx::new(account.tenant_id);
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let Some(holder) = repository::lock_holder(&tenant, &mut tx, account.user_id).await? else {
        return Ok(());
    };
    let queued = queue_verification(
        infra,
        &tenant,
        &mut tx,
        account.user_id,
        &holder.email,
        &account.full_name,
    )
    .await?;
    tx.commit().await?;
    email::hand_over(infra, queued).await;
    Ok(())
}
