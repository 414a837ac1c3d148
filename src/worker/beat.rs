//! The `beat` role: schedules `sync_all_tenants` every
//! `beat.sync_interval_secs`, sweeps jobs left queued (broker down when they
//! were created, or their message lost) every `beat.sweep_interval_secs`, and
//! deletes expired credential state every `beat.purge_interval_secs`.
//!
//! Exactly one beat schedules: it holds a PostgreSQL advisory lock on a
//! dedicated connection straight to PostgreSQL (not a pooled one, which could
//! be recycled and drop the lock; never through a transaction pooler, which
//! does not keep a session: `database.direct_url` then). A second beat
//! started by mistake stands by, retrying every
//! `beat.standby_retry_secs`, and takes over if the first one dies.
//!
//! Beat serves `/health/live` and `/metrics` on `beat.port`. Liveness is a
//! heartbeat: every turn of the leader's loop (at least every 5 s, the lock
//! keepalive) or of a standby's retries stamps it, and the probe fails once
//! it is older than `beat.liveness_timeout_secs` — a hung beat is restarted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use serde_json::json;
use sqlx::{Connection, PgConnection};

use crate::config::Settings;
use crate::db::observed;
use crate::db::{self, Database};
use crate::infra::Infra;
use crate::notifications;
use crate::sync::service;
use crate::telemetry::metrics::Metrics;

use super::retention;

/// The advisory lock's key: any constant unique to this purpose.
const BEAT_LOCK: i64 = 0x5354_4245_4154; // "STBEAT"

/// When beat's loop last came round, and whether it holds the schedule.
#[derive(Default)]
pub struct Heartbeat {
    last_ms: AtomicI64,
    leader: AtomicBool,
}

impl Heartbeat {
    fn beat(&self, leader: bool) {
        self.last_ms
            .store(crate::auth::tokens::unix_now_ms(), Ordering::Relaxed);
        self.leader.store(leader, Ordering::Relaxed);
    }

    /// Milliseconds since the last beat.
    fn age_ms(&self) -> i64 {
        crate::auth::tokens::unix_now_ms() - self.last_ms.load(Ordering::Relaxed)
    }
}

struct Health {
    heartbeat: Arc<Heartbeat>,
    timeout_ms: i64,
    metrics: Metrics,
    db: Database,
}

async fn live(health: web::Data<Health>) -> HttpResponse {
    let age_ms = health.heartbeat.age_ms();
    let body = json!({
        "status": if age_ms <= health.timeout_ms { "ok" } else { "stalled" },
        "role": if health.heartbeat.leader.load(Ordering::Relaxed) { "leader" } else { "standby" },
        "last_beat_ms_ago": age_ms,
    });
    if age_ms <= health.timeout_ms {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics_route(health: web::Data<Health>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body({
            health.db.observe_pool();
            health.metrics.scrape()
        })
}

/// Serves `/health/live` and `/metrics` on `beat.port` until the process ends.
fn serve_health(
    settings: &Settings,
    heartbeat: Arc<Heartbeat>,
    metrics: Metrics,
    db: Database,
) -> anyhow::Result<()> {
    let health = web::Data::new(Health {
        heartbeat,
        timeout_ms: (settings.beat.liveness_timeout_secs * 1000) as i64,
        metrics,
        db,
    });
    let address = (settings.beat.host, settings.beat.port);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(health.clone())
            .route("/health/live", web::get().to(live))
            .route("/metrics", web::get().to(metrics_route))
    })
    .workers(1)
    .disable_signals()
    .bind(address)
    .with_context(|| {
        format!(
            "cannot listen on {}:{} (`beat.host`, `beat.port`)",
            address.0, address.1
        )
    })?
    .run();
    tokio::spawn(server);
    Ok(())
}

async fn acquire_lock(settings: &Settings, heartbeat: &Heartbeat) -> anyhow::Result<PgConnection> {
    let options = db::session_options(&settings.database)?.application_name("stock-tracker-beat");
    let retry = Duration::from_secs(settings.beat.standby_retry_secs.max(1));
    let mut announced = false;
    loop {
        heartbeat.beat(false);
        if let Ok(mut conn) = PgConnection::connect_with(&options).await {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(BEAT_LOCK)
                .fetch_one(observed("beat.advisory_lock", &mut conn))
                .await?;
            if locked {
                return Ok(conn);
            }
            if !announced {
                tracing::info!("another beat holds the schedule; standing by");
                announced = true;
            }
        }
        tokio::time::sleep(retry).await;
    }
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    // One pool (plus the lock's own connection), one registry.
    let infra = Infra::build(&settings, Metrics::new()).await?;
    let settings = infra.settings.clone();
    let heartbeat = Arc::new(Heartbeat::default());
    heartbeat.beat(false);
    serve_health(
        &settings,
        heartbeat.clone(),
        infra.metrics.clone(),
        infra.db.clone(),
    )?;
    infra.metrics.start_memory_sampler(&settings.metrics);
    let (db, queue) = (&infra.db, &infra.queue);
    let purged = retention::register(&infra.metrics);

    let stop = super::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let mut lock = tokio::select! {
            lock = acquire_lock(&settings, &heartbeat) => lock?,
            () = &mut stop => {
                infra.close().await;
                return Ok(());
            }
        };
        tracing::info!("beat holds the schedule");
        let mut sync_all =
            tokio::time::interval(Duration::from_secs(settings.beat.sync_interval_secs));
        let mut sweep =
            tokio::time::interval(Duration::from_secs(settings.beat.sweep_interval_secs));
        let mut dispatch = tokio::time::interval(Duration::from_secs(
            settings.notifications.dispatch_interval_secs.max(1),
        ));
        let mut purge = tokio::time::interval(Duration::from_secs(
            settings.beat.purge_interval_secs.max(1),
        ));
        let mut keepalive = tokio::time::interval(Duration::from_secs(5));
        let stale = Duration::from_secs(settings.beat.stale_job_secs);
        loop {
            heartbeat.beat(true);
            tokio::select! {
                _ = sync_all.tick() => {
                    if let Err(err) = crate::sync::tasks::send_sync_all(queue).await {
                        tracing::warn!(error = %format!("{err:#}"), "could not schedule sync_all_tenants");
                    }
                }
                _ = sweep.tick() => match service::sweep_stale_jobs(db, queue, stale).await {
                    Ok(0) => {}
                    Ok(resent) => tracing::info!(jobs = resent, "handed stale queued jobs to the broker again"),
                    Err(err) => tracing::warn!(error = %format!("{err:#}"), "sweeping queued jobs failed"),
                },
                _ = dispatch.tick() => if let Err(err) = notifications::dispatch_and_hand_over(&infra, super::CHANNELS).await {
                    tracing::warn!(error = %format!("{err:#}"), "dispatching notifications failed");
                },
                _ = purge.tick() => match retention::run(db, &settings, &purged, time::OffsetDateTime::now_utc()).await {
                    Ok(report) => tracing::info!(
                        rows = report.total(),
                        partitions_created = report.partitions_created,
                        purged = ?report.purged,
                        "retention ran"
                    ),
                    Err(err) => tracing::warn!(error = %format!("{err:#}"), "retention failed"),
                },
                _ = keepalive.tick() => {
                    if lock.ping().await.is_err() {
                        tracing::warn!("lost the beat lock's connection; standing by");
                        break;
                    }
                }
                () = &mut stop => {
                    tracing::info!("beat stopped");
                    let _ = lock.close().await;
                    infra.close().await;
                    return Ok(());
                }
            }
        }
    }
}
