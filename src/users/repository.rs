//! SQL for users. Every function takes the tenant first and filters on it;
//! row-level security enforces the same underneath.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::User;
use crate::auth::{Role, TenantCtx};
use crate::db::observed;

#[derive(Debug, sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    tenant_id: Uuid,
    email: String,
    full_name: String,
    role: String,
    is_active: bool,
    email_verified_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
}

impl UserRow {
    fn into_user(self) -> anyhow::Result<User> {
        Ok(User {
            id: self.id,
            tenant_id: self.tenant_id,
            email: self.email,
            full_name: self.full_name,
            role: self.role.parse()?,
            is_active: self.is_active,
            email_verified_at: self.email_verified_at,
            created_at: self.created_at,
        })
    }
}

const COLUMNS: &str =
    "id, tenant_id, email, full_name, role, is_active, email_verified_at, created_at";

/// Name of the unique index on `lower(email)`: a violation means the address is taken.
pub const EMAIL_UNIQUE_INDEX: &str = "users_email_lower_key";

pub async fn insert(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    email: &str,
    full_name: &str,
    password_hash: &str,
    role: Role,
) -> Result<User, sqlx::Error> {
    let row: UserRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (id, tenant_id, email, full_name, password_hash, role)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(tenant.id())
    .bind(email)
    .bind(full_name)
    .bind(password_hash)
    .bind(role.as_str())
    .fetch_one(observed("users.insert", conn))
    .await?;
    row.into_user().map_err(|e| sqlx::Error::Decode(e.into()))
}

pub async fn find(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> anyhow::Result<Option<User>> {
    let row: Option<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant.id())
    .bind(id)
    .fetch_optional(observed("users.find", conn))
    .await?;
    row.map(UserRow::into_user).transpose()
}

/// Like [`find`], locking the row until the transaction ends.
pub async fn find_for_update(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> anyhow::Result<Option<User>> {
    let row: Option<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
    )))
    .bind(tenant.id())
    .bind(id)
    .fetch_optional(observed("users.find_for_update", conn))
    .await?;
    row.map(UserRow::into_user).transpose()
}

pub async fn list(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: u32,
) -> anyhow::Result<Vec<User>> {
    let rows: Vec<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    )))
    .bind(tenant.id())
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(observed("users.list", conn))
    .await?;
    rows.into_iter().map(UserRow::into_user).collect()
}

/// A user's email and password hash, to check a password change.
pub async fn email_and_password_hash(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT email, password_hash FROM users WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.id())
        .bind(id)
        .fetch_optional(observed("users.email_and_password_hash", conn))
        .await
}

pub async fn set_full_name(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
    full_name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET full_name = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.id())
    .bind(id)
    .bind(full_name)
    .execute(observed("users.set_full_name", conn))
    .await?;
    Ok(())
}

pub async fn set_password_hash(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
    hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET password_hash = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.id())
    .bind(id)
    .bind(hash)
    .execute(observed("users.set_password_hash", conn))
    .await?;
    Ok(())
}

pub async fn set_role(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
    role: Role,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET role = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.id())
        .bind(id)
        .bind(role.as_str())
        .execute(observed("users.set_role", conn))
        .await?;
    Ok(())
}

pub async fn deactivate(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET is_active = false, deactivated_at = now(), updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.id())
    .bind(id)
    .execute(observed("users.deactivate", conn))
    .await?;
    Ok(())
}

/// Active owners of the tenant, locked so two concurrent demotions cannot
/// both see "another owner remains".
pub async fn lock_active_owners(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM users WHERE tenant_id = $1 AND role = 'owner' AND is_active
         ORDER BY id FOR UPDATE",
    )
    .bind(tenant.id())
    .fetch_all(observed("users.lock_active_owners", conn))
    .await
}

pub async fn is_platform_admin(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let flag: Option<bool> = sqlx::query_scalar(
        "SELECT u.is_platform_admin AND u.is_active AND t.tier = 'internal'
         FROM users u JOIN tenants t ON t.id = u.tenant_id
         WHERE u.tenant_id = $1 AND u.id = $2",
    )
    .bind(tenant.id())
    .bind(id)
    .fetch_optional(observed("users.is_platform_admin", conn))
    .await?;
    Ok(flag.unwrap_or(false))
}

/// Deletes a user. Their refresh tokens, API keys and emailed tokens go with
/// them (the foreign keys cascade); invitations they sent stay, unattributed.
pub async fn delete(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.id())
        .bind(id)
        .execute(observed("users.delete", conn))
        .await?;
    Ok(())
}

/// A new address, not yet verified.
pub async fn set_email(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
    email: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET email = $3, email_verified_at = NULL, updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.id())
    .bind(id)
    .bind(email)
    .execute(observed("users.set_email", conn))
    .await?;
    Ok(())
}
