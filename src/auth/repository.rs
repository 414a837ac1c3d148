//! SQL for sign-in, sessions and revocation. The pre-tenant lookups call the
//! `SECURITY DEFINER` functions of the identity migration; everything else
//! runs in a tenant-scoped transaction.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::extractor::TenantCtx;
use super::revocation::ApiKeyGrant;
use super::roles::{Role, Tier};
use crate::db::Database;
use crate::db::observed;

#[derive(Debug, sqlx::FromRow)]
pub struct LoginRow {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub password_hash: String,
    pub role: String,
    pub is_active: bool,
    pub tier: String,
    pub email_verified_at: Option<OffsetDateTime>,
    pub full_name: String,
    /// Set while the tenant awaits its purge (see `tenants::deletion`).
    pub tenant_deleted_at: Option<OffsetDateTime>,
    pub tenant_purge_after: Option<OffsetDateTime>,
}

/// The account for an email, across tenants (sign-in happens before the tenant is known).
pub async fn find_login(db: &Database, email: &str) -> Result<Option<LoginRow>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let row = sqlx::query_as("SELECT * FROM auth_find_login($1)")
        .bind(email)
        .fetch_optional(observed("auth.find_login", &mut *tx))
        .await?;
    tx.commit().await?;
    Ok(row)
}

#[derive(Debug, sqlx::FromRow)]
pub struct RefreshRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// When its session signed in with a password (unknown for sessions
    /// opened before this was recorded).
    pub authenticated_at: Option<OffsetDateTime>,
}

/// The refresh token with this hash, in whichever tenant it belongs to.
pub async fn find_refresh_token(
    db: &Database,
    hash: &[u8],
) -> Result<Option<RefreshRow>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let row = sqlx::query_as("SELECT * FROM auth_find_refresh_token($1)")
        .bind(hash)
        .fetch_optional(observed("auth.find_refresh_token", &mut *tx))
        .await?;
    tx.commit().await?;
    Ok(row)
}

/// Verifies an API key (recording its use) and returns what it grants.
pub async fn use_api_key(db: &Database, hash: &[u8]) -> anyhow::Result<Option<ApiKeyGrant>> {
    let mut tx = db.begin().await?;
    let row: Option<(Uuid, Uuid, Uuid, String, String, Option<OffsetDateTime>)> = sqlx::query_as(
        "SELECT id, tenant_id, user_id, role, tier, expires_at FROM auth_use_api_key($1)",
    )
    .bind(hash)
    .fetch_optional(observed("auth.use_api_key", &mut *tx))
    .await?;
    tx.commit().await?;
    row.map(|(key_id, tenant_id, user_id, role, tier, expires_at)| {
        Ok(ApiKeyGrant {
            key_id,
            tenant_id,
            user_id,
            role: role.parse()?,
            tier: tier.parse()?,
            expires_at: expires_at.map(OffsetDateTime::unix_timestamp),
        })
    })
    .transpose()
}

pub async fn insert_refresh_token(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    user_id: Uuid,
    family_id: Uuid,
    hash: &[u8],
    expires_at: OffsetDateTime,
    authenticated_at: Option<OffsetDateTime>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refresh_tokens
             (id, tenant_id, user_id, family_id, token_hash, expires_at, authenticated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(Uuid::now_v7())
    .bind(tenant.id())
    .bind(user_id)
    .bind(family_id)
    .bind(hash)
    .bind(expires_at)
    .bind(authenticated_at)
    .execute(observed("auth.insert_refresh_token", conn))
    .await?;
    Ok(())
}

/// Spends a refresh token. False if it was already spent, revoked or expired
/// — including by a concurrent request that won the race.
pub async fn spend_refresh_token(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let spent = sqlx::query(
        "UPDATE refresh_tokens SET used_at = now()
         WHERE tenant_id = $1 AND id = $2
           AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(tenant.id())
    .bind(id)
    .execute(observed("auth.spend_refresh_token", conn))
    .await?;
    Ok(spent.rows_affected() == 1)
}

/// Ends a session: its refresh-token family, and (through its row in
/// `revoked_sessions`, until `expires_at`) every access token it minted.
pub async fn revoke_session(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    user_id: Uuid,
    session_id: Uuid,
    expires_at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now()
         WHERE tenant_id = $1 AND family_id = $2 AND revoked_at IS NULL",
    )
    .bind(tenant.id())
    .bind(session_id)
    .execute(observed("auth.revoke_family", &mut *conn))
    .await?;
    // A session revoked twice (a reuse after logout) keeps its first row:
    // it has minted nothing since.
    sqlx::query(
        "INSERT INTO revoked_sessions (session_id, tenant_id, user_id, expires_at)
         VALUES ($1, $2, $3, $4) ON CONFLICT (session_id) DO NOTHING",
    )
    .bind(session_id)
    .bind(tenant.id())
    .bind(user_id)
    .bind(expires_at)
    .execute(observed("auth.revoke_session", conn))
    .await?;
    Ok(())
}

/// Ends every session of a user (deactivation, password change).
pub async fn revoke_user_sessions(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now()
         WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(tenant.id())
    .bind(user_id)
    .execute(observed("auth.revoke_user_sessions", conn))
    .await?;
    Ok(())
}

/// A user's current role, state and tier, read when minting a token.
pub async fn session_user(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    user_id: Uuid,
) -> anyhow::Result<Option<(Role, bool, Tier)>> {
    let row: Option<(String, bool, String)> = sqlx::query_as(
        "SELECT u.role, u.is_active, t.tier FROM users u JOIN tenants t ON t.id = u.tenant_id
         WHERE u.tenant_id = $1 AND u.id = $2",
    )
    .bind(tenant.id())
    .bind(user_id)
    .fetch_optional(observed("auth.session_user", conn))
    .await?;
    row.map(|(role, active, tier)| Ok((role.parse()?, active, tier.parse()?)))
        .transpose()
}

/// Marks a user's access tokens minted before `mark` as invalid.
/// Ends every session of a user: revokes their refresh tokens and marks
/// their access tokens invalid in PostgreSQL. Returns the mark for Redis
/// (written by the caller after commit).
pub async fn end_user_sessions(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<i64, sqlx::Error> {
    let (mark_ms, at) = crate::db::invalidation_mark();
    set_tokens_invalid_before(tenant, conn, user_id, at).await?;
    revoke_user_sessions(tenant, conn, user_id).await?;
    Ok(mark_ms)
}

pub async fn set_tokens_invalid_before(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    user_id: Uuid,
    mark: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET tokens_invalid_before = $3 WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.id())
        .bind(user_id)
        .bind(mark)
        .execute(observed("auth.set_tokens_invalid_before", conn))
        .await?;
    Ok(())
}
