//! SQL for marketplace connections, scoped to the tenant. The credentials
//! column holds a Fernet token; this module never sees plaintext.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{Connection, MarketplaceKind};
use crate::auth::TenantCtx;
use crate::db::observed;

type Row = (
    Uuid,
    String,
    String,
    bool,
    Option<OffsetDateTime>,
    OffsetDateTime,
);

/// The columns of [`Row`], in order (a macro so statements stay `&'static str`).
/// Demo connections hold no credentials: older ones store an encrypted empty
/// object, newer ones nothing.
macro_rules! columns {
    () => {
        "id, kind, name, kind <> 'demo' AND credentials_encrypted IS NOT NULL, last_synced_at, created_at"
    };
}

fn to_model((id, kind, name, has_credentials, last_synced_at, created_at): Row) -> Connection {
    Connection {
        id,
        kind: if kind == "wildberries" {
            MarketplaceKind::Wildberries
        } else {
            MarketplaceKind::Demo
        },
        name,
        has_credentials,
        last_synced_at,
        created_at,
    }
}

pub async fn insert(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    kind: MarketplaceKind,
    name: &str,
    credentials_encrypted: Option<&str>,
) -> Result<Connection, sqlx::Error> {
    let row: Row = sqlx::query_as(concat!(
        "INSERT INTO marketplace_connections (id, tenant_id, kind, name, credentials_encrypted)
         VALUES ($1, $2, $3, $4, $5) RETURNING ",
        columns!()
    ))
    .bind(Uuid::now_v7())
    .bind(tenant.id())
    .bind(kind.as_str())
    .bind(name)
    .bind(credentials_encrypted)
    .fetch_one(observed("marketplaces.insert", conn))
    .await?;
    Ok(to_model(row))
}

pub async fn list(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Connection>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM marketplace_connections
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(tenant.id())
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(observed("marketplaces.list", conn))
    .await?;
    Ok(rows.into_iter().map(to_model).collect())
}

pub async fn find(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Connection>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM marketplace_connections WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant.id())
    .bind(id)
    .fetch_optional(observed("marketplaces.find", conn))
    .await?;
    Ok(row.map(to_model))
}

/// Deletes a connection and, by cascade, the products synced from it.
pub async fn delete(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let deleted =
        sqlx::query("DELETE FROM marketplace_connections WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.id())
            .bind(id)
            .execute(observed("marketplaces.delete", conn))
            .await?;
    Ok(deleted.rows_affected() == 1)
}
