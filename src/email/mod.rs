//! Account emails (password reset, email verification): an outbox in
//! PostgreSQL, written in the transaction that creates what the email
//! carries, and delivered by the workers with the notification channels'
//! retry schedule.
//!
//! - [`templates`]: each kind's subject, text and HTML (minijinja, HTML
//!   auto-escaped), with the product name and the link.
//! - [`outbox`]: queueing an email, and handing due ones over.
//! - [`delivery`]: one attempt — claim, render, send through the process's
//!   [`crate::mailer::Mailer`], record the outcome and the next try.
//! - [`tasks`]: `deliver_email` on the notifications queue.

pub mod delivery;
pub mod outbox;
pub mod tasks;
pub mod templates;

pub use outbox::{Queued, hand_over, queue};
pub use templates::Kind;
