//! Products: CRUD, money, stock history, pagination, filters, sorts, search.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Account, TestApp, spawn_app};

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_manual_product_is_created_read_updated_and_deleted() {
    let app = spawn_app().await;
    let owner = app.register("crud@example.com").await;
    let created = app
        .create_product(&owner, "SKU-1", "Blue mug", "12.5", 7)
        .await;
    assert_eq!(created["price"], "12.50");
    assert_eq!(created["stock"], 7);
    assert_eq!(created["marketplace_id"], Value::Null);
    let id = Uuid::parse_str(created["id"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7);

    let path = format!("/api/v1/products/{id}");
    let fetched: Value = app
        .get_as(&path, &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, created);

    let patched = app
        .send(
            Method::PATCH,
            &path,
            Some(&owner.bearer()),
            Some(&json!({"price": 9.99})),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["price"], "9.99");
    assert_eq!(patched["name"], "Blue mug");
    assert_eq!(patched["stock"], 7);

    assert_eq!(
        app.send(Method::DELETE, &path, Some(&owner.bearer()), None)
            .await
            .status(),
        204
    );
    assert_eq!(app.get_as(&path, &owner.bearer()).await.status(), 404);
}

#[tokio::test]
async fn bad_product_input_is_refused_precisely() {
    let app = spawn_app().await;
    let owner = app.register("bad@example.com").await;
    let cases = [
        (
            json!({"sku": "A", "name": "N", "price": -1, "stock": 1}),
            json!(["body", "price"]),
        ),
        (
            json!({"sku": "A", "name": "N", "price": "1.234", "stock": 1}),
            json!(["body", "price"]),
        ),
        (
            json!({"sku": "A", "name": "N", "price": "abc", "stock": 1}),
            json!(["body", "price"]),
        ),
        (
            json!({"sku": "A", "name": "N", "price": 1, "stock": -3}),
            json!(["body", "stock"]),
        ),
        (
            json!({"sku": " ", "name": "N", "price": 1, "stock": 1}),
            json!(["body", "sku"]),
        ),
        (
            json!({"sku": "A", "price": 1, "stock": 1}),
            json!(["body", "name"]),
        ),
    ];
    for (body, loc) in cases {
        let response = app
            .post_json("/api/v1/products", Some(&owner.bearer()), &body)
            .await;
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["detail"][0]["loc"], loc, "{body}: {error}");
    }
    let products: Value = app
        .get_as("/api/v1/products", &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert!(
        products["items"].as_array().unwrap().is_empty(),
        "nothing was written"
    );
}

#[tokio::test]
async fn a_sku_is_unique_per_tenant() {
    let app = spawn_app().await;
    let alpha = app.register("sku-a@example.com").await;
    let bravo = app.register("sku-b@example.com").await;
    let first = app.create_product(&alpha, "DUP", "One", "1", 1).await;
    let dup = app
        .post_json(
            "/api/v1/products",
            Some(&alpha.bearer()),
            &json!({"sku": "DUP", "name": "Two", "price": 1, "stock": 1}),
        )
        .await;
    assert_eq!(dup.status(), 409);
    let body: Value = dup.json().await.unwrap();
    assert_eq!(body["code"], "sku_taken");
    // Another tenant may use the same SKU.
    app.create_product(&bravo, "DUP", "Theirs", "1", 1).await;
    // Renaming another product onto the SKU conflicts too.
    let other = app.create_product(&alpha, "OTHER", "Other", "1", 1).await;
    let rename = app
        .send(
            Method::PATCH,
            &format!("/api/v1/products/{}", other["id"].as_str().unwrap()),
            Some(&alpha.bearer()),
            Some(&json!({"sku": "DUP"})),
        )
        .await;
    assert_eq!(rename.status(), 409);
    assert_ne!(first["id"], other["id"]);
}

#[tokio::test]
async fn stock_changes_append_to_the_history() {
    let app = spawn_app().await;
    let owner = app.register("hist@example.com").await;
    let product = app.create_product(&owner, "H-1", "Tracked", "1", 5).await;
    let path = format!("/api/v1/products/{}", product["id"].as_str().unwrap());
    for stock in [3, 3, 0, 8] {
        app.send(
            Method::PATCH,
            &path,
            Some(&owner.bearer()),
            Some(&json!({"stock": stock})),
        )
        .await;
    }
    app.send(
        Method::PATCH,
        &path,
        Some(&owner.bearer()),
        Some(&json!({"name": "Renamed"})),
    )
    .await;
    let history = app
        .collect_pages(&owner, &format!("{path}/stock-history?limit=2"))
        .await;
    let stocks: Vec<(Value, Value)> = history
        .iter()
        .map(|h| (h["previous_stock"].clone(), h["stock"].clone()))
        .collect();
    // Newest first; unchanged stock and other fields record nothing.
    assert_eq!(
        stocks,
        vec![
            (json!(0), json!(8)),
            (json!(3), json!(0)),
            (json!(5), json!(3)),
            (Value::Null, json!(5))
        ]
    );
    assert!(history.iter().all(|h| h["source"] == "manual"));
}

#[tokio::test]
async fn pages_have_no_duplicates_or_gaps_while_rows_are_inserted() {
    let app = spawn_app().await;
    let owner = app.register("pages@example.com").await;
    let mut originals = Vec::new();
    for i in 0..25 {
        originals.push(
            app.create_product(
                &owner,
                &format!("P-{i:02}"),
                &format!("Product {i}"),
                "1",
                1,
            )
            .await,
        );
    }
    let first: Value = app
        .get_as("/api/v1/products?limit=10", &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    let mut seen = ids(first["items"].as_array().unwrap());
    // Rows arrive between page reads.
    for i in 0..5 {
        app.create_product(&owner, &format!("NEW-{i}"), &format!("New {i}"), "1", 1)
            .await;
    }
    let cursor = first["next_cursor"].as_str().unwrap();
    seen.extend(ids(&app
        .collect_pages(
            &owner,
            &format!("/api/v1/products?limit=10&cursor={cursor}"),
        )
        .await));
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a row appeared twice");
    for original in &originals {
        assert!(
            seen.contains(&original["id"].as_str().unwrap().to_owned()),
            "a row was skipped"
        );
    }
    assert_eq!(seen.len(), 30);
    // Default order is by id: creation order.
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen);
}

async fn catalog(app: &TestApp) -> Account {
    let owner = app
        .register(&format!("filters-{}@example.com", Uuid::now_v7().simple()))
        .await;
    for (sku, name, price, stock) in [
        ("MUG-BLUE", "Blue mug", "12.50", 0),
        ("MUG-RED", "Red mug", "9.99", 3),
        ("TEE-S", "Cotton tee small", "19.00", 25),
        ("TEE-M", "Cotton tee medium", "19.00", 12),
        ("CAP-1", "Baseball cap", "7.00", 10),
    ] {
        app.create_product(&owner, sku, name, price, stock).await;
    }
    owner
}

async fn skus(app: &TestApp, owner: &Account, query: &str) -> Vec<String> {
    app.collect_pages(owner, &format!("/api/v1/products?limit=2&{query}"))
        .await
        .iter()
        .map(|p| p["sku"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn each_filter_selects_what_it_says() {
    let app = spawn_app().await;
    let owner = catalog(&app).await;
    assert_eq!(skus(&app, &owner, "stock=out_of_stock").await, ["MUG-BLUE"]);
    assert_eq!(
        skus(&app, &owner, "stock=in_stock").await,
        ["MUG-RED", "TEE-S", "TEE-M", "CAP-1"]
    );
    // The default low-stock threshold is 10.
    assert_eq!(
        skus(&app, &owner, "stock=low_stock").await,
        ["MUG-BLUE", "MUG-RED", "CAP-1"]
    );
    app.send(
        Method::PATCH,
        "/api/v1/tenants/me",
        Some(&owner.bearer()),
        Some(&json!({"settings": {"low_stock_threshold": 3}})),
    )
    .await;
    assert_eq!(
        skus(&app, &owner, "stock=low_stock").await,
        ["MUG-BLUE", "MUG-RED"]
    );
    assert_eq!(
        skus(&app, &owner, "price_min=9.99&price_max=12.50").await,
        ["MUG-BLUE", "MUG-RED"]
    );
    assert_eq!(skus(&app, &owner, "price_min=19").await, ["TEE-S", "TEE-M"]);
    assert_eq!(skus(&app, &owner, "manual=true").await.len(), 5);
    assert!(skus(&app, &owner, "manual=false").await.is_empty());
    assert!(
        skus(&app, &owner, &format!("marketplace_id={}", Uuid::now_v7()))
            .await
            .is_empty()
    );

    let future = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert!(
        skus(
            &app,
            &owner,
            &format!("updated_since={}", future.replace('+', "%2B"))
        )
        .await
        .is_empty()
    );
    let past = "2020-01-01T00:00:00Z";
    assert_eq!(
        skus(&app, &owner, &format!("updated_since={past}"))
            .await
            .len(),
        5
    );
}

#[tokio::test]
async fn search_matches_name_or_sku_fragments_case_insensitively() {
    let app = spawn_app().await;
    let owner = catalog(&app).await;
    assert_eq!(skus(&app, &owner, "q=MUG").await, ["MUG-BLUE", "MUG-RED"]);
    assert_eq!(skus(&app, &owner, "q=cotton").await, ["TEE-S", "TEE-M"]);
    assert_eq!(skus(&app, &owner, "q=ee-m").await, ["TEE-M"]);
    assert_eq!(skus(&app, &owner, "q=ball").await, ["CAP-1"]);
    // LIKE wildcards are literal.
    assert!(skus(&app, &owner, "q=%25%25%25").await.is_empty());
    let short = app.get_as("/api/v1/products?q=mu", &owner.bearer()).await;
    assert_eq!(short.status(), 422);
}

#[tokio::test]
async fn sort_orders_page_correctly_with_the_id_as_tie_breaker() {
    let app = spawn_app().await;
    let owner = catalog(&app).await;
    assert_eq!(
        skus(&app, &owner, "sort=name").await,
        ["CAP-1", "MUG-BLUE", "TEE-M", "TEE-S", "MUG-RED"]
    );
    assert_eq!(
        skus(&app, &owner, "sort=price").await,
        ["CAP-1", "MUG-RED", "MUG-BLUE", "TEE-S", "TEE-M"]
    );
    assert_eq!(
        skus(&app, &owner, "sort=-price").await,
        ["TEE-M", "TEE-S", "MUG-BLUE", "MUG-RED", "CAP-1"]
    );
    let mug = app
        .collect_pages(&owner, "/api/v1/products?q=MUG-RED")
        .await;
    app.send(
        Method::PATCH,
        &format!("/api/v1/products/{}", mug[0]["id"].as_str().unwrap()),
        Some(&owner.bearer()),
        Some(&json!({"stock": 4})),
    )
    .await;
    assert_eq!(skus(&app, &owner, "sort=-updated_at").await[0], "MUG-RED");
    assert_eq!(skus(&app, &owner, "sort=-updated_at").await.len(), 5);
}

#[tokio::test]
async fn bad_list_parameters_are_422_never_500() {
    let app = spawn_app().await;
    let owner = catalog(&app).await;
    let page: Value = app
        .get_as("/api/v1/products?limit=2&sort=price", &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    let price_cursor = page["next_cursor"].as_str().unwrap().to_owned();
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=AAAAAAAAAAAAAAAAAAAAAA", "cursor"),
        ("stock=plenty", "stock"),
        ("sort=colour", "sort"),
        ("price_min=-5", "price_min"),
        ("price_max=1.005", "price_max"),
        ("updated_since=yesterday", "updated_since"),
        ("marketplace_id=42", "marketplace_id"),
        ("colour=red", "colour"),
    ] {
        let response = app
            .get_as(&format!("/api/v1/products?{query}"), &owner.bearer())
            .await;
        assert_eq!(response.status(), 422, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["query", field]),
            "{query}: {body}"
        );
    }
    // A cursor belongs to its sort order.
    let mismatched = app
        .get_as(
            &format!("/api/v1/products?cursor={price_cursor}"),
            &owner.bearer(),
        )
        .await;
    assert_eq!(mismatched.status(), 422);
}

#[tokio::test]
async fn another_tenants_products_are_404() {
    let app = spawn_app().await;
    let alpha = app.register("pa@example.com").await;
    let bravo = app.register("pb@example.com").await;
    let theirs = app.create_product(&bravo, "B-1", "Bravo's", "1", 1).await;
    let path = format!("/api/v1/products/{}", theirs["id"].as_str().unwrap());
    assert_eq!(app.get_as(&path, &alpha.bearer()).await.status(), 404);
    assert_eq!(
        app.get_as(&format!("{path}/stock-history"), &alpha.bearer())
            .await
            .status(),
        404
    );
    let patch = app
        .send(
            Method::PATCH,
            &path,
            Some(&alpha.bearer()),
            Some(&json!({"stock": 0})),
        )
        .await;
    assert_eq!(patch.status(), 404);
    assert_eq!(
        app.send(Method::DELETE, &path, Some(&alpha.bearer()), None)
            .await
            .status(),
        404
    );
    let list: Value = app
        .get_as("/api/v1/products", &alpha.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert!(list["items"].as_array().unwrap().is_empty());
    let still: Value = app
        .get_as(&path, &bravo.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(still["stock"], 1);
}

#[tokio::test]
async fn viewers_read_and_members_write_products() {
    let app = spawn_app().await;
    let owner = app.register("pr-owner@example.com").await;
    let viewer = app
        .add_user(&owner, "pr-viewer@example.com", "viewer")
        .await;
    let member = app
        .add_user(&owner, "pr-member@example.com", "member")
        .await;
    let body = json!({"sku": "R-1", "name": "Role test", "price": 1, "stock": 1});
    assert_eq!(
        app.post_json("/api/v1/products", Some(&viewer.bearer()), &body)
            .await
            .status(),
        403
    );
    assert_eq!(
        app.post_json("/api/v1/products", Some(&member.bearer()), &body)
            .await
            .status(),
        201
    );
    assert_eq!(
        app.get_as("/api/v1/products", &viewer.bearer())
            .await
            .status(),
        200
    );
}
