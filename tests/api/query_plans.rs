//! Every product list query is served by an index: on a seeded table of
//! 100,000 products, `EXPLAIN` shows no sequential scan of it.

use serde_json::Value;
use sqlx::{Connection, Executor};
use stock_tracker::auth::TenantCtx;
use stock_tracker::db::begin_tenant_tx;
use stock_tracker::products::model::{SortOrder, StockFilter};
use stock_tracker::products::repository::{After, ListFilter, list_query};
use uuid::Uuid;

use crate::helpers::spawn_app;

/// Plan nodes that read `relation` sequentially.
fn seq_scans(plan: &Value, relation: &str, found: &mut Vec<String>) {
    if plan["Node Type"] == "Seq Scan" && plan["Relation Name"] == relation {
        found.push(plan.to_string());
    }
    if let Some(children) = plan["Plans"].as_array() {
        for child in children {
            seq_scans(child, relation, found);
        }
    }
}

#[tokio::test]
async fn no_list_filter_sort_or_search_scans_the_products_table() {
    let app = spawn_app().await;
    let owner = app.register("plans@example.com").await;
    let other = app.register("plans-other@example.com").await;
    let mut admin = app.database.owner_connection().await;
    // 100,000 products for the tenant under test and 20,000 for another one.
    for (tenant, count) in [(owner.tenant_id, 100_000), (other.tenant_id, 20_000)] {
        sqlx::query(
            "INSERT INTO products (id, tenant_id, sku, name, price, stock, updated_at)
             SELECT gen_random_uuid(), $1, 'SKU-' || i, 'Product ' || md5(i::text), (i % 100000) / 100.0,
                    i % 50, now() - i * interval '1 minute'
             FROM generate_series(1, $2) AS i",
        )
        .bind(tenant)
        .bind(count)
        .execute(&mut admin)
        .await
        .unwrap();
    }
    admin.execute("ANALYZE products").await.unwrap();
    admin.close().await.unwrap();

    let tenant = TenantCtx::for_system_task(owner.tenant_id);
    let price: stock_tracker::products::money::Money = "10.00".parse().unwrap();
    let id = Uuid::now_v7();
    let cases: Vec<(&str, ListFilter, Option<After>)> = vec![
        ("default", ListFilter::default(), None),
        ("next page", ListFilter::default(), Some(After::Id(id))),
        (
            "marketplace",
            ListFilter {
                marketplace_id: Some(id),
                ..Default::default()
            },
            None,
        ),
        (
            "in stock",
            ListFilter {
                stock: Some(StockFilter::InStock),
                ..Default::default()
            },
            None,
        ),
        (
            "low stock",
            ListFilter {
                stock: Some(StockFilter::LowStock),
                ..Default::default()
            },
            None,
        ),
        (
            "updated since",
            ListFilter {
                updated_since: Some(time::OffsetDateTime::now_utc()),
                ..Default::default()
            },
            None,
        ),
        (
            "price range",
            ListFilter {
                price_min: Some(price),
                price_max: Some(price),
                ..Default::default()
            },
            None,
        ),
        (
            "search",
            ListFilter {
                search: Some("abc1".into()),
                ..Default::default()
            },
            None,
        ),
        (
            "sort name",
            ListFilter {
                sort: SortOrder::Name,
                ..Default::default()
            },
            Some(After::Name("Product 5".into(), id)),
        ),
        (
            "sort price",
            ListFilter {
                sort: SortOrder::Price,
                ..Default::default()
            },
            Some(After::Price(price, id)),
        ),
        (
            "sort -price",
            ListFilter {
                sort: SortOrder::PriceDesc,
                ..Default::default()
            },
            None,
        ),
        (
            "sort -updated",
            ListFilter {
                sort: SortOrder::UpdatedDesc,
                ..Default::default()
            },
            None,
        ),
        (
            "search sorted",
            ListFilter {
                search: Some("SKU-9999".into()),
                sort: SortOrder::Price,
                ..Default::default()
            },
            None,
        ),
    ];
    for (name, filter, after) in &cases {
        let mut tx = begin_tenant_tx(&app.state.db, owner.tenant_id)
            .await
            .unwrap();
        let mut query = list_query(
            "EXPLAIN (FORMAT JSON) ",
            &tenant,
            filter,
            after.as_ref(),
            50,
        );
        let (plan,): (Value,) = query.build_query_as().fetch_one(&mut *tx).await.unwrap();
        let mut found = Vec::new();
        seq_scans(&plan[0]["Plan"], "products", &mut found);
        assert!(
            found.is_empty(),
            "{name}: sequential scan of products:\n{plan:#}"
        );
    }
}
