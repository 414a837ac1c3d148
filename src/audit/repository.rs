//! SQL for audit events.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::{Actor, AuditEvent, AuditQuery, Event, Target};
use super::origin::Origin;
use crate::auth::TenantCtx;
use crate::db::observed;

/// Records an event in the caller's transaction.
pub async fn record(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    event: Event,
    actor: Actor,
    target: Option<Target>,
    origin: &Origin,
    details: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_events (id, tenant_id, event, actor_user_id, actor_api_key_id,
             target_type, target_id, ip, request_id, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::inet, $9, $10)",
    )
    .bind(Uuid::now_v7())
    .bind(tenant.id())
    .bind(event.as_str())
    .bind(actor.user_id)
    .bind(actor.api_key_id)
    .bind(target.map(|t| t.kind))
    .bind(target.map(|t| t.id))
    .bind(origin.ip.map(|ip| ip.to_string()))
    .bind(origin.request_id.as_deref())
    .bind(details)
    .execute(observed("audit.record", conn))
    .await?;
    Ok(())
}

/// One page, newest first: `limit + 1` rows older than `before`.
pub async fn list(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    query: &AuditQuery,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, event, actor_user_id, actor_api_key_id, target_type, target_id,
                host(ip) AS ip, request_id, details, created_at
         FROM audit_events
         WHERE tenant_id = $1
           AND ($2::uuid IS NULL OR id < $2)
           AND ($3::text IS NULL OR event = $3)
           AND ($4::uuid IS NULL OR actor_user_id = $4)
           AND ($5::uuid IS NULL OR target_id = $5)
           AND ($6::timestamptz IS NULL OR created_at >= $6)
           AND ($7::timestamptz IS NULL OR created_at < $7)
         ORDER BY id DESC
         LIMIT $8",
    )
    .bind(tenant.id())
    .bind(before)
    .bind(query.event.map(Event::as_str))
    .bind(query.actor_user_id)
    .bind(query.target_id)
    .bind(query.since)
    .bind(query.until)
    .bind(i64::from(limit) + 1)
    .fetch_all(observed("audit.list", conn))
    .await
}
