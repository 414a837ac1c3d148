//! SQL for products and stock history, always scoped to the tenant.
//!
//! The list query is assembled from the filters; [`list_query`] is public so
//! the query-plan test can `EXPLAIN` exactly what the service runs.

use sqlx::{PgConnection, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{Product, SortOrder, StockChange, StockFilter, StockSource};
use super::money::Money;
use crate::auth::TenantCtx;
use crate::db::{self, Database, observed, uuid_literal};

/// Name of the unique constraint on (tenant, marketplace, SKU).
pub const SKU_UNIQUE: &str = "products_sku_key";

const COLUMNS: &str = "id, sku, name, price, stock, marketplace_id, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct ProductRow {
    id: Uuid,
    sku: String,
    name: String,
    price: Money,
    stock: i32,
    marketplace_id: Option<Uuid>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        Product {
            id: row.id,
            sku: row.sku,
            name: row.name,
            price: row.price,
            stock: row.stock,
            marketplace_id: row.marketplace_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Validated list filters.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub marketplace_id: Option<Uuid>,
    pub manual: Option<bool>,
    pub stock: Option<StockFilter>,
    pub updated_since: Option<OffsetDateTime>,
    pub price_min: Option<Money>,
    pub price_max: Option<Money>,
    pub search: Option<String>,
    pub sort: SortOrder,
}

/// Where the previous page ended: the sort key of its last row, and its id.
#[derive(Debug, Clone)]
pub enum After {
    Id(Uuid),
    Name(String, Uuid),
    Price(Money, Uuid),
    Updated(OffsetDateTime, Uuid),
}

/// Escapes LIKE wildcards so a search for `50%` matches the text `50%`.
fn like_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The list query, `limit + 1` rows (the extra one tells whether there is a
/// next page). `prefix` is prepended (the plan test passes `EXPLAIN ...`).
pub fn list_query<'a>(
    prefix: &str,
    tenant: &TenantCtx,
    filter: &'a ListFilter,
    after: Option<&'a After>,
    limit: u32,
) -> QueryBuilder<Postgres> {
    let mut q = QueryBuilder::new(format!(
        "{prefix}SELECT {COLUMNS} FROM products WHERE tenant_id = "
    ));
    q.push_bind(tenant.id());
    if let Some(marketplace_id) = filter.marketplace_id {
        q.push(" AND marketplace_id = ").push_bind(marketplace_id);
    }
    match filter.manual {
        Some(true) => {
            q.push(" AND marketplace_id IS NULL");
        }
        Some(false) => {
            q.push(" AND marketplace_id IS NOT NULL");
        }
        None => {}
    }
    match filter.stock {
        Some(StockFilter::InStock) => {
            q.push(" AND stock > 0");
        }
        Some(StockFilter::OutOfStock) => {
            q.push(" AND stock = 0");
        }
        Some(StockFilter::LowStock) => {
            q.push(
                " AND stock <= (SELECT COALESCE((settings->>'low_stock_threshold')::int, 10) \
                 FROM tenants WHERE id = ",
            )
            .push_bind(tenant.id())
            .push(")");
        }
        None => {}
    }
    if let Some(since) = filter.updated_since {
        q.push(" AND updated_at >= ").push_bind(since);
    }
    // Prices compare in cents (bigint): see the catalog migration on leakproof operators.
    if let Some(min) = filter.price_min {
        q.push(" AND price_cents >= ").push_bind(min.cents());
    }
    if let Some(max) = filter.price_max {
        q.push(" AND price_cents <= ").push_bind(max.cents());
    }
    if let Some(search) = &filter.search {
        q.push(" AND id IN (SELECT product_search(")
            .push_bind(like_pattern(search))
            .push("))");
    }
    // Keyset conditions spelt out as `key >= k AND (key > k OR (key = k AND
    // id > last))` rather than `(key, id) > (k, last)`: row comparisons are
    // not leakproof, so under row-level security they could not use the index.
    match after {
        None => {}
        Some(After::Id(id)) => {
            q.push(" AND id > ").push_bind(*id);
        }
        Some(After::Name(name, id)) => {
            push_keyset(&mut q, "name", name.clone(), *id, Direction::Ascending);
        }
        Some(After::Price(price, id)) => {
            let direction = if filter.sort == SortOrder::PriceDesc {
                Direction::Descending
            } else {
                Direction::Ascending
            };
            push_keyset(&mut q, "price_cents", price.cents(), *id, direction);
        }
        Some(After::Updated(at, id)) => {
            push_keyset(&mut q, "updated_at", *at, *id, Direction::Descending);
        }
    }
    q.push(match filter.sort {
        SortOrder::Id => " ORDER BY id",
        SortOrder::Name => " ORDER BY name, id",
        SortOrder::Price => " ORDER BY price_cents, id",
        SortOrder::PriceDesc => " ORDER BY price_cents DESC, id DESC",
        SortOrder::UpdatedDesc => " ORDER BY updated_at DESC, id DESC",
    });
    q.push(" LIMIT ").push_bind(i64::from(limit) + 1);
    q
}

#[derive(Clone, Copy)]
enum Direction {
    Ascending,
    Descending,
}

/// Rows after (`Ascending`) or before (`Descending`) `(key, id)` in `(column, id)` order.
fn push_keyset<T>(
    q: &mut QueryBuilder<Postgres>,
    column: &str,
    key: T,
    id: Uuid,
    direction: Direction,
) where
    T: for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + Clone + Send + 'static,
{
    let (inclusive, strict) = match direction {
        Direction::Ascending => (">=", ">"),
        Direction::Descending => ("<=", "<"),
    };
    q.push(format!(" AND {column} {inclusive} "))
        .push_bind(key.clone());
    q.push(format!(" AND ({column} {strict} "))
        .push_bind(key.clone());
    q.push(format!(" OR ({column} = ")).push_bind(key);
    q.push(format!(" AND id {strict} "))
        .push_bind(id)
        .push("))");
}

pub async fn list(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    filter: &ListFilter,
    after: Option<&After>,
    limit: u32,
) -> Result<Vec<Product>, sqlx::Error> {
    let rows: Vec<ProductRow> = list_query("", tenant, filter, after, limit)
        .build_query_as()
        .fetch_all(observed("products.list", conn))
        .await?;
    Ok(rows.into_iter().map(Product::from).collect())
}

pub async fn find(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Product>, sqlx::Error> {
    let row: Option<ProductRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM products WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant.id())
    .bind(id)
    .fetch_optional(observed("products.find", conn))
    .await?;
    Ok(row.map(Product::from))
}

/// [`find`] outside a transaction, in one round trip (the uncached read path).
pub async fn find_in_one_trip(
    db: &Database,
    tenant: &TenantCtx,
    id: Uuid,
) -> Result<Option<Product>, sqlx::Error> {
    let statement = format!(
        "SELECT {COLUMNS} FROM products WHERE tenant_id = {} AND id = {}",
        uuid_literal(tenant.id()),
        uuid_literal(id)
    );
    let rows: Vec<ProductRow> =
        db::read_in_one_trip(db, tenant.id(), "products.find", &statement).await?;
    Ok(rows.into_iter().next().map(Product::from))
}

pub async fn find_for_update(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Product>, sqlx::Error> {
    let row: Option<ProductRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM products WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
    )))
    .bind(tenant.id())
    .bind(id)
    .fetch_optional(observed("products.find_for_update", conn))
    .await?;
    Ok(row.map(Product::from))
}

pub struct NewProduct<'a> {
    pub marketplace_id: Option<Uuid>,
    pub sku: &'a str,
    pub name: &'a str,
    pub price: Money,
    pub stock: i32,
}

pub async fn insert(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    product: NewProduct<'_>,
) -> Result<Product, sqlx::Error> {
    let row: ProductRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO products (id, tenant_id, marketplace_id, sku, name, price, stock)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(tenant.id())
    .bind(product.marketplace_id)
    .bind(product.sku)
    .bind(product.name)
    .bind(product.price)
    .bind(product.stock)
    .fetch_one(observed("products.insert", conn))
    .await?;
    Ok(row.into())
}

/// Writes every field of `product` (already merged with the changes).
pub async fn update(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    product: &Product,
) -> Result<Product, sqlx::Error> {
    let row: ProductRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE products SET sku = $3, name = $4, price = $5, stock = $6, updated_at = now()
         WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )))
    .bind(tenant.id())
    .bind(product.id)
    .bind(&product.sku)
    .bind(&product.name)
    .bind(product.price)
    .bind(product.stock)
    .fetch_one(observed("products.update", conn))
    .await?;
    Ok(row.into())
}

pub async fn delete(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM products WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.id())
        .bind(id)
        .execute(observed("products.delete", conn))
        .await?;
    Ok(deleted.rows_affected() == 1)
}

pub async fn record_stock(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    product_id: Uuid,
    previous: Option<i32>,
    stock: i32,
    source: StockSource,
) -> Result<(), sqlx::Error> {
    let source = match source {
        StockSource::Manual => "manual",
        StockSource::Sync => "sync",
    };
    sqlx::query(
        "INSERT INTO product_stock_history (id, tenant_id, product_id, previous_stock, stock, source)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(Uuid::now_v7())
    .bind(tenant.id())
    .bind(product_id)
    .bind(previous)
    .bind(stock)
    .bind(source)
    .execute(observed("products.record_stock", conn))
    .await?;
    Ok(())
}

/// The history page statement: `id < cursor` spelt out only when there is
/// a cursor, so PostgreSQL prunes the months (partitions, by id) after it —
/// `$3 IS NULL OR id < $3` would keep every month in a generic plan.
pub const STOCK_HISTORY_FIRST_PAGE: &str =
    "SELECT id, previous_stock, stock, source, recorded_at FROM product_stock_history
     WHERE tenant_id = $1 AND product_id = $2
     ORDER BY id DESC LIMIT $3";
pub const STOCK_HISTORY_NEXT_PAGE: &str =
    "SELECT id, previous_stock, stock, source, recorded_at FROM product_stock_history
     WHERE tenant_id = $1 AND product_id = $2 AND id < $4
     ORDER BY id DESC LIMIT $3";

/// A product's stock changes, newest first.
pub async fn stock_history(
    tenant: &TenantCtx,
    conn: &mut PgConnection,
    product_id: Uuid,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<StockChange>, sqlx::Error> {
    let query = sqlx::query_as(match before {
        None => STOCK_HISTORY_FIRST_PAGE,
        Some(_) => STOCK_HISTORY_NEXT_PAGE,
    })
    .bind(tenant.id())
    .bind(product_id)
    .bind(i64::from(limit) + 1);
    let query = match before {
        None => query,
        Some(before) => query.bind(before),
    };
    let rows: Vec<(Uuid, Option<i32>, i32, String, OffsetDateTime)> = query
        .fetch_all(observed("products.stock_history", conn))
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, previous_stock, stock, source, recorded_at)| StockChange {
                id,
                previous_stock,
                stock,
                source: if source == "sync" {
                    StockSource::Sync
                } else {
                    StockSource::Manual
                },
                recorded_at,
            },
        )
        .collect())
}
