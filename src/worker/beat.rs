//! The `beat` role: schedules `sync_all_tenants` every
//! `beat.sync_interval_secs`; every `beat.sweep_interval_secs` reaps sync
//! jobs whose lease expired and hands due jobs whose message is missing to
//! the broker; turns events into notifications every
//! `notifications.dispatch_interval_secs`; runs retention every
//! `beat.purge_interval_secs`.
//!
//! Exactly one beat schedules: the one holding the lead ([`leadership`]), a
//! lease of `beat.leader_lease_secs` renewed every third of it. Other beats
//! stand by, trying every `beat.standby_retry_secs`; a leader that stops
//! renewing (frozen, partitioned, dead) is replaced within the lease plus
//! that retry, and, fenced by its token, writes nothing once replaced. The
//! schedule's last runs live in PostgreSQL, so a new leader continues it.
//!
//! Beat serves `/health/live` and `/metrics` on `beat.port`. Liveness is a
//! heartbeat: every turn of the leader's loop (at least every second) or of
//! a standby's retries stamps it, and the probe fails once it is older than
//! `beat.liveness_timeout_secs` — a hung beat is restarted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::Settings;
use crate::db::Database;
use crate::email;
use crate::infra::Infra;
use crate::notifications;
use crate::sync;
use crate::telemetry::metrics::Metrics;

use super::leadership::{self, Claimed, Fence};
use super::retention;

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

/// Stands by until this beat takes the lead: its fencing token.
async fn take_lead(infra: &Infra, holder: &str, heartbeat: &Heartbeat) -> i64 {
    let settings = &infra.settings;
    let lease = Duration::from_secs(settings.beat.leader_lease_secs);
    let retry = Duration::from_secs(settings.beat.standby_retry_secs);
    let mut announced = false;
    loop {
        heartbeat.beat(false);
        match leadership::acquire(&infra.db, holder, lease).await {
            Ok(Some(token)) => return token,
            Ok(None) if !announced => {
                tracing::info!("another beat holds the schedule; standing by");
                announced = true;
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %format!("{err:#}"), "could not try for the lead"),
        }
        tokio::time::sleep(retry).await;
    }
}

/// Renews the lead every third of the lease, publishing until when it is
/// held (`None` once another beat holds it). Its own task: a long scheduled
/// run must not hold the renewal back.
async fn keep_lead(
    db: Database,
    holder: String,
    token: i64,
    lease: Duration,
    held: watch::Sender<Option<Instant>>,
) {
    loop {
        tokio::time::sleep(lease / 3).await;
        let asked = Instant::now();
        match leadership::renew(&db, &holder, token, lease).await {
            Ok(true) => {
                let _ = held.send(Some(asked + lease));
            }
            Ok(false) => {
                let _ = held.send(None);
                return;
            }
            // Retried at the next third; the lease lapses if it keeps failing.
            Err(err) => tracing::warn!(error = %format!("{err:#}"), "could not renew the lead"),
        }
    }
}

/// Stops the renewal when the lead ends, however `lead` returns.
struct Keeper(tokio::task::JoinHandle<()>);

impl Drop for Keeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The scheduled tasks: name (in `beat_schedule`) and interval.
fn schedule(settings: &Settings) -> [(&'static str, Duration); 4] {
    let secs = Duration::from_secs;
    [
        ("sync_all_tenants", secs(settings.beat.sync_interval_secs)),
        ("sync_jobs", secs(settings.beat.sweep_interval_secs)),
        (
            "notifications",
            secs(settings.notifications.dispatch_interval_secs.max(1)),
        ),
        ("retention", secs(settings.beat.purge_interval_secs)),
    ]
}

/// Runs one scheduled task (claimed for this leader).
async fn run_task(infra: &Infra, task: &str, token: i64, purged: &prometheus::IntCounterVec) {
    match task {
        "sync_all_tenants" => {
            if let Err(err) = sync::tasks::send_sync_all(&infra.queue).await {
                tracing::warn!(error = %format!("{err:#}"), "could not schedule sync_all_tenants");
            }
        }
        "sync_jobs" => {
            match sync::service::reap_expired_leases(infra).await {
                Ok(reaped) if reaped == sync::service::Reaped::default() => {}
                Ok(reaped) => tracing::warn!(
                    requeued = reaped.requeued,
                    failed = reaped.failed,
                    "reaped sync jobs whose lease expired"
                ),
                Err(err) => tracing::warn!(error = %format!("{err:#}"), "reaping sync jobs failed"),
            }
            match sync::service::send_due_jobs(infra).await {
                Ok(0) => {}
                Ok(sent) => tracing::info!(jobs = sent, "handed due sync jobs to the broker"),
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "handing due sync jobs over failed")
                }
            }
        }
        "notifications" => {
            if let Err(err) = notifications::dispatch_and_hand_over(infra, super::CHANNELS).await {
                tracing::warn!(error = %format!("{err:#}"), "dispatching notifications failed");
            }
            if let Err(err) = email::outbox::hand_over_due(infra).await {
                tracing::warn!(error = %format!("{err:#}"), "handing due emails over failed");
            }
        }
        "retention" => {
            let now = time::OffsetDateTime::now_utc();
            match retention::run(&infra.db, &infra.settings, purged, now, Some(Fence(token))).await
            {
                Ok(report) => tracing::info!(
                    rows = report.total(),
                    partitions_created = report.partitions_created,
                    purged = ?report.purged,
                    "retention ran"
                ),
                Err(err) => tracing::warn!(error = %format!("{err:#}"), "retention failed"),
            }
        }
        other => unreachable!("unscheduled task {other}"),
    }
}

/// Why the leader's loop ended.
enum Ended {
    /// Replaced, or the lease lapsed: back to standing by.
    LostLead,
    /// SIGTERM or SIGINT.
    Stopped,
}

/// Leads until the lead is lost or the process is asked to stop. Each task
/// is claimed with the token before it runs; a claim refused by the fence
/// ends the lead without writing.
async fn lead(
    infra: &Infra,
    holder: &str,
    token: i64,
    heartbeat: &Heartbeat,
    purged: &prometheus::IntCounterVec,
    stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Ended {
    let lease = Duration::from_secs(infra.settings.beat.leader_lease_secs);
    let (held_tx, mut held) = watch::channel(Some(Instant::now() + lease));
    let _keeper = Keeper(tokio::spawn(keep_lead(
        infra.db.clone(),
        holder.to_owned(),
        token,
        lease,
        held_tx,
    )));
    let tasks = schedule(&infra.settings);
    let mut due = [Instant::now(); 4];
    loop {
        heartbeat.beat(true);
        let leading = (*held.borrow()).is_some_and(|until| Instant::now() < until);
        if !leading {
            tracing::warn!(fencing_token = token, "lost the lead; standing by");
            return Ended::LostLead;
        }
        for (i, (task, interval)) in tasks.iter().enumerate() {
            if Instant::now() < due[i] {
                continue;
            }
            match leadership::claim_run(&infra.db, token, task, *interval).await {
                Ok(Claimed::Run) => {
                    due[i] = Instant::now() + *interval;
                    run_task(infra, task, token, purged).await;
                }
                Ok(Claimed::NotDue(wait)) => due[i] = Instant::now() + wait,
                Ok(Claimed::Fenced) => {
                    tracing::warn!(
                        fencing_token = token,
                        "another beat leads now; standing down without writing"
                    );
                    return Ended::LostLead;
                }
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), task, "could not claim a scheduled run");
                    due[i] = Instant::now() + Duration::from_secs(1);
                }
            }
        }
        let next = due.iter().min().copied().unwrap_or_else(Instant::now);
        let wake = next.min(Instant::now() + Duration::from_secs(1));
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            _ = held.changed() => {}
            () = stop.as_mut() => return Ended::Stopped,
        }
    }
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    // One pool, one registry: the lead is a row, not a session.
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
    // Beat hands due emails over, which in `email.mode = log` means logging them.
    email::delivery::register_metrics(&infra.metrics);
    let purged = retention::register(&infra.metrics);
    sync::metrics::register_reaper(&infra.metrics);
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let holder = format!("{host}/{}/{}", std::process::id(), Uuid::new_v4());

    let stop = super::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let token = tokio::select! {
            token = take_lead(&infra, &holder, &heartbeat) => token,
            () = &mut stop => break,
        };
        tracing::info!(fencing_token = token, "beat holds the schedule");
        match lead(&infra, &holder, token, &heartbeat, &purged, &mut stop).await {
            Ended::LostLead => continue,
            Ended::Stopped => {
                if let Err(err) = leadership::release(&infra.db, &holder, token).await {
                    tracing::warn!(error = %format!("{err:#}"), "could not give the lead up; it lapses with its lease");
                }
                break;
            }
        }
    }
    tracing::info!("beat stopped");
    infra.close().await;
    Ok(())
}
