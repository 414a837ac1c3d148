//! `[broker]`: RabbitMQ and the task queues.

use garde::Validate;
use secrecy::SecretString;
use serde::Deserialize;

use super::rules::secret_url_of;

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    /// AMQP URL of RabbitMQ; may hold a password: never logged.
    #[garde(custom(secret_url_of(&["amqp", "amqps"])))]
    pub url: SecretString,
    #[garde(length(min = 1))]
    pub sync_queue: String,
    #[garde(length(min = 1))]
    pub notifications_queue: String,
    #[garde(range(min = 1))]
    pub connect_timeout_secs: u32,
    #[garde(skip)]
    pub send_timeout_ms: u64,
    /// Messages a worker holds unacknowledged at once.
    /// Sync tasks one worker runs at once (each holds a database connection
    /// for its pages).
    #[garde(range(min = 1))]
    pub sync_prefetch: u16,
    /// Webhook and Telegram deliveries one worker runs at once.
    #[garde(range(min = 1))]
    pub notifications_prefetch: u16,
}
