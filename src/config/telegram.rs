//! `[telegram]`: the Bot API the Telegram channel calls.

use garde::Validate;
use serde::Deserialize;

use super::rules::url_of;

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    /// The Bot API (tests point it at a local mock).
    #[garde(custom(url_of(&["https", "http"])))]
    pub api_base_url: String,
}
