//! SQL for tenants. A tenant sees only its own row (RLS on `tenants.id`);
//! the one cross-tenant write, a tier change, goes through a narrow
//! `SECURITY DEFINER` function.

use sqlx::PgConnection;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{Tenant, TenantSettings};
use crate::auth::{TenantCtx, Tier};
use crate::db::observed;

type TenantRow = (
    Uuid,
    String,
    String,
    Json<serde_json::Value>,
    OffsetDateTime,
);

fn to_model(row: TenantRow) -> anyhow::Result<Tenant> {
    let (id, name, tier, settings, created_at) = row;
    // Stored settings may predate a field: absent fields take their defaults.
    let mut merged = serde_json::to_value(TenantSettings::default())?;
    if let (Some(target), serde_json::Value::Object(stored)) = (merged.as_object_mut(), settings.0)
    {
        target.extend(stored);
    }
    Ok(Tenant {
        id,
        name,
        tier: tier.parse()?,
        settings: serde_json::from_value(merged)?,
        created_at,
    })
}

pub async fn insert(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    name: &str,
) -> anyhow::Result<Tenant> {
    let row: TenantRow = sqlx::query_as(
        "INSERT INTO tenants (id, name, settings) VALUES ($1, $2, $3)
         RETURNING id, name, tier, settings, created_at",
    )
    .bind(tenant.id())
    .bind(name)
    .bind(Json(TenantSettings::default()))
    .fetch_one(observed("tenants.insert", conn))
    .await?;
    to_model(row)
}

pub async fn find(tenant: &TenantCtx, conn: &mut PgConnection) -> anyhow::Result<Option<Tenant>> {
    let row: Option<TenantRow> =
        sqlx::query_as("SELECT id, name, tier, settings, created_at FROM tenants WHERE id = $1")
            .bind(tenant.id())
            .fetch_optional(observed("tenants.find", conn))
            .await?;
    row.map(to_model).transpose()
}

pub async fn update(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    name: &str,
    settings: &TenantSettings,
) -> anyhow::Result<Tenant> {
    let row: TenantRow = sqlx::query_as(
        "UPDATE tenants SET name = $2, settings = $3, updated_at = now() WHERE id = $1
         RETURNING id, name, tier, settings, created_at",
    )
    .bind(tenant.id())
    .bind(name)
    .bind(Json(settings))
    .fetch_one(observed("tenants.update", conn))
    .await?;
    to_model(row)
}

/// Changes any tenant's tier. Only for verified platform operators.
pub async fn set_tier_as_platform(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    tier: Tier,
) -> anyhow::Result<Option<Tenant>> {
    let row: Option<TenantRow> = sqlx::query_as(
        "SELECT id, name, tier, settings, created_at FROM platform_set_tenant_tier($1, $2)",
    )
    .bind(tenant_id)
    .bind(tier.as_str())
    .fetch_optional(observed("tenants.set_tier_as_platform", conn))
    .await?;
    row.map(to_model).transpose()
}
