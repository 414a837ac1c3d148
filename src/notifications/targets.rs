//! How many notification targets (webhook subscriptions, Telegram chats) a
//! tenant may have: `notifications.max_targets`, by tier. Each target gets
//! every event it subscribes to, so the cap bounds one event's fan-out.

use sqlx::PgConnection;

use crate::auth::roles::Tier;
use crate::config::{TargetCaps, TargetCapsByTier};
use crate::db::observed;
use crate::http::error::ApiError;

#[derive(Debug, Clone, Copy)]
pub enum TargetKind {
    WebhookSubscription,
    TelegramChat,
}

impl TargetKind {
    fn cap(self, caps: &TargetCaps) -> u32 {
        match self {
            TargetKind::WebhookSubscription => caps.webhook_subscriptions,
            TargetKind::TelegramChat => caps.telegram_chats,
        }
    }

    /// The count, under the tenant's row-level security.
    fn count_sql(self) -> &'static str {
        match self {
            TargetKind::WebhookSubscription => "SELECT count(*) FROM webhook_subscriptions",
            TargetKind::TelegramChat => "SELECT count(*) FROM telegram_chats",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            TargetKind::WebhookSubscription => "webhook subscriptions",
            TargetKind::TelegramChat => "Telegram chats",
        }
    }
}

fn caps_for(caps: &TargetCapsByTier, tier: Tier) -> &TargetCaps {
    match tier {
        Tier::Free => &caps.free,
        Tier::Premium => &caps.premium,
        Tier::Enterprise => &caps.enterprise,
        Tier::Internal => &caps.internal,
    }
}

/// Refuses (422 `limit_reached`) a new target past the tenant's cap. Call it
/// in the tenant transaction that inserts the target: it holds a lock on the
/// tenant's count of this kind until commit, so concurrent creations cannot
/// both take the last place.
pub async fn ensure_room(
    tx: &mut PgConnection,
    caps: &TargetCapsByTier,
    tier: Tier,
    kind: TargetKind,
) -> Result<(), ApiError> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || app_current_tenant_id()::text, 0))",
    )
    .bind(kind.count_sql())
    .execute(observed("notifications.target_lock", &mut *tx))
    .await?;
    let count: i64 = sqlx::query_scalar(kind.count_sql())
        .fetch_one(observed("notifications.target_count", &mut *tx))
        .await?;
    let cap = kind.cap(caps_for(caps, tier));
    if count >= i64::from(cap) {
        // A rule about the tenant, not about a field of the request.
        return Err(ApiError::Unprocessable {
            code: "limit_reached",
            detail: format!(
                "This tenant has {count} {}, the most its {} tier allows; delete one first",
                kind.plural(),
                tier.as_str()
            ),
        });
    }
    Ok(())
}
