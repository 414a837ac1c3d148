//! `[redis]`: the connection the rate limiter, the cache and revocation
//! share: one instance at `url`, or a Redis Cluster found from `cluster_nodes`.

use std::time::Duration;

use garde::Validate;
use secrecy::SecretString;
use serde::Deserialize;

use super::list_or_comma_separated;
use super::rules::secret_url_of;

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// May hold a password: never logged.
    #[garde(custom(secret_url_of(&["redis", "rediss"])))]
    pub url: SecretString,
    /// Seed nodes of a Redis Cluster (`redis://host:port`, any masters or
    /// replicas; the rest of the cluster is discovered from them). Empty:
    /// the single instance at `url`. May hold passwords: never logged.
    #[serde(default, deserialize_with = "list_or_comma_separated")]
    #[garde(inner(custom(secret_url_of(&["redis", "rediss"]))))]
    pub cluster_nodes: Vec<SecretString>,
    /// Deployments sharing a Redis would collide without one. No braces: the
    /// keys' hash tags (`{tenant}`) must be the only ones Redis Cluster sees.
    #[garde(length(min = 1), custom(no_braces))]
    pub key_prefix: String,
    /// Both timeouts above 0: a dead Redis would otherwise hang requests.
    #[garde(range(min = 1))]
    pub connect_timeout_ms: u64,
    #[garde(range(min = 1))]
    pub command_timeout_ms: u64,
}

fn no_braces(value: &str, _: &()) -> garde::Result {
    if value.contains(['{', '}']) {
        return Err(garde::Error::new(
            "must not contain `{` or `}`: Redis Cluster would read them as the keys' hash tag",
        ));
    }
    Ok(())
}

impl RedisSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
}
