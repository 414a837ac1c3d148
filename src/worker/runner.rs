//! The `worker` role: consumes the task queues, and serves its own
//! `/metrics`, `/metrics/catalog`, `/health/live` and `/health/ready` on
//! `worker.port`.
//!
//! Shutdown on SIGTERM or SIGINT: celery-rs stops consuming and waits for
//! running tasks; after `worker.shutdown_timeout_secs` the process exits
//! anyway, and the messages it still held — unacknowledged, since tasks
//! acknowledge late — are redelivered by RabbitMQ to another worker.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use celery::task::Task;
use serde_json::json;

use super::queue_stats::QueueStats;
use crate::broker;
use crate::config::Settings;
use crate::db::{self, observed};
use crate::infra::{self, Infra};
use crate::telemetry::metrics::{MetricDef, Metrics};
use crate::{sync, telegram, webhooks};

pub const WORKER_PREFETCH: MetricDef = MetricDef::gauge(
    "stock_tracker_worker_prefetch_messages",
    "Messages the worker may hold unacknowledged at once (broker.prefetch)",
    &[],
);

pub const METRICS: &[MetricDef] = &[WORKER_PREFETCH];

/// The tasks this worker runs, by name.
const TASKS: [&str; 4] = [
    <sync::tasks::sync_tenant_products as Task>::NAME,
    <sync::tasks::sync_all_tenants as Task>::NAME,
    <webhooks::tasks::deliver_webhook as Task>::NAME,
    <telegram::tasks::deliver_telegram as Task>::NAME,
];

/// The worker's registry, its own families registered (the shared ones are
/// registered as [`Infra::build`] builds their parts).
fn metrics(settings: &Settings) -> Metrics {
    let metrics = Metrics::new();
    metrics
        .int_gauge(&WORKER_PREFETCH)
        .set(i64::from(settings.broker.prefetch));
    infra::tasks::register_metrics(&metrics, &TASKS);
    sync::metrics::register(&metrics);
    for channel in super::CHANNELS {
        channel.register_metrics(&metrics);
    }
    metrics.int_gauge_vec(&super::queue_stats::QUEUE_DEPTH);
    metrics.int_gauge_vec(&super::queue_stats::QUEUE_CONSUMERS);
    metrics
}

/// The worker's infrastructure (tests call tasks' bodies with it directly).
pub async fn context(settings: &Settings) -> anyhow::Result<Arc<Infra>> {
    Ok(Arc::new(Infra::build(settings, metrics(settings)).await?))
}

async fn metrics_route(ctx: web::Data<Arc<Infra>>, queues: web::Data<QueueStats>) -> HttpResponse {
    queues.observe(&ctx.metrics).await;
    ctx.db.observe_pool();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(ctx.metrics.scrape())
}

async fn catalog() -> HttpResponse {
    HttpResponse::Ok().json(super::metrics_catalog())
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn ready(ctx: web::Data<Arc<Infra>>) -> HttpResponse {
    let database = tokio::time::timeout(
        ctx.settings.health.check_timeout(),
        sqlx::raw_sql(db::PING).execute(observed("health.ping", ctx.db.pool())),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let broker = broker::reachable(&ctx.settings).await;
    let body = json!({
        "status": if database && broker { "ok" } else { "unavailable" },
        "components": {
            "database": if database { "up" } else { "down" },
            "broker": if broker { "up" } else { "down" },
        }
    });
    if database && broker {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let ctx = context(&settings).await?;
    infra::tasks::install(ctx.clone());

    ctx.metrics.start_memory_sampler(&settings.metrics);
    let data = web::Data::new(ctx.clone());
    let queue_stats = web::Data::new(QueueStats::new(&settings));
    let served_stats = queue_stats.clone();
    let address = (settings.worker.host, settings.worker.port);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(served_stats.clone())
            .route("/metrics", web::get().to(metrics_route))
            .route("/metrics/catalog", web::get().to(catalog))
            .route("/health/live", web::get().to(live))
            .route("/health/ready", web::get().to(ready))
    })
    .workers(1)
    .disable_signals()
    .bind(address)
    .with_context(|| {
        format!(
            "cannot listen on {}:{} (`worker.host`, `worker.port`)",
            address.0, address.1
        )
    })?
    .run();
    let server_handle = server.handle();
    tokio::spawn(server);

    let app = broker::connect(&settings, 30).await?;
    app.register_task::<crate::sync::tasks::sync_tenant_products>()
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    app.register_task::<crate::sync::tasks::sync_all_tenants>()
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    app.register_task::<crate::webhooks::tasks::deliver_webhook>()
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    app.register_task::<crate::telegram::tasks::deliver_telegram>()
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    ctx.queue.adopt(app.clone()).await;
    let queues = [
        settings.broker.sync_queue.as_str(),
        settings.broker.notifications_queue.as_str(),
    ];
    tracing::info!(queues = ?queues, port = settings.worker.port, "worker consuming");

    let grace = Duration::from_secs(settings.worker.shutdown_timeout_secs);
    let consumed = tokio::select! {
        consumed = app.consume_from(&queues) => consumed.map_err(|err| anyhow::anyhow!("consuming: {err}")),
        () = shutdown_deadline(grace) => {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "tasks still running after the shutdown timeout; they stay unacknowledged for redelivery"
            );
            Ok(())
        }
    };
    server_handle.stop(true).await;
    queue_stats.close().await;
    ctx.close().await;
    tracing::info!("worker stopped");
    consumed
}

/// Resolves `grace` after the first SIGTERM or SIGINT (celery-rs handles
/// the signal itself; this only bounds how long it may wait).
async fn shutdown_deadline(grace: Duration) {
    super::shutdown_signal().await;
    tokio::time::sleep(grace).await;
}
