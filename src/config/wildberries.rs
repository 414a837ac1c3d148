//! `[wildberries]`: the marketplace's API endpoints and paging.

use garde::Validate;
use serde::Deserialize;

use super::rules::url_of;

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct WildberriesSettings {
    #[garde(custom(url_of(&["https", "http"])))]
    pub content_url: String,
    #[garde(custom(url_of(&["https", "http"])))]
    pub marketplace_url: String,
    #[garde(custom(url_of(&["https", "http"])))]
    pub prices_url: String,
    #[garde(skip)]
    pub warehouse_id: u64,
    #[garde(range(min = 1, max = 100))]
    pub page_size: u32,
    #[garde(range(min = 1))]
    pub request_timeout_ms: u64,
}
