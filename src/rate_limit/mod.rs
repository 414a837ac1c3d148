//! Rate limiting: per tenant (by tier), per user or API key (a share of the
//! tenant's limits), per client IP for anonymous calls, per endpoint rule, and
//! globally — all checked, together with the caller's token revocation
//! state, by one Lua script in one Redis round trip per request.
//!
//! # Algorithm: sliding window of sub-window counters
//!
//! Each window (1 s, 1 min, 1 h, or a rule's) is `n`+1 sub-window counters
//! (`buckets_per_window`, default 10); see [`window`].
//!
//! - **Why**: it enforces the product's promise as written — at most `limit`
//!   requests in *any* window-long interval — which a fixed window breaks at
//!   its edges (up to 2× the limit) and GCRA does not state (it allows a
//!   burst of `limit` and then the rate: up to 2× in a window after an idle
//!   one); an exact sorted-set log would hold one entry per request
//!   (500,000 per internal tenant per hour).
//! - **Storage**: all windows of one scope (a tenant's second, minute and
//!   hour) are packed in one Redis string — per window the newest
//!   sub-window's index and `n`+1 counts — read with the caller's revocation
//!   state by one `MGET` and written back by one `SET` per scope, inside one
//!   script call ([`script`]). About 150 bytes per scope, expiring after its
//!   longest window.
//! - **Error bound**: the oldest sub-window is counted whole, so the count is
//!   never below an exact sliding window's: no interval of a window's length
//!   ever admits more than the limit. It errs only the other way, by hits at
//!   most `window / n` too old: a client is refused at most `window / n`
//!   longer (100 ms of a 1 s window, 6 s of a minute, 6 min of an hour) than an
//!   exact request log would refuse it. The global limit, spent from leases
//!   ([`global`]), may exceed its limit by one lease per replica.
//!
//! Keys carry their slot's hash tag (the tenant, the client IP, `global`),
//! so every script call uses one slot and runs on Redis Cluster.
//! Redis's clock (`TIME`) is used, so replicas with skewed clocks agree.
//! When Redis fails, [`limiter`] counts in process (same algorithm, bounded
//! LRU map) until one probe per `fallback_retry_ms` finds Redis back.

pub mod client_ip;
pub mod global;
pub mod limiter;
pub mod metrics;
pub mod middleware;
pub mod routes;
pub mod script;
pub mod window;

pub use limiter::RateLimiter;
