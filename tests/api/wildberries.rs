//! The Wildberries client against a local mock of its seller API (wiremock):
//! pagination, stock and prices, and how each kind of failure is classified.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use stock_tracker::config::WildberriesSettings;
use stock_tracker::marketplaces::adapters::wildberries::WildberriesClient;
use stock_tracker::marketplaces::adapters::{AdapterError, MarketplaceAdapter};
use stock_tracker::telemetry::metrics::Metrics;
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{Account, TestApp, sample, spawn_app_with};
use crate::workers::{Role, TestQueues};

const TOKEN: &str = "wb-secret-token";

fn settings(server: &MockServer) -> WildberriesSettings {
    WildberriesSettings {
        content_url: server.uri(),
        marketplace_url: server.uri(),
        prices_url: server.uri(),
        warehouse_id: 77,
        page_size: 2,
        request_timeout_ms: 500,
    }
}

fn card(nm_id: u64, vendor_code: &str, barcodes: &[&str]) -> Value {
    json!({"nmID": nm_id, "vendorCode": vendor_code, "title": format!("Card {vendor_code}"),
           "sizes": [{"skus": barcodes}], "updatedAt": "2026-11-01T00:00:00Z"})
}

/// Two pages of cards (2 + 1), their stock and their prices.
pub async fn mock_catalogue(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/content/v2/get/cards/list"))
        .and(header("authorization", TOKEN))
        .and(body_partial_json(
            json!({"settings": {"cursor": {"limit": 2, "nmID": 2}}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "cards": [card(3, "SKU-3", &["b3"])],
            "cursor": {"updatedAt": "2026-11-01T00:00:03Z", "nmID": 3, "total": 1}
        })))
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/content/v2/get/cards/list"))
        .and(header("authorization", TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "cards": [card(1, "SKU-1", &["b1a", "b1b"]), card(2, "SKU-2", &["b2"])],
            "cursor": {"updatedAt": "2026-11-01T00:00:02Z", "nmID": 2, "total": 2}
        })))
        .with_priority(2)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v3/stocks/77"))
        .and(header("authorization", TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "stocks": [{"sku": "b1a", "amount": 4}, {"sku": "b1b", "amount": 3},
                       {"sku": "b2", "amount": 0}, {"sku": "b3", "amount": 12}]
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/list/goods/filter"))
        .and(query_param("offset", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {"listGoods": [
                {"nmID": 1, "sizes": [{"price": 1000, "discountedPrice": 899.5}]},
                {"nmID": 2, "sizes": [{"price": 250}]},
                {"nmID": 3, "sizes": [{"price": 15.25, "discountedPrice": null}]}
            ]}
        })))
        .mount(server)
        .await;
}

fn client(server: &MockServer) -> WildberriesClient {
    WildberriesClient::new(&settings(server), SecretString::from(TOKEN), Metrics::new()).unwrap()
}

#[tokio::test]
async fn pages_through_cards_with_their_stock_and_prices() {
    let server = MockServer::start().await;
    mock_catalogue(&server).await;
    let wb = client(&server);
    let first = wb.fetch_page(None).await.unwrap();
    assert_eq!(first.listings.len(), 2);
    assert_eq!(first.listings[0].sku, "SKU-1");
    assert_eq!(
        first.listings[0].stock, 7,
        "summed over the card's barcodes"
    );
    assert_eq!(first.listings[0].price.to_string(), "899.5");
    assert_eq!(first.listings[1].stock, 0);
    let cursor = first.next.expect("a full page has a next one");
    let second = wb.fetch_page(Some(&cursor)).await.unwrap();
    assert_eq!(second.listings.len(), 1);
    assert_eq!(second.listings[0].name, "Card SKU-3");
    assert_eq!(second.listings[0].price.to_string(), "15.25");
    assert!(second.next.is_none());
}

async fn failing_with(response: ResponseTemplate) -> AdapterError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/content/v2/get/cards/list"))
        .respond_with(response)
        .mount(&server)
        .await;
    client(&server).fetch_page(None).await.unwrap_err()
}

#[tokio::test]
async fn failures_are_classified_and_never_show_the_token() {
    match failing_with(ResponseTemplate::new(429).insert_header("retry-after", "7")).await {
        AdapterError::Transient { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("{other:?}"),
    }
    assert!(
        failing_with(ResponseTemplate::new(503))
            .await
            .is_transient()
    );
    let slow = ResponseTemplate::new(200).set_delay(Duration::from_millis(1_500));
    let timeout = failing_with(slow).await;
    assert!(timeout.is_transient(), "{timeout:?}");
    assert!(matches!(
        failing_with(ResponseTemplate::new(401)).await,
        AdapterError::Unauthorized
    ));
    let redirect = ResponseTemplate::new(302).insert_header("location", "http://169.254.169.254/");
    assert!(matches!(
        failing_with(redirect).await,
        AdapterError::Invalid(_)
    ));
    let garbage = ResponseTemplate::new(200).set_body_string("<html>");
    let invalid = failing_with(garbage).await;
    assert!(matches!(invalid, AdapterError::Invalid(_)));
    assert!(!invalid.to_string().contains(TOKEN) && !timeout.to_string().contains("127.0.0.1"));
}

async fn wildberries_connection(app: &TestApp, owner: &Account) -> String {
    let response = app
        .post_json(
            "/api/v1/marketplaces",
            Some(&owner.bearer()),
            &json!({"kind": "wildberries", "name": "WB", "credentials": {"api_token": TOKEN}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

fn worker_env(server: &MockServer) -> Vec<(&'static str, String)> {
    vec![
        ("STOCK_TRACKER__WILDBERRIES__CONTENT_URL", server.uri()),
        ("STOCK_TRACKER__WILDBERRIES__MARKETPLACE_URL", server.uri()),
        ("STOCK_TRACKER__WILDBERRIES__PRICES_URL", server.uri()),
        ("STOCK_TRACKER__WILDBERRIES__WAREHOUSE_ID", "77".into()),
        ("STOCK_TRACKER__WILDBERRIES__PAGE_SIZE", "2".into()),
    ]
}

#[tokio::test]
async fn a_transient_marketplace_failure_is_retried_and_the_sync_succeeds() {
    let server = MockServer::start().await;
    // The first call fails; then the marketplace answers.
    Mock::given(method("POST"))
        .and(path("/content/v2/get/cards/list"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mock_catalogue(&server).await;
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| queues.apply(s)).await;
    let owner = app.register("wb-retry@example.com").await;
    let connection = wildberries_connection(&app, &owner).await;
    let _worker = Role::start("worker", &app.state.settings, &worker_env(&server));
    // The retry waits in PostgreSQL; beat hands it over once due.
    let _beat = Role::start("beat", &app.state.settings, &[]);
    let job = crate::workers::start_and_wait(&app, &owner, &connection, "succeeded").await;
    assert_eq!(job["attempts"], 2, "{job}");
    assert_eq!(job["products_created"], 3);
}

#[tokio::test]
async fn refused_credentials_fail_the_job_at_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/content/v2/get/cards/list"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| queues.apply(s)).await;
    let owner = app.register("wb-401@example.com").await;
    let connection = wildberries_connection(&app, &owner).await;
    let _worker = Role::start("worker", &app.state.settings, &worker_env(&server));
    let job = crate::workers::start_and_wait(&app, &owner, &connection, "failed").await;
    assert_eq!(job["attempts"], 1);
    assert!(
        job["error"].as_str().unwrap().contains("credentials"),
        "{job}"
    );
}

#[tokio::test]
async fn every_call_is_counted_by_operation_and_status_with_its_latency() {
    let server = MockServer::start().await;
    mock_catalogue(&server).await;
    let metrics = Metrics::new();
    let wb = WildberriesClient::new(
        &settings(&server),
        SecretString::from(TOKEN),
        metrics.clone(),
    )
    .unwrap();
    wb.fetch_page(None).await.unwrap();
    let text = metrics.render();
    for operation in ["content", "marketplace", "prices"] {
        let ok = format!(
            r#"stock_tracker_external_api_requests_total{{operation="{operation}",service="wildberries",status="200"}}"#
        );
        assert_eq!(sample(&text, &ok), Some(1.0), "{ok} in {text}");
        let latency = format!(
            r#"stock_tracker_external_api_duration_seconds_count{{operation="{operation}",service="wildberries"}}"#
        );
        assert_eq!(sample(&text, &latency), Some(1.0), "{latency} in {text}");
    }

    // A refusal is counted under its status; no answer at all as a timeout.
    let refusing = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/content/v2/get/cards/list"))
        .respond_with(ResponseTemplate::new(429))
        .mount(&refusing)
        .await;
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/content/v2/get/cards/list"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(1_500)))
        .mount(&slow)
        .await;
    for server in [&refusing, &slow] {
        let wb = WildberriesClient::new(
            &settings(server),
            SecretString::from(TOKEN),
            metrics.clone(),
        )
        .unwrap();
        wb.fetch_page(None).await.unwrap_err();
    }
    let text = metrics.render();
    for status in ["429", "timeout"] {
        let series = format!(
            r#"stock_tracker_external_api_requests_total{{operation="content",service="wildberries",status="{status}"}}"#
        );
        assert_eq!(sample(&text, &series), Some(1.0), "{series} in {text}");
    }
    assert!(!text.contains(TOKEN));
}
