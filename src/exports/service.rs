//! Starting an export, building it (the worker), and reading it back.

use serde::Serialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, Actor, Event, Origin, Target};
use crate::auth::{Admin, Auth, TenantCtx};
use crate::db::{self, observed};
use crate::http::error::ApiError;
use crate::infra::Infra;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum ExportStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

/// An export job.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Export {
    pub id: Uuid,
    pub status: ExportStatus,
    /// The archive's size once built.
    pub size_bytes: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Until when the archive can be downloaded.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "id, status, size_bytes, error, created_at, finished_at, expires_at";

fn target(id: Uuid) -> Target {
    Target { kind: "export", id }
}

/// Starts an export of the caller's tenant, or answers the one under way.
pub async fn start(infra: &Infra, auth: &Auth<Admin>, origin: &Origin) -> Result<Export, ApiError> {
    // An export holds everything: a person asks for it, not a key.
    let (user_id, _, _) = auth.user_session()?;
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    // One at a time per tenant: the tenant row is the lock.
    sqlx::query("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
        .bind(tenant.id())
        .execute(observed("exports.lock_tenant", &mut *tx))
        .await?;
    let under_way: Option<Export> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tenant_exports
         WHERE tenant_id = $1 AND status IN ('queued', 'running') ORDER BY id DESC LIMIT 1"
    )))
    .bind(tenant.id())
    .fetch_optional(observed("exports.under_way", &mut *tx))
    .await?;
    if let Some(export) = under_way {
        return Ok(export);
    }
    let export: Export = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tenant_exports (id, tenant_id, requested_by) VALUES ($1, $2, $3)
         RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(tenant.id())
    .bind(user_id)
    .fetch_one(observed("exports.insert", &mut *tx))
    .await?;
    audit::record(
        &tenant,
        &mut tx,
        Event::ExportRequested,
        Actor::from(auth),
        Some(target(export.id)),
        origin,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    if let Err(err) = super::tasks::send_export(&infra.queue, tenant.id(), export.id).await {
        // Nothing would ever run it: fail it now, so a new one can be asked for.
        tracing::warn!(error = %format!("{err:#}"), export_id = %export.id, "export not queued");
        let failed = finish(
            infra,
            tenant.id(),
            export.id,
            Err("the export could not be queued; ask again".into()),
            OffsetDateTime::now_utc(),
        )
        .await;
        if let Err(err) = failed {
            tracing::error!(error = %format!("{err:#}"), "could not fail an unqueued export");
        }
        return get(infra, auth, export.id).await;
    }
    Ok(export)
}

pub async fn get(infra: &Infra, auth: &Auth<Admin>, id: Uuid) -> Result<Export, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tenant_exports WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant.id())
    .bind(id)
    .fetch_optional(observed("exports.get", &mut *tx))
    .await?
    .ok_or_else(|| ApiError::not_found("Export"))
}

/// The archive of a finished export, while it is kept.
pub async fn archive(infra: &Infra, auth: &Auth<Admin>, id: Uuid) -> Result<Vec<u8>, ApiError> {
    let export = get(infra, auth, id).await?;
    if export.status != ExportStatus::Succeeded {
        return Err(ApiError::Conflict {
            code: "export_not_ready",
            detail: format!("The export is {:?}, not ready for download", export.status)
                .to_lowercase(),
        });
    }
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
    let archive: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT archive FROM tenant_exports
         WHERE tenant_id = $1 AND id = $2 AND expires_at > now()",
    )
    .bind(tenant.id())
    .bind(id)
    .fetch_optional(observed("exports.archive", &mut *tx))
    .await?
    .flatten();
    archive.ok_or_else(|| ApiError::Conflict {
        code: "export_expired",
        detail: "The archive is no longer kept; start a new export".into(),
    })
}

/// The worker: builds the archive of a queued export. A second delivery of
/// the same task finds it no longer queued and does nothing.
pub async fn build(infra: &Infra, tenant_id: Uuid, id: Uuid) -> anyhow::Result<bool> {
    let tenant = TenantCtx::for_system_task(tenant_id);
    let claimed = {
        let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
        let claimed = sqlx::query(
            "UPDATE tenant_exports SET status = 'running'
             WHERE tenant_id = $1 AND id = $2 AND status = 'queued'",
        )
        .bind(tenant.id())
        .bind(id)
        .execute(observed("exports.claim", &mut *tx))
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        claimed
    };
    if !claimed {
        return Ok(false);
    }
    let built = async {
        let mut tx = db::begin_tenant_tx(&infra.db, tenant.id()).await?;
        let archive = super::archive::build(&mut tx, tenant.id()).await?;
        tx.commit().await?;
        anyhow::Ok(archive)
    }
    .await;
    let now = OffsetDateTime::now_utc();
    let outcome = built.map_err(|err| {
        tracing::error!(error = %format!("{err:#}"), export_id = %id, "export failed");
        "the archive could not be built".to_owned()
    });
    finish(infra, tenant.id(), id, outcome, now).await?;
    Ok(true)
}

async fn finish(
    infra: &Infra,
    tenant_id: Uuid,
    id: Uuid,
    outcome: Result<Vec<u8>, String>,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let kept = Duration::hours(i64::from(infra.settings.retention.tenant_export_hours));
    let (status, archive, error) = match outcome {
        Ok(archive) => ("succeeded", Some(archive), None),
        Err(error) => ("failed", None, Some(error)),
    };
    let mut tx = db::begin_tenant_tx(&infra.db, tenant_id).await?;
    sqlx::query(
        "UPDATE tenant_exports SET status = $3, archive = $4, size_bytes = octet_length($4),
             error = $5, finished_at = $6, expires_at = $7
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(status)
    .bind(archive)
    .bind(error)
    .bind(now)
    .bind(now + kept)
    .execute(observed("exports.finish", &mut *tx))
    .await?;
    tx.commit().await?;
    Ok(())
}
