//! Tenants as the API shows and accepts them.

use garde::Validate;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Tier;
use crate::http::validation::{not_blank, timezone_schema, valid_timezone};

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
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub low_stock_threshold: Option<u32>,
    #[garde(inner(custom(valid_timezone)))]
    #[schema(schema_with = timezone_schema)]
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    #[garde(inner(length(min = 1, max = 200), custom(not_blank)))]
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
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
