//! Products as the API shows and accepts them, and the list query.

use garde::Validate;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::money::Money;
use crate::http::pagination::MAX_LIMIT;
use crate::http::validation::not_blank;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Product {
    /// UUID v7: immutable and time-ordered.
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    /// Decimal string with two places, e.g. `"12.50"`.
    #[schema(value_type = String, example = "12.50", pattern = r"^\d{1,10}\.\d{2}$")]
    pub price: Money,
    pub stock: i32,
    /// The marketplace connection the product is synced from; null for manual products.
    pub marketplace_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A price: a JSON number or a decimal string, at least 0, at most two decimal places.
fn money_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(0))
                .maximum(Some(9_999_999_999.99))
                .multiple_of(Some(0.01)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^\d{1,10}(\.\d{1,2})?$")),
        )
        .description(Some(
            "Price: a number or decimal string, >= 0, at most two decimal places",
        ))
        .into()
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    /// Unique per tenant among manual products.
    #[garde(length(min = 1, max = 100), custom(not_blank))]
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub sku: String,
    #[garde(length(min = 1, max = 500), custom(not_blank))]
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub name: String,
    #[garde(skip)]
    #[schema(schema_with = money_schema)]
    pub price: Money,
    #[garde(range(min = 0))]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub stock: i32,
}

/// Any subset of a product's fields.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    #[garde(inner(length(min = 1, max = 100), custom(not_blank)))]
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub sku: Option<String>,
    #[garde(inner(length(min = 1, max = 500), custom(not_blank)))]
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub name: Option<String>,
    #[garde(skip)]
    #[schema(schema_with = money_schema)]
    pub price: Option<Money>,
    #[garde(inner(range(min = 0)))]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub stock: Option<i32>,
}

/// Stock filter values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema, Hash)]
#[serde(rename_all = "snake_case")]
pub enum StockFilter {
    /// stock > 0
    InStock,
    /// stock = 0
    OutOfStock,
    /// stock at or below the tenant's `low_stock_threshold`
    LowStock,
}

/// Sort orders. Every order ends with the id, so pages never overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema, Hash)]
pub enum SortOrder {
    /// Oldest first (the default): a sync that updates products never reshuffles pages.
    #[default]
    #[serde(rename = "id")]
    Id,
    #[serde(rename = "name")]
    Name,
    #[serde(rename = "price")]
    Price,
    #[serde(rename = "-price")]
    PriceDesc,
    /// Most recently updated first.
    #[serde(rename = "-updated_at")]
    UpdatedDesc,
}

/// `GET /api/v1/products` query.
#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProductQuery {
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    #[garde(inner(range(min = 1, max = MAX_LIMIT)))]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (same sort and filters).
    #[param(pattern = "^[A-Za-z0-9_-]{1,200}$")]
    #[garde(inner(length(max = 200)))]
    pub cursor: Option<String>,
    /// Only products synced from this marketplace connection.
    #[garde(skip)]
    pub marketplace_id: Option<Uuid>,
    /// `true`: only manual products; `false`: only synced ones.
    #[garde(skip)]
    pub manual: Option<bool>,
    #[garde(skip)]
    #[param(inline)]
    pub stock: Option<StockFilter>,
    /// Only products updated at or after this instant (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    #[garde(skip)]
    pub updated_since: Option<OffsetDateTime>,
    /// Lowest price, inclusive.
    #[param(value_type = Option<String>, pattern = r"^\d{1,10}(\.\d{1,2})?$")]
    #[garde(skip)]
    pub price_min: Option<Money>,
    /// Highest price, inclusive.
    #[param(value_type = Option<String>, pattern = r"^\d{1,10}(\.\d{1,2})?$")]
    #[garde(skip)]
    pub price_max: Option<Money>,
    /// Search: name or SKU contains this text (case-insensitive), 3–100 characters.
    #[param(min_length = 3, max_length = 100)]
    #[garde(inner(length(min = 3, max = 100)))]
    pub q: Option<String>,
    #[garde(skip)]
    #[param(inline)]
    pub sort: Option<SortOrder>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StockSource {
    Manual,
    Sync,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StockChange {
    pub id: Uuid,
    /// Null for a product's first record.
    pub previous_stock: Option<i32>,
    pub stock: i32,
    pub source: StockSource,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}
