//! `/api/v1/sync`: start a sync (members), read its jobs (everyone).

use actix_web::http::header;
use actix_web::{HttpResponse, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::model::{Accepted, JobFilter, JobStatus, StartSync, StartedSyncs, SyncJob};
use super::service::{self, Started};
use crate::auth::{Auth, Member, Viewer};
use crate::http::error::{ApiError, ErrorBody, ValidationErrorBody};
use crate::http::extractors::{ValidatedJson, ValidatedQuery};
use crate::http::pagination::{Page, PageQuery};
use crate::idempotency::IdempotencyKey;
use crate::infra::Infra;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(start).service(list).service(get_job);
}

fn location(job: &SyncJob) -> String {
    format!("/api/v1/sync/jobs/{}", job.id)
}

/// Sync a marketplace connection (`{"connection_id": ...}`) or all of them
/// (`{"all": true}`). Answers 202 with the queued job and its `Location`; if
/// the connection already has a queued or running job, answers 200 with
/// that one instead of starting a second. The job is recorded even when the
/// task queue is down: it is handed over as soon as it is back.
#[utoipa::path(
    operation_id = "sync_start",
    tag = "sync",
    security(("bearer" = [])),
    request_body = StartSync,
    params(IdempotencyKey),
    responses(
        (status = 202, description = "Queued: the job (with `Location`), or for `all` the jobs, new or already active", body = Accepted,
         headers(("Location" = String, description = "The job (for one connection)"))),
        (status = 200, description = "The connection's job already queued or running", body = SyncJob),
        (status = 404, description = "No such connection in your tenant", body = ErrorBody),
        (status = 409, description = "A job finished at that very moment; retry", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Neither or both of `connection_id` and `all`", body = ValidationErrorBody),
    )
)]
#[post("/sync")]
async fn start(
    state: web::Data<Infra>,
    auth: Auth<Member>,
    body: ValidatedJson<StartSync>,
) -> Result<HttpResponse, ApiError> {
    let all = body.0.all == Some(true);
    let mut started = service::start(&state, &auth, body.0).await?;
    if all {
        let jobs = started
            .into_iter()
            .map(|s| match s {
                Started::New(job) | Started::Existing(job) => job,
            })
            .collect();
        return Ok(HttpResponse::Accepted().json(Accepted::All(StartedSyncs { jobs })));
    }
    Ok(match started.pop() {
        Some(Started::New(job)) => HttpResponse::Accepted()
            .insert_header((header::LOCATION, location(&job)))
            .json(Accepted::One(job)),
        Some(Started::Existing(job)) => HttpResponse::Ok()
            .insert_header((header::LOCATION, location(&job)))
            .json(job),
        None => return Err(ApiError::not_found("Marketplace connection")),
    })
}

#[derive(Debug, serde::Deserialize, garde::Validate, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    #[garde(inner(range(min = 1, max = 200)))]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]{22}$")]
    #[garde(skip)]
    pub cursor: Option<String>,
    /// Only jobs in this state.
    #[garde(skip)]
    pub status: Option<JobStatus>,
}

/// The tenant's sync jobs, newest first.
#[utoipa::path(
    operation_id = "sync_list",
    tag = "sync",
    security(("bearer" = [])),
    params(JobListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = Page<SyncJob>),
        (status = 422, description = "Bad limit, cursor or status", body = ValidationErrorBody),
    )
)]
#[get("/sync/jobs")]
async fn list(
    state: web::Data<Infra>,
    auth: Auth<Viewer>,
    query: ValidatedQuery<JobListQuery>,
) -> Result<web::Json<Page<SyncJob>>, ApiError> {
    let query = query.0;
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .page_request()?;
    let filter = JobFilter {
        status: query.status,
    };
    Ok(web::Json(service::list(&state, &auth, filter, page).await?))
}

/// One sync job: its status, counts, error and timestamps.
#[utoipa::path(
    operation_id = "sync_get",
    tag = "sync",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = SyncJob),
        (status = 404, description = "No such job in your tenant", body = ErrorBody),
        (status = 422, description = "Invalid id", body = ValidationErrorBody),
    )
)]
#[get("/sync/jobs/{id}")]
async fn get_job(
    state: web::Data<Infra>,
    auth: Auth<Viewer>,
    id: web::Path<Uuid>,
) -> Result<web::Json<SyncJob>, ApiError> {
    Ok(web::Json(service::get(&state, &auth, *id).await?))
}
