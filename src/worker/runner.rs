//! The `worker` role: consumes the task queues, and serves its own
//! `/metrics`, `/metrics/catalog`, `/health/live` and `/health/ready` on
//! `worker.port`.
//!
//! Each queue is consumed on its own channel with its own prefetch
//! (`broker.sync_prefetch`, `broker.notifications_prefetch`): that many of
//! its tasks run at once, so long syncs never hold deliveries back.
//!
//! Shutdown on SIGTERM or SIGINT: the worker stops consuming and waits for
//! running tasks; after `worker.shutdown_timeout_secs` a sync still running
//! hands its job back to the queue, and the process exits: the messages it
//! still held — unacknowledged, since tasks acknowledge late — are
//! redelivered by RabbitMQ to another worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use futures_util::FutureExt;
use serde_json::json;

use super::queue_stats::QueueStats;
use crate::broker::consumer::{self, Consumer, Handler, Subscription};
use crate::broker::{self, BadMessage, TaskMessage};
use crate::config::Settings;
use crate::db::{self, observed};
use crate::infra::{self, Infra};
use crate::telemetry::metrics::{MetricDef, Metrics};
use crate::{email, exports, sync, telegram, webhooks};

pub const WORKER_PREFETCH: MetricDef = MetricDef::gauge(
    "stock_tracker_worker_prefetch_messages",
    "Messages of each queue the worker may hold unacknowledged, and so run, at once (broker.sync_prefetch, broker.notifications_prefetch)",
    &["queue"],
);

pub const METRICS: &[MetricDef] = &[WORKER_PREFETCH];

/// The tasks this worker runs, by name.
const TASKS: [&str; 6] = [
    sync::tasks::SYNC_TENANT_PRODUCTS,
    sync::tasks::SYNC_ALL_TENANTS,
    webhooks::tasks::DELIVER_WEBHOOK,
    telegram::tasks::DELIVER_TELEGRAM,
    email::tasks::DELIVER_EMAIL,
    exports::tasks::EXPORT_TENANT,
];

/// Each task's body, with the infrastructure it runs with.
fn handlers(ctx: &Arc<Infra>) -> HashMap<&'static str, Handler> {
    fn handler<F, Fut>(ctx: &Arc<Infra>, body: F) -> Handler
    where
        F: Fn(Arc<Infra>, TaskMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BadMessage>> + Send + 'static,
    {
        let ctx = ctx.clone();
        Arc::new(move |message| body(ctx.clone(), message).boxed())
    }
    HashMap::from([
        (
            sync::tasks::SYNC_TENANT_PRODUCTS,
            handler(ctx, sync::tasks::sync_tenant_products),
        ),
        (
            sync::tasks::SYNC_ALL_TENANTS,
            handler(ctx, sync::tasks::sync_all_tenants),
        ),
        (
            webhooks::tasks::DELIVER_WEBHOOK,
            handler(ctx, webhooks::tasks::deliver_webhook),
        ),
        (
            telegram::tasks::DELIVER_TELEGRAM,
            handler(ctx, telegram::tasks::deliver_telegram),
        ),
        (
            email::tasks::DELIVER_EMAIL,
            handler(ctx, email::tasks::deliver_email),
        ),
        (
            exports::tasks::EXPORT_TENANT,
            handler(ctx, exports::tasks::export_tenant),
        ),
    ])
}

/// The queues and how many of each queue's tasks run at once.
fn subscriptions(settings: &Settings) -> [Subscription; 2] {
    let broker = &settings.broker;
    [
        Subscription {
            queue: broker.sync_queue.clone(),
            prefetch: broker.sync_prefetch,
        },
        Subscription {
            queue: broker.notifications_queue.clone(),
            prefetch: broker.notifications_prefetch,
        },
    ]
}

/// The worker's registry, its own families registered (the shared ones are
/// registered as [`Infra::build`] builds their parts).
fn metrics(settings: &Settings) -> Metrics {
    let metrics = Metrics::new();
    let prefetch = metrics.int_gauge_vec(&WORKER_PREFETCH);
    let rejected = metrics.counter_vec(&consumer::MESSAGES_REJECTED);
    for subscription in subscriptions(settings) {
        prefetch
            .with_label_values(&[subscription.queue.as_str()])
            .set(i64::from(subscription.prefetch));
        rejected.with_label_values(&[subscription.queue.as_str()]);
    }
    infra::tasks::register_metrics(&metrics, &TASKS);
    sync::metrics::register(&metrics);
    for channel in super::CHANNELS {
        channel.register_metrics(&metrics);
    }
    email::delivery::register_metrics(&metrics);
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

    let grace = Duration::from_secs(settings.worker.shutdown_timeout_secs);
    let consumer = Consumer {
        settings: ctx.settings.clone(),
        handlers: handlers(&ctx),
        rejected: ctx.metrics.counter_vec(&consumer::MESSAGES_REJECTED),
    };
    let consumed = consumer
        .run(&subscriptions(&settings), super::shutdown_signal(), grace)
        .await;
    server_handle.stop(true).await;
    queue_stats.close().await;
    ctx.close().await;
    tracing::info!("worker stopped");
    consumed
}
