//! Query plans on seeded tables: every product list query is served by an
//! index (on 100,000 products, `EXPLAIN` shows no sequential scan); a small
//! tenant's reads and deletes touch a bounded number of buffers next to a
//! million-product tenant; every foreign key has an index led by its
//! columns.

use serde_json::Value;
use sqlx::{Connection, Executor};
use stock_tracker::auth::TenantCtx;
use stock_tracker::db::{begin_tenant_tx, observed};
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

/// Shared buffers (hit and read) a statement touched, from its `EXPLAIN
/// (ANALYZE, BUFFERS, FORMAT JSON)`: the top node's counts include its
/// children's, and a function's own statements (`product_search`) count in
/// the node that calls it.
fn buffers(plan: &Value) -> u64 {
    let top = &plan[0]["Plan"];
    top["Shared Hit Blocks"].as_u64().unwrap() + top["Shared Read Blocks"].as_u64().unwrap()
}

/// What the small tenant's statements touch: the list's first page, a
/// search that every product of both tenants matches, one product, its
/// stock history, and its deletion — the `DELETE` and the statement its
/// cascade runs on the history. (Trigger work is not in the `DELETE`'s
/// plan; the cascade runs as the table's owner, without row-level security,
/// so it is explained on the owner's connection.)
async fn small_tenant_buffers(
    app: &crate::helpers::TestApp,
    admin: &mut sqlx::PgConnection,
    tenant_id: Uuid,
) -> Vec<(&'static str, u64)> {
    let tenant = TenantCtx::for_system_task(tenant_id);
    let mut tx = begin_tenant_tx(&app.state.db, tenant_id).await.unwrap();
    let explain = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ";
    let product: Uuid = sqlx::query_scalar("SELECT id FROM products ORDER BY id LIMIT 1")
        .fetch_one(observed("test", &mut *tx))
        .await
        .unwrap();
    let mut measured = Vec::new();
    let list = ListFilter::default();
    let search = ListFilter {
        search: Some("product".into()),
        ..Default::default()
    };
    for (name, filter) in [("list", &list), ("search", &search)] {
        let mut query = list_query(explain, &tenant, filter, None, 50);
        let (plan,): (Value,) = query
            .build_query_as()
            .fetch_one(observed("test", &mut *tx))
            .await
            .unwrap();
        measured.push((name, buffers(&plan)));
    }
    for (name, statement) in [
        (
            "detail",
            "SELECT * FROM products WHERE tenant_id = $1 AND id = $2",
        ),
        (
            "history",
            "SELECT * FROM product_stock_history WHERE tenant_id = $1 AND product_id = $2
             ORDER BY id DESC LIMIT 51",
        ),
        (
            "delete",
            "DELETE FROM products WHERE tenant_id = $1 AND id = $2",
        ),
    ] {
        let (plan,): (Value,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{explain}{statement}")))
                .bind(tenant_id)
                .bind(product)
                .fetch_one(observed("test", &mut *tx))
                .await
                .unwrap();
        measured.push((name, buffers(&plan)));
    }
    tx.rollback().await.unwrap();
    let mut owner = admin.begin().await.unwrap();
    let (plan,): (Value,) = sqlx::query_as(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
         DELETE FROM product_stock_history WHERE product_id = $1",
    )
    .bind(product)
    .fetch_one(&mut *owner)
    .await
    .unwrap();
    measured.push(("delete's cascade", buffers(&plan)));
    owner.rollback().await.unwrap();
    measured
}

#[tokio::test]
async fn a_small_tenant_reads_a_bounded_number_of_buffers_next_to_a_million_products() {
    let app = spawn_app().await;
    let small = app.register("small@example.com").await;
    let big = app.register("big@example.com").await;
    let mut admin = app.database.owner_connection().await;
    // Each product with one stock record, like a synced catalogue (ids
    // UUID v7 of the last seconds, so they land in this month's partition).
    let seed = |tenant: Uuid, count: i32| {
        sqlx::query(
            "WITH new AS (
                 INSERT INTO products (id, tenant_id, sku, name, price, stock)
                 SELECT gen_random_uuid(), $1, 'SKU-' || i, 'Product ' || md5(i::text), i % 1000, i % 50
                 FROM generate_series(1, $2) AS i
                 RETURNING id, tenant_id, stock)
             INSERT INTO product_stock_history (id, tenant_id, product_id, stock, source)
             SELECT encode(overlay(uuid_send(gen_random_uuid())
                        PLACING substring(uuid_send(uuid_v7_floor(now() - n * interval '1 ms')) FROM 1 FOR 6)
                        FROM 1 FOR 6), 'hex')::uuid,
                    tenant_id, id, stock, 'sync'
             FROM (SELECT *, row_number() OVER () AS n FROM new) AS numbered",
        )
        .bind(tenant)
        .bind(count)
    };
    seed(small.tenant_id, 100)
        .execute(&mut admin)
        .await
        .unwrap();
    admin.execute("ANALYZE").await.unwrap();
    // Twice: the first run reads the pages in, the second is the count.
    small_tenant_buffers(&app, &mut admin, small.tenant_id).await;
    let alone = small_tenant_buffers(&app, &mut admin, small.tenant_id).await;

    seed(big.tenant_id, 1_000_000)
        .execute(&mut admin)
        .await
        .unwrap();
    admin.execute("ANALYZE").await.unwrap();
    small_tenant_buffers(&app, &mut admin, small.tenant_id).await;
    let beside = small_tenant_buffers(&app, &mut admin, small.tenant_id).await;

    // The big tenant's rows span tens of thousands of pages: an index not
    // led by the tenant (or by the parent, for a cascade) reads a share of
    // them. Led by it, a statement reads a few descents of each B-tree — a
    // search also looks each of the small tenant's entries up in the
    // pattern's posting trees — whatever the neighbour's size.
    const BOUND: u64 = 200;
    let pages: i64 = sqlx::query_scalar(
        "SELECT (pg_relation_size('products')
                 + (SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree('product_stock_history')))::bigint
                / 8192",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    assert!(
        pages >= 100 * BOUND as i64,
        "the big tenant spans only {pages} pages"
    );
    for ((name, alone), (_, beside)) in alone.iter().zip(&beside) {
        println!(
            "{name}: {alone} buffers alone, {beside} next to 1,000,000 products ({pages} pages)"
        );
        assert!(
            *beside <= BOUND,
            "{name}: {beside} buffers next to the big tenant ({alone} alone)"
        );
    }
}

#[tokio::test]
async fn every_foreign_key_has_an_index_led_by_its_columns() {
    let app = spawn_app().await;
    let mut admin = app.database.owner_connection().await;
    // Without one, deleting (or checking) a parent row scans the child table.
    let unindexed: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, c.conname::text
         FROM pg_constraint c
         WHERE c.contype = 'f'
           AND NOT EXISTS (
               SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
               JOIN pg_am am ON am.oid = ic.relam
               WHERE i.indrelid = c.conrelid AND am.amname = 'btree'
                 AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
                 AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey)
         ORDER BY 1, 2",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(
        unindexed.is_empty(),
        "foreign keys without an index: {unindexed:?}"
    );
}
