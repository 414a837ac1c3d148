//! The `[rate_limit]` configuration section: tiers, windows, the per-user
//! share, endpoint rules, the global limit, trusted proxies and the fallback.
//! Everything about limits is here, none of it in code, so tests can shorten
//! the windows and operators can retune tiers without a release.

use std::collections::BTreeMap;

use garde::Validate;
use ipnet::IpNet;
use serde::Deserialize;

use super::{ConfigError, invalid, list_or_comma_separated};

/// Field rules are `garde`'s; the tables, rule names and proxies are
/// checked by [`RateLimitSettings::validate`], which runs both.
#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Sub-windows per window; the limiter's resolution (see `rate_limit`).
    #[garde(range(min = 1, max = 60))]
    pub buckets_per_window: u32,
    /// Length of the three tier windows, in seconds.
    #[garde(skip)]
    pub windows: WindowTable<u64>,
    /// Requests per window for each tenant tier.
    #[garde(skip)]
    pub tiers: TierTable,
    /// Requests per window for each client IP without (valid) credentials.
    #[garde(skip)]
    pub anonymous: WindowTable<u64>,
    /// Share of the tenant's limits one user (or API key) may use, 0 < share ≤ 1.
    #[garde(custom(share))]
    pub user_share: f64,
    /// One limit over every limited request of authenticated callers this
    /// deployment serves.
    #[garde(dive)]
    pub global: WindowRule,
    /// One limit over every anonymous request (its own budget, so anonymous
    /// traffic from many addresses cannot lock the tenants out).
    #[garde(dive)]
    pub anonymous_global: WindowRule,
    /// API keys not in the cache, looked up in PostgreSQL, per client
    /// address: unknown keys cannot make the database work without limit.
    #[garde(dive)]
    pub api_key_lookups: WindowRule,
    /// How long a replica may admit from one lease of the global budget
    /// (see `rate_limit::global`): longer leases cost Redis less, and let R
    /// replicas over-admit by up to `R × limit × lease_ms / window` per window.
    #[garde(range(min = 1, max = 10_000))]
    pub global_lease_ms: u64,
    /// Stricter limits for named routes, keyed by rule name.
    #[garde(dive)]
    pub rules: BTreeMap<String, EndpointRule>,
    /// Peers whose `X-Forwarded-For` is believed (CIDRs).
    #[serde(deserialize_with = "list_or_comma_separated")]
    #[garde(skip)]
    pub trusted_proxies: Vec<String>,
    /// IPv6 clients are limited per prefix of this length (one subscriber
    /// usually holds a whole /64).
    #[garde(range(min = 32, max = 128))]
    pub ipv6_prefix_len: u8,
    /// Most keys the in-process fallback tracks (least recently used go first).
    #[garde(range(min = 1))]
    pub fallback_max_keys: usize,
}

fn share(value: &f64, _: &()) -> garde::Result {
    if *value > 0.0 && *value <= 1.0 {
        Ok(())
    } else {
        Err(garde::Error::new("must be greater than 0 and at most 1"))
    }
}

fn valid_routes(value: &[String], _: &()) -> garde::Result {
    match value.iter().find(|route| parse_route(route).is_none()) {
        None => Ok(()),
        Some(bad) => Err(garde::Error::new(format!(
            "contains `{bad}`; write routes as `METHOD /path/{{param}}`, e.g. `POST /api/v1/auth/login`"
        ))),
    }
}

/// One value per tier window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowTable<T> {
    pub second: T,
    pub minute: T,
    pub hour: T,
}

impl<T: Copy> WindowTable<T> {
    pub fn values(&self) -> [T; 3] {
        [self.second, self.minute, self.hour]
    }
}

/// The names of the tier windows, in the order of [`WindowTable::values`].
pub const WINDOW_NAMES: [&str; 3] = ["second", "minute", "hour"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierTable {
    pub free: WindowTable<u64>,
    pub premium: WindowTable<u64>,
    pub enterprise: WindowTable<u64>,
    pub internal: WindowTable<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct WindowRule {
    #[garde(range(min = 1))]
    pub limit: u64,
    #[garde(range(min = 1, max = MAX_WINDOW_SECS))]
    pub window_secs: u64,
}

/// What an endpoint rule counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKey {
    /// The client IP (anonymous routes such as login).
    Ip,
    /// The caller's tenant; the rule does not apply to anonymous calls.
    Tenant,
    /// The caller's user (or API key); the rule does not apply to anonymous calls.
    User,
}

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct EndpointRule {
    /// `"METHOD /route/{pattern}"` entries, as the routes are declared.
    #[serde(deserialize_with = "list_or_comma_separated")]
    #[garde(length(min = 1), custom(valid_routes))]
    pub routes: Vec<String>,
    #[garde(skip)]
    pub key: RuleKey,
    #[garde(range(min = 1))]
    pub limit: u64,
    #[garde(range(min = 1, max = MAX_WINDOW_SECS))]
    pub window_secs: u64,
}

/// Longest window accepted: a day. Longer windows would hold keys for days
/// and are better expressed as quotas.
const MAX_WINDOW_SECS: u64 = 86_400;

impl RateLimitSettings {
    /// The field rules, then what they cannot say: every window and limit of
    /// the tables, rule names (they appear in headers), the proxies.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Validate::validate(self)
            .map_err(|report| ConfigError::from_report(&report, "rate_limit."))?;
        for (name, secs) in WINDOW_NAMES.iter().zip(self.windows.values()) {
            if !(1..=MAX_WINDOW_SECS).contains(&secs) {
                return invalid(
                    &format!("rate_limit.windows.{name}"),
                    "must be between 1 and 86400 seconds",
                );
            }
        }
        let tables = [
            ("tiers.free", &self.tiers.free),
            ("tiers.premium", &self.tiers.premium),
            ("tiers.enterprise", &self.tiers.enterprise),
            ("tiers.internal", &self.tiers.internal),
            ("anonymous", &self.anonymous),
        ];
        for (table, limits) in tables {
            for (name, limit) in WINDOW_NAMES.iter().zip(limits.values()) {
                if limit == 0 {
                    return invalid(
                        &format!("rate_limit.{table}.{name}"),
                        "must be at least 1 request per window",
                    );
                }
            }
        }
        for name in self.rules.keys() {
            let header_safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            if name.is_empty() || !name.chars().all(header_safe) {
                return invalid(
                    &format!("rate_limit.rules.{name}"),
                    "rule names may hold only letters, digits, `-` and `_` (they appear in response headers)",
                );
            }
        }
        if let Err(bad) = self.trusted_proxy_networks() {
            return invalid(
                "rate_limit.trusted_proxies",
                format!("contains `{bad}`, which is not an address or CIDR such as 10.0.0.0/8"),
            );
        }
        Ok(())
    }

    /// The trusted proxies as networks; a bare address is a single-host network.
    pub fn trusted_proxy_networks(&self) -> Result<Vec<IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| entry.clone())
            })
            .collect()
    }
}

/// Splits `"POST /api/v1/auth/login"` into an upper-case method and a path.
pub fn parse_route(route: &str) -> Option<(String, String)> {
    let (method, path) = route.trim().split_once(char::is_whitespace)?;
    let path = path.trim();
    let method_ok = !method.is_empty() && method.chars().all(|c| c.is_ascii_alphabetic());
    (method_ok && path.starts_with('/')).then(|| (method.to_ascii_uppercase(), path.to_owned()))
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Toml};

    use super::*;
    use crate::config::{DEFAULT_CONFIG, Settings};

    fn defaults() -> RateLimitSettings {
        let settings: Settings = Figment::from(Toml::string(DEFAULT_CONFIG))
            .extract()
            .expect("default config parses");
        settings.rate_limit
    }

    fn problem_key(settings: &RateLimitSettings) -> String {
        match settings.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_the_products_tiers_and_rules() {
        let limits = defaults();
        let table = |t: &WindowTable<u64>| t.values();
        assert_eq!(table(&limits.tiers.free), [5, 100, 1_000]);
        assert_eq!(table(&limits.tiers.premium), [20, 500, 10_000]);
        assert_eq!(table(&limits.tiers.enterprise), [100, 3_000, 50_000]);
        assert_eq!(table(&limits.tiers.internal), [1_000, 30_000, 500_000]);
        assert_eq!(limits.windows.values(), [1, 60, 3_600]);
        assert_eq!(
            (limits.global.limit, limits.global.window_secs),
            (1_000, 60)
        );
        assert_eq!(
            (
                limits.anonymous_global.limit,
                limits.anonymous_global.window_secs
            ),
            (500, 60)
        );
        let rule = |name: &str| {
            let rule = &limits.rules[name];
            (rule.key, rule.limit, rule.window_secs)
        };
        assert_eq!(rule("login"), (RuleKey::Ip, 5, 300));
        assert_eq!(rule("register"), (RuleKey::Ip, 10, 3_600));
        assert_eq!(rule("sync"), (RuleKey::Tenant, 5, 300));
        limits.validate().expect("defaults validate");
    }

    #[test]
    fn mistakes_name_the_key_at_fault() {
        let mut limits = defaults();
        limits.tiers.premium.minute = 0;
        assert_eq!(problem_key(&limits), "rate_limit.tiers.premium.minute");

        let mut limits = defaults();
        limits.rules.get_mut("login").unwrap().routes = vec!["/api/v1/auth/login".into()];
        assert_eq!(problem_key(&limits), "rate_limit.rules.login.routes");

        let mut limits = defaults();
        limits.trusted_proxies = vec!["10.0.0.0/33".into()];
        assert_eq!(problem_key(&limits), "rate_limit.trusted_proxies");

        let mut limits = defaults();
        limits.user_share = 0.0;
        assert_eq!(problem_key(&limits), "rate_limit.user_share");

        let mut limits = defaults();
        limits.windows.hour = 0;
        assert_eq!(problem_key(&limits), "rate_limit.windows.hour");
    }

    #[test]
    fn routes_are_method_and_path() {
        assert_eq!(
            parse_route("post /api/v1/auth/login"),
            Some(("POST".into(), "/api/v1/auth/login".into()))
        );
        assert_eq!(parse_route("/api/v1/auth/login"), None);
        assert_eq!(parse_route("POST api/v1"), None);
    }
}
