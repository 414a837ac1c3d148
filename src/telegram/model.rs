//! Telegram chats as clients see them.

use garde::Validate;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::validation::no_nul;
use crate::notifications::events::{EventType, unique_events};

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct TelegramChat {
    pub id: Uuid,
    /// The chat (or channel) id messages go to.
    pub chat_id: String,
    #[sqlx(try_from = "Vec<String>")]
    #[schema(value_type = Vec<EventType>)]
    pub events: EventList,
    pub description: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The events of a chat, read from their stored names.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct EventList(pub Vec<EventType>);

impl From<Vec<String>> for EventList {
    fn from(names: Vec<String>) -> Self {
        EventList(names.iter().filter_map(|n| EventType::parse(n)).collect())
    }
}

fn valid_bot_token(token: &SecretString, _: &()) -> garde::Result {
    use secrecy::ExposeSecret;
    let token = token.expose_secret();
    // `<bot id>:<secret>`, as BotFather issues them.
    let valid = token.len() <= 200
        && token.split_once(':').is_some_and(|(id, secret)| {
            !id.is_empty()
                && id.chars().all(|c| c.is_ascii_digit())
                && !secret.is_empty()
                && secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if valid {
        Ok(())
    } else {
        Err(garde::Error::new(
            "must be a bot token such as 123456:ABC-DEF1234ghIkl",
        ))
    }
}

/// `POST /api/v1/telegram/chats`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChat {
    /// The bot's token from BotFather. Write-only: never returned.
    #[garde(custom(valid_bot_token))]
    #[schema(value_type = String, write_only, pattern = r"^[0-9]+:[A-Za-z0-9_-]+$", max_length = 200)]
    pub bot_token: SecretString,
    /// The chat or channel id (`-100…` for channels, or `@channelname`).
    #[garde(length(min = 1, max = 64), custom(no_nul))]
    #[schema(max_length = 64, example = "-1001234567890")]
    pub chat_id: String,
    #[garde(length(min = 1, max = 3), custom(unique_events))]
    #[schema(min_items = 1, max_items = 3)]
    pub events: Vec<EventType>,
    #[garde(inner(length(max = 500), custom(no_nul)))]
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

/// `PATCH /api/v1/telegram/chats/{id}`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateChat {
    #[garde(inner(length(min = 1, max = 3), custom(unique_events)))]
    #[schema(min_items = 1, max_items = 3)]
    pub events: Option<Vec<EventType>>,
    #[garde(inner(length(max = 500), custom(no_nul)))]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// `true` re-enables a chat the service disabled.
    #[garde(skip)]
    pub enabled: Option<bool>,
}
