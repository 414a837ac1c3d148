//! Tenants as the API shows and accepts them.

use garde::Validate;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Tier;

/// Largest low-stock threshold accepted.
pub const MAX_LOW_STOCK_THRESHOLD: u32 = 1_000_000;

/// Tenant preferences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantSettings {
    /// A product at or below this quantity is "low stock" (and triggers `stock.low`).
    pub low_stock_threshold: u32,
    /// IANA time zone for reports and schedules, e.g. `Europe/Moscow`.
    pub timezone: String,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            low_stock_threshold: 10,
            timezone: "UTC".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub tier: Tier,
    pub settings: TenantSettings,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Partial settings update: omitted fields keep their value.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    #[garde(inner(range(max = MAX_LOW_STOCK_THRESHOLD)))]
    pub low_stock_threshold: Option<u32>,
    #[garde(inner(custom(valid_timezone)))]
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    #[garde(inner(length(min = 1, max = 200)))]
    pub name: Option<String>,
    #[garde(dive)]
    pub settings: Option<SettingsPatch>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferOwnership {
    /// An active user of the tenant, who becomes its owner; the caller becomes an admin.
    #[garde(skip)]
    pub user_id: Uuid,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTier {
    #[garde(skip)]
    pub tier: Tier,
}

fn valid_timezone(value: &str, _: &()) -> garde::Result {
    value.parse::<chrono_tz::Tz>().map(|_| ()).map_err(|_| {
        garde::Error::new("not an IANA time zone name such as `Europe/Moscow` or `UTC`")
    })
}
