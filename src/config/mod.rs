//! Layered configuration: the embedded `config/default.toml`, then an optional
//! file, then `DATABASE_URL` / `REDIS_URL`, then `STOCK_TRACKER__SECTION__KEY`
//! variables. [`Settings::load`] merges and validates; every failure names the
//! key at fault and the layer that set it, so an operator can fix it without
//! reading code.
//!
//! One file per section. A section states its field rules with `garde`
//! (ranges, non-empty, URL schemes, shapes); the rules that relate keys to
//! each other or to the environment are its `check`, run by
//! [`Settings::validate`] after every field rule held.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use garde::Validate;
use serde::{Deserialize, Deserializer};

mod auth;
mod beat;
mod broker;
mod cache;
mod circuit_breakers;
mod cors;
mod database;
mod email;
mod health;
mod idempotency;
mod load_shedding;
mod logging;
mod metrics;
mod notifications;
pub mod rate_limit;
mod redis;
mod retention;
mod rules;
mod secrets;
mod sentry;
mod server;
mod telegram;
mod tracing;
mod webhooks;
mod wildberries;
mod worker;

pub use auth::{
    ARGON2_MIN_ITERATIONS, ARGON2_MIN_MEMORY_KIB, Argon2Settings, AuthSettings, FirstAdminSettings,
    JwtAlgorithm, LoginBackoffSettings, MIN_JWT_SECRET_BYTES, Registration,
};
pub use beat::BeatSettings;
pub use broker::BrokerSettings;
pub use cache::CacheSettings;
pub use circuit_breakers::{BreakerSettings, CircuitBreakerSettings};
pub use cors::CorsSettings;
pub use database::{DatabaseSettings, Pooler};
pub use email::{EmailMode, EmailSettings, SmtpTls};
pub use health::HealthSettings;
pub use idempotency::IdempotencySettings;
pub use load_shedding::LoadSheddingSettings;
pub use logging::{LogFormat, LoggingSettings};
pub use metrics::MetricsSettings;
pub use notifications::{NotificationSettings, TargetCaps, TargetCapsByTier};
pub use rate_limit::RateLimitSettings;
pub use redis::RedisSettings;
pub use retention::RetentionSettings;
pub use secrets::SecretsSettings;
pub use sentry::SentrySettings;
pub use server::{Layer, ServerSettings};
pub use telegram::TelegramSettings;
pub use tracing::TracingSettings;
pub use webhooks::WebhookSettings;
pub use wildberries::WildberriesSettings;
pub use worker::WorkerSettings;

/// The defaults, compiled in so the binary runs with no file at all.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.toml");

/// Prefix of the environment variables that override any key.
pub const ENV_PREFIX: &str = "STOCK_TRACKER__";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[garde(skip)]
    pub environment: Environment,
    /// Accept the built-in development secrets on a listener beyond loopback.
    #[garde(skip)]
    pub allow_insecure_dev_secrets: bool,
    #[garde(dive)]
    pub server: ServerSettings,
    #[garde(dive)]
    pub database: DatabaseSettings,
    #[garde(dive)]
    pub redis: RedisSettings,
    #[garde(dive)]
    pub auth: AuthSettings,
    #[garde(dive)]
    pub secrets: SecretsSettings,
    #[garde(dive)]
    pub cache: CacheSettings,
    #[garde(dive)]
    pub idempotency: IdempotencySettings,
    #[garde(dive)]
    pub cors: CorsSettings,
    #[garde(dive)]
    pub logging: LoggingSettings,
    #[garde(dive)]
    pub health: HealthSettings,
    /// Validated by [`RateLimitSettings::validate`] (its tables need more
    /// than field rules).
    #[garde(skip)]
    pub rate_limit: RateLimitSettings,
    #[garde(dive)]
    pub load_shedding: LoadSheddingSettings,
    #[garde(dive)]
    pub circuit_breakers: CircuitBreakerSettings,
    #[garde(dive)]
    pub sentry: SentrySettings,
    #[garde(dive)]
    pub broker: BrokerSettings,
    #[garde(dive)]
    pub worker: WorkerSettings,
    #[garde(dive)]
    pub beat: BeatSettings,
    #[garde(dive)]
    pub retention: RetentionSettings,
    #[garde(dive)]
    pub wildberries: WildberriesSettings,
    #[garde(dive)]
    pub webhooks: WebhookSettings,
    #[garde(dive)]
    pub telegram: TelegramSettings,
    #[garde(dive)]
    pub notifications: NotificationSettings,
    #[garde(dive)]
    pub email: EmailSettings,
    #[garde(dive)]
    pub metrics: MetricsSettings,
    #[garde(dive)]
    pub tracing: TracingSettings,
}

/// A configuration problem, always naming the key (`section.key`) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: `{key}`{}: {problem}", set_by(.origin))]
    Invalid {
        key: String,
        problem: String,
        /// The layer that set the key, when known (see [`Settings::load`]).
        origin: Option<String>,
    },
}

fn set_by(origin: &Option<String>) -> String {
    origin
        .as_ref()
        .map(|layer| format!(" (set by {layer})"))
        .unwrap_or_default()
}

/// A refusal of `key`, for a section's `check`.
pub(crate) fn invalid(key: &str, problem: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key: key.to_owned(),
        problem: problem.into(),
        origin: None,
    })
}

impl ConfigError {
    /// The first field rule that failed, its path under `prefix`.
    pub(crate) fn from_report(report: &garde::Report, prefix: &str) -> Self {
        let (path, error) = report
            .iter()
            .next()
            .expect("a garde report holds at least one error");
        ConfigError::Invalid {
            key: format!("{prefix}{path}"),
            problem: error.message().to_owned(),
            origin: None,
        }
    }
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
        let figment = figment
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database.url".into()),
            )
            .merge(Env::raw().only(&["REDIS_URL"]).map(|_| "redis.url".into()))
            .merge(Env::prefixed(ENV_PREFIX).split("__"));
        let settings: Settings = figment
            .extract()
            .map_err(|err| ConfigError::Parse(describe_figment_error(err)))?;
        match settings.validate() {
            Err(ConfigError::Invalid { key, problem, .. }) => {
                // A list item's key (`section.key[0]`) was set with its list.
                let setting = key.split('[').next().unwrap_or(&key);
                let origin = figment
                    .find_metadata(setting)
                    .map(|metadata| layer_name(metadata, setting));
                Err(ConfigError::Invalid {
                    key,
                    problem,
                    origin,
                })
            }
            other => other.map(|()| settings),
        }
    }

    /// The field rules of every section, then the rules between keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Validate::validate(self).map_err(|report| ConfigError::from_report(&report, ""))?;
        let production = self.is_production();
        #[cfg(feature = "bench-layers")]
        if production && !self.server.disabled_layers.is_empty() {
            return invalid(
                "server.disabled_layers",
                "must be empty in production (switching layers off is for benchmarks)",
            );
        }
        self.database.check()?;
        self.auth.check(production)?;
        self.secrets.check(production)?;
        self.check_development_secrets()?;
        self.cors.check()?;
        self.load_shedding.check()?;
        self.worker.check()?;
        self.webhooks.check(production)?;
        self.beat.check()?;
        self.metrics.check()?;
        self.server.check(production)?;
        self.email.check(production)?;
        self.rate_limit.validate()
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    /// The built-in development secrets are in every copy of this file:
    /// with them anyone can mint tokens and decrypt stored credentials. They
    /// are accepted only while no listener is reachable beyond loopback (an
    /// environment that forgot `environment = "production"` must not serve
    /// them), or when `allow_insecure_dev_secrets` says so.
    fn check_development_secrets(&self) -> Result<(), ConfigError> {
        if self.allow_insecure_dev_secrets {
            return Ok(());
        }
        let listeners = [
            ("server.host", self.server.host),
            ("worker.host", self.worker.host),
            ("beat.host", self.beat.host),
        ];
        let Some((listener, host)) = listeners.into_iter().find(|(_, host)| !host.is_loopback())
        else {
            return Ok(());
        };
        let built_in = if self.auth.uses_built_in_secret() {
            "auth.jwt_secret"
        } else if self.secrets.uses_built_in_key() {
            "secrets.fernet_keys"
        } else {
            return Ok(());
        };
        invalid(
            built_in,
            format!(
                "is the built-in development value, which anyone can read, and `{listener}` \
                 ({host}) is reachable beyond loopback; set STOCK_TRACKER__AUTH__JWT_SECRET and \
                 STOCK_TRACKER__SECRETS__FERNET_KEYS to values of your own, listen on 127.0.0.1, \
                 or set STOCK_TRACKER__ALLOW_INSECURE_DEV_SECRETS=true"
            ),
        )
    }
}

/// A value of the shipped defaults (what production refuses to run with).
fn shipped_default<T: serde::de::DeserializeOwned + Default>(key: &str) -> T {
    Figment::from(Toml::string(DEFAULT_CONFIG))
        .extract_inner(key)
        .unwrap_or_default()
}

/// The layer that set `key`: a file, or the exact variable.
fn layer_name(metadata: &figment::Metadata, key: &str) -> String {
    match &metadata.source {
        Some(figment::Source::File(path)) => format!("file {}", path.display()),
        _ if metadata.name.contains(ENV_PREFIX) => format!(
            "environment variable {ENV_PREFIX}{}",
            key.replace('.', "__").to_uppercase()
        ),
        _ if metadata.name.contains("environment") => match key {
            "database.url" => "environment variable DATABASE_URL".to_owned(),
            "redis.url" => "environment variable REDIS_URL".to_owned(),
            _ => metadata.name.to_string(),
        },
        Some(figment::Source::Code(_)) => "the built-in defaults".to_owned(),
        _ => metadata.name.to_string(),
    }
}

/// Names the key and the layer that set it.
fn describe_figment_error(err: figment::Error) -> String {
    err.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e.metadata.as_ref().map(|m| layer_name(m, &key));
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
    use secrecy::{ExposeSecret, SecretString};

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
    fn the_built_in_secrets_are_refused_on_a_listener_beyond_loopback() {
        let mut s = defaults();
        s.server.host = "0.0.0.0".parse().unwrap();
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.contains("`auth.jwt_secret`") && err.contains("`server.host` (0.0.0.0)"),
            "{err}"
        );
        assert!(err.contains("STOCK_TRACKER__AUTH__JWT_SECRET"), "{err}");
        s.auth.jwt_secret = SecretString::from("a-development-secret-of-our-own");
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("`secrets.fernet_keys`"), "{err}");
        s.secrets.fernet_keys = vec![SecretString::from(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )];
        s.validate()
            .expect("secrets of its own are accepted anywhere");

        // Any public listener counts; loopback ones (IPv4 or IPv6) do not.
        let mut s = defaults();
        s.worker.host = "::".parse().unwrap();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("`worker.host` (::)"), "{err}");
        s.worker.host = "::1".parse().unwrap();
        s.validate()
            .expect("loopback listeners may use the built-in secrets");

        let mut s = defaults();
        s.beat.host = "10.1.2.3".parse().unwrap();
        s.allow_insecure_dev_secrets = true;
        s.validate().expect("allowed explicitly");
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
        s.server.public_base_url = "https://st.example.com".parse().unwrap();
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
        s.server.public_base_url = "https://st.example.com".parse().unwrap();
        s.validate().expect("a real key is accepted");
    }

    #[test]
    fn production_refuses_plain_http_links_and_smtp_credentials_in_clear() {
        let mut s = defaults();
        s.environment = Environment::Production;
        s.auth.jwt_secret = SecretString::from("x".repeat(40));
        s.secrets.fernet_keys = vec![SecretString::from(
            "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=".to_owned(),
        )];
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.contains("`server.public_base_url`") && err.contains("https"),
            "{err}"
        );
        s.server.public_base_url = "https://st.example.com/app/".parse().unwrap();
        s.email.mode = EmailMode::Smtp;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("`email.smtp_host`"), "{err}");
        s.email.smtp_host = "smtp.example.com".into();
        s.email.smtp_username = "mailer".into();
        s.email.smtp_tls = SmtpTls::None;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("`email.smtp_tls`"), "{err}");
        s.email.smtp_tls = SmtpTls::Starttls;
        s.validate().expect("SMTP over STARTTLS with credentials");
        s.email.from = "not an address".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("`email.from`"), "{err}");
    }

    #[test]
    fn emailed_links_sit_under_the_public_base_url_with_their_token() {
        let mut s = defaults();
        s.server.public_base_url = "https://st.example.com/app/".parse().unwrap();
        assert_eq!(
            s.server.public_link("reset-password", "et_a-b_c"),
            "https://st.example.com/app/reset-password?token=et_a-b_c"
        );
        s.server.public_base_url = "http://127.0.0.1:8000".parse().unwrap();
        assert_eq!(
            s.server.public_link("verify-email", "x+y"),
            "http://127.0.0.1:8000/verify-email?token=x%2By"
        );
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
    // `Jail` closures return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn a_broken_rule_names_the_key_and_the_layer_that_set_it() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("STOCK_TRACKER__DATABASE__MAX_CONNECTIONS", "0");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(
                err.contains("`database.max_connections` (set by environment variable STOCK_TRACKER__DATABASE__MAX_CONNECTIONS): lower than 1"),
                "{err}"
            );
            jail.set_env("STOCK_TRACKER__DATABASE__MAX_CONNECTIONS", "10");
            jail.create_file(
                "broken.toml",
                "[worker]\nretry_base_secs = 60\nretry_max_secs = 30\n",
            )?;
            let err = Settings::load(Some(Path::new("broken.toml")))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`worker.retry_max_secs` (set by file ")
                    && err.contains("broken.toml): must be at least worker.retry_base_secs"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn a_transaction_pooler_needs_a_direct_url_and_only_then() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("STOCK_TRACKER__DATABASE__POOLER", "transaction");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(
                err.contains("`database.direct_url`")
                    && err.contains("is required when database.pooler is \"transaction\""),
                "{err}"
            );
            jail.set_env(
                "STOCK_TRACKER__DATABASE__DIRECT_URL",
                "postgres://postgres@127.0.0.1:5432/stock_tracker",
            );
            let settings = Settings::load(None).expect("a pooler with a direct URL");
            assert_eq!(settings.database.pooler, Pooler::Transaction);
            assert_eq!(
                settings.database.session_url().expose_secret(),
                "postgres://postgres@127.0.0.1:5432/stock_tracker"
            );
            jail.set_env("STOCK_TRACKER__DATABASE__POOLER", "none");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(
                err.contains("`database.direct_url`")
                    && err.contains("is only used behind a pooler"),
                "{err}"
            );
            jail.set_env("STOCK_TRACKER__DATABASE__POOLER", "session");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("database.pooler"), "{err}");
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
