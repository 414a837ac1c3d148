//! RabbitMQ, in Celery's protocol 2 ([`message`]): the API, the worker and
//! beat hand tasks over with [`TaskQueue::send`]; the worker consumes them
//! ([`consumer`]). The tasks themselves are declared by the domains that own
//! them (`sync::tasks`, `webhooks::tasks`, `telegram::tasks`).
//!
//! Both queues are quorum queues (replicated by RabbitMQ, a message survives
//! a node), declared by every process that connects. Every publish waits for
//! the broker's confirm: a message counts as handed over only once RabbitMQ
//! has taken responsibility for it. A nack, a return (no such queue) or no
//! confirm within `broker.send_timeout_ms` loses nothing either: the job row
//! stays due, and beat's sweeper hands it over again. Each outcome is
//! counted (`stock_tracker_broker_publishes_total`).
//!
//! This is a small layer over lapin rather than a Celery crate: quorum
//! queues need a per-consumer prefetch (they refuse `global` QoS), each
//! queue gets its own channel and prefetch so notifications never wait
//! behind syncs, and retries live in PostgreSQL, not in re-published
//! messages.
//!
//! The connection is made on first use and again after any failure; a
//! circuit breaker stops callers from waiting on a broker that is down.

pub mod consumer;
pub mod message;

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ConnectionProperties};
use prometheus::IntCounterVec;
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

pub use message::{BadMessage, TaskMessage};

use crate::config::{BreakerSettings, Settings};
use crate::resilience::breaker::CircuitBreaker;
use crate::telemetry::metrics::{MetricDef, Metrics};

pub const BROKER_PUBLISHES: MetricDef = MetricDef::counter(
    "stock_tracker_broker_publishes_total",
    "Task messages handed to the broker, by queue and outcome: confirmed, nacked, returned (no such queue), timed_out (no confirm in time), failed (no connection), circuit_open",
    &["queue", "outcome"],
);

pub const METRICS: &[MetricDef] = &[BROKER_PUBLISHES];

/// Every outcome of a publish, for the metric's initial series.
const OUTCOMES: [&str; 6] = [
    "confirmed",
    "nacked",
    "returned",
    "timed_out",
    "failed",
    "circuit_open",
];

/// Connection properties: lapin on the process's tokio runtime, and a
/// connection name that `rabbitmqctl list_connections name` shows.
pub fn connection_properties(name: &str) -> ConnectionProperties {
    ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio)
        .with_connection_name(LongString::from(name.to_owned()))
}

/// Opens a connection within `broker.connect_timeout_secs`.
pub async fn connect(settings: &Settings, name: &str) -> anyhow::Result<Connection> {
    let broker = &settings.broker;
    let timeout = Duration::from_secs(broker.connect_timeout_secs.into());
    match tokio::time::timeout(
        timeout,
        Connection::connect(broker.url.expose_secret(), connection_properties(name)),
    )
    .await
    {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(err)) => Err(anyhow::anyhow!("connecting to the broker: {err}")),
        Err(_) => anyhow::bail!("the broker did not answer within {timeout:?}"),
    }
}

/// Declares both queues as durable quorum queues (idempotent). A queue that
/// already exists with another type (a classic queue of an older release)
/// is reported with what to do about it.
pub async fn declare_queues(channel: &Channel, settings: &Settings) -> anyhow::Result<()> {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    for queue in [
        &settings.broker.sync_queue,
        &settings.broker.notifications_queue,
    ] {
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        if let Err(err) = channel
            .queue_declare(queue, options, arguments.clone())
            .await
        {
            if err.to_string().contains("PRECONDITION_FAILED") {
                anyhow::bail!(
                    "queue `{queue}` exists with other arguments than a quorum queue (a classic queue \
                     of an older release?): drain it and delete it (`rabbitmqctl delete_queue {queue}`), \
                     or name new queues in `broker.sync_queue` / `broker.notifications_queue` ({err})"
                );
            }
            return Err(anyhow::anyhow!("declaring queue `{queue}`: {err}"));
        }
    }
    Ok(())
}

/// A connection and its confirm-mode channel for publishing.
struct Publisher {
    connection: Connection,
    channel: Channel,
}

pub struct TaskQueue {
    settings: Arc<Settings>,
    publisher: Mutex<Option<Publisher>>,
    breaker: Arc<CircuitBreaker>,
    publishes: IntCounterVec,
    /// Who publishes, for the messages' `origin` header.
    origin: String,
}

impl TaskQueue {
    pub fn new(settings: Arc<Settings>, metrics: &Metrics) -> Self {
        let breaker = CircuitBreaker::new(
            "broker",
            &BreakerSettings {
                failure_threshold: 3,
                open_timeout_ms: 10_000,
                probe_interval_ms: 1_000,
            },
            metrics,
        );
        let publishes = metrics.counter_vec(&BROKER_PUBLISHES);
        for queue in [
            &settings.broker.sync_queue,
            &settings.broker.notifications_queue,
        ] {
            for outcome in OUTCOMES {
                publishes.with_label_values(&[queue.as_str(), outcome]);
            }
        }
        // Kubernetes sets HOSTNAME to the pod's name.
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        Self {
            settings,
            publisher: Mutex::new(None),
            breaker: Arc::new(breaker),
            publishes,
            origin: format!("stock-tracker@{host}/{}", std::process::id()),
        }
    }

    /// Closes the broker connection, if one is open (at shutdown).
    pub async fn close(&self) {
        if let Some(publisher) = self.publisher.lock().await.take() {
            let _ = publisher.connection.close(200, "shutting down").await;
        }
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Closes the breaker as soon as the broker accepts connections again
    /// (checked every second while open); the next send reconnects.
    pub fn watch_recovery(&self) {
        let settings = self.settings.clone();
        self.breaker.watch_recovery(move || {
            let settings = settings.clone();
            async move { reachable(&settings).await }
        });
    }

    /// The queue sync tasks go to.
    pub fn sync_queue(&self) -> &str {
        &self.settings.broker.sync_queue
    }

    /// The queue delivery tasks go to.
    pub fn notifications_queue(&self) -> &str {
        &self.settings.broker.notifications_queue
    }

    /// Hands one task to `queue` and waits for the broker's confirm, all
    /// within `broker.send_timeout_ms`. `Ok` means RabbitMQ holds the message.
    pub async fn send(&self, queue: &str, message: TaskMessage) -> anyhow::Result<()> {
        let outcome = if self.breaker.allow() {
            let timeout = Duration::from_millis(self.settings.broker.send_timeout_ms);
            match tokio::time::timeout(timeout, self.publish(queue, &message)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::TimedOut,
            }
        } else {
            Outcome::CircuitOpen
        };
        self.publishes
            .with_label_values(&[queue, outcome.label()])
            .inc();
        match outcome {
            Outcome::Confirmed => {
                self.breaker.record_success();
                return Ok(());
            }
            // The broker answered: it is up, the message was refused.
            Outcome::Nacked | Outcome::Returned => self.breaker.record_success(),
            Outcome::TimedOut | Outcome::Failed(_) => {
                self.breaker.record_failure();
                // Reconnect next time rather than reuse a channel in doubt.
                if let Some(publisher) = self.publisher.lock().await.take() {
                    tokio::spawn(async move {
                        let _ = publisher.connection.close(200, "reconnecting").await;
                    });
                }
            }
            Outcome::CircuitOpen => {}
        }
        Err(anyhow::anyhow!(
            "task `{}` not handed to queue `{queue}`: {}",
            message.task,
            outcome.describe(&self.settings)
        ))
    }

    async fn publish(&self, queue: &str, message: &TaskMessage) -> Outcome {
        let channel = match self.channel().await {
            Ok(channel) => channel,
            Err(err) => return Outcome::Failed(format!("{err:#}")),
        };
        let (body, properties) = message.encode(&self.origin);
        let options = BasicPublishOptions {
            // Returned, not silently dropped, when no queue has this name.
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = match channel
            .basic_publish("", queue, options, &body, properties)
            .await
        {
            Ok(confirm) => confirm,
            Err(err) => return Outcome::Failed(err.to_string()),
        };
        match confirm.await {
            Ok(Confirmation::Ack(None)) => Outcome::Confirmed,
            Ok(Confirmation::Ack(Some(_))) => Outcome::Returned,
            Ok(Confirmation::Nack(_)) => Outcome::Nacked,
            Ok(Confirmation::NotRequested) => {
                Outcome::Failed("the channel is not in confirm mode".into())
            }
            Err(err) => Outcome::Failed(err.to_string()),
        }
    }

    /// The publishing channel, connecting (and declaring the queues) first
    /// when there is none or it has closed. Publishes share the channel:
    /// the lock is held only to find it.
    async fn channel(&self) -> anyhow::Result<Channel> {
        let mut slot = self.publisher.lock().await;
        if let Some(publisher) = slot.as_ref()
            && publisher.channel.status().connected()
        {
            return Ok(publisher.channel.clone());
        }
        let connection = connect(&self.settings, "stock-tracker publisher").await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        declare_queues(&channel, &self.settings).await?;
        *slot = Some(Publisher {
            connection,
            channel: channel.clone(),
        });
        Ok(channel)
    }
}

enum Outcome {
    Confirmed,
    Nacked,
    Returned,
    TimedOut,
    Failed(String),
    CircuitOpen,
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Confirmed => "confirmed",
            Outcome::Nacked => "nacked",
            Outcome::Returned => "returned",
            Outcome::TimedOut => "timed_out",
            Outcome::Failed(_) => "failed",
            Outcome::CircuitOpen => "circuit_open",
        }
    }

    fn describe(&self, settings: &Settings) -> String {
        match self {
            Outcome::Confirmed => "confirmed".into(),
            Outcome::Nacked => "the broker refused it (nack)".into(),
            Outcome::Returned => "no such queue (returned)".into(),
            Outcome::TimedOut => format!(
                "no confirm within {} ms (broker.send_timeout_ms)",
                settings.broker.send_timeout_ms
            ),
            Outcome::Failed(reason) => reason.clone(),
            Outcome::CircuitOpen => "the broker circuit breaker is open".into(),
        }
    }
}

/// Whether the broker accepts TCP connections at its URL's host and port
/// (an AMQP handshake per probe would cost the broker a connection each time).
pub async fn reachable(settings: &Settings) -> bool {
    let Ok(url) = url::Url::parse(settings.broker.url.expose_secret()) else {
        return false;
    };
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = url
        .port()
        .unwrap_or(if url.scheme() == "amqps" { 5671 } else { 5672 });
    tokio::time::timeout(
        settings.health.check_timeout(),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .is_ok_and(|connected| connected.is_ok())
}
