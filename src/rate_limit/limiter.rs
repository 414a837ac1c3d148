//! The limiter: which windows a request is checked against ([`RateLimiter::plan`])
//! and where they are counted ([`RateLimiter::decide`]): in Redis, or — while
//! Redis fails — by the in-process fallback, which runs the same algorithm on
//! a bounded LRU map shared by every worker thread. Redis failures open the
//! Redis circuit breaker; while it is open the limiter counts locally without
//! trying Redis, and its half-open probe brings the limiter back to Redis by
//! itself.
//!
//! In Redis, a request's windows live in its caller's hash slot: a tenant's
//! (its windows, its users', its tenant and user rules, its revocation
//! state) or a client IP's (anonymous windows and IP rules). One script call
//! decides them. Only unusual requests make another: a token the script
//! finds revoked (it then counts as anonymous, in its IP's slot) and an
//! authenticated request matching an IP rule. Such calls run in order and
//! stop at the first refusal, so a request refused by a later one may have
//! been counted by an earlier one — the limiter errs towards refusing, never
//! towards admitting. The global limit is taken from leases ([`GlobalBudget`]).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::http::Method;
use lru::LruCache;
use uuid::Uuid;

use super::client_ip::ClientIpResolver;
use super::global::{GlobalBudget, Verdict};
use super::metrics::LimiterMetrics;
use super::script::{LAYOUT, Reply, WindowScript};
use super::window::{Buckets, WindowSpec, WindowState};
use crate::auth::extractor::{Principal, PrincipalKind};
use crate::auth::revocation::{RevocationError, RevocationStore};
use crate::auth::roles::Tier;
use crate::auth::tokens::{AccessClaims, unix_now_ms};
use crate::config::Settings;
use crate::config::rate_limit::{
    RateLimitSettings, RuleKey, TierTable, WINDOW_NAMES, WindowTable, parse_route,
};
use crate::http::fallback::RouteTable;
use crate::redis_conn::{RedisGuard, tag};
use crate::telemetry::metrics::Metrics;

/// What a limit counts by; the `scope` label of the decision metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Tenant,
    User,
    Ip,
    Endpoint,
    Global,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Tenant,
        Scope::User,
        Scope::Ip,
        Scope::Endpoint,
        Scope::Global,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Tenant => "tenant",
            Scope::User => "user",
            Scope::Ip => "ip",
            Scope::Endpoint => "endpoint",
            Scope::Global => "global",
        }
    }
}

/// When a window applies, for callers whose token may turn out revoked: a
/// revoked token is an anonymous call, so its IP windows replace its
/// tenant's and user's. The script's answer decides which apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Always = 0,
    IfValid = 1,
    IfRevoked = 2,
}

/// Which hash slot a window's key lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The caller's: its tenant's, or its IP's when anonymous.
    Caller,
    /// The client IP's, for an authenticated caller.
    Ip,
    /// The global budget's (authenticated callers).
    Global,
    /// The anonymous global budget's: anonymous traffic cannot spend what
    /// tenants need.
    AnonymousGlobal,
}

/// One window of one scope that a request is checked against.
#[derive(Debug, Clone)]
pub struct Check {
    /// Shown to clients, e.g. `tenant-minute`, `login`.
    pub policy: Arc<str>,
    pub scope: Scope,
    /// The scope's key: every window of a scope is packed in one Redis value.
    pub key: String,
    pub window_secs: u64,
    pub spec: WindowSpec,
    pub group: Group,
    pub slot: Slot,
}

/// Who is calling, as far as limits care.
pub enum Caller<'a> {
    Anonymous,
    /// A verified access token whose revocation state is still to be read.
    Bearer(&'a AccessClaims),
    ApiKey(&'a Principal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Count the request if every window has room.
    Record,
    /// Only report (the `/rate-limits/me` route).
    Peek,
}

/// Where the decision was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redis,
    Fallback,
}

/// The revocation state of the caller's access token, read with the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    NoToken,
    Valid,
    Revoked,
    Unavailable,
}

/// One policy's state after the decision.
#[derive(Debug, Clone)]
pub struct PolicyState {
    pub policy: Arc<str>,
    pub scope: Scope,
    pub limit: u64,
    pub window_secs: u64,
    pub remaining: u64,
    /// When exceeded: milliseconds until a request is admitted again.
    pub retry_ms: u64,
    /// Milliseconds until every counted request has left the window.
    pub reset_ms: u64,
    pub exceeded: bool,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub admitted: bool,
    pub backend: Backend,
    pub now_ms: i64,
    /// The policies that applied to this request.
    pub policies: Vec<PolicyState>,
    pub revocation: Revocation,
}

impl Decision {
    /// The policy the response headers name: on a refusal, the exceeded one
    /// that keeps the client waiting longest; otherwise the one with the
    /// fewest requests left (the global limit only when it refuses — it
    /// describes the whole service, not the caller).
    pub fn headline(&self) -> Option<&PolicyState> {
        if !self.admitted {
            // Ties go to the first listed: the broader scope (tenant before user).
            return self
                .policies
                .iter()
                .filter(|p| p.exceeded)
                .rev()
                .max_by_key(|p| p.retry_ms);
        }
        self.visible().min_by(|a, b| {
            a.remaining
                .cmp(&b.remaining)
                .then(b.reset_ms.cmp(&a.reset_ms))
        })
    }

    /// The policies shown to the caller.
    pub fn visible(&self) -> impl Iterator<Item = &PolicyState> {
        self.policies
            .iter()
            .filter(|p| p.scope != Scope::Global || p.exceeded)
    }

    pub fn retry_after_secs(&self) -> u64 {
        self.headline()
            .map_or(1, |p| p.retry_ms.div_ceil(1000).max(1))
    }
}

/// An endpoint rule, ready to match.
#[derive(Debug, Clone)]
struct Rule {
    name: Arc<str>,
    routes: Vec<(Method, String)>,
    key: RuleKey,
    limit: u64,
    window_secs: u64,
}

pub struct RateLimiter {
    settings: RateLimitSettings,
    rules: Vec<Rule>,
    window_policies: [[Arc<str>; 3]; 3],
    global_policy: Arc<str>,
    anonymous_global_policy: Arc<str>,
    api_key_lookup_policy: Arc<str>,
    client_ip: ClientIpResolver,
    redis: crate::redis_conn::Redis,
    script: WindowScript,
    global: GlobalBudget,
    anonymous_global: GlobalBudget,
    prefix: String,
    guard: RedisGuard,
    metrics: LimiterMetrics,
    /// The fallback's windows, by scope key and window length.
    fallback: Mutex<LruCache<(String, u64), Buckets>>,
    fallback_active: AtomicBool,
    /// The tenants already sent to this minute's active-tenant HyperLogLog.
    tenants_seen: Mutex<(u64, HashSet<Uuid>)>,
    /// How far back a tenant counts as active (`metrics.active_tenant_window_secs`).
    activity_window_secs: u64,
}

/// One HyperLogLog of active tenants per minute.
const ACTIVITY_BUCKET_SECS: u64 = 60;

impl RateLimiter {
    pub fn new(
        settings: &Settings,
        redis: crate::redis_conn::Redis,
        guard: RedisGuard,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let limits = settings.rate_limit.clone();
        let trusted = limits
            .trusted_proxy_networks()
            .map_err(|bad| anyhow::anyhow!("rate_limit.trusted_proxies: `{bad}`"))?;
        let rules = limits
            .rules
            .iter()
            .map(|(name, rule)| Rule {
                name: name.as_str().into(),
                routes: rule
                    .routes
                    .iter()
                    .filter_map(|route| parse_route(route))
                    .filter_map(|(method, path)| Some((method.parse().ok()?, path)))
                    .collect(),
                key: rule.key,
                limit: rule.limit,
                window_secs: rule.window_secs,
            })
            .collect();
        let names = |scope: &str| WINDOW_NAMES.map(|window| Arc::from(format!("{scope}-{window}")));
        let capacity = std::num::NonZeroUsize::new(limits.fallback_max_keys)
            .ok_or_else(|| anyhow::anyhow!("rate_limit.fallback_max_keys must be at least 1"))?;
        Ok(Self {
            client_ip: ClientIpResolver::new(trusted, limits.ipv6_prefix_len),
            rules,
            window_policies: [names("tenant"), names("user"), names("ip")],
            global_policy: "global".into(),
            anonymous_global_policy: "global-anonymous".into(),
            api_key_lookup_policy: "api-key-lookup".into(),
            script: WindowScript::new(redis.clone(), guard.clone(), limits.buckets_per_window),
            global: GlobalBudget::new(
                limits.global.limit,
                limits.global.window_secs,
                limits.global_lease_ms,
            ),
            anonymous_global: GlobalBudget::new(
                limits.anonymous_global.limit,
                limits.anonymous_global.window_secs,
                limits.global_lease_ms,
            ),
            redis,
            prefix: format!("{}rl:", settings.redis.key_prefix),
            guard,
            metrics: LimiterMetrics::register(metrics),
            fallback: Mutex::new(LruCache::new(capacity)),
            fallback_active: AtomicBool::new(false),
            tenants_seen: Mutex::new((0, HashSet::new())),
            activity_window_secs: settings.metrics.active_tenant_window_secs,
            settings: limits,
        })
    }

    /// One key per minute, all in one slot (PFCOUNT reads several at once);
    /// written once per tenant, minute and replica, read at scrape time.
    fn activity_key(&self, minute: u64) -> String {
        format!("{}{{active_tenants}}:{minute}", self.prefix)
    }

    /// Reads the active-tenant estimate into its gauge (at scrape time; one
    /// PFCOUNT, and when Redis is out of reach the last estimate stays).
    pub async fn observe_active_tenants(&self) {
        if let Ok(active) = self.active_tenants().await {
            self.metrics.active_tenants.set(active as i64);
        }
    }

    /// Counts one decision by its deciding scope, the caller's tier (or
    /// anonymous) and its outcome.
    pub fn count(&self, decision: &Decision, tier: Option<crate::auth::roles::Tier>) {
        let tier = tier.map_or("anonymous", |t| t.as_str());
        let scope = decision.headline().map_or("global", |p| p.scope.as_str());
        let outcome = match (decision.admitted, decision.backend) {
            (false, _) => "limited",
            (true, Backend::Redis) => "allowed",
            (true, Backend::Fallback) => "fallback",
        };
        self.metrics.decision(scope, tier, outcome);
    }

    /// Tenants with a request within the activity window, across every
    /// replica: the union of the per-minute HyperLogLogs (±0.81 %).
    pub async fn active_tenants(&self) -> anyhow::Result<u64> {
        let now = unix_secs() / ACTIVITY_BUCKET_SECS;
        let minutes = self.activity_window_secs.div_ceil(ACTIVITY_BUCKET_SECS);
        let keys: Vec<String> = (0..minutes)
            .map(|back| self.activity_key(now - back))
            .collect();
        let mut conn = self.redis.connection();
        self.guard
            .run("active_tenants.count", async {
                Ok(redis::cmd("PFCOUNT")
                    .arg(&keys)
                    .query_async::<u64>(&mut conn)
                    .await?)
            })
            .await
    }

    /// Loads the script at startup so the first request needs no extra
    /// round trip. Best effort: `EVALSHA` reloads it whenever Redis lost it.
    pub async fn load_script(&self) {
        if let Err(err) = self.script.load().await {
            tracing::warn!(error = %err, "could not preload the rate-limit script; the first check will load it");
        }
    }

    /// A rule naming a route this build does not serve never applies: say so
    /// at start rather than let a typo pass for protection.
    pub fn warn_about_unserved_rules(&self, routes: &RouteTable) {
        for rule in &self.rules {
            for (method, route) in &rule.routes {
                if !routes.serves(method.as_str(), route) {
                    tracing::warn!(
                        rule = %rule.name,
                        route = %format!("{method} {route}"),
                        "rate_limit rule names a route this service does not serve"
                    );
                }
            }
        }
    }

    pub fn client_ip(
        &self,
        peer: Option<IpAddr>,
        headers: &actix_web::http::header::HeaderMap,
    ) -> Option<IpAddr> {
        self.client_ip.resolve(peer, headers)
    }

    fn spec(&self, limit: u64, window_secs: u64) -> WindowSpec {
        WindowSpec::new(limit, window_secs * 1000, self.settings.buckets_per_window)
    }

    /// The windows `table` of one scope (tenant, user or IP), all packed in
    /// one key of `slot_tag`'s slot. The key names the window lengths and the
    /// sub-window count: a layout change starts new counters.
    #[allow(clippy::too_many_arguments)]
    fn window_checks(
        &self,
        checks: &mut Vec<Check>,
        scope: Scope,
        slot_tag: &str,
        id: &str,
        limits: [u64; 3],
        group: Group,
        slot: Slot,
    ) {
        let (names, kind) = match scope {
            Scope::Tenant => (&self.window_policies[0], "tenant"),
            Scope::User => (&self.window_policies[1], "user"),
            _ => (&self.window_policies[2], "ip"),
        };
        let [second, minute, hour] = self.settings.windows.values();
        let key = format!(
            "{}{slot_tag}:{kind}:{id}:{second}-{minute}-{hour}:{}:{LAYOUT}",
            self.prefix, self.settings.buckets_per_window
        );
        for ((name, limit), window_secs) in
            names.iter().zip(limits).zip(self.settings.windows.values())
        {
            checks.push(Check {
                policy: name.clone(),
                scope,
                key: key.clone(),
                window_secs,
                spec: self.spec(limit, window_secs),
                group,
                slot,
            });
        }
    }

    /// Every window this request is checked against. In [`Mode::Peek`]
    /// (`/rate-limits/me`) every endpoint rule applies, so the caller sees
    /// what remains of each.
    pub fn plan(
        &self,
        caller: &Caller<'_>,
        client_ip: Option<IpAddr>,
        method: &Method,
        route: Option<&str>,
        mode: Mode,
    ) -> Vec<Check> {
        let mut checks = Vec::with_capacity(10);
        let ip = self.client_ip.key(client_ip);
        let ip_tag = tag(format_args!("ip:{ip}"));
        let anonymous = self.settings.anonymous.values();
        // (tenant, actor id, tier) of an authenticated caller.
        let identity: Option<(Uuid, String, Tier)> = match caller {
            Caller::Anonymous => None,
            Caller::Bearer(claims) => Some((claims.tid, claims.sub.to_string(), claims.tier)),
            Caller::ApiKey(principal) => {
                let actor = match principal.kind {
                    PrincipalKind::ApiKey { key_id } => format!("key-{key_id}"),
                    PrincipalKind::User { .. } => principal.user_id.to_string(),
                };
                Some((principal.tenant.id(), actor, principal.tier))
            }
        };
        let group = match caller {
            Caller::Bearer(_) => Group::IfValid,
            _ => Group::Always,
        };
        let tenant_tag = identity.as_ref().map(|(tenant, _, _)| tag(tenant));
        match (&identity, &tenant_tag) {
            (Some((_, actor, tier)), Some(tenant_tag)) => {
                let tenant_limits = tier_limits(&self.settings.tiers, *tier).values();
                let share = self.settings.user_share;
                let user_limits = tenant_limits.map(|limit| user_limit(limit, share));
                let caller = Slot::Caller;
                self.window_checks(
                    &mut checks,
                    Scope::Tenant,
                    tenant_tag,
                    "",
                    tenant_limits,
                    group,
                    caller,
                );
                self.window_checks(
                    &mut checks,
                    Scope::User,
                    tenant_tag,
                    actor,
                    user_limits,
                    group,
                    caller,
                );
                if group == Group::IfValid {
                    self.window_checks(
                        &mut checks,
                        Scope::Ip,
                        &ip_tag,
                        "",
                        anonymous,
                        Group::IfRevoked,
                        Slot::Ip,
                    );
                }
            }
            _ => self.window_checks(
                &mut checks,
                Scope::Ip,
                &ip_tag,
                "",
                anonymous,
                Group::Always,
                Slot::Caller,
            ),
        }
        for rule in &self.rules {
            let matches = route
                .is_some_and(|route| rule.routes.iter().any(|(m, r)| m == method && r == route));
            if matches || mode == Mode::Peek {
                let (slot_tag, id, rule_group, slot) = match (rule.key, &identity, &tenant_tag) {
                    (RuleKey::Ip, None, _) => (&ip_tag, "", Group::Always, Slot::Caller),
                    (RuleKey::Ip, Some(_), _) => (&ip_tag, "", Group::Always, Slot::Ip),
                    (RuleKey::Tenant, Some(_), Some(t)) => (t, "", group, Slot::Caller),
                    (RuleKey::User, Some((_, actor, _)), Some(t)) => {
                        (t, actor.as_str(), group, Slot::Caller)
                    }
                    // Tenant and user rules say nothing about anonymous calls.
                    _ => continue,
                };
                checks.push(Check {
                    policy: rule.name.clone(),
                    scope: Scope::Endpoint,
                    key: format!(
                        "{}{slot_tag}:rule:{}:{id}:{}:{}:{LAYOUT}",
                        self.prefix, rule.name, rule.window_secs, self.settings.buckets_per_window
                    ),
                    window_secs: rule.window_secs,
                    spec: self.spec(rule.limit, rule.window_secs),
                    group: rule_group,
                    slot,
                });
            }
        }
        // Anonymous calls draw on a budget of their own: however many
        // addresses they come from, they cannot use up the tenants' one. (A
        // bearer token that turns out revoked has already drawn on the
        // tenants': it is checked in the same script call as its windows.)
        let (global, policy, name, slot) = match identity {
            Some(_) => (
                self.settings.global,
                &self.global_policy,
                "global",
                Slot::Global,
            ),
            None => (
                self.settings.anonymous_global,
                &self.anonymous_global_policy,
                "global_anonymous",
                Slot::AnonymousGlobal,
            ),
        };
        checks.push(Check {
            policy: policy.clone(),
            scope: Scope::Global,
            key: format!(
                "{}{{{name}}}:{}:{}:{LAYOUT}",
                self.prefix, global.window_secs, self.settings.buckets_per_window
            ),
            window_secs: global.window_secs,
            spec: self.spec(global.limit, global.window_secs),
            group: Group::Always,
            slot,
        });
        checks
    }

    /// Adds the client address's window of API-key lookups
    /// (`rate_limit.api_key_lookups`), for a request whose key the cache
    /// did not know: counted before PostgreSQL is asked. In the address's
    /// slot, with its other windows (the caller is anonymous until the key
    /// is found).
    pub fn plan_api_key_lookup(&self, checks: &mut Vec<Check>, client_ip: Option<IpAddr>) {
        let rule = self.settings.api_key_lookups;
        let ip_tag = tag(format_args!("ip:{}", self.client_ip.key(client_ip)));
        checks.push(Check {
            policy: self.api_key_lookup_policy.clone(),
            scope: Scope::Endpoint,
            key: format!(
                "{}{ip_tag}:api_key_lookups:{}:{}:{LAYOUT}",
                self.prefix, rule.window_secs, self.settings.buckets_per_window
            ),
            window_secs: rule.window_secs,
            spec: self.spec(rule.limit, rule.window_secs),
            group: Group::Always,
            slot: Slot::Caller,
        });
    }

    /// Checks (and, in [`Mode::Record`], counts) the request against
    /// `checks`, reading the bearer token's revocation state on the way.
    pub async fn decide(
        &self,
        caller: &Caller<'_>,
        checks: &[Check],
        mode: Mode,
        revocations: &Arc<RevocationStore>,
    ) -> Decision {
        let bearer = match caller {
            Caller::Bearer(claims) => Some(*claims),
            _ => None,
        };
        let tenant = match caller {
            Caller::Anonymous => None,
            Caller::Bearer(claims) => Some(claims.tid),
            Caller::ApiKey(principal) => Some(principal.tenant.id()),
        };
        if let Some(tenant) = tenant {
            self.note_active(tenant).await;
        }
        // While the Redis breaker is open the script call fails at once, and
        // its half-open probe is how the limiter notices Redis is back.
        // Revocation is read in the script only when Redis's copy is trustworthy.
        let in_script = bearer.filter(|claims| revocations.redis_trusted(claims.tid));
        match self
            .decide_in_redis(checks, mode, in_script, revocations)
            .await
        {
            Ok((mut decision, status)) => {
                self.redis_answered();
                decision.revocation = match (bearer, in_script) {
                    (None, _) => Revocation::NoToken,
                    (Some(claims), None) => check_in_postgres(revocations, claims).await,
                    (Some(claims), Some(_)) => match status {
                        0 => Revocation::Valid,
                        1 => Revocation::Revoked,
                        _ => {
                            revocations.redis_lost_state(claims.tid);
                            check_in_postgres(revocations, claims).await
                        }
                    },
                };
                return decision;
            }
            Err(err) => self.redis_failed(&err),
        }
        let revocation = match bearer {
            Some(claims) => check_in_postgres(revocations, claims).await,
            None => Revocation::NoToken,
        };
        self.decide_locally(checks, mode, revocation)
    }

    /// The decision in Redis, with the revocation status the script read
    /// (0 when no token was read): the global lease, then the caller's slot,
    /// then — only if needed — the IP's.
    async fn decide_in_redis(
        &self,
        checks: &[Check],
        mode: Mode,
        bearer: Option<&AccessClaims>,
        revocations: &RevocationStore,
    ) -> anyhow::Result<(Decision, i64)> {
        let duration = self.metrics.script_duration.with_label_values::<&str>(&[]);
        let in_slot = |slot: Slot, group: Option<Group>| -> Vec<&Check> {
            checks
                .iter()
                .filter(|c| c.slot == slot && group.is_none_or(|g| c.group == g))
                .collect()
        };
        let mut admitted = true;
        let global = checks
            .iter()
            .find(|c| matches!(c.slot, Slot::Global | Slot::AnonymousGlobal));
        let mut global_state = None;
        if let Some(global) = global {
            let budget = match global.slot {
                Slot::AnonymousGlobal => &self.anonymous_global,
                _ => &self.global,
            };
            let verdict = match mode {
                Mode::Record => budget.take(global, &self.script, &duration).await?,
                Mode::Peek => budget.peek(),
            };
            global_state = Some(match verdict {
                Verdict::Admit(state) => (state, mode == Mode::Record),
                Verdict::Refuse(state) => {
                    admitted = false;
                    (state, false)
                }
            });
        }
        let mut policies = Vec::with_capacity(checks.len());
        let hits = u64::from(admitted && mode == Mode::Record);
        let revocation =
            bearer.map(|claims| (revocations.revocation_keys(claims), claims.issued_at_ms()));
        let primary = in_slot(Slot::Caller, None);
        let primary: Vec<&Check> = primary
            .into_iter()
            .filter(|c| c.group != Group::IfRevoked)
            .collect();
        let reply = self
            .script
            .run(&primary, hits, revocation, &duration)
            .await?;
        let (status, now_ms) = (reply.status, reply.now_ms);
        let next = if status == 1 {
            // Revoked: nothing was counted; the call is anonymous, from its IP.
            in_slot(Slot::Ip, Some(Group::IfRevoked))
        } else {
            admitted &= self.collect(&primary, &reply, hits, &mut policies);
            in_slot(Slot::Ip, Some(Group::Always))
        };
        if !next.is_empty() && (admitted || mode == Mode::Peek) {
            let hits = u64::from(admitted && mode == Mode::Record);
            let reply = self.script.run(&next, hits, None, &duration).await?;
            admitted &= self.collect(&next, &reply, hits, &mut policies);
        }
        if let (Some(check), Some((state, granted))) = (global, global_state) {
            policies.push(policy_state(check, state, granted, now_ms));
        }
        Ok((
            Decision {
                admitted,
                backend: Backend::Redis,
                now_ms,
                policies,
                revocation: Revocation::NoToken,
            },
            status,
        ))
    }

    /// Adds the policies of one script reply; whether it admitted.
    fn collect(
        &self,
        checks: &[&Check],
        reply: &Reply,
        hits: u64,
        policies: &mut Vec<PolicyState>,
    ) -> bool {
        let admitted = reply.granted > 0;
        let recorded = admitted && hits > 0;
        for (check, state) in checks.iter().zip(&reply.windows) {
            policies.push(policy_state(check, *state, recorded, reply.now_ms));
        }
        admitted
    }

    /// Reports `tenant` as active this minute, once per minute per replica
    /// (one `PFADD`; a failure only loses an estimate).
    async fn note_active(&self, tenant: Uuid) {
        let minute = unix_secs() / ACTIVITY_BUCKET_SECS;
        if !self.first_sight_this_minute(tenant, minute) {
            return;
        }
        let key = self.activity_key(minute);
        let ttl_ms = (self.activity_window_secs + ACTIVITY_BUCKET_SECS) * 1000;
        let _ = self
            .guard
            .run("active_tenants.add", async {
                let mut conn = self.redis.connection();
                let _: () = redis::pipe()
                    .cmd("PFADD")
                    .arg(&key)
                    // The id's 16 bytes: a HyperLogLog member needs no text form.
                    .arg(tenant.as_bytes().as_slice())
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(ttl_ms)
                    .ignore()
                    .query_async(&mut conn)
                    .await?;
                Ok(())
            })
            .await;
    }

    /// Whether this process has not yet reported `tenant` as active in
    /// `minute`: a HyperLogLog ignores repeats, so only the first request of
    /// a tenant per minute needs to send it. (If Redis loses its data
    /// mid-minute, tenants seen before come back at the next minute.)
    fn first_sight_this_minute(&self, tenant: Uuid, minute: u64) -> bool {
        let mut seen = self.tenants_seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.0 != minute {
            *seen = (minute, HashSet::new());
        }
        seen.1.insert(tenant)
    }

    /// The same decision as the script's, on this process's own counters.
    fn decide_locally(&self, checks: &[Check], mode: Mode, revocation: Revocation) -> Decision {
        let skipped = if revocation == Revocation::Revoked {
            Group::IfValid
        } else {
            Group::IfRevoked
        };
        let applicable: Vec<&Check> = checks.iter().filter(|c| c.group != skipped).collect();
        let now_ms = unix_now_ms();
        let mut windows = self
            .fallback
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let states: Vec<WindowState> = applicable
            .iter()
            .map(|check| {
                windows
                    .peek(&(check.key.clone(), check.window_secs))
                    .map(|buckets| buckets.evaluate(&check.spec, now_ms))
                    .unwrap_or_default()
            })
            .collect();
        let admitted = applicable
            .iter()
            .zip(&states)
            .all(|(check, state)| !state.is_full(&check.spec));
        let recorded = admitted && mode == Mode::Record;
        if recorded {
            for check in &applicable {
                windows
                    .get_or_insert_mut((check.key.clone(), check.window_secs), Buckets::default)
                    .record(&check.spec, now_ms);
            }
        }
        drop(windows);
        let policies = applicable
            .iter()
            .zip(states)
            .map(|(check, state)| policy_state(check, state, recorded, now_ms))
            .collect();
        Decision {
            admitted,
            backend: Backend::Fallback,
            now_ms,
            policies,
            revocation,
        }
    }

    fn redis_failed(&self, err: &anyhow::Error) {
        if !self.fallback_active.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                error = %format!("{err:#}"),
                "rate limiting switched to the in-process fallback: Redis is unavailable"
            );
            self.metrics.fallback_switch("fallback");
        }
    }

    fn redis_answered(&self) {
        if self.fallback_active.swap(false, Ordering::AcqRel) {
            tracing::info!("rate limiting is back on Redis");
            self.metrics.fallback_switch("redis");
            // Counters kept during the outage are not needed any more.
            self.fallback
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
    }
}

/// A user's share of a tenant limit, rounded up: never 0.
fn user_limit(tenant_limit: u64, share: f64) -> u64 {
    ((tenant_limit as f64 * share).ceil() as u64).clamp(1, tenant_limit)
}

fn policy_state(check: &Check, state: WindowState, recorded: bool, now_ms: i64) -> PolicyState {
    let spec = &check.spec;
    let used = state.count + u64::from(recorded);
    let reset_ms = if recorded {
        // The hit just counted is the newest: the window empties when it leaves.
        let current = now_ms.div_euclid(spec.bucket_ms);
        ((current + spec.buckets + 1) * spec.bucket_ms - now_ms).max(0) as u64
    } else {
        state.reset_ms
    };
    PolicyState {
        policy: check.policy.clone(),
        scope: check.scope,
        limit: spec.limit,
        window_secs: check.window_secs,
        remaining: spec.limit.saturating_sub(used),
        retry_ms: state.retry_ms,
        reset_ms,
        exceeded: state.is_full(spec),
    }
}

async fn check_in_postgres(revocations: &RevocationStore, claims: &AccessClaims) -> Revocation {
    // Boxed: a statement's future is large, and kept inline it would be
    // copied with the limiter's on every request, though rarely run.
    match Box::pin(revocations.check_in_postgres(claims)).await {
        Ok(()) => Revocation::Valid,
        Err(RevocationError::Revoked) => Revocation::Revoked,
        Err(RevocationError::Unavailable) => Revocation::Unavailable,
    }
}

fn unix_secs() -> u64 {
    (unix_now_ms() / 1000) as u64
}

/// A tier's limits, from the `[rate_limit.tiers]` table.
fn tier_limits(tiers: &TierTable, tier: Tier) -> &WindowTable<u64> {
    match tier {
        Tier::Free => &tiers.free,
        Tier::Premium => &tiers.premium,
        Tier::Enterprise => &tiers.enterprise,
        Tier::Internal => &tiers.internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_share_is_rounded_up_and_never_zero() {
        assert_eq!(user_limit(5, 0.5), 3);
        assert_eq!(user_limit(100, 0.5), 50);
        assert_eq!(user_limit(1, 0.01), 1);
        assert_eq!(user_limit(10, 1.0), 10);
    }
}
