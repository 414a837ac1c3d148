//! Notifications: the delivery machinery webhooks and Telegram share, behind
//! the [`Channel`] trait each of them implements.
//!
//! - [`dispatch`] (beat): each new outbox event becomes deliveries on every
//!   channel, in one transaction with marking the event published; then every
//!   due delivery is handed to the workers.
//! - [`delivery`]: one attempt — claim, send through the channel, record the
//!   outcome and the retry schedule (`notifications.retry_schedule_secs`, shared by
//!   both channels), and disable a target that has failed for too long.
//! - [`events`]: the event types targets subscribe to.
//! - [`log`]: the delivery log, manual retries and test messages the API
//!   offers for every channel.
//! - [`targets`]: how many targets (subscriptions, chats) a tenant may have.

pub mod delivery;
pub mod dispatch;
pub mod events;
pub mod log;
pub mod targets;

pub use delivery::{Attempt, Channel, Claimed, Sent, attempt};
pub use dispatch::{dispatch, dispatch_and_hand_over};
