//! `[idempotency]`: how long `Idempotency-Key` answers are kept, and how a
//! request waits for another holding the same key.

use garde::Validate;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct IdempotencySettings {
    /// How long a key's stored answer is replayed (per tenant).
    #[garde(range(min = 1, max = 604_800))]
    pub ttl_secs: u64,
    /// How long a request still running holds its key. A process that dies
    /// mid-request frees the key after this; it must exceed the slowest
    /// creating request (bounded by `database.statement_timeout_ms`).
    #[garde(range(min = 1, max = 3_600))]
    pub lock_secs: u64,
    /// How long a request waits for another one holding the same key to
    /// finish before answering 409 `idempotency_key_in_use`.
    #[garde(range(min = 0, max = 30_000))]
    pub wait_ms: u64,
}
