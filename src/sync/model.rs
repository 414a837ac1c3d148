//! Sync jobs as clients see them, and the request that starts them.

use garde::Validate;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

/// A sync of one marketplace connection. PostgreSQL holds it, whatever the
/// broker does.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct SyncJob {
    #[serde(rename = "job_id")]
    pub id: Uuid,
    pub connection_id: Uuid,
    pub status: JobStatus,
    /// Task deliveries that started running it (retries and redeliveries add one).
    pub attempts: i32,
    /// Listings read from the marketplace.
    pub products_seen: i32,
    pub products_created: i32,
    /// Existing products whose name, price or stock changed.
    pub products_updated: i32,
    /// Stock-history entries written (a level changed, or a new product).
    pub stock_changes: i32,
    /// Products that crossed the tenant's low-stock threshold (a `stock.low` event each).
    pub low_stock_products: i32,
    /// Why it failed, for a person to read.
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub duration_ms: Option<i32>,
}

/// `POST /api/v1/sync`: `{"connection_id": ...}` for one connection, or
/// `{"all": true}` for every connection of the tenant — exactly one of them.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct StartSync {
    /// The connection to sync.
    #[garde(skip)]
    pub connection_id: Option<Uuid>,
    /// `true`: sync every connection of the tenant.
    #[garde(skip)]
    pub all: Option<bool>,
}

/// Documented as its two accepted shapes.
impl utoipa::PartialSchema for StartSync {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type,
        };
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property(
                        "connection_id",
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                            .description(Some("The connection to sync")),
                    )
                    .required("connection_id")
                    .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property(
                        "all",
                        ObjectBuilder::new()
                            .schema_type(Type::Boolean)
                            .enum_values(Some([true]))
                            .description(Some("Sync every connection of the tenant")),
                    )
                    .required("all")
                    .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            )
            .into()
    }
}

impl ToSchema for StartSync {}

/// A 202: the job of `{"connection_id"}`, or the jobs of `{"all": true}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Accepted {
    One(SyncJob),
    All(StartedSyncs),
}

/// The answer for `{"all": true}`: one job per connection.
#[derive(Debug, Serialize, ToSchema)]
pub struct StartedSyncs {
    pub jobs: Vec<SyncJob>,
}

/// Which jobs to list.
#[derive(Debug, Default)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
}
