//! Webhook subscriptions as clients see them.

use garde::Validate;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::validation::no_nul;
use crate::notifications::events::{EventType, unique_events};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Subscription {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<EventType>,
    pub description: Option<String>,
    /// False when disabled by the tenant or, after failing too long, by the service.
    pub enabled: bool,
    /// Why the service disabled it.
    pub disabled_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A subscription with its signing secret: the answer of create and rotate,
/// the only times the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionWithSecret {
    #[serde(flatten)]
    pub subscription: Subscription,
    /// `whsec_` + base64 of 32 random bytes; the HMAC key is the decoded bytes.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

/// `POST /api/v1/webhooks`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    /// Where events are POSTed: https, on a public address.
    #[garde(length(min = 1, max = 2048), custom(no_nul))]
    #[schema(max_length = 2048, example = "https://example.com/hooks/stock-tracker")]
    pub url: String,
    #[garde(length(min = 1, max = 3), custom(unique_events))]
    #[schema(min_items = 1, max_items = 3)]
    pub events: Vec<EventType>,
    #[garde(inner(length(max = 500), custom(no_nul)))]
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

/// `PATCH /api/v1/webhooks/{id}`: any of these.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscription {
    #[garde(inner(length(min = 1, max = 2048), custom(no_nul)))]
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[garde(inner(length(min = 1, max = 3), custom(unique_events)))]
    #[schema(min_items = 1, max_items = 3)]
    pub events: Option<Vec<EventType>>,
    #[garde(inner(length(max = 500), custom(no_nul)))]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// `true` re-enables a subscription the service disabled (and clears why).
    #[garde(skip)]
    pub enabled: Option<bool>,
}
