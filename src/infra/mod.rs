//! The shared infrastructure, built once per process by [`Infra::build`] for
//! the API, the worker and beat alike: the PostgreSQL pool behind its
//! breaker (schema checked), Redis and its guard, the broker handle, the
//! response cache, the Fernet key ring and the HTTP client for deliveries,
//! each dependency watched by its breaker's recovery probe. The metrics
//! registry is the role's own, passed in; the parts built here register
//! their families in it.
//!
//! [`tasks`]: what Celery tasks run with.

pub mod tasks;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::broker::TaskQueue;
use crate::cache::ResponseCache;
use crate::config::Settings;
use crate::crypto::SecretBox;
use crate::db::{self, Database};
use crate::mailer::Mailer;
use crate::redis_conn::{Redis, RedisGuard};
use crate::resilience::breaker::CircuitBreaker;
use crate::ssrf;
use crate::telemetry::metrics::Metrics;

pub struct Infra {
    pub settings: Arc<Settings>,
    pub db: Database,
    /// The process's Redis connections (one per thread); clones share them.
    pub redis: Redis,
    /// The Redis circuit breaker and command timeout, shared by every Redis user.
    pub redis_guard: RedisGuard,
    pub metrics: Metrics,
    /// Hands tasks to the broker.
    pub queue: TaskQueue,
    pub cache: ResponseCache,
    /// Encrypts and decrypts marketplace credentials, webhook secrets and bot tokens.
    pub secrets: SecretBox,
    /// The HTTP client for Telegram's Bot API (its connection pool is
    /// reused): redirects never followed; each request sets its own timeout.
    pub notifier: reqwest::Client,
    /// The HTTP client for webhook deliveries, to tenant-chosen URLs: it
    /// connects only to addresses its resolver checked as public (see
    /// [`crate::ssrf`]) and follows no redirect.
    pub webhook_client: reqwest::Client,
    /// How host names are looked up (the system's resolver; a test's).
    pub lookup: ssrf::Lookup,
    /// Where account emails go: the log, or an SMTP server.
    pub mailer: Mailer,
}

impl Infra {
    /// Connects what every role needs. Connections open lazily, so the
    /// process starts while Redis or the broker is down; PostgreSQL must
    /// answer, with a schema no older than this release.
    pub async fn build(settings: &Settings, metrics: Metrics) -> anyhow::Result<Self> {
        install_crypto_provider();
        let settings = Arc::new(settings.clone());
        let pool = db::connect_pool(&settings.database)?;
        db::check_schema(&pool).await?;
        let db_breaker =
            CircuitBreaker::new("database", &settings.circuit_breakers.database, &metrics);
        let db = Database::new(pool, &settings.database, Arc::new(db_breaker), &metrics);
        let redis = Redis::new(&settings.redis)?;
        let redis_breaker =
            CircuitBreaker::new("redis", &settings.circuit_breakers.redis, &metrics);
        let redis_guard = RedisGuard::new(Arc::new(redis_breaker), &settings.redis);
        let queue = TaskQueue::new(settings.clone(), &metrics);
        // A recovered dependency is used again within a probe interval.
        db.watch_recovery();
        redis_guard.watch_recovery(&redis);
        queue.watch_recovery();
        let cache = ResponseCache::new(&settings, redis.clone(), redis_guard.clone(), &metrics);
        let secrets = SecretBox::new(&settings.secrets.fernet_keys)?;
        let notifier = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(settings.notifications.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the notification HTTP client")?;
        let lookup = ssrf::system_lookup();
        let webhook_client = ssrf::client(
            lookup.clone(),
            settings.webhooks.allow_private_networks,
            Duration::from_millis(settings.notifications.timeout_ms),
        )
        .context("building the webhook HTTP client")?;
        let mailer = Mailer::new(
            &settings.email,
            Duration::from_millis(settings.notifications.timeout_ms),
        )
        .context("building the mailer")?;
        Ok(Self {
            mailer,
            settings,
            db,
            redis,
            redis_guard,
            metrics,
            queue,
            cache,
            secrets,
            notifier,
            webhook_client,
            lookup,
        })
    }

    /// Closes the broker connection and the pool (at shutdown, while the
    /// runtime still runs, so the AMQP connection ends cleanly).
    pub async fn close(&self) {
        self.queue.close().await;
        self.db.pool().close().await;
    }
}

/// sqlx brings rustls with `ring`, reqwest with `aws-lc-rs`; rustls refuses to
/// pick one itself, so the process installs one before any TLS is used.
pub fn install_crypto_provider() {
    // An error means a provider is already installed (a second application in
    // the same process): nothing to do.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
