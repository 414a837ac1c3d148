//! Layered configuration: the embedded `config/default.toml`, then an optional
//! file, then `DATABASE_URL` / `REDIS_URL`, then `STOCK_TRACKER__SECTION__KEY`
//! variables. [`Settings::load`] merges and validates; every failure names the
//! key at fault so an operator can fix it without reading code.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

pub mod rate_limit;
mod resilience;

pub use rate_limit::RateLimitSettings;
pub use resilience::{BreakerSettings, LoadSheddingSettings};

/// The defaults, compiled in so the binary runs with no file at all.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.toml");

/// Prefix of the environment variables that override any key.
pub const ENV_PREFIX: &str = "STOCK_TRACKER__";

/// Shortest JWT secret accepted in production: 256 bits, the HS256 key size.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub environment: Environment,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub auth: AuthSettings,
    pub secrets: SecretsSettings,
    pub cache: CacheSettings,
    pub cors: CorsSettings,
    pub logging: LoggingSettings,
    pub health: HealthSettings,
    pub rate_limit: RateLimitSettings,
    pub load_shedding: LoadSheddingSettings,
    pub circuit_breakers: CircuitBreakerSettings,
    pub sentry: SentrySettings,
    pub broker: BrokerSettings,
    pub worker: WorkerSettings,
    pub beat: BeatSettings,
    pub wildberries: WildberriesSettings,
    pub webhooks: WebhookSettings,
    pub telegram: TelegramSettings,
    pub notifications: NotificationSettings,
    pub metrics: MetricsSettings,
    pub tracing: TracingSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// How often the resident memory is sampled for the growth rate.
    pub memory_sample_interval_secs: u64,
    /// The window the memory growth rate is computed over.
    pub memory_growth_window_secs: u64,
    /// A tenant is active while it made a request within this window.
    pub active_tenant_window_secs: u64,
}

impl MetricsSettings {
    pub fn memory_sample_interval(&self) -> Duration {
        Duration::from_secs(self.memory_sample_interval_secs)
    }

    pub fn memory_growth_window(&self) -> Duration {
        Duration::from_secs(self.memory_growth_window_secs)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSettings {
    /// OTLP/HTTP collector base URL (e.g. `http://otel-collector:4318`);
    /// spans go to `<endpoint>/v1/traces`. Empty: tracing off.
    pub otlp_endpoint: String,
    /// The `service.name` resource attribute; defaults to `stock-tracker-<role>`.
    pub service_name: String,
    /// Share of new traces recorded (a caller's sampled `traceparent` is always followed).
    pub sample_ratio: f64,
    /// An export batch is abandoned after this long.
    pub export_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    /// The Bot API (tests point it at a local mock).
    pub api_base_url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Development only: accept `http://` webhook URLs.
    pub allow_http: bool,
    /// Development only: accept hosts on private, loopback or link-local networks.
    pub allow_private_networks: bool,
    // Keys that moved to `[notifications]`: read only to refuse them with
    // the new key's name (see `Settings::validate`).
    #[serde(default)]
    pub(crate) timeout_ms: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(crate) retry_schedule_secs: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(crate) disable_after_secs: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(crate) dispatch_interval_secs: Option<serde::de::IgnoredAny>,
}

impl WebhookSettings {
    /// The keys set here that now live in `[notifications]`.
    fn moved_keys(&self) -> impl Iterator<Item = &'static str> {
        [
            ("timeout_ms", self.timeout_ms.is_some()),
            ("retry_schedule_secs", self.retry_schedule_secs.is_some()),
            ("disable_after_secs", self.disable_after_secs.is_some()),
            (
                "dispatch_interval_secs",
                self.dispatch_interval_secs.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
    }
}

/// `[notifications]`: what the webhook and Telegram channels share.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    /// Each delivery attempt gives up after this long.
    pub timeout_ms: u64,
    /// Delay before each retry, in seconds; after the last, the delivery fails.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub retry_schedule_secs: Vec<u64>,
    /// A subscription or chat whose deliveries have failed for this long is disabled.
    pub disable_after_secs: u64,
    /// How often beat turns new events into deliveries and re-sends due ones.
    pub dispatch_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WildberriesSettings {
    pub content_url: String,
    pub marketplace_url: String,
    pub prices_url: String,
    pub warehouse_id: u64,
    pub page_size: u32,
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    /// AMQP URL of RabbitMQ; may hold a password: never logged.
    pub url: SecretString,
    pub sync_queue: String,
    pub notifications_queue: String,
    pub connect_timeout_secs: u32,
    pub send_timeout_ms: u64,
    /// Messages a worker holds unacknowledged at once.
    pub prefetch: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    pub host: IpAddr,
    pub port: u16,
    pub shutdown_timeout_secs: u64,
    pub max_retries: u32,
    pub retry_base_secs: u32,
    pub retry_max_secs: u32,
    pub page_size: u32,
    pub demo_products: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeatSettings {
    /// Beat's own `/health/live` and `/metrics`.
    pub host: IpAddr,
    pub port: u16,
    /// Liveness fails when the scheduling loop has not come round for this long.
    pub liveness_timeout_secs: u64,
    pub sync_interval_secs: u64,
    pub sweep_interval_secs: u64,
    pub stale_job_secs: u64,
    pub standby_retry_secs: u64,
    pub purge_interval_secs: u64,
    /// How long expired refresh tokens are kept (for reuse detection).
    pub keep_expired_refresh_tokens_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerSettings {
    pub database: BreakerSettings,
    pub redis: BreakerSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentrySettings {
    /// Empty: error reporting off (an ambient `SENTRY_DSN` is ignored).
    pub dsn: SecretString,
    /// Defaults to `environment` when empty.
    pub environment: String,
    pub sample_rate: f32,
    pub traces_sample_rate: f32,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: IpAddr,
    pub port: u16,
    pub workers: usize,
    pub shutdown_timeout_secs: u64,
    pub max_body_bytes: usize,
    pub keep_alive_secs: u64,
    /// Middleware layers left out of the stack, for the benchmark's layer
    /// costs: only in builds with the `bench-layers` feature (others refuse
    /// the key as unknown). Production refuses any.
    #[cfg(feature = "bench-layers")]
    #[serde(default, deserialize_with = "list_or_comma_separated")]
    pub disabled_layers: Vec<Layer>,
}

/// The middleware layers (authentication, which handlers need, is not one:
/// it is always on). Order and purpose: the header of `crate::app`. Only
/// `bench-layers` builds can switch them off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    RequestContext,
    Cors,
    Compression,
    Sentry,
    Metrics,
    LoadShedding,
    RateLimit,
    TenantContext,
    PanicGuard,
}

impl ServerSettings {
    /// Whether `layer` is part of the stack: always, but in a `bench-layers`
    /// build that was told to leave it out.
    #[cfg(feature = "bench-layers")]
    pub fn layer_enabled(&self, layer: Layer) -> bool {
        !self.disabled_layers.contains(&layer)
    }

    /// Whether `layer` is part of the stack: always, in this build.
    #[cfg(not(feature = "bench-layers"))]
    pub fn layer_enabled(&self, _layer: Layer) -> bool {
        true
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Holds the password: never logged.
    pub url: SecretString,
    /// Statements at least this slow are logged and counted by query kind.
    pub slow_query_threshold_ms: u64,
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout_ms: u64,
    pub statement_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// May hold a password: never logged.
    pub url: SecretString,
    pub key_prefix: String,
    pub connect_timeout_ms: u64,
    pub command_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub jwt_algorithm: JwtAlgorithm,
    pub jwt_secret: SecretString,
    pub jwt_private_key_pem: SecretString,
    pub jwt_public_key_pem: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub leeway_secs: u64,
    pub api_key_cache_ttl_secs: u64,
    pub argon2: Argon2Settings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Argon2Settings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashes computed at once (each holds `memory_kib`); 0: one per core.
    pub max_concurrent: usize,
    /// A sign-in waits this long for a turn, then gets 503.
    pub queue_timeout_ms: u64,
}

/// OWASP's minimum argon2id configuration (Password Storage Cheat Sheet).
pub const ARGON2_MIN_MEMORY_KIB: u32 = 19_456;
pub const ARGON2_MIN_ITERATIONS: u32 = 2;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSettings {
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub fernet_keys: Vec<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    pub ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub allowed_origins: Vec<String>,
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub allowed_methods: Vec<String>,
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub allowed_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age_secs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSettings {
    pub check_timeout_ms: u64,
}

/// A configuration problem, always naming the key (`section.key`) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: `{key}` {problem}")]
    Invalid { key: String, problem: String },
}

impl Settings {
    /// Merges every layer (see the module docs) and validates the result.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG));
        if let Some(path) = config_file {
            if !path.is_file() {
                return Err(ConfigError::Parse(format!(
                    "configuration file `{}` does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let settings: Settings = figment
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database.url".into()),
            )
            .merge(Env::raw().only(&["REDIS_URL"]).map(|_| "redis.url".into()))
            .merge(Env::prefixed(ENV_PREFIX).split("__"))
            .extract()
            .map_err(|err| ConfigError::Parse(describe_figment_error(err)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: &str| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                problem: problem.to_owned(),
            })
        };
        if self.server.max_body_bytes == 0 {
            return invalid("server.max_body_bytes", "must be greater than 0");
        }
        #[cfg(feature = "bench-layers")]
        if self.is_production() && !self.server.disabled_layers.is_empty() {
            return invalid(
                "server.disabled_layers",
                "must be empty in production (switching layers off is for benchmarks)",
            );
        }
        let db_url = self.database.url.expose_secret();
        if !(db_url.starts_with("postgres://") || db_url.starts_with("postgresql://")) {
            return invalid("database.url", "must be a postgres:// or postgresql:// URL");
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        if self.database.min_connections > self.database.max_connections {
            return invalid(
                "database.min_connections",
                "must not exceed database.max_connections",
            );
        }
        if self.database.acquire_timeout_ms == 0 {
            return invalid("database.acquire_timeout_ms", "must be greater than 0");
        }
        let redis_url = self.redis.url.expose_secret();
        if !(redis_url.starts_with("redis://") || redis_url.starts_with("rediss://")) {
            return invalid("redis.url", "must be a redis:// or rediss:// URL");
        }
        if redis::parse_redis_url(redis_url).is_none() {
            return invalid("redis.url", "is not a valid URL");
        }
        if self.redis.key_prefix.is_empty() {
            return invalid(
                "redis.key_prefix",
                "must not be empty: deployments sharing a Redis would collide",
            );
        }
        if self.redis.connect_timeout_ms == 0 || self.redis.command_timeout_ms == 0 {
            return invalid(
                "redis.command_timeout_ms",
                "redis timeouts must be greater than 0 (a dead Redis would hang requests)",
            );
        }
        self.validate_auth()?;
        if self.secrets.fernet_keys.is_empty() {
            return invalid("secrets.fernet_keys", "must hold at least one key");
        }
        for key in &self.secrets.fernet_keys {
            if fernet::Fernet::new(key.expose_secret()).is_none() {
                return invalid(
                    "secrets.fernet_keys",
                    "holds a value that is not a Fernet key (URL-safe base64 of 32 bytes; generate one with `python3 -c \"import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())\"`)",
                );
            }
        }
        if self.is_production() {
            let defaults = default_fernet_keys();
            if self
                .secrets
                .fernet_keys
                .iter()
                .any(|k| defaults.iter().any(|d| d == k.expose_secret()))
            {
                return invalid(
                    "secrets.fernet_keys",
                    "contains the built-in development key; production needs its own keys",
                );
            }
        }
        if !(1..=86_400).contains(&self.cache.ttl_secs) {
            return invalid("cache.ttl_secs", "must be between 1 and 86400");
        }
        if self.cors.allow_credentials && self.cors.allowed_origins.iter().any(|o| o == "*") {
            return invalid(
                "cors.allowed_origins",
                "must not contain \"*\" while cors.allow_credentials is true (browsers refuse it, and it would expose credentials to every site)",
            );
        }
        for origin in &self.cors.allowed_origins {
            if origin != "*" && url::Url::parse(origin).is_err() {
                return invalid(
                    "cors.allowed_origins",
                    &format!(
                        "contains `{origin}`, which is not an origin such as https://app.example.com"
                    ),
                );
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.logging.level).is_err() {
            return invalid(
                "logging.level",
                "is not a valid filter directive (for example `info,sqlx=warn`)",
            );
        }
        if self.health.check_timeout_ms == 0 {
            return invalid("health.check_timeout_ms", "must be greater than 0");
        }
        for (key, breaker) in [
            ("circuit_breakers.database", &self.circuit_breakers.database),
            ("circuit_breakers.redis", &self.circuit_breakers.redis),
        ] {
            if breaker.failure_threshold == 0
                || breaker.open_timeout_ms == 0
                || breaker.probe_interval_ms == 0
            {
                return invalid(
                    key,
                    "needs failure_threshold, open_timeout_ms and probe_interval_ms greater than 0",
                );
            }
        }
        self.load_shedding.validate()?;
        let broker_url = self.broker.url.expose_secret();
        if !(broker_url.starts_with("amqp://") || broker_url.starts_with("amqps://")) {
            return invalid(
                "broker.url",
                "must be an amqp:// or amqps:// URL (RabbitMQ)",
            );
        }
        if self.broker.sync_queue.is_empty() || self.broker.notifications_queue.is_empty() {
            return invalid(
                "broker.sync_queue",
                "and broker.notifications_queue must not be empty",
            );
        }
        if self.broker.prefetch == 0 || self.broker.connect_timeout_secs == 0 {
            return invalid(
                "broker.prefetch",
                "and broker.connect_timeout_secs must be at least 1",
            );
        }
        if self.worker.page_size == 0 || self.worker.page_size > 10_000 {
            return invalid("worker.page_size", "must be between 1 and 10000");
        }
        if self.worker.retry_base_secs == 0
            || self.worker.retry_max_secs < self.worker.retry_base_secs
        {
            return invalid(
                "worker.retry_max_secs",
                "must be at least worker.retry_base_secs, which must be at least 1",
            );
        }
        for (key, value) in [
            ("wildberries.content_url", &self.wildberries.content_url),
            (
                "wildberries.marketplace_url",
                &self.wildberries.marketplace_url,
            ),
            ("wildberries.prices_url", &self.wildberries.prices_url),
        ] {
            if !(value.starts_with("https://") || value.starts_with("http://"))
                || url::Url::parse(value).is_err()
            {
                return invalid(key, "must be an http(s) URL");
            }
        }
        if !(1..=100).contains(&self.wildberries.page_size)
            || self.wildberries.request_timeout_ms == 0
        {
            return invalid(
                "wildberries.page_size",
                "must be between 1 and 100, and wildberries.request_timeout_ms above 0",
            );
        }
        if let Some(key) = self.webhooks.moved_keys().next() {
            return Err(ConfigError::Invalid {
                key: format!("webhooks.{key}"),
                problem: format!(
                    "has moved to `notifications.{key}` (shared by webhooks and Telegram); set that instead"
                ),
            });
        }
        if self.is_production()
            && (self.webhooks.allow_http || self.webhooks.allow_private_networks)
        {
            return invalid(
                "webhooks.allow_private_networks",
                "and webhooks.allow_http must be false in production (they open the service to SSRF)",
            );
        }
        if url::Url::parse(&self.telegram.api_base_url).is_err() {
            return invalid(
                "telegram.api_base_url",
                "must be a URL such as https://api.telegram.org",
            );
        }
        if self.beat.liveness_timeout_secs <= self.beat.standby_retry_secs.max(5) {
            return invalid(
                "beat.liveness_timeout_secs",
                "must be longer than beat.standby_retry_secs and the 5 s lock keepalive",
            );
        }
        if self.beat.sync_interval_secs == 0 || self.beat.sweep_interval_secs == 0 {
            return invalid(
                "beat.sync_interval_secs",
                "and beat.sweep_interval_secs must be at least 1",
            );
        }
        let dsn = self.sentry.dsn.expose_secret();
        if !dsn.is_empty() && dsn.parse::<sentry::types::Dsn>().is_err() {
            return invalid(
                "sentry.dsn",
                "is not a Sentry DSN (https://<key>@<host>/<project>)",
            );
        }
        for (key, rate) in [
            ("sentry.sample_rate", self.sentry.sample_rate),
            ("sentry.traces_sample_rate", self.sentry.traces_sample_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return invalid(key, "must be between 0 and 1");
            }
        }
        if !(0.0..=1.0).contains(&self.tracing.sample_ratio) {
            return invalid("tracing.sample_ratio", "must be between 0 and 1");
        }
        let endpoint = &self.tracing.otlp_endpoint;
        if !endpoint.is_empty()
            && !url::Url::parse(endpoint).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            return invalid(
                "tracing.otlp_endpoint",
                "must be an http(s) URL such as http://otel-collector:4318",
            );
        }
        let metrics = &self.metrics;
        if metrics.memory_sample_interval_secs == 0
            || metrics.memory_growth_window_secs < 2 * metrics.memory_sample_interval_secs
        {
            return invalid(
                "metrics.memory_growth_window_secs",
                "must cover at least two samples of metrics.memory_sample_interval_secs (at least 1)",
            );
        }
        if !(60..=86_400).contains(&metrics.active_tenant_window_secs) {
            return invalid(
                "metrics.active_tenant_window_secs",
                "must be between 60 and 86400",
            );
        }
        self.rate_limit.validate()
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                problem,
            })
        };
        let auth = &self.auth;
        match auth.jwt_algorithm {
            JwtAlgorithm::HS256 => {
                let secret = auth.jwt_secret.expose_secret();
                if secret.is_empty() {
                    return invalid("auth.jwt_secret", "must not be empty".into());
                }
                if self.is_production() && secret == default_jwt_secret() {
                    return invalid(
                        "auth.jwt_secret",
                        "is the built-in development default; set STOCK_TRACKER__AUTH__JWT_SECRET to a random value of at least 32 bytes".into(),
                    );
                }
                if self.is_production() && secret.len() < MIN_JWT_SECRET_BYTES {
                    return invalid(
                        "auth.jwt_secret",
                        format!(
                            "is {} bytes long; production requires at least {MIN_JWT_SECRET_BYTES}",
                            secret.len()
                        ),
                    );
                }
            }
            JwtAlgorithm::RS256 => {
                if jsonwebtoken::EncodingKey::from_rsa_pem(
                    auth.jwt_private_key_pem.expose_secret().as_bytes(),
                )
                .is_err()
                {
                    return invalid(
                        "auth.jwt_private_key_pem",
                        "must be a PEM-encoded RSA private key when auth.jwt_algorithm is RS256"
                            .into(),
                    );
                }
                if jsonwebtoken::DecodingKey::from_rsa_pem(auth.jwt_public_key_pem.as_bytes())
                    .is_err()
                {
                    return invalid(
                        "auth.jwt_public_key_pem",
                        "must be a PEM-encoded RSA public key when auth.jwt_algorithm is RS256"
                            .into(),
                    );
                }
            }
        }
        if auth.jwt_issuer.is_empty() {
            return invalid("auth.jwt_issuer", "must not be empty".into());
        }
        if auth.jwt_audience.is_empty() {
            return invalid("auth.jwt_audience", "must not be empty".into());
        }
        if !(60..=86_400).contains(&auth.access_token_ttl_secs) {
            return invalid(
                "auth.access_token_ttl_secs",
                "must be between 60 and 86400 (access tokens are meant to be short-lived)".into(),
            );
        }
        if auth.refresh_token_ttl_secs <= auth.access_token_ttl_secs {
            return invalid(
                "auth.refresh_token_ttl_secs",
                "must be longer than auth.access_token_ttl_secs".into(),
            );
        }
        if auth.leeway_secs > 300 {
            return invalid("auth.leeway_secs", "must be at most 300".into());
        }
        if auth.api_key_cache_ttl_secs == 0 || auth.api_key_cache_ttl_secs > 3600 {
            return invalid(
                "auth.api_key_cache_ttl_secs",
                "must be between 1 and 3600".into(),
            );
        }
        if auth.argon2.memory_kib < ARGON2_MIN_MEMORY_KIB {
            return invalid(
                "auth.argon2.memory_kib",
                format!("must be at least {ARGON2_MIN_MEMORY_KIB} (OWASP minimum for argon2id)"),
            );
        }
        if auth.argon2.iterations < ARGON2_MIN_ITERATIONS {
            return invalid(
                "auth.argon2.iterations",
                format!("must be at least {ARGON2_MIN_ITERATIONS} (OWASP minimum for argon2id)"),
            );
        }
        if !(1..=16).contains(&auth.argon2.parallelism) {
            return invalid("auth.argon2.parallelism", "must be between 1 and 16".into());
        }
        Ok(())
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }
}

impl ServerSettings {
    pub fn address(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}

impl DatabaseSettings {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}

impl RedisSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
}

impl HealthSettings {
    pub fn check_timeout(&self) -> Duration {
        Duration::from_millis(self.check_timeout_ms)
    }
}

/// The development JWT secret shipped in the default file, which production refuses.
fn default_jwt_secret() -> String {
    Figment::from(Toml::string(DEFAULT_CONFIG))
        .extract_inner::<String>("auth.jwt_secret")
        .unwrap_or_default()
}

/// The development Fernet keys shipped in the default file, which production refuses.
fn default_fernet_keys() -> Vec<String> {
    Figment::from(Toml::string(DEFAULT_CONFIG))
        .extract_inner::<Vec<String>>("secrets.fernet_keys")
        .unwrap_or_default()
}

/// Names the key and the layer that set it: a file, or the exact variable.
fn describe_figment_error(err: figment::Error) -> String {
    err.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e.metadata.as_ref().map(|m| match &m.source {
                Some(figment::Source::File(path)) => format!("file {}", path.display()),
                _ if m.name.contains(ENV_PREFIX) => format!(
                    "environment variable {ENV_PREFIX}{}",
                    e.path.join("__").to_uppercase()
                ),
                _ if m.name.contains("environment") => match key.as_str() {
                    "database.url" => "environment variable DATABASE_URL".to_owned(),
                    "redis.url" => "environment variable REDIS_URL".to_owned(),
                    _ => m.name.to_string(),
                },
                _ => m.name.to_string(),
            });
            match (key.is_empty(), source) {
                (true, _) => e.kind.to_string(),
                (false, None) => format!("`{key}`: {}", e.kind),
                (false, Some(source)) => format!("`{key}` (set by {source}): {}", e.kind),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A list setting: a TOML list, or from an environment variable either the
/// bracket form (`[1, 2]`) or comma-separated items (`1,2`), each item read
/// as the list's element type (numbers, names, URLs, secrets alike).
pub(crate) fn list_or_comma_separated<'de, D, T>(de: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::{Error, IntoDeserializer};
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText<T> {
        List(Vec<T>),
        Text(String),
        // A single number or boolean, which the environment gives typed.
        One(T),
    }
    let joined = match ListOrText::<T>::deserialize(de)? {
        ListOrText::List(items) => return Ok(items),
        ListOrText::One(item) => return Ok(vec![item]),
        ListOrText::Text(joined) => joined,
    };
    joined
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            // Read as the environment would type it: numbers and booleans as
            // such, anything else (names, URLs, secrets) as text.
            let as_text = || {
                T::deserialize(item.into_deserializer())
                    .map_err(|err: serde::de::value::Error| err.to_string())
            };
            let typed: figment::value::Value = item.parse().unwrap_or_else(|never| match never {});
            match typed {
                figment::value::Value::String(..) => as_text(),
                typed => T::deserialize(&typed).or_else(|_| as_text()),
            }
            .map_err(|err| D::Error::custom(format!("list item `{item}`: {err}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Settings {
        Figment::from(Toml::string(DEFAULT_CONFIG))
            .extract()
            .expect("default config parses")
    }

    #[test]
    fn defaults_are_valid_for_development() {
        defaults().validate().expect("defaults validate");
    }

    #[test]
    fn production_refuses_the_default_secret() {
        let mut s = defaults();
        s.environment = Environment::Production;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("`auth.jwt_secret`"), "{err}");
        assert!(err.contains("development default"), "{err}");
    }

    #[test]
    fn production_refuses_a_short_secret() {
        let mut s = defaults();
        s.environment = Environment::Production;
        s.auth.jwt_secret = SecretString::from("short-but-not-default");
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.contains("`auth.jwt_secret`") && err.contains("at least 32"),
            "{err}"
        );
        s.auth.jwt_secret = SecretString::from("x".repeat(MIN_JWT_SECRET_BYTES));
        s.secrets.fernet_keys = vec![SecretString::from(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )];
        s.validate().expect("a 32-byte secret is accepted");
    }

    #[test]
    fn production_refuses_the_development_fernet_key() {
        let mut s = defaults();
        s.environment = Environment::Production;
        s.auth.jwt_secret = SecretString::from("x".repeat(MIN_JWT_SECRET_BYTES));
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("`secrets.fernet_keys`"), "{err}");
        s.secrets.fernet_keys = vec![SecretString::from("not-a-key")];
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("not a Fernet key"), "{err}");
        s.secrets.fernet_keys = vec![SecretString::from(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )];
        s.validate().expect("a real key is accepted");
    }

    #[test]
    fn production_refuses_relaxed_webhook_targets() {
        let mut s = defaults();
        s.environment = Environment::Production;
        s.auth.jwt_secret = SecretString::from("x".repeat(40));
        s.secrets.fernet_keys = vec![SecretString::from(
            "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=".to_owned(),
        )];
        s.webhooks.allow_private_networks = true;
        match s.validate() {
            Err(ConfigError::Invalid { key, .. }) => {
                assert_eq!(key, "webhooks.allow_private_networks")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wildcard_origin_with_credentials_is_refused() {
        let mut s = defaults();
        s.cors.allowed_origins = vec!["*".into()];
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("`cors.allowed_origins`"), "{err}");
        s.cors.allow_credentials = false;
        s.validate()
            .expect("wildcard without credentials is allowed");
    }

    #[test]
    fn comma_separated_lists_are_split() {
        let s: CorsSettings = Figment::from(Toml::string(DEFAULT_CONFIG))
            .merge((
                "cors.allowed_origins",
                "https://a.example, https://b.example",
            ))
            .extract_inner("cors")
            .unwrap();
        assert_eq!(
            s.allowed_origins,
            vec!["https://a.example", "https://b.example"]
        );
    }

    /// Every list setting, set from the environment in the comma form and in
    /// the bracket form, one setting per element type.
    #[test]
    // `Jail` closures return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn every_list_type_takes_the_comma_and_the_bracket_form_from_the_environment() {
        const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        const OTHER: &str = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";
        for (schedule, layers, keys, origins) in [
            (
                "1,1,30".to_owned(),
                "metrics, rate_limit".to_owned(),
                format!("{KEY},{OTHER}"),
                "https://a.example, https://b.example".to_owned(),
            ),
            (
                "[1, 1, 30]".to_owned(),
                r#"["metrics", "rate_limit"]"#.to_owned(),
                format!(r#"["{KEY}", "{OTHER}"]"#),
                r#"["https://a.example", "https://b.example"]"#.to_owned(),
            ),
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env(
                    "STOCK_TRACKER__NOTIFICATIONS__RETRY_SCHEDULE_SECS",
                    &schedule,
                );
                #[cfg(feature = "bench-layers")]
                jail.set_env("STOCK_TRACKER__SERVER__DISABLED_LAYERS", &layers);
                jail.set_env("STOCK_TRACKER__SECRETS__FERNET_KEYS", &keys);
                jail.set_env("STOCK_TRACKER__CORS__ALLOWED_ORIGINS", &origins);
                jail.set_env(
                    "STOCK_TRACKER__RATE_LIMIT__TRUSTED_PROXIES",
                    "10.0.0.0/8,::1",
                );
                let s = Settings::load(None).map_err(|err| err.to_string())?;
                assert_eq!(
                    s.notifications.retry_schedule_secs,
                    vec![1, 1, 30],
                    "{schedule}"
                );
                #[cfg(feature = "bench-layers")]
                assert_eq!(
                    s.server.disabled_layers,
                    vec![Layer::Metrics, Layer::RateLimit],
                    "{layers}"
                );
                let _ = &layers;
                let keys: Vec<&str> = s
                    .secrets
                    .fernet_keys
                    .iter()
                    .map(|k| k.expose_secret())
                    .collect();
                assert_eq!(keys, vec![KEY, OTHER]);
                assert_eq!(
                    s.cors.allowed_origins,
                    vec!["https://a.example", "https://b.example"]
                );
                assert_eq!(s.rate_limit.trusted_proxies, vec!["10.0.0.0/8", "::1"]);
                Ok(())
            });
        }
    }

    #[test]
    // `Jail` closures return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn a_one_item_list_and_a_bad_item_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("STOCK_TRACKER__NOTIFICATIONS__RETRY_SCHEDULE_SECS", "5");
            let s = Settings::load(None).map_err(|err| err.to_string())?;
            assert_eq!(s.notifications.retry_schedule_secs, vec![5]);
            jail.set_env(
                "STOCK_TRACKER__NOTIFICATIONS__RETRY_SCHEDULE_SECS",
                "5,soon",
            );
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(
                err.contains("`notifications.retry_schedule_secs`") && err.contains("`soon`"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn a_bad_type_names_the_key() {
        let err = Figment::from(Toml::string(DEFAULT_CONFIG))
            .merge(("server.port", "eighty"))
            .extract::<Settings>()
            .map_err(describe_figment_error)
            .unwrap_err();
        assert!(err.contains("`server.port`"), "{err}");
    }

    #[test]
    #[cfg(feature = "bench-layers")]
    fn layers_are_switched_off_by_name_and_never_in_production() {
        let mut s: Settings = Figment::from(Toml::string(DEFAULT_CONFIG))
            .merge(("server.disabled_layers", "metrics, rate_limit"))
            .extract()
            .unwrap();
        assert_eq!(
            s.server.disabled_layers,
            vec![Layer::Metrics, Layer::RateLimit]
        );
        assert!(!s.server.layer_enabled(Layer::RateLimit));
        assert!(s.server.layer_enabled(Layer::Cors));
        s.environment = Environment::Production;
        match s.validate() {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "server.disabled_layers"),
            other => panic!("{other:?}"),
        }

        let err = Figment::from(Toml::string(DEFAULT_CONFIG))
            .merge(("server.disabled_layers", "authentication"))
            .extract::<Settings>()
            .map_err(describe_figment_error)
            .unwrap_err();
        assert!(err.contains("unknown variant `authentication`"), "{err}");
    }

    #[test]
    #[cfg(not(feature = "bench-layers"))]
    fn builds_without_the_benchmark_feature_have_no_layer_switch() {
        let err = Figment::from(Toml::string(DEFAULT_CONFIG))
            .merge(("server.disabled_layers", "metrics"))
            .extract::<Settings>()
            .map_err(describe_figment_error)
            .unwrap_err();
        assert!(
            err.contains("`server.disabled_layers`") && err.contains("unknown field"),
            "{err}"
        );
        assert!(defaults().server.layer_enabled(Layer::RateLimit));
    }

    #[test]
    // `Jail` closures return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn keys_moved_to_notifications_are_refused_with_the_new_name() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("STOCK_TRACKER__WEBHOOKS__RETRY_SCHEDULE_SECS", "1,2");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(
                err.contains("`webhooks.retry_schedule_secs`")
                    && err.contains("`notifications.retry_schedule_secs`"),
                "{err}"
            );
            Ok(())
        });
    }
}
