//! SQL for emailed tokens and what following one changes on the user.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::TenantCtx;
use crate::db::{Database, observed};

/// What an emailed token is for (`account_tokens.purpose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    PasswordReset,
    EmailVerification,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::PasswordReset => "password_reset",
            Purpose::EmailVerification => "email_verification",
        }
    }
}

/// A new token for `user_id`; the user's earlier unused tokens of the same
/// purpose stop working (only the latest link does).
pub async fn insert_token(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    user_id: Uuid,
    purpose: Purpose,
    email: &str,
    hash: &[u8],
    expires_at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE account_tokens SET used_at = now()
         WHERE tenant_id = $1 AND user_id = $2 AND purpose = $3 AND used_at IS NULL",
    )
    .bind(tenant.id())
    .bind(user_id)
    .bind(purpose.as_str())
    .execute(observed("accounts.retire_tokens", &mut *conn))
    .await?;
    sqlx::query(
        "INSERT INTO account_tokens (id, tenant_id, user_id, purpose, email, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(Uuid::now_v7())
    .bind(tenant.id())
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(email)
    .bind(hash)
    .bind(expires_at)
    .execute(observed("accounts.insert_token", conn))
    .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct TokenRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub purpose: String,
    pub email: String,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
}

/// The token with this hash, in whichever tenant it belongs to.
pub async fn find_token(db: &Database, hash: &[u8]) -> Result<Option<TokenRow>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let row = sqlx::query_as("SELECT * FROM account_find_token($1)")
        .bind(hash)
        .fetch_optional(observed("accounts.find_token", &mut *tx))
        .await?;
    tx.commit().await?;
    Ok(row)
}

/// Spends a token: true for exactly one caller while it is unused and unexpired.
pub async fn spend_token(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let spent = sqlx::query(
        "UPDATE account_tokens SET used_at = now()
         WHERE tenant_id = $1 AND id = $2 AND used_at IS NULL AND expires_at > now()",
    )
    .bind(tenant.id())
    .bind(id)
    .execute(observed("accounts.spend_token", conn))
    .await?;
    Ok(spent.rows_affected() == 1)
}

/// The user a token was sent to, locked: their address now and whether
/// they may still sign in.
#[derive(Debug, sqlx::FromRow)]
pub struct Holder {
    pub email: String,
    pub is_active: bool,
}

pub async fn lock_holder(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Option<Holder>, sqlx::Error> {
    sqlx::query_as("SELECT email, is_active FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
        .bind(tenant.id())
        .bind(user_id)
        .fetch_optional(observed("accounts.lock_holder", conn))
        .await
}

/// A reset password. Following the emailed link also proved the address.
pub async fn reset_password(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    user_id: Uuid,
    password_hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET password_hash = $3, updated_at = now(),
             email_verified_at = COALESCE(email_verified_at, now())
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.id())
    .bind(user_id)
    .bind(password_hash)
    .execute(observed("accounts.reset_password", conn))
    .await?;
    Ok(())
}

pub async fn mark_verified(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET email_verified_at = COALESCE(email_verified_at, now()), updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.id())
    .bind(user_id)
    .execute(observed("accounts.mark_verified", conn))
    .await?;
    Ok(())
}
