//! The telemetry of #10 as an operator sees it: statements timed by kind,
//! failures and slow ones counted, slow ones logged as JSON (by the real
//! binary); memory and CPU gauges; active tenants across replicas without a
//! tenant label; queue depths read from the real broker; and OpenTelemetry
//! spans received over OTLP/HTTP by a local server, linked from the
//! caller's request through the API into the worker's task.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::Value;
use stock_tracker::telemetry::metrics::Metrics;
use stock_tracker::worker::queue_stats::QueueStats;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{sample, spawn_app, spawn_app_with};
use crate::workers::{BROKER, Role, TestQueues, demo_connection, wait_for_job};

fn count_of(text: &str, family: &str, kind: &str) -> f64 {
    sample(text, &format!(r#"{family}{{kind="{kind}"}}"#)).unwrap_or(0.0)
}

#[tokio::test]
async fn statements_are_timed_by_kind_and_failures_and_slow_ones_counted() {
    let app = spawn_app().await;
    let before = app.metrics_text().await;
    let owner = app.register("statements@example.com").await;
    app.get_as("/api/v1/products", &owner.bearer()).await;
    app.get("/__probe/slow-query").await;
    app.get("/__probe/failing-query").await;
    let after = app.metrics_text().await;

    let duration = "stock_tracker_db_query_duration_seconds_count";
    // The kinds named at the call sites: the tenant's transaction (its
    // `BEGIN` with the settings) and the list.
    for kind in [
        "db.begin_tenant",
        "products.list",
        "probe.sleep",
        "probe.fail",
    ] {
        assert!(
            count_of(&after, duration, kind) > count_of(&before, duration, kind),
            "{kind} not timed: {after}"
        );
    }
    let errors = "stock_tracker_db_query_errors_total";
    assert!(count_of(&after, errors, "probe.fail") > count_of(&before, errors, "probe.fail"));
    let slow = "stock_tracker_db_slow_queries_total";
    // 150 ms is over the default 100 ms threshold.
    assert!(count_of(&after, slow, "probe.sleep") > count_of(&before, slow, "probe.sleep"));
    let bucket = r#"stock_tracker_db_query_duration_seconds_bucket{kind="probe.sleep",le="0.1"}"#;
    let over = r#"stock_tracker_db_query_duration_seconds_bucket{kind="probe.sleep",le="0.2"}"#;
    assert!(sample(&after, over).unwrap() > sample(&after, bucket).unwrap());
}

#[tokio::test]
async fn memory_and_cpu_gauges_are_read_at_scrape_time() {
    let app = spawn_app().await;
    let text = app.metrics_text().await;
    for gauge in [
        "stock_tracker_jemalloc_allocated_bytes",
        "stock_tracker_jemalloc_active_bytes",
        "stock_tracker_jemalloc_resident_bytes",
        "process_resident_memory_bytes",
        "stock_tracker_cpu_limit_cores",
    ] {
        let value = sample(&text, gauge).unwrap_or_else(|| panic!("no {gauge} in {text}"));
        assert!(value > 0.0, "{gauge} = {value}");
    }
    let allocated = sample(&text, "stock_tracker_jemalloc_allocated_bytes").unwrap();
    let resident = sample(&text, "stock_tracker_jemalloc_resident_bytes").unwrap();
    assert!(resident >= allocated);
    // Present from the start (0 until two samples exist).
    assert!(sample(&text, "stock_tracker_memory_growth_bytes_per_second").is_some());
    assert!(sample(&text, "stock_tracker_jemalloc_retained_bytes").is_some());
    assert!(sample(&text, "stock_tracker_memory_limit_bytes").is_some());
}

#[tokio::test]
async fn active_tenants_are_counted_across_replicas_without_a_tenant_label() {
    let app = spawn_app().await;
    let replica = app.spawn_replica().await;
    let (a, b, c) = (
        app.register("active-a@example.com").await,
        app.register("active-b@example.com").await,
        app.register("active-c@example.com").await,
    );
    app.get_as("/api/v1/products", &a.bearer()).await;
    app.get_as("/api/v1/products", &b.bearer()).await;
    // Tenant A again, and tenant C, on the other replica.
    for account in [&a, &c] {
        let response = app
            .client
            .get(format!("{replica}/api/v1/products"))
            .header("authorization", account.bearer())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let text = app.metrics_text().await;
    assert_eq!(
        sample(&text, "stock_tracker_active_tenants"),
        Some(3.0),
        "{text}"
    );
    let other = app
        .client
        .get(format!("{replica}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(sample(&other, "stock_tracker_active_tenants"), Some(3.0));
    for account in [&a, &b, &c] {
        assert!(!text.contains(&account.tenant_id.to_string()));
        assert!(!text.contains(&account.tenant_id.simple().to_string()));
    }
}

#[tokio::test]
async fn queue_depth_and_consumers_are_read_from_the_broker() {
    let queues = TestQueues::new();
    let mut settings = crate::helpers::base_settings();
    queues.apply(&mut settings);
    let connection = Connection::connect(BROKER, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for queue in [&queues.sync, &queues.notifications] {
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue, durable, FieldTable::default())
            .await
            .unwrap();
    }
    for _ in 0..3 {
        channel
            .basic_publish(
                "",
                &queues.sync,
                BasicPublishOptions::default(),
                b"{}",
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let metrics = Metrics::new();
    let stats = QueueStats::new(&settings);
    stats.observe(&metrics).await;
    let text = metrics.render();
    let series =
        |family: &str, queue: &str| sample(&text, &format!(r#"{family}{{queue="{queue}"}}"#));
    assert_eq!(
        series("stock_tracker_queue_depth", &queues.sync),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        series("stock_tracker_queue_depth", &queues.notifications),
        Some(0.0)
    );
    assert_eq!(
        series("stock_tracker_queue_consumers", &queues.sync),
        Some(0.0)
    );
    let _ = connection.close(200, "done").await;

    // A broker out of reach: the gauges go rather than stay stale.
    settings.broker.url = "amqp://guest:guest@127.0.0.1:1/%2f".to_owned().into();
    let unreachable = QueueStats::new(&settings);
    unreachable.observe(&metrics).await;
    assert!(!metrics.render().contains("stock_tracker_queue_depth{"));
}

/// Waits for the access line of the request `request_id`: the last line a
/// request logs, so every line before it is written too (lines are written
/// by the log writer thread, after the response).
async fn wait_for_access_line(role: &Role, request_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !json_lines(&role.output()).iter().any(|line| {
        line["message"] == "request completed" && line["span"]["request_id"] == request_id
    }) {
        assert!(
            Instant::now() < deadline,
            "no access line of {request_id} in:\n{}",
            role.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lines of a JSON log, parsed (others skipped).
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

async fn wait_until_up(port: u16, role: &Role) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://127.0.0.1:{port}/api/v1/health/live");
    while !reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "not serving:\n{}", role.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn slow_statements_are_logged_as_json_with_request_and_tenant_and_no_parameters() {
    let app = spawn_app().await;
    let owner = app.register("slow-log@example.com").await;
    // The real binary, with every statement over the threshold.
    let api = Role::start(
        "serve",
        &app.state.settings,
        &[
            (
                "STOCK_TRACKER__DATABASE__SLOW_QUERY_THRESHOLD_MS",
                "0".into(),
            ),
            ("STOCK_TRACKER__LOGGING__FORMAT", "json".into()),
            ("STOCK_TRACKER__LOGGING__LEVEL", "info".into()),
        ],
    );
    wait_until_up(api.port, &api).await;
    let search = "needle-that-must-not-be-logged";
    let response = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/api/v1/products?q={search}",
            api.port
        ))
        .header("authorization", owner.bearer())
        .header("x-request-id", "slow-log-check")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    wait_for_access_line(&api, "slow-log-check").await;
    let lines = json_lines(&api.output());
    let slow: Vec<&Value> = lines
        .iter()
        .filter(|line| {
            line["message"] == "slow query" && line["span"]["request_id"] == "slow-log-check"
        })
        .collect();
    assert!(!slow.is_empty(), "no slow-query line:\n{}", api.output());
    let list = slow
        .iter()
        .find(|line| line["query_kind"] == "products.list")
        .unwrap_or_else(|| panic!("no products.list line in {slow:?}"));
    assert_eq!(list["level"], "WARN");
    assert!(list["duration_ms"].as_f64().is_some());
    assert_eq!(list["threshold_ms"], 0);
    assert_eq!(list["span"]["tenant_id"], owner.tenant_id.to_string());
    for line in &slow {
        assert!(
            !line.to_string().contains(search),
            "a parameter was logged: {line}"
        );
    }
    let metrics = api.metrics_text().await;
    assert!(
        sample(
            &metrics,
            r#"stock_tracker_db_slow_queries_total{kind="products.list"}"#
        )
        .is_some_and(|n| n >= 1.0)
    );
}

/// Every span received by the collector, by span id.
async fn received_spans(collector: &MockServer) -> HashMap<Vec<u8>, (String, Span)> {
    let mut spans = HashMap::new();
    for request in collector.received_requests().await.unwrap_or_default() {
        let export = ExportTraceServiceRequest::decode(request.body.as_slice()).unwrap();
        for resource in export.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(name) => Some(name.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.insert(span.span_id.clone(), (service.clone(), span));
                }
            }
        }
    }
    spans
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?;
    match value.value.as_ref()? {
        AnyValue::StringValue(text) => Some(text.clone()),
        AnyValue::IntValue(n) => Some(n.to_string()),
        other => Some(format!("{other:?}")),
    }
}

#[tokio::test]
async fn spans_are_exported_over_otlp_and_linked_from_the_request_into_the_task() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| {
        queues.apply(s);
        s.worker.demo_products = 20;
    })
    .await;
    let owner = app.register("traces@example.com").await;
    let connection = demo_connection(&app, &owner).await;
    let tracing_env = [
        ("STOCK_TRACKER__TRACING__OTLP_ENDPOINT", collector.uri()),
        ("STOCK_TRACKER__WORKER__DEMO_PRODUCTS", "20".into()),
        // Export every 100 ms instead of every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ];
    let api = Role::start("serve", &app.state.settings, &tracing_env);
    let worker = Role::start("worker", &app.state.settings, &tracing_env);
    wait_until_up(api.port, &api).await;
    worker
        .wait_for_log("worker consuming", Duration::from_secs(30))
        .await;

    // The caller's own trace context: the request continues it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/sync", api.port))
        .header("authorization", owner.bearer())
        .header("x-request-id", "traced-sync")
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&serde_json::json!({"connection_id": connection}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    wait_for_job(
        &app,
        &owner,
        job["job_id"].as_str().unwrap(),
        "succeeded",
        Duration::from_secs(30),
    )
    .await;

    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let deadline = Instant::now() + Duration::from_secs(15);
    let (request, publish, task, spans) = loop {
        let spans = received_spans(&collector).await;
        let find = |name: &str| {
            spans
                .values()
                .find(|(_, s)| hex(&s.trace_id) == trace_id && s.name == name)
                .map(|(service, span)| (service.clone(), span.clone()))
        };
        if let (Some(request), Some(publish), Some(task)) = (
            find("POST /api/v1/sync"),
            find("sync_tenant_products publish"),
            find("sync_tenant_products"),
        ) {
            break (request, publish, task, spans);
        }
        assert!(
            Instant::now() < deadline,
            "spans missing; received {:?}",
            spans
                .values()
                .map(|(service, s)| format!(
                    "{service} {} trace={} id={} parent={}",
                    s.name,
                    hex(&s.trace_id),
                    hex(&s.span_id),
                    hex(&s.parent_span_id)
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (api_service, request) = request;
    let (worker_service, task) = task;
    assert_eq!(api_service, "stock-tracker-api");
    assert_eq!(worker_service, "stock-tracker-worker");
    // request → publish → task, under the caller's span.
    assert_eq!(hex(&request.parent_span_id), caller_span);
    assert_eq!(publish.1.parent_span_id, request.span_id);
    assert_eq!(task.parent_span_id, publish.1.span_id);
    // OTLP span kinds: 2 server, 3 client, 4 producer, 5 consumer.
    assert_eq!(
        (request.kind, publish.1.kind, task.kind),
        (2, 4, 5),
        "span kinds"
    );
    assert_eq!(
        attribute(&request, "request_id").as_deref(),
        Some("traced-sync")
    );
    assert_eq!(
        attribute(&request, "route").as_deref(),
        Some("/api/v1/sync")
    );
    assert_eq!(
        attribute(&request, "http.response.status_code").as_deref(),
        Some("202")
    );
    // Statements and Redis calls are children of the request and of the task.
    let children = |parent: &Span| -> Vec<String> {
        spans
            .values()
            .filter(|(_, s)| s.parent_span_id == parent.span_id)
            .map(|(_, s)| s.name.clone())
            .collect()
    };
    let under_request = children(&request);
    assert!(
        under_request.iter().any(|n| n == "sync.insert_job"),
        "{under_request:?}"
    );
    assert!(
        under_request.iter().any(|n| n == "rate_limit.decide"),
        "{under_request:?}"
    );
    let insert_job = spans
        .values()
        .find(|(_, s)| s.parent_span_id == request.span_id && s.name == "sync.insert_job")
        .map(|(_, s)| s.kind);
    assert_eq!(insert_job, Some(3), "a statement is a client span");
    let under_task = children(&task);
    assert!(
        under_task.iter().any(|n| n == "sync.upsert_page"),
        "{under_task:?}"
    );

    // The trace id is on the API's log lines of that request.
    let logged = json_lines(&api.output()).into_iter().any(|line| {
        line["span"]["request_id"] == "traced-sync" && line["span"]["trace_id"] == trace_id
    });
    assert!(logged, "no log line with the trace id:\n{}", api.output());
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_and_logs_carry_no_trace_id() {
    let app = spawn_app().await;
    let api = Role::start("serve", &app.state.settings, &[]);
    wait_until_up(api.port, &api).await;
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/api/v1/health", api.port))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("x-request-id", "untraced-check")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    wait_for_access_line(&api, "untraced-check").await;
    assert!(!api.output().contains("trace_id"));
    assert!(!api.output().contains("otel."), "{}", api.output());
}
