//! Product reads (cached per tenant) and manual product writes.
//!
//! Reads return the serialized JSON body, so a cached response is the very
//! bytes an uncached one would be. Every committed write invalidates the
//! tenant's cache; syncs do the same.

use actix_web::web::Bytes;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{CreateProduct, Product, ProductQuery, SortOrder, StockSource, UpdateProduct};
use super::repository::{self, After, ListFilter, NewProduct};
use crate::auth::{Auth, Member, TenantCtx, Viewer};
use crate::cache::Lookup;
use crate::db;
use crate::http::error::ApiError;
use crate::http::pagination::{
    DEFAULT_LIMIT, Page, PageRequest, decode_opaque, encode_opaque, invalid_cursor,
};
use crate::infra::Infra;

/// The caches product reads are served from (the `cache` label).
const LIST_CACHE: &str = "products_list";
const DETAIL_CACHE: &str = "product";
pub const CACHES: [&str; 2] = [LIST_CACHE, DETAIL_CACHE];

/// A response body and how the cache answered (`X-Cache`).
pub struct CachedBody {
    pub body: Bytes,
    pub cache: &'static str,
}

/// The cursor of a product list: the sort it belongs to, the last row's sort
/// key and id. Opaque to clients (base64url of this JSON).
#[derive(Serialize, Deserialize)]
struct ListCursor {
    s: SortOrder,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    id: Uuid,
}

fn cursor_for(sort: SortOrder, product: &Product) -> String {
    let key = match sort {
        SortOrder::Id => None,
        SortOrder::Name => Some(product.name.clone()),
        SortOrder::Price | SortOrder::PriceDesc => Some(product.price.to_string()),
        SortOrder::UpdatedDesc => product
            .updated_at
            .format(&time::format_description::well_known::Rfc3339)
            .ok(),
    };
    let cursor = ListCursor {
        s: sort,
        k: key,
        id: product.id,
    };
    encode_opaque(&serde_json::to_vec(&cursor).unwrap_or_default())
}

fn parse_cursor(sort: SortOrder, cursor: &str) -> Result<After, ApiError> {
    let invalid_cursor = || invalid_cursor(cursor);
    let cursor: ListCursor = decode_opaque(cursor)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(invalid_cursor)?;
    if cursor.s != sort {
        return Err(invalid_cursor());
    }
    let key = cursor.k.as_deref();
    Ok(match sort {
        SortOrder::Id => After::Id(cursor.id),
        SortOrder::Name => After::Name(key.ok_or_else(invalid_cursor)?.to_owned(), cursor.id),
        SortOrder::Price | SortOrder::PriceDesc => After::Price(
            key.and_then(|k| k.parse().ok())
                .ok_or_else(invalid_cursor)?,
            cursor.id,
        ),
        SortOrder::UpdatedDesc => After::Updated(
            key.and_then(|k| {
                OffsetDateTime::parse(k, &time::format_description::well_known::Rfc3339).ok()
            })
            .ok_or_else(invalid_cursor)?,
            cursor.id,
        ),
    })
}

/// A stable cache key for a query string: its parameters, sorted, hashed.
fn query_fingerprint(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(raw_query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    let canonical = serde_json::to_vec(&pairs).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(canonical))
}

fn to_json<T: Serialize>(value: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(ApiError::internal)
}

/// Serves a read from the tenant's cache, or computes and stores it.
async fn cached<F, Fut>(
    state: &Infra,
    cache: &'static str,
    tenant: TenantCtx,
    name: String,
    compute: F,
) -> Result<CachedBody, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Bytes, ApiError>>,
{
    let lookup = state.cache.get(cache, tenant.id(), &name).await;
    let header = lookup.header();
    // The queries' futures are boxed: kept inline they would make this
    // future several kilobytes, copied on every request — hits included.
    let body = match lookup {
        Lookup::Hit(body) => body,
        Lookup::Miss(entry) => {
            let body = Box::pin(compute()).await?;
            state.cache.put(entry, &body).await;
            body
        }
        Lookup::Bypass => Box::pin(compute()).await?,
    };
    Ok(CachedBody {
        body,
        cache: header,
    })
}

pub async fn list(
    state: &Infra,
    auth: &Auth<Viewer>,
    query: ProductQuery,
    raw_query: &str,
) -> Result<CachedBody, ApiError> {
    let sort = query.sort.unwrap_or_default();
    let after = query
        .cursor
        .as_deref()
        .map(|c| parse_cursor(sort, c))
        .transpose()?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    let filter = ListFilter {
        marketplace_id: query.marketplace_id,
        manual: query.manual,
        stock: query.stock,
        updated_since: query.updated_since,
        price_min: query.price_min,
        price_max: query.price_max,
        search: query
            .q
            .map(|q| q.trim().to_owned())
            .filter(|q| !q.is_empty()),
        sort,
    };
    let tenant = auth.tenant();
    let name = format!("products:list:{}", query_fingerprint(raw_query));
    cached(state, LIST_CACHE, tenant, name, || async {
        let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
        let rows = repository::list(&tenant, &mut tx, &filter, after.as_ref(), limit).await?;
        to_json(&Page::with_cursor(rows, limit, |p| cursor_for(sort, p)))
    })
    .await
}

pub async fn get(state: &Infra, auth: &Auth<Viewer>, id: Uuid) -> Result<CachedBody, ApiError> {
    let tenant = auth.tenant();
    cached(
        state,
        DETAIL_CACHE,
        tenant,
        format!("products:item:{id}"),
        || async {
            let product = repository::find_in_one_trip(&state.db, &tenant, id)
                .await?
                .ok_or_else(|| ApiError::not_found("Product"))?;
            to_json(&product)
        },
    )
    .await
}

fn map_sku_conflict(err: sqlx::Error) -> ApiError {
    if db::is_unique_violation(&err, repository::SKU_UNIQUE) {
        ApiError::Conflict {
            code: "sku_taken",
            detail: "A product with this SKU already exists".into(),
        }
    } else {
        err.into()
    }
}

pub async fn create(
    state: &Infra,
    auth: &Auth<Member>,
    input: CreateProduct,
) -> Result<Product, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let product = repository::insert(
        &tenant,
        &mut tx,
        NewProduct {
            marketplace_id: None,
            sku: input.sku.trim(),
            name: input.name.trim(),
            price: input.price,
            stock: input.stock,
        },
    )
    .await
    .map_err(map_sku_conflict)?;
    repository::record_stock(
        &tenant,
        &mut tx,
        product.id,
        None,
        product.stock,
        StockSource::Manual,
    )
    .await?;
    tx.commit().await?;
    state.cache.invalidate_tenant(tenant.id()).await;
    Ok(product)
}

fn synced_product() -> ApiError {
    ApiError::Conflict {
        code: "synced_product",
        detail: "This product is managed by its marketplace sync and cannot be edited by hand"
            .into(),
    }
}

pub async fn update(
    state: &Infra,
    auth: &Auth<Member>,
    id: Uuid,
    input: UpdateProduct,
) -> Result<Product, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let mut product = repository::find_for_update(&tenant, &mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Product"))?;
    if product.marketplace_id.is_some() {
        return Err(synced_product());
    }
    let previous_stock = product.stock;
    if let Some(sku) = input.sku {
        product.sku = sku.trim().to_owned();
    }
    if let Some(name) = input.name {
        product.name = name.trim().to_owned();
    }
    if let Some(price) = input.price {
        product.price = price;
    }
    if let Some(stock) = input.stock {
        product.stock = stock;
    }
    let updated = repository::update(&tenant, &mut tx, &product)
        .await
        .map_err(map_sku_conflict)?;
    if updated.stock != previous_stock {
        repository::record_stock(
            &tenant,
            &mut tx,
            id,
            Some(previous_stock),
            updated.stock,
            StockSource::Manual,
        )
        .await?;
    }
    tx.commit().await?;
    state.cache.invalidate_tenant(tenant.id()).await;
    Ok(updated)
}

pub async fn delete(state: &Infra, auth: &Auth<Member>, id: Uuid) -> Result<(), ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    let product = repository::find_for_update(&tenant, &mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Product"))?;
    if product.marketplace_id.is_some() {
        return Err(synced_product());
    }
    repository::delete(&tenant, &mut tx, id).await?;
    tx.commit().await?;
    state.cache.invalidate_tenant(tenant.id()).await;
    Ok(())
}

pub async fn stock_history(
    state: &Infra,
    auth: &Auth<Viewer>,
    id: Uuid,
    page: PageRequest,
) -> Result<Page<super::model::StockChange>, ApiError> {
    let tenant = auth.tenant();
    let mut tx = db::begin_tenant_tx(&state.db, tenant.id()).await?;
    repository::find(&tenant, &mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Product"))?;
    let rows = repository::stock_history(&tenant, &mut tx, id, page.after, page.limit).await?;
    Ok(Page::from_rows(rows, page.limit, |c| c.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_ignores_parameter_order_only() {
        assert_eq!(query_fingerprint("a=1&b=2"), query_fingerprint("b=2&a=1"));
        assert_ne!(query_fingerprint("a=1&b=2"), query_fingerprint("a=1&b=3"));
        assert_ne!(query_fingerprint(""), query_fingerprint("limit=1"));
    }
}
