//! What keeps a sync running once in effect whatever the broker, a worker
//! or beat does: quorum queues consumed with a prefetch per queue, publisher
//! confirms, job leases with fenced writes, and beat's fenced lead — with
//! real RabbitMQ, PostgreSQL and processes frozen by SIGSTOP.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use stock_tracker::broker::TaskMessage;
use uuid::Uuid;

use crate::helpers::{TestApp, sample, spawn_app_with};
use crate::processes::TcpProxy;
use crate::workers::{BROKER, Role, TestQueues, count, demo_connection, start_sync, wait_for_job};

/// `rabbitmqctl` with its output (it takes a few seconds: an Erlang VM).
fn rabbitmqctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl")
        .args(["-q"])
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(output.status.success(), "rabbitmqctl {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

async fn job_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    job["job_id"].as_str().unwrap().to_owned()
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut app.database.owner_connection().await)
        .await
        .unwrap()
}

/// Waits until `check` holds, or fails with `what`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn queues_are_quorum_queues_each_consumed_with_its_own_prefetch() {
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| queues.apply(s)).await;
    let owner = app.register("quorum@example.com").await;
    let env = [
        ("STOCK_TRACKER__BROKER__SYNC_PREFETCH", "1".to_owned()),
        (
            "STOCK_TRACKER__BROKER__NOTIFICATIONS_PREFETCH",
            "3".to_owned(),
        ),
        ("STOCK_TRACKER__WORKER__DEMO_PRODUCTS", "40000".to_owned()),
        ("STOCK_TRACKER__WORKER__PAGE_SIZE", "250".to_owned()),
    ];
    let worker = Role::start("worker", &app.state.settings, &env);
    worker
        .wait_for_log("worker consuming", Duration::from_secs(30))
        .await;

    let listed = rabbitmqctl(&["list_queues", "name", "type"]);
    for queue in [&queues.sync, &queues.notifications] {
        assert!(
            listed
                .lines()
                .any(|line| line.split_whitespace().eq([queue.as_str(), "quorum"])),
            "{queue} is not a quorum queue:\n{listed}"
        );
    }
    let consumers = rabbitmqctl(&["list_consumers", "queue_name", "prefetch_count"]);
    for (queue, prefetch) in [(&queues.sync, "1"), (&queues.notifications, "3")] {
        assert!(
            consumers
                .lines()
                .any(|line| line.split_whitespace().eq([queue.as_str(), prefetch])),
            "{queue} is not consumed with prefetch {prefetch}:\n{consumers}"
        );
    }

    // Two long syncs fill the sync queue's one slot and wait behind it; a
    // delivery on the notifications queue still runs at once.
    let first = job_of(start_sync(&app, &owner, &demo_connection(&app, &owner).await).await).await;
    let second = job_of(start_sync(&app, &owner, &demo_connection(&app, &owner).await).await).await;
    wait_for_job(&app, &owner, &first, "running", Duration::from_secs(30)).await;
    let delivery = TaskMessage::new(
        "deliver_webhook",
        vec![json!(owner.tenant_id), json!(Uuid::now_v7())],
        Map::new(),
    );
    app.state
        .queue
        .send(&queues.notifications, delivery)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the delivery waited behind the syncs",
        || async {
            let text = worker.metrics_text().await;
            sample(
                &text,
                r#"stock_tracker_worker_tasks_total{status="succeeded",task="deliver_webhook"}"#,
            ) == Some(1.0)
        },
    )
    .await;
    let path = format!("/api/v1/sync/jobs/{second}");
    let waiting: Value = app
        .get_as(&path, &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        waiting["status"], "queued",
        "the second sync waits for the slot"
    );
    let running: Value = app
        .get_as(&format!("/api/v1/sync/jobs/{first}"), &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(running["status"], "running");
}

#[tokio::test]
async fn a_nacked_publish_is_counted_and_leaves_the_job_to_the_sweeper() {
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| queues.apply(s)).await;
    let owner = app.register("nack@example.com").await;
    let connection = demo_connection(&app, &owner).await;
    // The queue refuses every message while this policy applies.
    let policy = format!("refuse-{}", Uuid::new_v4().simple());
    let pattern = format!("^{}$", queues.sync);
    rabbitmqctl(&[
        "set_policy",
        &policy,
        &pattern,
        r#"{"max-length": 0, "overflow": "reject-publish"}"#,
        "--apply-to",
        "queues",
    ]);
    // Policies apply asynchronously: wait until a publish is refused.
    let nacked = format!(
        r#"stock_tracker_broker_publishes_total{{outcome="nacked",queue="{}"}}"#,
        queues.sync
    );
    eventually(
        Duration::from_secs(10),
        "the policy never applied",
        || async {
            let probe = TaskMessage::new("probe", vec![], Map::new());
            app.state.queue.send(&queues.sync, probe).await.is_err()
        },
    )
    .await;
    let before = sample(&app.metrics_text().await, &nacked).unwrap();
    let job = job_of(start_sync(&app, &owner, &connection).await).await;
    assert_eq!(
        sample(&app.metrics_text().await, &nacked),
        Some(before + 1.0)
    );
    let unsent = scalar(
        &app,
        &format!("SELECT count(*) FROM sync_jobs WHERE id = '{job}' AND status = 'queued' AND enqueued_at IS NULL"),
    )
    .await;
    assert_eq!(
        unsent, 1,
        "a refused message is not recorded as handed over"
    );

    rabbitmqctl(&["clear_policy", &policy]);
    let _worker = Role::start("worker", &app.state.settings, &[]);
    let _beat = Role::start("beat", &app.state.settings, &[]);
    let done = wait_for_job(&app, &owner, &job, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(done["attempts"], 1);
}

#[tokio::test]
async fn a_publish_whose_confirm_is_lost_is_sent_again_and_runs_once() {
    let queues = TestQueues::new();
    let proxy = TcpProxy::start("127.0.0.1:5672".into()).await;
    let port = proxy.port;
    let app = spawn_app_with(|s| {
        queues.apply(s);
        s.broker.url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f").into();
        s.broker.send_timeout_ms = 1000;
    })
    .await;
    let owner = app.register("lost-confirm@example.com").await;
    let connection = demo_connection(&app, &owner).await;
    // Connected first, so only the publish and its confirm cross the proxy then.
    app.state
        .queue
        .send(
            &queues.notifications,
            TaskMessage::new("warm_up", vec![], Map::new()),
        )
        .await
        .unwrap();

    // The message reaches RabbitMQ; its confirm never reaches the API.
    proxy.hold_replies();
    let job = job_of(start_sync(&app, &owner, &connection).await).await;
    let timed_out = format!(
        r#"stock_tracker_broker_publishes_total{{outcome="timed_out",queue="{}"}}"#,
        queues.sync
    );
    assert_eq!(sample(&app.metrics_text().await, &timed_out), Some(1.0));
    proxy.cut();
    proxy.release_replies();
    proxy.restore();

    // Beat, straight to the broker, sends the job again: two messages for
    // one job. The worker runs it once and drops the other.
    let mut settings = (*app.state.settings).clone();
    settings.broker.url = BROKER.to_owned().into();
    let beat = Role::start("beat", &settings, &[]);
    beat.wait_for_log(
        "handed due sync jobs to the broker",
        Duration::from_secs(30),
    )
    .await;
    let worker = Role::start("worker", &settings, &[]);
    let done = wait_for_job(&app, &owner, &job, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(done["attempts"], 1);
    worker
        .wait_for_log(
            "a duplicate or early delivery, dropped",
            Duration::from_secs(30),
        )
        .await;
    let events = count(
        &app,
        "SELECT count(*) FROM outbox_events WHERE tenant_id = $1 AND event_type = 'sync.completed'",
        owner.tenant_id,
    )
    .await;
    assert_eq!(events, 1);
}

#[tokio::test]
async fn the_same_message_delivered_twice_runs_once() {
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| queues.apply(s)).await;
    let owner = app.register("twice@example.com").await;
    let connection = demo_connection(&app, &owner).await;
    let worker = Role::start(
        "worker",
        &app.state.settings,
        &[
            ("STOCK_TRACKER__WORKER__DEMO_PRODUCTS", "20000".to_owned()),
            ("STOCK_TRACKER__WORKER__PAGE_SIZE", "250".to_owned()),
        ],
    );
    let job = job_of(start_sync(&app, &owner, &connection).await).await;
    wait_for_job(&app, &owner, &job, "running", Duration::from_secs(30)).await;
    // The job's message again, while it runs, then after it finished.
    let again = TaskMessage {
        id: Uuid::new_v4().to_string(),
        task: "sync_tenant_products".into(),
        args: vec![json!(owner.tenant_id), json!(connection), json!(job)],
        kwargs: Map::new(),
    };
    app.state
        .queue
        .send(&queues.sync, again.clone())
        .await
        .unwrap();
    let done = wait_for_job(&app, &owner, &job, "succeeded", Duration::from_secs(60)).await;
    app.state.queue.send(&queues.sync, again).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "both copies were dropped",
        || async {
            let text = worker.metrics_text().await;
            sample(
                &text,
                r#"stock_tracker_worker_tasks_total{status="skipped",task="sync_tenant_products"}"#,
            ) == Some(2.0)
        },
    )
    .await;
    assert_eq!(done["attempts"], 1);
    let output = worker.output();
    assert!(output.contains(r#""state":"running""#), "{output}");
    assert!(output.contains(r#""state":"finished""#), "{output}");
    let history = count(
        &app,
        "SELECT count(*) FROM product_stock_history WHERE tenant_id = $1",
        owner.tenant_id,
    )
    .await;
    assert_eq!(history, 20_000);
}

#[tokio::test]
async fn a_worker_frozen_mid_sync_loses_its_job_and_writes_nothing_after() {
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| queues.apply(s)).await;
    let owner = app.register("frozen@example.com").await;
    let connection = demo_connection(&app, &owner).await;
    let big = [
        ("STOCK_TRACKER__WORKER__DEMO_PRODUCTS", "30000".to_owned()),
        ("STOCK_TRACKER__WORKER__PAGE_SIZE", "250".to_owned()),
    ];
    let frozen = Role::start("worker", &app.state.settings, &big);
    let _beat = Role::start("beat", &app.state.settings, &[]);
    let job = job_of(start_sync(&app, &owner, &connection).await).await;
    let products = "SELECT count(*) FROM products WHERE tenant_id = $1";
    eventually(
        Duration::from_secs(30),
        "the sync never started",
        || async { count(&app, products, owner.tenant_id).await > 0 },
    )
    .await;
    frozen.freeze();
    let frozen_at = Instant::now();
    let partial = count(&app, products, owner.tenant_id).await;
    assert!(partial < 30_000, "frozen too late: {partial}");

    // Its lease (3 s) runs out; beat's reaper queues the job again and a
    // second worker completes it.
    let _second = Role::start("worker", &app.state.settings, &big);
    let done = wait_for_job(&app, &owner, &job, "succeeded", Duration::from_secs(120)).await;
    assert_eq!(done["attempts"], 2);
    eprintln!(
        "taken over and finished {:?} after the freeze",
        frozen_at.elapsed()
    );

    // Thawed, the first worker finds its lease gone and stops without a write.
    let history_before = count(
        &app,
        "SELECT count(*) FROM product_stock_history WHERE tenant_id = $1",
        owner.tenant_id,
    )
    .await;
    frozen.thaw();
    frozen
        .wait_for_log("stopped without writing more", Duration::from_secs(30))
        .await;
    let tenant = owner.tenant_id;
    assert_eq!(count(&app, products, tenant).await, 30_000);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM product_stock_history WHERE tenant_id = $1",
            tenant
        )
        .await,
        history_before
    );
    assert_eq!(history_before, 30_000, "every committed page counted once");
    let after: Value = app
        .get_as(&format!("/api/v1/sync/jobs/{job}"), &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["status"], "succeeded");
    assert_eq!(after["attempts"], 2);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM outbox_events WHERE tenant_id = $1 AND event_type LIKE 'sync.%'",
            tenant
        )
        .await,
        1
    );
}

/// The log line of a beat taking the lead.
const LEADS: &str = r#""message":"beat holds the schedule""#;

/// The fencing token a beat announced when it took the lead.
fn token_of(beat: &Role) -> i64 {
    let output = beat.output();
    output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .rfind(|line| line["message"] == "beat holds the schedule")
        .and_then(|line| line["fencing_token"].as_i64())
        .unwrap_or_else(|| panic!("no lead in:\n{output}"))
}

#[tokio::test]
async fn a_frozen_beat_is_replaced_within_its_lease_and_stands_down_without_writing() {
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| queues.apply(s)).await;
    let first = Role::start("beat", &app.state.settings, &[]);
    first.wait_for_log(LEADS, Duration::from_secs(20)).await;
    let second = Role::start("beat", &app.state.settings, &[]);
    second
        .wait_for_log(
            "another beat holds the schedule; standing by",
            Duration::from_secs(20),
        )
        .await;
    let old = token_of(&first);
    // The first leader ran the hourly sync_all_tenants at once.
    let schedule = "SELECT fencing_token FROM beat_schedule WHERE task = 'sync_all_tenants'";
    assert_eq!(scalar(&app, schedule).await, old);

    first.freeze();
    let frozen_at = Instant::now();
    let frozen_at_db: String = sqlx::query_scalar("SELECT now()::text")
        .fetch_one(&mut app.database.owner_connection().await)
        .await
        .unwrap();
    second.wait_for_log(LEADS, Duration::from_secs(20)).await;
    let took_over = frozen_at.elapsed();
    // Lease 3 s, standby retry 1 s (the test settings), plus scheduling slack.
    assert!(
        took_over < Duration::from_secs(6),
        "took over after {took_over:?}"
    );
    let new = token_of(&second);
    assert!(new > old);
    // The new leader continues the schedule: sync_all_tenants ran under the
    // old token and is not due for an hour.
    eventually(Duration::from_secs(10), "the new leader sweeps", || async {
        scalar(
            &app,
            "SELECT fencing_token FROM beat_schedule WHERE task = 'sync_jobs'",
        )
        .await
            == new
    })
    .await;
    assert_eq!(scalar(&app, schedule).await, old);

    // Thawed, the old leader finds it lost the lead and writes nothing.
    first.thaw();
    eventually(
        Duration::from_secs(20),
        "the old leader never stood down",
        || async {
            let output = first.output();
            output.contains("lost the lead; standing by")
                || output.contains("another beat leads now; standing down without writing")
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let written_by_old = scalar(
        &app,
        &format!(
            "SELECT count(*) FROM beat_schedule
             WHERE fencing_token = {old} AND last_run_at > '{frozen_at_db}'::timestamptz"
        ),
    )
    .await;
    assert_eq!(
        written_by_old, 0,
        "the old leader wrote after it was replaced"
    );
    assert_eq!(
        scalar(&app, "SELECT fencing_token FROM beat_leadership").await,
        new
    );
    let live: Value = reqwest::get(format!("http://127.0.0.1:{}/health/live", first.port))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(live["role"], "standby");
}

#[tokio::test]
async fn a_job_past_its_lease_is_queued_again_or_failed_with_the_reason_once_retries_are_used_up() {
    let app = spawn_app_with(|_| {}).await;
    let owner = app.register("reaper@example.com").await;
    let fresh = demo_connection(&app, &owner).await;
    let exhausted = demo_connection(&app, &owner).await;
    let max_retries = app.state.settings.worker.max_retries as i32;
    // Two jobs left running by workers that stopped renewing their leases:
    // one on its first attempt, one on its last.
    let mut db = app.database.owner_connection().await;
    for (connection, attempts) in [(&fresh, 1), (&exhausted, max_retries + 1)] {
        sqlx::query(
            "INSERT INTO sync_jobs (id, tenant_id, connection_id, status, attempts, started_at,
                                    lease_token, lease_expires_at)
             VALUES ($1, $2, $3::uuid, 'running', $4, now() - interval '1 minute',
                     $5, now() - interval '1 second')",
        )
        .bind(Uuid::now_v7())
        .bind(owner.tenant_id)
        .bind(connection)
        .bind(attempts)
        .bind(Uuid::new_v4())
        .execute(&mut db)
        .await
        .unwrap();
    }
    let reaped = stock_tracker::sync::service::reap_expired_leases(&app.state)
        .await
        .unwrap();
    assert_eq!(reaped.requeued, 1);
    assert_eq!(reaped.failed, 1);

    let state = |connection: &str| {
        format!(
            "SELECT status || ' | ' || coalesce(error, '') || ' | ' || (run_after <= now())::text
             FROM sync_jobs WHERE connection_id = '{connection}'"
        )
    };
    let requeued: String = sqlx::query_scalar(sqlx::AssertSqlSafe(state(&fresh)))
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert!(
        requeued.starts_with("queued | the worker running it stopped renewing its lease"),
        "{requeued}"
    );
    assert!(requeued.ends_with("| true"), "due at once: {requeued}");
    let failed: String = sqlx::query_scalar(sqlx::AssertSqlSafe(state(&exhausted)))
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert!(
        failed.starts_with("failed | the worker running it stopped renewing its lease"),
        "{failed}"
    );
    assert!(failed.contains("retries are used up"), "{failed}");
    let events = count(
        &app,
        "SELECT count(*) FROM outbox_events WHERE tenant_id = $1 AND event_type = 'sync.failed'",
        owner.tenant_id,
    )
    .await;
    assert_eq!(events, 1, "the failed job tells its subscribers");
    // Reaping again finds nothing: the requeued job is queued, the failed one finished.
    let again = stock_tracker::sync::service::reap_expired_leases(&app.state)
        .await
        .unwrap();
    assert_eq!(again, stock_tracker::sync::service::Reaped::default());
}

#[tokio::test]
async fn a_queue_deleted_under_the_worker_is_declared_again_and_consumed() {
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| queues.apply(s)).await;
    let owner = app.register("redeclared@example.com").await;
    let connection = demo_connection(&app, &owner).await;
    let worker = Role::start("worker", &app.state.settings, &[]);
    worker
        .wait_for_log("worker consuming", Duration::from_secs(30))
        .await;
    // The broker cancels the worker's consumer of the deleted queue.
    rabbitmqctl(&["delete_queue", &queues.sync]);
    worker
        .wait_for_log("worker consuming again", Duration::from_secs(30))
        .await;
    let listed = rabbitmqctl(&["list_queues", "name", "type"]);
    assert!(
        listed
            .lines()
            .any(|line| line.split_whitespace().eq([queues.sync.as_str(), "quorum"])),
        "{listed}"
    );
    let job = job_of(start_sync(&app, &owner, &connection).await).await;
    wait_for_job(&app, &owner, &job, "succeeded", Duration::from_secs(30)).await;
}
