//! Telegram: the second notification channel. A tenant registers a chat
//! (its bot's token, encrypted at rest, and the chat id) for some events;
//! each event becomes a readable message sent through the Bot API's
//! `sendMessage` (`telegram.api_base_url`), with the webhooks' retry,
//! disabling and logging rules.

pub mod delivery;
pub mod model;
pub mod repository;
pub mod routes;
pub mod service;
pub mod tasks;
