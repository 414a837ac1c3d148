//! The events the outbox carries to every channel, and the rules for the
//! list of them a target subscribes to.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The events a webhook subscription or a Telegram chat can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "sync.completed")]
    SyncCompleted,
    #[serde(rename = "sync.failed")]
    SyncFailed,
    #[serde(rename = "stock.low")]
    StockLow,
}

impl EventType {
    pub const ALL: [EventType; 3] = [
        EventType::SyncCompleted,
        EventType::SyncFailed,
        EventType::StockLow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SyncCompleted => "sync.completed",
            EventType::SyncFailed => "sync.failed",
            EventType::StockLow => "stock.low",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "sync.completed" => Some(EventType::SyncCompleted),
            "sync.failed" => Some(EventType::SyncFailed),
            "stock.low" => Some(EventType::StockLow),
            _ => None,
        }
    }
}

/// The events' names, as the targets' `events` columns store them.
pub fn names(events: &[EventType]) -> Vec<&'static str> {
    events.iter().map(|e| e.as_str()).collect()
}

/// Refuses an event listed twice .
pub(crate) fn unique_events(events: &[EventType], _: &()) -> garde::Result {
    let mut seen = std::collections::HashSet::new();
    if events.iter().all(|e| seen.insert(*e)) {
        Ok(())
    } else {
        Err(garde::Error::new("lists an event twice"))
    }
}
