//! `[cache]`: the per-tenant response cache.

use garde::Validate;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    #[garde(range(min = 1, max = 86_400))]
    pub ttl_secs: u64,
}
