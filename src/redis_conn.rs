//! Redis: the process's connections (one per thread) and the guard every
//! call goes through. The response cache, the rate limiter and revocation
//! reach Redis through these alone.
//!
//! A connection bounds connecting and each response; [`RedisGuard`] bounds
//! each whole operation and holds the Redis circuit breaker, so a Redis that
//! stops answering never hangs a request.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;
use tracing::Instrument;

use crate::config::RedisSettings;
use crate::resilience::breaker::CircuitBreaker;

/// The process's Redis connections: one multiplexed connection per thread
/// that uses Redis, each reconnecting by itself. Concurrent calls are
/// pipelined on it and none waits for a checkout — a pool would check a
/// connection out with a `PING` round trip, doubling the cost of the two
/// calls an authenticated cached read makes (rate limit, cache lookup).
///
/// Per thread, because a connection's reader runs on the runtime that first
/// used it: an HTTP worker (each has its own single-threaded runtime) then
/// reads its own replies, instead of every reply crossing to another thread
/// and waking the worker from there (two thread switches per call).
///
/// Lazy: the service starts while Redis is down.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// Tells this instance's connections from another's in a thread's list
    /// (tests run several applications, with different servers, in one process).
    id: u64,
}

impl Redis {
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let client = redis::Client::open(settings.redis_url())
            .context("`redis.url` cannot be used to build a Redis client")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout()))
            .set_response_timeout(Some(settings.command_timeout()))
            // Reconnection is retried a few times in the background, then again on next use.
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1));
        Ok(Self {
            client,
            config,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// This thread's connection (a cheap handle; made on first use).
    pub fn connection(&self) -> ConnectionManager {
        thread_local! {
            static CONNECTIONS: std::cell::RefCell<Vec<(u64, ConnectionManager)>> =
                const { std::cell::RefCell::new(Vec::new()) };
        }
        CONNECTIONS.with_borrow_mut(|connections| {
            if let Some((_, connection)) = connections.iter().find(|(id, _)| *id == self.id) {
                return connection.clone();
            }
            let connection =
                ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
                    .expect("a lazy connection manager opens nothing");
            connections.push((self.id, connection.clone()));
            connection
        })
    }
}

impl RedisSettings {
    fn redis_url(&self) -> String {
        self.url.expose_secret().to_owned()
    }
}

/// Every Redis call of the service goes through this: the Redis circuit
/// breaker (an open breaker answers at once, so a dead Redis costs no
/// timeout per request) and the command timeout.
#[derive(Clone)]
pub struct RedisGuard {
    breaker: Arc<CircuitBreaker>,
    timeout: Duration,
}

impl RedisGuard {
    pub fn new(breaker: Arc<CircuitBreaker>, settings: &RedisSettings) -> Self {
        Self {
            breaker,
            timeout: settings.command_timeout(),
        }
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Closes the breaker as soon as Redis answers a `PING` again (checked
    /// every `circuit_breakers.redis.probe_interval_ms` while open).
    pub fn watch_recovery(&self, redis: &Redis) {
        let redis = redis.clone();
        self.breaker.watch_recovery(move || {
            let mut conn = redis.connection();
            async move {
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            }
        });
    }

    /// Runs `op` (named `operation` in traces) under the breaker and the
    /// command timeout.
    pub async fn run<T>(
        &self,
        operation: &'static str,
        op: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        self.run_within(operation, self.timeout, op).await
    }

    /// As [`Self::run`], for a long operation (a refill) with its own time limit.
    pub async fn run_within<T>(
        &self,
        operation: &'static str,
        limit: Duration,
        op: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        if !self.breaker.allow() {
            anyhow::bail!("the Redis circuit breaker is open");
        }
        // A client span when tracing is on; disabled (free) otherwise.
        let span = tracing::trace_span!(
            target: "stock_tracker::redis",
            "redis",
            otel.name = operation,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.system = "redis",
        );
        let result = with_timeout(limit, op).instrument(span.clone()).await;
        match &result {
            Ok(_) => self.breaker.record_success(),
            Err(_) => {
                span.record("otel.status_code", "ERROR");
                self.breaker.record_failure()
            }
        }
        result
    }
}

/// Runs one Redis operation under a time limit.
async fn with_timeout<T, F>(limit: Duration, op: F) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
{
    tokio::time::timeout(limit, op)
        .await
        .map_err(|_| anyhow::anyhow!("redis did not answer within {} ms", limit.as_millis()))?
}
