//! Queue depth and consumers for the worker's `/metrics`, read from
//! RabbitMQ at scrape time with a passive queue declare (it reports both
//! counts and changes nothing) on a connection of its own, reopened after a
//! failure. RabbitMQ's `rabbitmq_prometheus` plugin exports the same and
//! more; this keeps the worker's own signal (is anyone consuming my queues?)
//! even where the plugin is not scraped.

use std::time::Duration;

use lapin::Connection;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use crate::config::Settings;
use crate::telemetry::metrics::{MetricDef, Metrics};

pub const QUEUE_DEPTH: MetricDef = MetricDef::gauge(
    "stock_tracker_queue_depth",
    "Messages ready for delivery in each broker queue, read with a passive queue declare at scrape time",
    &["queue"],
);

pub const QUEUE_CONSUMERS: MetricDef = MetricDef::gauge(
    "stock_tracker_queue_consumers",
    "Consumers attached to each broker queue, read with a passive queue declare at scrape time (0: no worker consuming)",
    &["queue"],
);

pub const METRICS: &[MetricDef] = &[QUEUE_DEPTH, QUEUE_CONSUMERS];

pub struct QueueStats {
    url: SecretString,
    queues: [String; 2],
    timeout: Duration,
    connection: Mutex<Option<Connection>>,
}

impl QueueStats {
    pub fn new(settings: &Settings) -> Self {
        let broker = &settings.broker;
        Self {
            url: broker.url.clone(),
            queues: [
                broker.sync_queue.clone(),
                broker.notifications_queue.clone(),
            ],
            timeout: settings.health.check_timeout(),
            connection: Mutex::new(None),
        }
    }

    /// Sets the depth and consumer gauges of every queue. When the broker
    /// cannot be read in time the gauges are removed rather than left stale.
    pub async fn observe(&self, metrics: &Metrics) {
        let depth_gauge = metrics.int_gauge_vec(&QUEUE_DEPTH);
        let consumers_gauge = metrics.int_gauge_vec(&QUEUE_CONSUMERS);
        let mut connection = self.connection.lock().await;
        match tokio::time::timeout(self.timeout, self.read(&mut connection)).await {
            Ok(Ok(counts)) => {
                for (queue, (depth, consumers)) in self.queues.iter().zip(counts) {
                    depth_gauge
                        .with_label_values(&[queue])
                        .set(i64::from(depth));
                    consumers_gauge
                        .with_label_values(&[queue])
                        .set(i64::from(consumers));
                }
            }
            failed => {
                if let Ok(Err(err)) = failed {
                    tracing::warn!(error = %err, "cannot read the queue depths");
                }
                *connection = None;
                for queue in &self.queues {
                    let _ = depth_gauge.remove_label_values(&[queue]);
                    let _ = consumers_gauge.remove_label_values(&[queue]);
                }
            }
        }
    }

    /// Closes the connection, if one is open (at shutdown).
    pub async fn close(&self) {
        if let Some(connection) = self.connection.lock().await.take() {
            let _ = connection.close(200, "shutting down").await;
        }
    }

    async fn read(&self, connection: &mut Option<Connection>) -> lapin::Result<Vec<(u32, u32)>> {
        let open = match connection.take() {
            Some(open) if open.status().connected() => open,
            _ => {
                Connection::connect(
                    self.url.expose_secret(),
                    crate::broker::connection_properties("stock-tracker queue stats"),
                )
                .await?
            }
        };
        let open = connection.insert(open);
        // A passive declare of a missing queue closes its channel: one per scrape.
        let channel = open.create_channel().await?;
        let mut counts = Vec::with_capacity(self.queues.len());
        for queue in &self.queues {
            let declared = channel
                .queue_declare(
                    queue,
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            counts.push((declared.message_count(), declared.consumer_count()));
        }
        let _ = channel.close(200, "done").await;
        Ok(counts)
    }
}
