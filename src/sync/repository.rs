//! SQL for sync jobs, the batched product upsert and the outbox, always
//! inside a tenant-scoped transaction (row-level security applies).

use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{JobStatus, SyncJob};
use crate::auth::TenantCtx;
use crate::db::observed;
use crate::marketplaces::adapters::Listing;

const JOB_COLUMNS: &str = "id, connection_id, status, attempts, products_seen, products_created, \
     products_updated, stock_changes, low_stock_products, error, created_at, started_at, \
     finished_at, duration_ms";

/// Name of the index allowing one queued or running job per connection.
pub const ONE_ACTIVE_JOB: &str = "sync_jobs_one_active_idx";

/// The queued or running job of a connection, if any.
pub async fn active_job(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    connection_id: Uuid,
) -> Result<Option<SyncJob>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM sync_jobs
         WHERE tenant_id = $1 AND connection_id = $2 AND status IN ('queued', 'running')"
    )))
    .bind(tenant.id())
    .bind(connection_id)
    .fetch_optional(observed("sync.active_job", conn))
    .await
}

pub async fn insert_job(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    connection_id: Uuid,
) -> Result<SyncJob, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO sync_jobs (id, tenant_id, connection_id) VALUES ($1, $2, $3)
         RETURNING {JOB_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(tenant.id())
    .bind(connection_id)
    .fetch_one(observed("sync.insert_job", conn))
    .await
}

pub async fn find_job(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<SyncJob>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM sync_jobs WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant.id())
    .bind(id)
    .fetch_optional(observed("sync.find_job", conn))
    .await
}

/// Newest first, keyset-paginated on the id (UUID v7: creation order).
pub async fn list_jobs(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    status: Option<JobStatus>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<SyncJob>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM sync_jobs
         WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4"
    )))
    .bind(tenant.id())
    .bind(status)
    .bind(before)
    .bind(i64::from(limit) + 1)
    .fetch_all(observed("sync.list_jobs", conn))
    .await
}

/// Records that the broker confirmed the job's message (the sweeper sends
/// it again only after a lease has passed since).
pub async fn mark_enqueued(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sync_jobs SET enqueued_at = now() WHERE tenant_id = $1 AND id = $2 AND status = 'queued'",
    )
        .bind(tenant.id())
        .bind(id)
        .execute(observed("sync.mark_enqueued", conn))
        .await?;
    Ok(())
}

/// A worker's hold on a running job: every write of the run names the
/// token it was claimed under, and does nothing once another holds it.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    pub token: Uuid,
    /// The reaper's writes: only while the lease is still expired (a worker
    /// that renewed it meanwhile keeps its job).
    pub expired_only: bool,
}

/// Claims a job for a run under a new lease of `lease_secs`: a queued job
/// that is due, or a running one whose lease expired (its worker is gone).
/// `None`: finished, not due, or running under a live lease — a duplicate
/// delivery, nothing to do.
pub async fn claim_job(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
    token: Uuid,
    lease_secs: u64,
) -> Result<Option<SyncJob>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE sync_jobs
         SET status = 'running', attempts = attempts + 1, started_at = COALESCE(started_at, now()),
             lease_token = $3, lease_expires_at = now() + make_interval(secs => $4)
         WHERE tenant_id = $1 AND id = $2
           AND ((status = 'queued' AND run_after <= now())
             OR (status = 'running' AND COALESCE(lease_expires_at, '-infinity') < now()))
         RETURNING {JOB_COLUMNS}"
    )))
    .bind(tenant.id())
    .bind(id)
    .bind(token)
    .bind(lease_secs as f64)
    .fetch_optional(observed("sync.claim_job", conn))
    .await
}

/// Extends the lease; false once the job is no longer this lease's (reaped
/// and claimed by another worker, or finished).
pub async fn renew_lease(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
    token: Uuid,
    lease_secs: u64,
) -> Result<bool, sqlx::Error> {
    let renewed = sqlx::query(
        "UPDATE sync_jobs SET lease_expires_at = now() + make_interval(secs => $4)
         WHERE tenant_id = $1 AND id = $2 AND lease_token = $3 AND status = 'running'",
    )
    .bind(tenant.id())
    .bind(id)
    .bind(token)
    .bind(lease_secs as f64)
    .execute(observed("sync.renew_lease", conn))
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Puts a running job back in the queue, due in `delay_secs`, with why;
/// false when the lease was no longer `lease`'s.
pub async fn requeue_job(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
    lease: Lease,
    delay_secs: u32,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let requeued = sqlx::query(
        "UPDATE sync_jobs
         SET status = 'queued', run_after = now() + make_interval(secs => $5), error = $6,
             lease_token = NULL, lease_expires_at = NULL, enqueued_at = NULL
         WHERE tenant_id = $1 AND id = $2 AND lease_token = $3 AND status = 'running'
           AND (NOT $4 OR COALESCE(lease_expires_at, '-infinity') < now())",
    )
    .bind(tenant.id())
    .bind(id)
    .bind(lease.token)
    .bind(lease.expired_only)
    .bind(f64::from(delay_secs))
    .bind(reason)
    .execute(observed("sync.requeue_job", conn))
    .await?;
    Ok(requeued.rows_affected() == 1)
}

/// Hands a running job back to the queue, due at once, with why: its
/// worker is shutting down, so the run neither failed nor counts as an
/// attempt. False when the lease was no longer `lease`'s.
pub async fn release_job(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
    lease: Lease,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let released = sqlx::query(
        "UPDATE sync_jobs
         SET status = 'queued', run_after = now(), error = $4, attempts = attempts - 1,
             lease_token = NULL, lease_expires_at = NULL, enqueued_at = NULL
         WHERE tenant_id = $1 AND id = $2 AND lease_token = $3 AND status = 'running'",
    )
    .bind(tenant.id())
    .bind(id)
    .bind(lease.token)
    .bind(reason)
    .execute(observed("sync.release_job", conn))
    .await?;
    Ok(released.rows_affected() == 1)
}

/// What one page changed.
#[derive(Debug, Default, Clone, Copy)]
pub struct PageCounts {
    pub created: i32,
    pub updated: i32,
    pub stock_changes: i32,
    pub low_stock: i32,
}

/// Upserts one page of listings in one statement: new products inserted,
/// changed ones updated (unchanged rows are not touched), a stock-history
/// entry for every new product and every stock change, and a `stock.low`
/// outbox event for every product that went to or below the tenant's
/// threshold. Running it twice with the same page changes nothing.
pub async fn upsert_page(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    connection_id: Uuid,
    job_id: Uuid,
    listings: &[Listing],
) -> Result<PageCounts, sqlx::Error> {
    let n = listings.len();
    let skus: Vec<&str> = listings.iter().map(|l| l.sku.as_str()).collect();
    let names: Vec<&str> = listings.iter().map(|l| l.name.as_str()).collect();
    let prices: Vec<Decimal> = listings.iter().map(|l| l.price).collect();
    let stocks: Vec<i32> = listings.iter().map(|l| l.stock).collect();
    let ids = || (0..n).map(|_| Uuid::now_v7()).collect::<Vec<_>>();
    let (product_ids, history_ids, event_ids) = (ids(), ids(), ids());
    let row: (i64, i64, i64, i64) = sqlx::query_as(
        "WITH input AS (
             SELECT * FROM unnest($3::text[], $4::text[], $5::numeric[], $6::int[])
                 WITH ORDINALITY AS t(sku, name, price, stock, n)
         ),
         threshold AS (
             SELECT COALESCE((settings->>'low_stock_threshold')::int, 10) AS value
             FROM tenants WHERE id = $1
         ),
         -- One probe of the unique key per listing: the page's cost stays
         -- that of the page, however many products the connection has.
         existing AS (
             SELECT p.id, p.sku, p.stock FROM products p
             WHERE p.tenant_id = $1 AND p.marketplace_id = $2 AND p.sku = ANY($3::text[])
         ),
         upserted AS (
             INSERT INTO products AS p (id, tenant_id, marketplace_id, sku, name, price, stock)
             SELECT ($7::uuid[])[i.n], $1, $2, i.sku, i.name, i.price, i.stock FROM input i
             ON CONFLICT ON CONSTRAINT products_sku_key DO UPDATE
                 SET name = EXCLUDED.name, price = EXCLUDED.price, stock = EXCLUDED.stock,
                     updated_at = now()
                 WHERE (p.name, p.price, p.stock)
                       IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.price, EXCLUDED.stock)
             RETURNING p.id, p.sku, p.name, p.stock, (xmax = 0) AS inserted
         ),
         changed AS (
             SELECT u.id, u.sku, u.name, u.stock, u.inserted, e.stock AS previous_stock, i.n
             FROM upserted u JOIN input i ON i.sku = u.sku
             LEFT JOIN existing e ON e.sku = u.sku
             WHERE e.id IS NULL OR e.stock <> u.stock
         ),
         history AS (
             INSERT INTO product_stock_history (id, tenant_id, product_id, previous_stock, stock, source)
             SELECT ($8::uuid[])[c.n], $1, c.id, c.previous_stock, c.stock, 'sync' FROM changed c
             RETURNING 1
         ),
         low AS (
             INSERT INTO outbox_events (id, tenant_id, event_type, payload)
             SELECT ($9::uuid[])[c.n], $1, 'stock.low', jsonb_build_object(
                 'product_id', c.id, 'sku', c.sku, 'name', c.name, 'stock', c.stock,
                 'previous_stock', c.previous_stock, 'threshold', t.value,
                 'connection_id', $2, 'job_id', $10)
             FROM changed c, threshold t
             WHERE c.stock <= t.value AND (c.previous_stock IS NULL OR c.previous_stock > t.value)
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM upserted WHERE inserted),
                (SELECT count(*) FROM upserted WHERE NOT inserted),
                (SELECT count(*) FROM history),
                (SELECT count(*) FROM low)",
    )
    .bind(tenant.id())
    .bind(connection_id)
    .bind(&skus)
    .bind(&names)
    .bind(&prices)
    .bind(&stocks)
    .bind(&product_ids)
    .bind(&history_ids)
    .bind(&event_ids)
    .bind(job_id)
    .fetch_one(observed("sync.upsert_page", conn))
    .await?;
    Ok(PageCounts {
        created: row.0 as i32,
        updated: row.1 as i32,
        stock_changes: row.2 as i32,
        low_stock: row.3 as i32,
    })
}

/// Totals of a run, for the job's final state.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunTotals {
    pub seen: i32,
    pub pages: PageCounts,
}

/// The job's final state and its `sync.completed` / `sync.failed` event, in
/// the caller's transaction; false (nothing written) when the job is no
/// longer `lease`'s.
pub async fn finish_job(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    job: &SyncJob,
    lease: Lease,
    totals: RunTotals,
    error: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let status = if error.is_some() {
        "failed"
    } else {
        "succeeded"
    };
    let finished: Option<(OffsetDateTime, Option<i32>)> = sqlx::query_as(
        "UPDATE sync_jobs SET status = $3, error = $4, products_seen = $5, products_created = $6,
             products_updated = $7, stock_changes = $8, low_stock_products = $9,
             finished_at = now(),
             duration_ms = (extract(epoch FROM now() - COALESCE(started_at, now())) * 1000)::int,
             lease_token = NULL, lease_expires_at = NULL
         WHERE tenant_id = $1 AND id = $2 AND lease_token = $10 AND status = 'running'
           AND (NOT $11 OR COALESCE(lease_expires_at, '-infinity') < now())
         RETURNING finished_at, duration_ms",
    )
    .bind(tenant.id())
    .bind(job.id)
    .bind(status)
    .bind(error)
    .bind(totals.seen)
    .bind(totals.pages.created)
    .bind(totals.pages.updated)
    .bind(totals.pages.stock_changes)
    .bind(totals.pages.low_stock)
    .bind(lease.token)
    .bind(lease.expired_only)
    .fetch_optional(observed("sync.finish_job", &mut *conn))
    .await?;
    let Some(finished) = finished else {
        return Ok(false);
    };
    if error.is_none() {
        sqlx::query("UPDATE marketplace_connections SET last_synced_at = now() WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.id())
            .bind(job.connection_id)
            .execute(observed("sync.mark_connection_synced", &mut *conn))
            .await?;
    }
    let payload = json!({
        "job_id": job.id,
        "connection_id": job.connection_id,
        "status": status,
        "error": error,
        "products_seen": totals.seen,
        "products_created": totals.pages.created,
        "products_updated": totals.pages.updated,
        "stock_changes": totals.pages.stock_changes,
        "low_stock_products": totals.pages.low_stock,
        "finished_at": finished.0.format(&time::format_description::well_known::Rfc3339).ok(),
        "duration_ms": finished.1,
    });
    sqlx::query(
        "INSERT INTO outbox_events (id, tenant_id, event_type, payload) VALUES ($1, $2, $3, $4)",
    )
    .bind(Uuid::now_v7())
    .bind(tenant.id())
    .bind(if error.is_some() {
        "sync.failed"
    } else {
        "sync.completed"
    })
    .bind(payload)
    .execute(observed("sync.insert_outcome_event", conn))
    .await?;
    Ok(true)
}

/// How many syncs of a connection have succeeded (the demo marketplace's round).
pub async fn succeeded_syncs(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    connection_id: Uuid,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM sync_jobs WHERE tenant_id = $1 AND connection_id = $2 AND status = 'succeeded'",
    )
    .bind(tenant.id())
    .bind(connection_id)
    .fetch_one(observed("sync.succeeded_syncs", conn))
    .await
}

/// The kind of a connection of the tenant, if it exists.
pub async fn connection_kind(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    connection_id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT kind FROM marketplace_connections WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.id())
        .bind(connection_id)
        .fetch_optional(observed("sync.connection_kind", conn))
        .await
}

/// A connection's kind and encrypted credentials (none for the demo
/// marketplace), for its sync.
pub async fn connection_for_sync(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    connection_id: Uuid,
) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT kind, credentials_encrypted FROM marketplace_connections WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.id())
    .bind(connection_id)
    .fetch_optional(observed("sync.connection_for_sync", conn))
    .await
}

/// Every connection id of the tenant.
pub async fn connection_ids(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM marketplace_connections WHERE tenant_id = $1 ORDER BY id")
        .bind(tenant.id())
        .fetch_all(observed("sync.connection_ids", conn))
        .await
}
