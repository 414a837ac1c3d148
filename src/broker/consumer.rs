//! Consuming the queues: one channel per queue with its own prefetch (a
//! per-consumer QoS, as quorum queues require), so a queue full of long
//! syncs never holds back the notifications queue. Every delivery runs as
//! its own tokio task and is acknowledged once its handler has returned
//! (late acknowledgement: a worker that dies mid-task leaves the message to
//! be redelivered). A message that cannot run — not Celery protocol 2, an
//! unknown task, bad arguments — is rejected without requeue and counted.
//!
//! A lost connection is reopened (every 2 s) while running tasks go on; at
//! shutdown the consumers are cancelled and running tasks get a grace
//! period. Tasks still running then are told they are abandoned
//! ([`abandoned`]): one that can hand its work back (a sync releases its
//! job) does so within [`HAND_BACK_TIMEOUT`]. Whatever is still
//! unacknowledged returns to the queue when the connection closes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use prometheus::IntCounterVec;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{BadMessage, TaskMessage, connect, declare_queues};
use crate::config::Settings;
use crate::telemetry::metrics::MetricDef;

pub const MESSAGES_REJECTED: MetricDef = MetricDef::counter(
    "stock_tracker_worker_messages_rejected_total",
    "Messages the worker rejected without running them (not Celery protocol 2, unknown task, bad arguments), by queue",
    &["queue"],
);

pub const METRICS: &[MetricDef] = &[MESSAGES_REJECTED];

/// Runs one task call; `Err` when its arguments cannot be read.
pub type Handler =
    Arc<dyn Fn(TaskMessage) -> BoxFuture<'static, Result<(), BadMessage>> + Send + Sync>;

/// A queue to consume and how many of its messages may run at once.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub queue: String,
    pub prefetch: u16,
}

/// How long abandoned tasks get to hand their work back at shutdown, after
/// the grace period.
pub const HAND_BACK_TIMEOUT: Duration = Duration::from_secs(5);

tokio::task_local! {
    /// Cancelled when the worker, shutting down, stops waiting for the
    /// running tasks: set around each handler, read by [`abandoned`].
    static ABANDONED: CancellationToken;
}

/// Resolves when the worker shutting down gives up waiting for the calling
/// task (its grace period is over), which then has [`HAND_BACK_TIMEOUT`] to
/// hand its work back before it is dropped. Never, outside a consumer's
/// task. A task-local rather than a handler argument: only the tasks that
/// can hand work back ask for it.
pub async fn abandoned() {
    match ABANDONED.try_with(CancellationToken::clone) {
        Ok(token) => token.cancelled().await,
        Err(_) => std::future::pending().await,
    }
}

/// Connection attempts before a worker that never connected gives up.
const FIRST_CONNECT_ATTEMPTS: u32 = 30;
const RECONNECT_DELAY: Duration = Duration::from_secs(2);

pub struct Consumer {
    pub settings: Arc<Settings>,
    pub handlers: HashMap<&'static str, Handler>,
    pub rejected: IntCounterVec,
}

impl Consumer {
    /// Consumes `subscriptions` until `stop` resolves, then lets running
    /// tasks finish for up to `grace`.
    pub async fn run(
        self,
        subscriptions: &[Subscription],
        stop: impl Future<Output = ()>,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let this = Arc::new(self);
        // The running tasks, across reconnections.
        let mut running = JoinSet::new();
        let abandon = CancellationToken::new();
        tokio::pin!(stop);
        let mut failed_attempts = 0;
        let mut connected_once = false;
        loop {
            let opened = tokio::select! {
                opened = this.open(subscriptions) => opened,
                () = &mut stop => break,
            };
            let (connection, channels) = match opened {
                Ok(open) => open,
                Err(err) => {
                    failed_attempts += 1;
                    if !connected_once && failed_attempts >= FIRST_CONNECT_ATTEMPTS {
                        return Err(err.context("the broker stayed unreachable"));
                    }
                    tracing::warn!(error = %format!("{err:#}"), "cannot consume; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(RECONNECT_DELAY) => continue,
                        () = &mut stop => break,
                    }
                }
            };
            if !connected_once {
                let queues: Vec<&str> = subscriptions.iter().map(|s| s.queue.as_str()).collect();
                tracing::info!(?queues, "worker consuming");
            } else {
                tracing::info!("worker consuming again");
            }
            connected_once = true;
            failed_attempts = 0;
            // Each consumer's deliveries, then `None` when it ends: one queue
            // no longer consumed (the broker cancelled it) reconnects them all.
            let mut deliveries = stream::select_all(channels.iter().map(|(queue, _, consumer)| {
                let queue = queue.clone();
                consumer
                    .clone()
                    .map(Some)
                    .chain(stream::iter([None]))
                    .map(move |delivery| (queue.clone(), delivery))
            }));
            let stopped = loop {
                tokio::select! {
                    Some((queue, next)) = deliveries.next() => match next {
                        Some(Ok(delivery)) => {
                            let this = this.clone();
                            let abandoned = abandon.clone();
                            running.spawn(ABANDONED.scope(abandoned, async move {
                                this.handle(&queue, delivery).await
                            }));
                        }
                        Some(Err(err)) => {
                            tracing::warn!(error = %err, %queue, "the broker connection failed; reconnecting");
                            break false;
                        }
                        None => {
                            tracing::warn!(%queue, "the broker cancelled consumption; reconnecting");
                            break false;
                        }
                    },
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                    () = &mut stop => break true,
                }
            };
            if stopped {
                // No new deliveries; running tasks go on (their acks need the channels).
                for (_, channel, consumer) in &channels {
                    let _ = channel
                        .basic_cancel(consumer.tag().as_str(), BasicCancelOptions::default())
                        .await;
                }
                drain(&mut running, grace, &abandon).await;
                let _ = connection.close(200, "worker stopping").await;
                return Ok(());
            }
            let _ = connection.close(200, "reconnecting").await;
        }
        drain(&mut running, grace, &abandon).await;
        Ok(())
    }

    /// A connection with one channel and consumer per subscription.
    async fn open(
        &self,
        subscriptions: &[Subscription],
    ) -> anyhow::Result<(Connection, Vec<(String, Channel, lapin::Consumer)>)> {
        let connection = connect(&self.settings, "stock-tracker worker").await?;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let mut channels = Vec::new();
        for subscription in subscriptions {
            let channel = connection.create_channel().await?;
            declare_queues(&channel, &self.settings).await?;
            channel
                .basic_qos(subscription.prefetch, BasicQosOptions { global: false })
                .await?;
            let tag = format!(
                "stock-tracker-worker-{host}-{}-{}",
                std::process::id(),
                subscription.queue
            );
            let consumer = channel
                .basic_consume(
                    &subscription.queue,
                    &tag,
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            channels.push((subscription.queue.clone(), channel, consumer));
        }
        Ok((connection, channels))
    }

    async fn handle(&self, queue: &str, delivery: Delivery) {
        let ran = match TaskMessage::decode(&delivery.properties, &delivery.data) {
            Ok(message) => match self.handlers.get(message.task.as_str()) {
                Some(handler) => {
                    let (task, id) = (message.task.clone(), message.id.clone());
                    handler(message)
                        .await
                        .map_err(|err| format!("task `{task}` ({id}): {err}"))
                }
                None => Err(format!("unknown task `{}` ({})", message.task, message.id)),
            },
            Err(err) => Err(err.to_string()),
        };
        let acknowledged = match ran {
            Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
            Err(reason) => {
                tracing::warn!(%queue, %reason, "message rejected");
                self.rejected.with_label_values(&[queue]).inc();
                delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await
            }
        };
        if let Err(err) = acknowledged {
            // The channel closed meanwhile: the message comes back and is
            // recognised as done (the job's state is in PostgreSQL).
            tracing::info!(error = %err, %queue, "could not acknowledge; the broker redelivers");
        }
    }
}

/// Waits for running tasks, at most `grace`; those still running then are
/// abandoned: each may hand its work back within [`HAND_BACK_TIMEOUT`], and
/// what is left is dropped (its transactions roll back) as the process ends.
async fn drain(running: &mut JoinSet<()>, grace: Duration, abandon: &CancellationToken) {
    let finished = async { while running.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, finished).await.is_ok() {
        return;
    }
    tracing::warn!(
        grace_secs = grace.as_secs(),
        tasks = running.len(),
        "tasks still running after the shutdown timeout; abandoning them"
    );
    abandon.cancel();
    let handed_back = async { while running.join_next().await.is_some() {} };
    if tokio::time::timeout(HAND_BACK_TIMEOUT, handed_back)
        .await
        .is_err()
    {
        tracing::warn!(
            tasks = running.len(),
            "tasks still running once abandoned; they stay unacknowledged for redelivery"
        );
    }
}
