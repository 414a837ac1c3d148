//! Rate limiting: per tenant (by tier), per user or API key (a share of the
//! tenant's limits), per client IP for anonymous calls, per endpoint rule, and
//! globally — all checked, together with the caller's token revocation
//! state, by one Lua script in one Redis round trip per request.
//!
//! # Algorithm: sliding window of sub-window counters
//!
//! Each window (1 s, 1 min, 1 h, or a rule's) is a Redis hash of `n`+1
//! sub-window counters (`buckets_per_window`, default 10); see [`window`].
//!
//! - **Why**: it enforces the product's promise as written — at most `limit`
//!   requests in *any* window-long interval — which a fixed window breaks at
//!   its edges (up to 2× the limit) and GCRA does not state (it allows a
//!   burst and then a rate); an exact sorted-set log would hold one entry
//!   per request (500,000 per internal tenant per hour).
//! - **Cost per check**: one `HGETALL` of at most `n`+1 fields per window and,
//!   when admitted, one `HINCRBY` and `PEXPIRE` per window: O(n) per window,
//!   about ten windows per request, all inside one script call.
//! - **Memory per key**: a small hash (listpack encoding) of at most `n`+1
//!   integer fields, about 100–200 bytes with Redis's per-key overhead,
//!   expiring one window after its last hit.
//! - **Error bound**: the oldest sub-window is counted whole, so the count is
//!   never below an exact sliding window's: no interval of a window's length
//!   ever admits more than the limit. It errs only the other way, by hits at
//!   most `window / n` too old: a client is refused at most `window / n`
//!   longer (100 ms of a 1 s window, 6 s of a minute, 6 min of an hour) than an
//!   exact request log would refuse it.
//!
//! Redis's clock (`TIME`) is used, so replicas with skewed clocks agree.
//! When Redis fails, [`limiter`] counts in process (same algorithm, bounded
//! LRU map) until one probe per `fallback_retry_ms` finds Redis back.

pub mod client_ip;
pub mod limiter;
pub mod metrics;
pub mod middleware;
pub mod routes;
pub mod window;

pub use limiter::RateLimiter;
