//! `GET /api/v1/audit-events` (admins).

use actix_web::{get, web};
use utoipa_actix_web::service_config::ServiceConfig;

use super::model::{AuditEvent, AuditQuery};
use super::repository;
use crate::auth::{Admin, Auth};
use crate::db;
use crate::http::error::{ApiError, ErrorBody, ValidationErrorBody};
use crate::http::extractors::ValidatedQuery;
use crate::http::pagination::{Page, PageQuery};
use crate::infra::Infra;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list);
}

/// The tenant's audit log, newest first: sign-ins and failures, password and
/// email changes, API keys and invitations, role changes, deletions,
/// exports, webhook secret rotations.
#[utoipa::path(
    operation_id = "audit_events_list",
    tag = "audit",
    params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of events", body = Page<AuditEvent>),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 422, description = "Invalid filter or cursor", body = ValidationErrorBody),
    )
)]
#[get("/audit-events")]
async fn list(
    state: web::Data<Infra>,
    auth: Auth<Admin>,
    query: ValidatedQuery<AuditQuery>,
) -> Result<web::Json<Page<AuditEvent>>, ApiError> {
    let query = query.0;
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor.clone(),
    }
    .page_request()?;
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let rows = repository::list(&tenant, &mut tx, &query, page.after, page.limit).await?;
    Ok(web::Json(Page::from_rows(rows, page.limit, |e| e.id)))
}
