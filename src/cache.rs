//! Redis: the connection pool and the key namespace.
//!
//! deadpool-redis sets no timeouts by default, and a Redis that stops
//! answering would then hang every request; the pool here bounds connecting
//! and waiting, and [`with_timeout`] bounds each command.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};
use secrecy::ExposeSecret;

use crate::config::RedisSettings;

pub fn connect_pool(settings: &RedisSettings) -> anyhow::Result<Pool> {
    let mut config = Config::from_url(settings.redis_url());
    let mut pool = PoolConfig::new(settings.pool_size);
    pool.timeouts = Timeouts {
        wait: Some(settings.connect_timeout()),
        create: Some(settings.connect_timeout()),
        recycle: Some(settings.command_timeout()),
    };
    config.pool = Some(pool);
    config
        .create_pool(Some(Runtime::Tokio1))
        .context("`redis.url` cannot be used to build a Redis pool")
}

impl RedisSettings {
    fn redis_url(&self) -> String {
        self.url.expose_secret().to_owned()
    }
}

/// Runs one Redis operation under the command timeout.
pub async fn with_timeout<T, F>(limit: Duration, op: F) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
{
    tokio::time::timeout(limit, op)
        .await
        .map_err(|_| anyhow::anyhow!("redis did not answer within {} ms", limit.as_millis()))?
}
