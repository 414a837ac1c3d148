//! SQL for API keys, always scoped to the tenant.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::ApiKey;
use crate::auth::{Role, TenantCtx};
use crate::db::observed;

type KeyRow = (
    Uuid,
    String,
    String,
    String,
    Uuid,
    OffsetDateTime,
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
);

fn to_model(row: KeyRow) -> anyhow::Result<ApiKey> {
    let (id, name, role, prefix, created_by, created_at, last_used_at, expires_at) = row;
    Ok(ApiKey {
        id,
        name,
        role: role.parse()?,
        prefix,
        created_by,
        created_at,
        last_used_at,
        expires_at,
    })
}

/// A key to store: everything but its id and creation time.
pub struct NewKey<'a> {
    pub user_id: Uuid,
    pub name: &'a str,
    pub role: Role,
    pub prefix: &'a str,
    pub hash: &'a [u8],
    pub expires_at: Option<OffsetDateTime>,
}

pub async fn insert(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    key: &NewKey<'_>,
) -> Result<(Uuid, OffsetDateTime), sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO api_keys (id, tenant_id, user_id, name, role, prefix, key_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(tenant.id())
    .bind(key.user_id)
    .bind(key.name)
    .bind(key.role.as_str())
    .bind(key.prefix)
    .bind(key.hash)
    .bind(key.expires_at)
    .fetch_one(observed("api_keys.insert", conn))
    .await
}

/// Active keys, oldest first, keyset-paginated by id.
pub async fn list(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: u32,
) -> anyhow::Result<Vec<ApiKey>> {
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT id, name, role, prefix, user_id, created_at, last_used_at, expires_at FROM api_keys
         WHERE tenant_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3",
    )
    .bind(tenant.id())
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(observed("api_keys.list", conn))
    .await?;
    rows.into_iter().map(to_model).collect()
}

/// Revokes one key; returns its hash (to drop from the cache), or `None` if
/// no active key of this tenant has that id.
pub async fn revoke(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE api_keys SET revoked_at = now()
         WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING key_hash",
    )
    .bind(tenant.id())
    .bind(id)
    .fetch_optional(observed("api_keys.revoke", conn))
    .await
}

/// Revokes every key a user created (deactivation); returns their hashes.
pub async fn revoke_for_user(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Vec<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE api_keys SET revoked_at = now()
         WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING key_hash",
    )
    .bind(tenant.id())
    .bind(user_id)
    .fetch_all(observed("api_keys.revoke_for_user", conn))
    .await
}

/// Revokes a user's keys whose role outranks `role` (after a demotion).
pub async fn revoke_above_role(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    user_id: Uuid,
    role: Role,
) -> Result<Vec<Vec<u8>>, sqlx::Error> {
    let outranking: Vec<&str> = [Role::Admin, Role::Member]
        .into_iter()
        .filter(|r| *r > role)
        .map(Role::as_str)
        .collect();
    sqlx::query_scalar(
        "UPDATE api_keys SET revoked_at = now()
         WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL AND role = ANY($3)
         RETURNING key_hash",
    )
    .bind(tenant.id())
    .bind(user_id)
    .bind(outranking)
    .fetch_all(observed("api_keys.revoke_above_role", conn))
    .await
}
