use std::collections::BTreeSet;

use futures_util::StreamExt;
use serde_json::Value;

use crate::helpers::{sample, spawn_app};

#[tokio::test]
async fn requests_are_counted_by_route_pattern_method_and_status() {
    let app = spawn_app().await;
    app.get("/api/v1/health").await;
    app.get("/api/v1/health").await;
    app.get(&format!("/__probe/items/{}?limit=1", uuid::Uuid::new_v4()))
        .await;
    app.get("/no/such/path/123").await;
    app.get("/__probe/panic").await;

    let text = app.metrics_text().await;
    assert_eq!(
        sample(
            &text,
            r#"stock_tracker_http_requests_total{endpoint="/api/v1/health",method="GET",status="200"}"#
        ),
        Some(2.0),
        "{text}"
    );
    // Path parameters collapse into the pattern, not one series per id.
    assert_eq!(
        sample(
            &text,
            r#"stock_tracker_http_requests_total{endpoint="/__probe/items/{id}",method="GET",status="200"}"#
        ),
        Some(1.0),
        "{text}"
    );
    // Unmatched paths collapse into one label value.
    assert_eq!(
        sample(
            &text,
            r#"stock_tracker_http_requests_total{endpoint="UNKNOWN",method="GET",status="404"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains("/no/such/path"),
        "raw path leaked into labels"
    );
    // A panic is counted as a 500.
    assert!(
        text.lines()
            .any(|l| l.starts_with("stock_tracker_http_requests_total")
                && l.contains(r#"status="500""#)),
        "{text}"
    );
    assert!(text.contains("stock_tracker_http_requests_duration_seconds_bucket"));
}

#[tokio::test]
async fn each_application_counts_on_its_own() {
    let first = spawn_app().await;
    let second = spawn_app().await;
    first.get("/api/v1/health").await;
    let text = second.metrics_text().await;
    assert_eq!(
        sample(
            &text,
            r#"stock_tracker_http_requests_total{endpoint="/api/v1/health",method="GET",status="200"}"#
        ),
        None
    );
}

#[tokio::test]
async fn the_catalog_lists_exactly_the_exported_families() {
    let app = spawn_app().await;
    // Touch every metric so each family has a sample.
    app.get("/api/v1/health/ready").await;
    let account = app.register("catalog@example.com").await;
    app.get_as("/api/v1/products", &account.bearer()).await;
    app.get("/__probe/slow-query").await;
    app.get("/__probe/failing-query").await;
    let text = app.metrics_text().await;
    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();

    let catalog: Vec<Value> = app.get("/metrics/catalog").await.json().await.unwrap();
    let catalogued: BTreeSet<String> = catalog
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(exported, catalogued);
    for entry in &catalog {
        assert!(entry["help"].as_str().is_some_and(|h| !h.is_empty()));
        assert!(["counter", "gauge", "histogram"].contains(&entry["type"].as_str().unwrap()));
        assert!(entry["labels"].is_array());
    }
    // Types in the exposition match the catalogue.
    for entry in &catalog {
        let line = format!(
            "# TYPE {} {}",
            entry["name"].as_str().unwrap(),
            entry["type"].as_str().unwrap()
        );
        assert!(text.contains(&line), "missing `{line}`");
    }
}

#[tokio::test]
async fn readiness_sets_the_dependency_gauges() {
    let app = spawn_app().await;
    app.get("/api/v1/health/ready").await;
    let text = app.metrics_text().await;
    assert_eq!(
        sample(
            &text,
            r#"stock_tracker_dependency_up{dependency="database"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"stock_tracker_dependency_up{dependency="redis"}"#),
        Some(1.0)
    );
}

#[tokio::test]
async fn ten_thousand_distinct_product_ids_add_no_series() {
    let app = spawn_app().await;
    let owner = app.register("cardinality@example.com").await;
    // Series names with their labels, values left out; the scrapes' own
    // series are recorded after their answer, so they are left out too.
    // Statement series are process-wide: other tests running meanwhile may
    // add kinds of their own.
    let series = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.contains(r#"endpoint="/metrics""#))
            .filter(|l| {
                !l.starts_with("stock_tracker_db_query") && !l.starts_with("stock_tracker_db_slow")
            })
            .filter_map(|l| l.rsplit_once(' ').map(|(name, _)| name.to_owned()))
            .collect()
    };
    // Warm up every label combination a product read can produce.
    let warm = uuid::Uuid::now_v7();
    app.get_as(&format!("/api/v1/products/{warm}"), &owner.bearer())
        .await;
    let before = series(&app.metrics_text().await);
    let requests = (0..10_000).map(|_| {
        let client = app.client.clone();
        let url = app.url(&format!("/api/v1/products/{}", uuid::Uuid::now_v7()));
        let auth = owner.bearer();
        async move {
            let response = client
                .get(url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 404);
        }
    });
    futures_util::stream::iter(requests)
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let text = app.metrics_text().await;
    let after = series(&text);
    let added: Vec<_> = after.difference(&before).collect();
    assert!(added.is_empty(), "series added: {added:?}");
    assert!(text.contains(r#"endpoint="/api/v1/products/{id}""#));
}

/// The metric tables of docs/metrics.md, as generated from the catalogue.
fn documented_tables() -> String {
    use stock_tracker::telemetry::metrics::MetricDef;
    let api = stock_tracker::app::metrics_routes::metrics_catalog();
    // The worker's own families: what it adds to those the API also exports.
    let worker: Vec<MetricDef> = stock_tracker::worker::metrics_catalog()
        .into_iter()
        .filter(|def| !api.iter().any(|shared| shared.name == def.name))
        .collect();
    let table = |defs: &[MetricDef]| {
        let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
        for def in defs {
            let kind = serde_json::to_value(def.kind).unwrap();
            let labels = def
                .labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                def.name,
                kind.as_str().unwrap(),
                labels,
                def.help.replace('|', "\\|")
            ));
        }
        out
    };
    format!(
        "The API's `/metrics` (also on `/metrics/catalog` as JSON):\n\n{}\nThe worker's `/metrics` on `worker.port` adds (its `/metrics/catalog` lists everything it exports, the shared process, memory, database, Redis and breaker families included):\n\n{}",
        table(&api),
        table(&worker)
    )
}

#[test]
fn the_docs_list_every_metric_of_the_catalogue() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let (begin, end) = ("<!-- metrics:begin -->\n", "<!-- metrics:end -->");
    let start = doc.find(begin).expect("docs/metrics.md has the markers") + begin.len();
    let stop = doc.find(end).expect("docs/metrics.md has the markers");
    let expected = documented_tables();
    if doc[start..stop] != expected {
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let updated = format!("{}{expected}{}", &doc[..start], &doc[stop..]);
            std::fs::write(path, updated).unwrap();
        } else {
            panic!(
                "docs/metrics.md's metric tables differ from the catalogue; \
                 regenerate them with `UPDATE_DOCS=1 cargo test --test api the_docs_list`"
            );
        }
    }
}

/// The families present in a Prometheus text exposition with at least one sample.
fn families_with_samples(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let name = line.split(['{', ' ']).next().unwrap();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name)
                .to_owned()
        })
        .collect()
}

/// Every family of each role is in its first scrape, with its known label
/// values (kinds, outcomes, states) at zero, so dashboards show zeros rather
/// than "no data" and an alert can tell "none yet" from "not exported". The
/// HTTP families are the exception: their labels (route, method, status)
/// describe a request, and exist once one was answered.
#[tokio::test]
async fn every_family_is_in_each_roles_first_scrape() {
    use crate::workers::{Role, TestQueues};
    const PER_REQUEST: [&str; 2] = [
        "stock_tracker_http_requests_total",
        "stock_tracker_http_requests_duration_seconds",
    ];
    let app = spawn_app().await;
    let missing = |catalog: Vec<stock_tracker::telemetry::metrics::MetricDef>, text: &str| {
        let present = families_with_samples(text);
        catalog
            .iter()
            .map(|def| def.name)
            .filter(|name| !present.contains(*name) && !PER_REQUEST.contains(name))
            .collect::<Vec<_>>()
    };
    let text = app.metrics_text().await;
    assert_eq!(
        missing(stock_tracker::app::metrics_routes::metrics_catalog(), &text),
        Vec::<&str>::new(),
        "the API"
    );

    // Worker and beat share a catalogue; each family belongs to one of
    // them (tasks and deliveries to the worker, the reaper and retention
    // to beat), so each must be in the first scrape of one of the two.
    let queues = TestQueues::new();
    let mut settings = (*app.state.settings).clone();
    queues.apply(&mut settings);
    let mut missing_from_both: Option<BTreeSet<&str>> = None;
    for role in ["worker", "beat"] {
        let process = Role::start(role, &settings, &[]);
        let mut text = String::new();
        for _ in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if let Ok(response) =
                reqwest::get(format!("http://127.0.0.1:{}/metrics", process.port)).await
            {
                text = response.text().await.unwrap();
                break;
            }
        }
        assert!(!text.is_empty(), "{role}: {}", process.output());
        let missing: BTreeSet<&str> = missing(stock_tracker::worker::metrics_catalog(), &text)
            .into_iter()
            .collect();
        missing_from_both = Some(match missing_from_both {
            None => missing,
            Some(before) => before.intersection(&missing).copied().collect(),
        });
    }
    assert_eq!(
        missing_from_both.unwrap(),
        BTreeSet::new(),
        "worker and beat"
    );
}
