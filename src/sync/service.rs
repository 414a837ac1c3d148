//! Sync: starting jobs (API), running them (worker), scheduling them (beat).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use uuid::Uuid;

use super::metrics::{SYNC_JOBS, SYNC_PRODUCTS};
use super::model::{JobFilter, StartSync, SyncJob};
use super::repository::{self, PageCounts, RunTotals};
use crate::auth::{Auth, Member, TenantCtx, Viewer};
use crate::broker::TaskQueue;
use crate::db::observed;
use crate::db::{self, Database};
use crate::http::error::ApiError;
use crate::http::pagination::{Page, PageRequest};
use crate::infra::Infra;
use crate::marketplaces::adapters::demo::DemoMarketplace;
use crate::marketplaces::adapters::wildberries::WildberriesClient;
use crate::marketplaces::adapters::{Adapter, AdapterError, MarketplaceAdapter};
use crate::marketplaces::model::MarketplaceKind;
use crate::marketplaces::model::WildberriesCredentials;

/// What `POST /api/v1/sync` did for one connection.
pub enum Started {
    /// A new job, handed to the broker (or left queued for the sweeper).
    New(SyncJob),
    /// The connection already had a queued or running job: this one.
    Existing(SyncJob),
}

/// Creates the connection's job unless it has one queued or running, then
/// hands it to the broker. A broker that is down does not fail the request:
/// the job stays queued and beat's sweeper hands it over later.
async fn start_one(
    db: &Database,
    queue: &TaskQueue,
    tenant: TenantCtx,
    connection_id: Uuid,
) -> Result<Started, ApiError> {
    let mut tx = db::begin_tenant_tx(db, tenant.id()).await?;
    if repository::connection_kind(&tenant, &mut tx, connection_id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("Marketplace connection"));
    }
    if let Some(job) = repository::active_job(&tenant, &mut tx, connection_id).await? {
        return Ok(Started::Existing(job));
    }
    let job = match repository::insert_job(&tenant, &mut tx, connection_id).await {
        Ok(job) => job,
        // A concurrent request created it first.
        Err(err) if db::is_unique_violation(&err, repository::ONE_ACTIVE_JOB) => {
            drop(tx);
            let mut tx = db::begin_tenant_tx(db, tenant.id()).await?;
            return match repository::active_job(&tenant, &mut tx, connection_id).await? {
                Some(job) => Ok(Started::Existing(job)),
                None => Err(ApiError::Conflict {
                    code: "sync_conflict",
                    detail: "A sync of this connection just finished; try again".into(),
                }),
            };
        }
        Err(err) => return Err(err.into()),
    };
    tx.commit().await?;
    hand_over(db, queue, tenant, &job).await;
    Ok(Started::New(job))
}

/// Sends a job's task and records when; logs (never fails) if the broker is down.
async fn hand_over(db: &Database, queue: &TaskQueue, tenant: TenantCtx, job: &SyncJob) {
    match super::tasks::send_sync(queue, tenant.id(), job.connection_id, job.id).await {
        Ok(()) => {
            let marked = async {
                let mut tx = db::begin_tenant_tx(db, tenant.id()).await?;
                repository::mark_enqueued(&tenant, &mut tx, job.id).await?;
                tx.commit().await
            };
            if let Err(err) = marked.await {
                tracing::warn!(error = %err, job_id = %job.id, "could not record the hand-over");
            }
        }
        Err(err) => tracing::warn!(
            error = %format!("{err:#}"),
            job_id = %job.id,
            "broker unavailable; the job stays queued for the sweeper"
        ),
    }
}

pub async fn start(
    state: &Infra,
    auth: &Auth<Member>,
    request: StartSync,
) -> Result<Vec<Started>, ApiError> {
    let tenant = auth.tenant();
    match (request.connection_id, request.all) {
        (Some(connection_id), None) => Ok(vec![
            start_one(&state.db, &state.queue, tenant, connection_id).await?,
        ]),
        (None, Some(true)) => {
            let ids = {
                let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
                repository::connection_ids(&tenant, &mut tx).await?
            };
            let mut started = Vec::with_capacity(ids.len());
            for id in ids {
                started.push(start_one(&state.db, &state.queue, tenant, id).await?);
            }
            Ok(started)
        }
        _ => Err(ApiError::invalid_field(
            "connection_id",
            "Give either `connection_id` or `\"all\": true`",
            "value_error",
        )),
    }
}

pub async fn list(
    state: &Infra,
    auth: &Auth<Viewer>,
    filter: JobFilter,
    page: PageRequest,
) -> Result<Page<SyncJob>, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let rows =
        repository::list_jobs(&tenant, &mut tx, filter.status, page.after, page.limit).await?;
    Ok(Page::from_rows(rows, page.limit, |job| job.id))
}

pub async fn get(state: &Infra, auth: &Auth<Viewer>, id: Uuid) -> Result<SyncJob, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    repository::find_job(&tenant, &mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Sync job"))
}

/// Why a run did not succeed.
#[derive(Debug)]
pub enum SyncError {
    /// The job is already finished (a duplicate delivery): nothing to do.
    AlreadyFinished,
    /// Worth retrying; the job stays running.
    Transient {
        message: String,
        retry_after: Option<u32>,
    },
    /// The job is marked failed with this message.
    Failed(String),
    /// Our own failure (database, ...); retried.
    Internal(anyhow::Error),
}

impl From<sqlx::Error> for SyncError {
    fn from(err: sqlx::Error) -> Self {
        // Lost connections and serialization failures are transient.
        let transient = db::is_connection_failure(&err)
            || matches!(&err, sqlx::Error::Database(e) if e.code().as_deref() == Some("40001"));
        if transient {
            SyncError::Transient {
                message: format!("database: {err}"),
                retry_after: None,
            }
        } else {
            SyncError::Internal(err.into())
        }
    }
}

/// Runs one sync job: pages from the adapter, one upsert statement per page
/// in its own transaction (a crash keeps what was committed; re-running
/// changes nothing already applied), then the job's final state with its
/// event. `final_attempt`: a transient failure now fails the job.
pub async fn run_sync(
    ctx: &Infra,
    tenant: TenantCtx,
    connection_id: Uuid,
    job_id: Uuid,
    final_attempt: bool,
) -> Result<(), SyncError> {
    let (job, connection, round) = {
        let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
        let Some(job) = repository::start_job(&tenant, &mut tx, job_id).await? else {
            return Err(SyncError::AlreadyFinished);
        };
        let connection = repository::connection_for_sync(&tenant, &mut tx, connection_id).await?;
        let round = repository::succeeded_syncs(&tenant, &mut tx, connection_id).await?;
        tx.commit().await?;
        (job, connection, round)
    };
    // A label value from a fixed set, whatever the database holds.
    let marketplace = connection
        .as_ref()
        .and_then(|(kind, _)| MarketplaceKind::from_name(kind))
        .map_or("unknown", MarketplaceKind::as_str);
    let adapter = match adapter_for(ctx, connection_id, connection, round) {
        Ok(adapter) => adapter,
        Err(message) => {
            finish(
                ctx,
                tenant,
                &job,
                marketplace,
                RunTotals::default(),
                Some(&message),
            )
            .await?;
            return Err(SyncError::Failed(message));
        }
    };

    let mut totals = RunTotals::default();
    let mut cursor: Option<String> = None;
    let outcome = loop {
        let page = match adapter.fetch_page(cursor.as_deref()).await {
            Ok(page) => page,
            Err(err) => break Err(err),
        };
        totals.seen += page.listings.len() as i32;
        if !page.listings.is_empty() {
            let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
            let counts =
                repository::upsert_page(&tenant, &mut tx, connection_id, job.id, &page.listings)
                    .await?;
            tx.commit().await?;
            let products = ctx.metrics.counter_vec(&SYNC_PRODUCTS);
            let unchanged = page.listings.len() as i32 - counts.created - counts.updated;
            for (outcome, count) in [
                ("created", counts.created),
                ("updated", counts.updated),
                ("unchanged", unchanged),
            ] {
                products
                    .with_label_values(&[marketplace, outcome])
                    .inc_by(count.max(0) as u64);
            }
            totals.pages = add(totals.pages, counts);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break Ok(()),
        }
    };
    // Whatever was committed is visible now.
    ctx.cache.invalidate_tenant(tenant.id()).await;
    match outcome {
        Ok(()) => {
            finish(ctx, tenant, &job, marketplace, totals, None).await?;
            Ok(())
        }
        Err(err) if err.is_transient() && !final_attempt => {
            let retry_after = match &err {
                AdapterError::Transient { retry_after, .. } => {
                    retry_after.map(|d: Duration| d.as_secs() as u32)
                }
                _ => None,
            };
            Err(SyncError::Transient {
                message: err.to_string(),
                retry_after,
            })
        }
        Err(err) => {
            let message = err.to_string();
            finish(ctx, tenant, &job, marketplace, totals, Some(&message)).await?;
            Err(SyncError::Failed(message))
        }
    }
}

/// The adapter of a connection, or why there is none (a permanent failure).
fn adapter_for(
    ctx: &Infra,
    connection_id: Uuid,
    connection: Option<(String, Option<String>)>,
    round: i64,
) -> Result<Adapter, String> {
    let Some((kind, encrypted)) = connection else {
        return Err("the marketplace connection was deleted".into());
    };
    match kind.as_str() {
        "demo" => Ok(Adapter::Demo(DemoMarketplace::new(
            connection_id,
            ctx.settings.worker.demo_products,
            ctx.settings.worker.page_size,
            round as u64,
        ))),
        "wildberries" => {
            let unreadable =
                || "the connection's credentials cannot be read; enter them again".to_owned();
            let encrypted = encrypted.ok_or_else(unreadable)?;
            let plain = ctx.secrets.decrypt(&encrypted).map_err(|_| unreadable())?;
            let credentials: WildberriesCredentials =
                serde_json::from_slice(&plain).map_err(|_| unreadable())?;
            WildberriesClient::new(
                &ctx.settings.wildberries,
                credentials.api_token,
                ctx.metrics.clone(),
            )
            .map(|client| Adapter::Wildberries(Box::new(client)))
            .map_err(|err| err.to_string())
        }
        other => Err(format!("unknown marketplace `{other}`")),
    }
}

fn add(a: PageCounts, b: PageCounts) -> PageCounts {
    PageCounts {
        created: a.created + b.created,
        updated: a.updated + b.updated,
        stock_changes: a.stock_changes + b.stock_changes,
        low_stock: a.low_stock + b.low_stock,
    }
}

async fn finish(
    ctx: &Infra,
    tenant: TenantCtx,
    job: &SyncJob,
    marketplace: &str,
    totals: RunTotals,
    error: Option<&str>,
) -> Result<(), SyncError> {
    let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
    repository::finish_job(&tenant, &mut tx, job, totals, error).await?;
    tx.commit().await?;
    ctx.metrics
        .counter_vec(&SYNC_JOBS)
        .with_label_values(&[
            marketplace,
            if error.is_some() {
                "failed"
            } else {
                "succeeded"
            },
        ])
        .inc();
    Ok(())
}

/// Beat's periodic task: a job for every connection of every tenant that
/// has none queued or running, found through a narrow definer function.
pub async fn sync_all_tenants(ctx: &Arc<Infra>) -> anyhow::Result<usize> {
    schedule_idle_connections(ctx, IDLE_PAGE).await
}

/// Idle connections read per page.
const IDLE_PAGE: u32 = 500;
/// Jobs started at once: each is a short transaction and a publish.
const SCHEDULING_CONCURRENCY: usize = 4;

/// [`sync_all_tenants`], `page` connections at a time: the read is a keyset
/// page (never the whole table), and each page's jobs start a few at once.
pub async fn schedule_idle_connections(ctx: &Arc<Infra>, page: u32) -> anyhow::Result<usize> {
    let mut started = 0;
    let mut after: Option<Uuid> = None;
    loop {
        let mut tx = ctx.db.begin().await?;
        let idle: Vec<(Uuid, Uuid)> =
            sqlx::query_as("SELECT tenant_id, connection_id FROM sync_idle_connections($1, $2)")
                .bind(after)
                .bind(page as i32)
                .fetch_all(observed("sync.idle_connections", &mut *tx))
                .await?;
        tx.commit().await?;
        let Some(&(_, last)) = idle.last() else {
            return Ok(started);
        };
        let full = idle.len() == page as usize;
        started += futures_util::stream::iter(idle)
            .map(|(tenant_id, connection_id)| async move {
                let tenant = TenantCtx::for_system_task(tenant_id);
                match start_one(&ctx.db, &ctx.queue, tenant, connection_id).await {
                    Ok(Started::New(_)) => 1,
                    Ok(Started::Existing(_)) => 0,
                    Err(err) => {
                        tracing::warn!(error = %err, %connection_id, "could not schedule a sync");
                        0
                    }
                }
            })
            .buffer_unordered(SCHEDULING_CONCURRENCY)
            .fold(0, |sum, n| async move { sum + n })
            .await;
        if !full {
            return Ok(started);
        }
        after = Some(last);
    }
}

/// Beat's sweeper: jobs still queued long after they were (or should have
/// been) handed to the broker are handed over again.
pub async fn sweep_stale_jobs(
    db: &Database,
    queue: &TaskQueue,
    stale_after: Duration,
) -> anyhow::Result<usize> {
    let mut tx = db.begin().await?;
    let rows: Vec<(Uuid, Uuid, Uuid)> = sqlx::query_as(
        "SELECT tenant_id, connection_id, job_id FROM sync_stale_queued_jobs(make_interval(secs => $1))",
    )
    .bind(stale_after.as_secs_f64())
    .fetch_all(observed("sync.sweep_stale_jobs", &mut *tx))
    .await?;
    tx.commit().await?;
    let mut resent = 0;
    for (tenant_id, connection_id, job_id) in rows {
        let tenant = TenantCtx::for_system_task(tenant_id);
        super::tasks::send_sync(queue, tenant_id, connection_id, job_id).await?;
        let mut tx = db::begin_tenant_tx(db, tenant.id()).await?;
        repository::mark_enqueued(&tenant, &mut tx, job_id).await?;
        tx.commit().await?;
        resent += 1;
    }
    Ok(resent)
}
