//! Handing Celery tasks to RabbitMQ, for the API, the worker and beat. The
//! tasks themselves are declared by the domains that own them (`sync::tasks`,
//! `webhooks::tasks`, `telegram::tasks`), which send them through
//! [`TaskQueue::send`]; the worker registers and runs them.
//!
//! The connection is made on first use and again after any failure, each
//! attempt bounded by `broker.connect_timeout_secs`, and a send by
//! `broker.send_timeout_ms`; a circuit breaker stops callers from waiting on
//! a broker that is down. A send that fails loses nothing: the job row is
//! still `queued`, and beat's sweeper hands it over again.

use std::sync::Arc;
use std::time::Duration;

use celery::Celery;
use celery::task::Signature;
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use crate::config::{BreakerSettings, Settings};
use crate::resilience::breaker::CircuitBreaker;
use crate::telemetry::metrics::Metrics;

pub struct TaskQueue {
    settings: Arc<Settings>,
    app: Mutex<Option<Arc<Celery>>>,
    breaker: Arc<CircuitBreaker>,
}

/// Builds a Celery app on the configured broker with both queues declared
/// (durable), late acknowledgement and the configured prefetch.
pub async fn connect(settings: &Settings, retries: u32) -> anyhow::Result<Arc<Celery>> {
    let broker = &settings.broker;
    let app = celery::CeleryBuilder::new("stock-tracker", broker.url.expose_secret())
        .default_queue(&broker.sync_queue)
        .task_route("sync_*", &broker.sync_queue)
        .task_route("deliver_*", &broker.notifications_queue)
        .prefetch_count(broker.prefetch)
        // A task whose worker dies before finishing is redelivered.
        .acks_late(true)
        .task_max_retries(settings.worker.max_retries)
        .broker_connection_timeout(broker.connect_timeout_secs)
        .broker_connection_retry(true)
        .broker_connection_max_retries(retries.max(1))
        .broker_connection_retry_delay(if retries > 1 { 2 } else { 0 })
        .build()
        .await
        .map_err(|err| anyhow::anyhow!("connecting to the broker: {err}"))?;
    Ok(Arc::new(app))
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
        Self {
            settings,
            app: Mutex::new(None),
            breaker: Arc::new(breaker),
        }
    }

    /// Closes the broker connection, if one is open (at shutdown: a
    /// connection dropped with the runtime logs I/O errors instead).
    pub async fn close(&self) {
        if let Some(app) = self.app.lock().await.take() {
            let _ = app.close().await;
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

    /// Uses an existing app (the worker's own) instead of connecting anew.
    pub async fn adopt(&self, app: Arc<Celery>) {
        *self.app.lock().await = Some(app);
    }

    /// The queue sync tasks go to.
    pub fn sync_queue(&self) -> &str {
        &self.settings.broker.sync_queue
    }

    /// The queue delivery tasks go to.
    pub fn notifications_queue(&self) -> &str {
        &self.settings.broker.notifications_queue
    }

    /// Hands one task to the broker, within `broker.send_timeout_ms`.
    pub async fn send<T: celery::task::Task>(&self, signature: Signature<T>) -> anyhow::Result<()> {
        if !self.breaker.allow() {
            anyhow::bail!("the broker circuit breaker is open");
        }
        let timeout = Duration::from_millis(self.settings.broker.send_timeout_ms);
        let result = tokio::time::timeout(timeout, async {
            let mut slot = self.app.lock().await;
            let app = match slot.as_ref() {
                Some(app) => app.clone(),
                None => {
                    let app = connect(&self.settings, 1).await?;
                    *slot = Some(app.clone());
                    app
                }
            };
            let sent = app.send_task(signature).await;
            if sent.is_err() {
                // Reconnect next time.
                *slot = None;
            }
            sent.map(|_| ())
                .map_err(|err| anyhow::anyhow!("sending a task: {err}"))
        })
        .await
        .map_err(|_| anyhow::anyhow!("the broker did not take the task within {timeout:?}"))
        .and_then(|sent| sent);
        match &result {
            Ok(()) => self.breaker.record_success(),
            Err(_) => self.breaker.record_failure(),
        }
        result
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
