//! Sync: starting jobs (API), running them (worker), scheduling them (beat).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use uuid::Uuid;

use super::metrics::{SYNC_JOBS, SYNC_LEASES_EXPIRED, SYNC_PRODUCTS};
use super::model::{JobFilter, JobStatus, StartSync, SyncJob};
use super::repository::{self, Lease, PageCounts, RunTotals};
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
        _ => Err(ApiError::invalid_value(
            "connection_id",
            serde_json::Value::Null,
            "Give either `connection_id` or `\"all\": true`",
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
    /// Worth retrying.
    Transient {
        message: String,
        retry_after: Option<u32>,
    },
    /// The job is marked failed with this message.
    Failed(String),
    /// Our own failure (database, ...); retried.
    Internal(anyhow::Error),
    /// The job's lease passed to another worker (this one was frozen or cut
    /// off past it): the run stopped and wrote nothing more.
    LeaseLost,
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

/// A job claimed by this worker: its writes are fenced by the lease.
pub struct Run {
    pub tenant: TenantCtx,
    pub job: SyncJob,
    pub lease: Lease,
    /// A transient failure now fails the job.
    pub final_attempt: bool,
}

/// What a delivery of a job's message found.
pub enum Claim {
    /// Ours to run.
    Claimed(Run),
    /// Nothing to do (a duplicate or early delivery), and why: the job is
    /// `finished`, `running` under another worker's live lease, `not_due`
    /// (waiting for a retry) or `gone`.
    Dropped(&'static str),
}

/// Claims a job for this worker under a fresh lease.
pub async fn claim(ctx: &Infra, tenant: TenantCtx, job_id: Uuid) -> Result<Claim, sqlx::Error> {
    let token = Uuid::new_v4();
    let lease_secs = ctx.settings.worker.job_lease_secs;
    let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
    let claimed = repository::claim_job(&tenant, &mut tx, job_id, token, lease_secs).await?;
    let Some(job) = claimed else {
        let state = match repository::find_job(&tenant, &mut tx, job_id).await? {
            None => "gone",
            Some(job) => match job.status {
                JobStatus::Running => "running",
                JobStatus::Queued => "not_due",
                JobStatus::Succeeded | JobStatus::Failed => "finished",
            },
        };
        return Ok(Claim::Dropped(state));
    };
    tx.commit().await?;
    let final_attempt = job.attempts > ctx.settings.worker.max_retries as i32;
    Ok(Claim::Claimed(Run {
        tenant,
        job,
        lease: Lease {
            token,
            expired_only: false,
        },
        final_attempt,
    }))
}

/// Runs a claimed job while keeping its lease: renewed every third of
/// `worker.job_lease_secs`; once another worker holds it, the run stops
/// where it is (every write is fenced by the lease anyway).
pub async fn run_leased(ctx: &Infra, run: &Run) -> Result<(), SyncError> {
    let lease_secs = ctx.settings.worker.job_lease_secs;
    let keeper = async {
        let period = Duration::from_secs(lease_secs).div_f64(3.0);
        loop {
            tokio::time::sleep(period).await;
            let renewed = async {
                let mut tx = db::begin_tenant_tx(&ctx.db, run.tenant.id()).await?;
                let renewed = repository::renew_lease(
                    &run.tenant,
                    &mut tx,
                    run.job.id,
                    run.lease.token,
                    lease_secs,
                )
                .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(renewed)
            };
            match renewed.await {
                Ok(true) => {}
                Ok(false) => return,
                // The next renewal or page write tries again.
                Err(err) => tracing::warn!(error = %err, "could not renew the job's lease"),
            }
        }
    };
    tokio::select! {
        ran = run_sync(ctx, run) => ran,
        () = keeper => Err(SyncError::LeaseLost),
    }
}

/// Runs one sync job: pages from the adapter, one upsert statement per page
/// in its own transaction that first renews the lease (a crash keeps what
/// was committed; re-running changes nothing already applied; a lost lease
/// writes nothing), then the job's final state with its event.
async fn run_sync(ctx: &Infra, run: &Run) -> Result<(), SyncError> {
    let (tenant, job) = (run.tenant, &run.job);
    let connection_id = job.connection_id;
    let (connection, round) = {
        let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
        let connection = repository::connection_for_sync(&tenant, &mut tx, connection_id).await?;
        let round = repository::succeeded_syncs(&tenant, &mut tx, connection_id).await?;
        tx.commit().await?;
        (connection, round)
    };
    // A label value from a fixed set, whatever the database holds.
    let marketplace = connection
        .as_ref()
        .and_then(|(kind, _)| MarketplaceKind::from_name(kind))
        .map_or("unknown", MarketplaceKind::as_str);
    let adapter = match adapter_for(ctx, connection_id, connection, round) {
        Ok(adapter) => adapter,
        Err(message) => {
            finish(ctx, run, marketplace, RunTotals::default(), Some(&message)).await?;
            return Err(SyncError::Failed(message));
        }
    };

    let lease_secs = ctx.settings.worker.job_lease_secs;
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
            if !repository::renew_lease(&tenant, &mut tx, job.id, run.lease.token, lease_secs)
                .await?
            {
                return Err(SyncError::LeaseLost);
            }
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
        Ok(()) => finish(ctx, run, marketplace, totals, None).await,
        Err(err) if err.is_transient() => {
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
            finish(ctx, run, marketplace, totals, Some(&message)).await?;
            Err(SyncError::Failed(message))
        }
    }
}

/// What became of a run that failed transiently or on our side: retried
/// after a backoff (the job queued again, due later; beat's sweeper hands it
/// over then), or, on the final attempt, failed for good with its event.
pub async fn settle_failure(
    ctx: &Infra,
    run: &Run,
    message: &str,
    retry_after: Option<u32>,
) -> Result<&'static str, SyncError> {
    if run.final_attempt {
        let marketplace = marketplace_of(ctx, run.tenant, run.job.connection_id).await?;
        finish(ctx, run, marketplace, RunTotals::default(), Some(message)).await?;
        return Ok("failed");
    }
    let attempt = (run.job.attempts - 1).max(0) as u32;
    let delay = crate::infra::tasks::backoff_secs(&ctx.settings, attempt, retry_after);
    let mut tx = db::begin_tenant_tx(&ctx.db, run.tenant.id()).await?;
    let reason = format!("retrying in {delay} s after: {message}");
    if !repository::requeue_job(&run.tenant, &mut tx, run.job.id, run.lease, delay, &reason).await?
    {
        return Err(SyncError::LeaseLost);
    }
    tx.commit().await?;
    tracing::warn!(%message, attempt = run.job.attempts, delay_secs = delay, "sync failed transiently; retrying");
    Ok("retried")
}

/// Hands a claimed job back to the queue when its worker shuts down before
/// the run ends: what the run committed stays (re-running changes nothing
/// already applied), the attempt is not counted, and beat's sweeper sends
/// it to another worker at its next round. False when the lease had passed
/// to another worker already.
pub async fn release(ctx: &Infra, run: &Run) -> Result<bool, sqlx::Error> {
    let mut tx = db::begin_tenant_tx(&ctx.db, run.tenant.id()).await?;
    let reason = "the worker running it shut down; queued again";
    let released =
        repository::release_job(&run.tenant, &mut tx, run.job.id, run.lease, reason).await?;
    tx.commit().await?;
    Ok(released)
}

async fn marketplace_of(
    ctx: &Infra,
    tenant: TenantCtx,
    connection_id: Uuid,
) -> Result<&'static str, sqlx::Error> {
    let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
    let kind = repository::connection_kind(&tenant, &mut tx, connection_id).await?;
    Ok(kind
        .as_deref()
        .and_then(MarketplaceKind::from_name)
        .map_or("unknown", MarketplaceKind::as_str))
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

/// The job's final state, fenced by the run's lease.
async fn finish(
    ctx: &Infra,
    run: &Run,
    marketplace: &str,
    totals: RunTotals,
    error: Option<&str>,
) -> Result<(), SyncError> {
    let mut tx = db::begin_tenant_tx(&ctx.db, run.tenant.id()).await?;
    if !repository::finish_job(&run.tenant, &mut tx, &run.job, run.lease, totals, error).await? {
        return Err(SyncError::LeaseLost);
    }
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

/// Beat's sweeper: due queued jobs whose message is missing — never
/// confirmed by the broker (down when the job was created or retried) or
/// confirmed a lease ago and still not taken (lost) — are handed over again,
/// so each gets at most one more message per lease.
pub async fn send_due_jobs(ctx: &Infra) -> anyhow::Result<usize> {
    let unsent_grace =
        Duration::from_millis(ctx.settings.broker.send_timeout_ms) + Duration::from_secs(1);
    let resend_after = Duration::from_secs(ctx.settings.worker.job_lease_secs);
    let mut tx = ctx.db.begin().await?;
    let rows: Vec<(Uuid, Uuid, Uuid)> = sqlx::query_as(
        "SELECT tenant_id, connection_id, job_id
         FROM sync_due_jobs(make_interval(secs => $1), make_interval(secs => $2), $3)",
    )
    .bind(unsent_grace.as_secs_f64())
    .bind(resend_after.as_secs_f64())
    .bind(SWEEP_BATCH)
    .fetch_all(observed("sync.due_jobs", &mut *tx))
    .await?;
    tx.commit().await?;
    let mut sent = 0;
    for (tenant_id, connection_id, job_id) in rows {
        let tenant = TenantCtx::for_system_task(tenant_id);
        // The broker refusing one means it refuses the rest: stop here.
        super::tasks::send_sync(&ctx.queue, tenant_id, connection_id, job_id).await?;
        let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
        repository::mark_enqueued(&tenant, &mut tx, job_id).await?;
        tx.commit().await?;
        sent += 1;
    }
    Ok(sent)
}

/// Jobs the sweeper and the reaper handle per turn.
const SWEEP_BATCH: i32 = 500;

/// What the reaper did with expired leases.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    pub requeued: usize,
    pub failed: usize,
}

/// Beat's reaper: running jobs whose lease expired (the worker stopped
/// renewing it: frozen, cut off or dead) go back to the queue, due at once,
/// or fail with the reason once their retries are used up. Each write is
/// conditional on the lease still being expired and unchanged.
pub async fn reap_expired_leases(ctx: &Infra) -> anyhow::Result<Reaped> {
    let mut tx = ctx.db.begin().await?;
    let rows: Vec<(Uuid, Uuid, Option<Uuid>)> =
        sqlx::query_as("SELECT tenant_id, job_id, lease_token FROM sync_expired_leases($1)")
            .bind(SWEEP_BATCH)
            .fetch_all(observed("sync.expired_leases", &mut *tx))
            .await?;
    tx.commit().await?;
    let mut reaped = Reaped::default();
    let expired = ctx.metrics.counter_vec(&SYNC_LEASES_EXPIRED);
    for (tenant_id, job_id, token) in rows {
        let tenant = TenantCtx::for_system_task(tenant_id);
        let job = {
            let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
            repository::find_job(&tenant, &mut tx, job_id).await?
        };
        let Some(job) = job else { continue };
        let run = Run {
            tenant,
            final_attempt: job.attempts > ctx.settings.worker.max_retries as i32,
            job,
            lease: Lease {
                // A job left running by a release without leases has none.
                token: token.unwrap_or_else(Uuid::nil),
                expired_only: true,
            },
        };
        let reason =
            "the worker running it stopped renewing its lease (frozen, cut off or stopped)";
        let outcome = if run.final_attempt {
            let marketplace = marketplace_of(ctx, tenant, run.job.connection_id).await?;
            let message = format!("{reason}, and its retries are used up");
            match finish(ctx, &run, marketplace, RunTotals::default(), Some(&message)).await {
                Ok(()) => Some("failed"),
                Err(SyncError::LeaseLost) => None,
                Err(err) => anyhow::bail!("reaping job {job_id}: {err:?}"),
            }
        } else {
            let mut tx = db::begin_tenant_tx(&ctx.db, tenant.id()).await?;
            let requeued =
                repository::requeue_job(&tenant, &mut tx, job_id, run.lease, 0, reason).await?;
            tx.commit().await?;
            requeued.then_some("requeued")
        };
        let Some(outcome) = outcome else { continue };
        if outcome == "failed" {
            reaped.failed += 1;
        } else {
            reaped.requeued += 1;
        }
        expired.with_label_values(&[outcome]).inc();
        tracing::warn!(%job_id, %tenant_id, outcome, "a sync job's lease expired");
    }
    Ok(reaped)
}
