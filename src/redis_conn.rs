//! Redis: the process's connections (one per thread) and the guard every
//! call goes through. The response cache, the rate limiter and revocation
//! reach Redis through these alone.
//!
//! Redis is one instance (`redis.url`) or a Redis Cluster (`redis.cluster_nodes`).
//! Callers do not tell them apart: every key one command or script uses
//! carries the same hash tag ([`tag`]), so it runs on either, and the few
//! operations that must visit every node (a pattern SCAN) go through
//! [`Redis::delete_matching`].
//!
//! A connection bounds connecting and each response; [`RedisGuard`] bounds
//! each whole operation and holds the Redis circuit breaker, so a Redis that
//! stops answering never hangs a request.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use secrecy::ExposeSecret;
use tracing::Instrument;

use crate::config::RedisSettings;
use crate::resilience::breaker::CircuitBreaker;

/// The hash tag of `id`'s keys: `{id}`. Redis Cluster places a key by the
/// text between its first braces only, so keys tagged alike share a slot —
/// and one script may use them together.
pub fn tag(id: impl std::fmt::Display) -> String {
    format!("{{{id}}}")
}

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
    target: Target,
    /// Tells this instance's connections from another's in a thread's list
    /// (tests run several applications, with different servers, in one process).
    id: u64,
}

// Built once per process and cloned only with a new application (tests):
// the size difference costs nothing on a request.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Target {
    Single {
        client: redis::Client,
        config: ConnectionManagerConfig,
    },
    Cluster {
        client: Arc<ClusterClient>,
        /// How the nodes are reached directly (their address replaces the host).
        seed: Box<redis::ConnectionInfo>,
    },
}

impl Redis {
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let target = if settings.cluster_nodes.is_empty() {
            let client = redis::Client::open(settings.redis_url())
                .context("`redis.url` cannot be used to build a Redis client")?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(settings.connect_timeout()))
                .set_response_timeout(Some(settings.command_timeout()))
                // Reconnection is retried a few times in the background, then again on next use.
                .set_number_of_retries(3)
                .set_max_delay(Duration::from_secs(1));
            Target::Single { client, config }
        } else {
            let seeds: Vec<String> = settings
                .cluster_nodes
                .iter()
                .map(|node| node.expose_secret().to_owned())
                .collect();
            let seed = redis::IntoConnectionInfo::into_connection_info(seeds[0].as_str())
                .context("`redis.cluster_nodes` holds a URL that cannot be used")?;
            let client = ClusterClientBuilder::new(seeds)
                .connection_timeout(settings.connect_timeout())
                .response_timeout(settings.command_timeout())
                // A dead master must fail its slots' calls within the
                // command timeout (the breaker and the fallbacks take over),
                // not after the client's default 16 retries.
                .retries(1)
                .min_retry_wait(10)
                .max_retry_wait(100)
                .build()
                .context("`redis.cluster_nodes` cannot be used to build a cluster client")?;
            Target::Cluster {
                client: Arc::new(client),
                seed: Box::new(seed),
            }
        };
        Ok(Self {
            target,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster { .. })
    }

    /// This thread's connection (a cheap handle; made on first use).
    pub fn connection(&self) -> Connection {
        thread_local! {
            static CONNECTIONS: std::cell::RefCell<Vec<(u64, Connection)>> =
                const { std::cell::RefCell::new(Vec::new()) };
        }
        CONNECTIONS.with_borrow_mut(|connections| {
            if let Some((_, connection)) = connections.iter().find(|(id, _)| *id == self.id) {
                return connection.clone();
            }
            let connection = match &self.target {
                Target::Single { client, config } => Connection::Single(
                    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                        .expect("a lazy connection manager opens nothing"),
                ),
                Target::Cluster { client, .. } => Connection::Cluster(LazyCluster {
                    client: client.clone(),
                    connection: Arc::new(tokio::sync::OnceCell::new()),
                }),
            };
            connections.push((self.id, connection.clone()));
            connection
        })
    }

    /// Deletes every key matching one of `patterns` (SCAN globs), on every
    /// master of a cluster. Returns how many were deleted. For rare, bulk
    /// work (a refill, a cache flush), never on a request.
    pub async fn delete_matching(&self, patterns: &[String]) -> anyhow::Result<usize> {
        let nodes: Vec<redis::Client> = match &self.target {
            Target::Single { client, .. } => vec![client.clone()],
            Target::Cluster { seed, .. } => self.masters(seed).await?,
        };
        let mut deleted = 0;
        for node in nodes {
            let mut conn = node.get_multiplexed_async_connection().await?;
            for pattern in patterns {
                let mut keys: Vec<String> = Vec::new();
                {
                    let mut iter =
                        redis::AsyncCommands::scan_match::<_, String>(&mut conn, pattern).await?;
                    while let Some(key) = futures_util::StreamExt::next(&mut iter).await {
                        keys.push(key?);
                    }
                }
                // One key per command: a cluster node refuses a multi-key
                // command whose keys lie in different slots.
                for chunk in keys.chunks(500) {
                    let mut pipe = redis::pipe();
                    for key in chunk {
                        pipe.cmd("UNLINK").arg(key).ignore();
                    }
                    let _: () = pipe.query_async(&mut conn).await?;
                }
                deleted += keys.len();
            }
        }
        Ok(deleted)
    }

    /// A client for each master of the cluster that is up, from `CLUSTER NODES`.
    async fn masters(&self, seed: &redis::ConnectionInfo) -> anyhow::Result<Vec<redis::Client>> {
        let mut conn = self.connection();
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut conn)
            .await?;
        masters_in(&nodes)
            .into_iter()
            .map(|(host, port)| {
                let info = (*seed)
                    .clone()
                    .set_addr(redis::ConnectionAddr::Tcp(host.to_owned(), port));
                Ok(redis::Client::open(info)?)
            })
            .collect()
    }
}

/// `(host, port)` of each master that is not failing, from `CLUSTER NODES`
/// lines: `<id> <host:port@cport[,hostname]> <flags> ...`.
fn masters_in(nodes: &str) -> Vec<(&str, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            let is_live_master = flags.split(',').any(|f| f == "master")
                && !flags.split(',').any(|f| f == "fail" || f == "noaddr");
            if !is_live_master {
                return None;
            }
            let host_port = address.split(['@', ',']).next()?;
            let (host, port) = host_port.rsplit_once(':')?;
            Some((host, port.parse().ok()?))
        })
        .collect()
}

/// One thread's connection to a single instance or to a cluster; commands
/// and scripts work on either (a cluster routes each by its keys' slot).
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(LazyCluster),
}

/// A cluster connection made on first use (making one reads the cluster's
/// slots from a node), and made again on a later call if that failed.
#[derive(Clone)]
pub struct LazyCluster {
    client: Arc<ClusterClient>,
    connection: Arc<tokio::sync::OnceCell<ClusterConnection>>,
}

impl LazyCluster {
    async fn get(&self) -> redis::RedisResult<ClusterConnection> {
        self.connection
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await?;
                conn.req_packed_command(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await?;
                conn.req_packed_commands(pipeline, offset, count).await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        0
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_that_are_up_are_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002,redis-b master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7003@17003 master,fail - 0 0 3 disconnected 10923-16383
d4 127.0.0.1:7004@17004 slave a1 0 0 1 connected
";
        assert_eq!(
            masters_in(nodes),
            vec![("127.0.0.1", 7001), ("127.0.0.1", 7002)]
        );
    }

    #[test]
    fn a_tag_is_the_id_in_braces() {
        assert_eq!(tag("t1"), "{t1}");
    }
}
