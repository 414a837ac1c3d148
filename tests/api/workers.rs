//! The worker and beat as an operator runs them: real `stock-tracker worker`
//! and `stock-tracker beat` processes, real RabbitMQ (queues of the test's
//! own, deleted afterwards), real PostgreSQL and Redis.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use stock_tracker::config::Settings;
use uuid::Uuid;

use crate::helpers::{Account, TestApp, spawn_app_with};
use crate::processes::TcpProxy;

const BIN: &str = env!("CARGO_BIN_EXE_stock-tracker");
pub const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Queue names of one test; deleted from RabbitMQ when dropped.
pub struct TestQueues {
    pub sync: String,
    pub notifications: String,
}

impl TestQueues {
    pub fn new() -> Self {
        let id = Uuid::new_v4().simple().to_string();
        Self {
            sync: format!("test-{id}-sync"),
            notifications: format!("test-{id}-notifications"),
        }
    }

    /// Points `settings` at the real broker and these queues.
    pub fn apply(&self, settings: &mut Settings) {
        settings.broker.url = BROKER.to_owned().into();
        settings.broker.sync_queue = self.sync.clone();
        settings.broker.notifications_queue = self.notifications.clone();
    }
}

impl Drop for TestQueues {
    fn drop(&mut self) {
        let queues = [self.sync.clone(), self.notifications.clone()];
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let Ok(connection) =
                    lapin::Connection::connect(BROKER, lapin::ConnectionProperties::default())
                        .await
                else {
                    return;
                };
                if let Ok(channel) = connection.create_channel().await {
                    for queue in queues {
                        let _ = channel
                            .queue_delete(
                                queue.as_str(),
                                lapin::options::QueueDeleteOptions::default(),
                            )
                            .await;
                    }
                }
                let _ = connection.close(0, "test done").await;
            });
        })
        .join();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `stock-tracker worker` or `beat` process with the app's settings;
/// killed when dropped. Its output goes to a file, for assertions.
pub struct Role {
    child: Child,
    pub log: PathBuf,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Role {
    pub fn start(role: &str, settings: &Settings, extra: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(format!("{role}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let port = free_port();
        let mut command = Command::new(BIN);
        for (key, _) in std::env::vars() {
            if key.starts_with("STOCK_TRACKER") {
                command.env_remove(key);
            }
        }
        command
            .arg(role)
            .env("DATABASE_URL", settings.database.url.expose_secret())
            .env("REDIS_URL", settings.redis.url.expose_secret())
            .env(
                "STOCK_TRACKER__REDIS__KEY_PREFIX",
                &settings.redis.key_prefix,
            )
            .env(
                "STOCK_TRACKER__BROKER__URL",
                settings.broker.url.expose_secret(),
            )
            .env(
                "STOCK_TRACKER__BROKER__SYNC_QUEUE",
                &settings.broker.sync_queue,
            )
            .env(
                "STOCK_TRACKER__BROKER__NOTIFICATIONS_QUEUE",
                &settings.broker.notifications_queue,
            )
            // The role's one port: the worker's and beat's own endpoints, or the API.
            .env("STOCK_TRACKER__WORKER__PORT", port.to_string())
            .env("STOCK_TRACKER__SERVER__PORT", port.to_string())
            .env("STOCK_TRACKER__BEAT__PORT", port.to_string())
            .env("STOCK_TRACKER__WORKER__RETRY_BASE_SECS", "1")
            .env("STOCK_TRACKER__WORKER__RETRY_MAX_SECS", "2")
            .env("STOCK_TRACKER__WORKER__SHUTDOWN_TIMEOUT_SECS", "5")
            // Short leases: a frozen or dead worker's job, or a frozen
            // beat's lead, passes on within seconds.
            .env("STOCK_TRACKER__WORKER__JOB_LEASE_SECS", "3")
            .env("STOCK_TRACKER__BEAT__SWEEP_INTERVAL_SECS", "1")
            .env("STOCK_TRACKER__BEAT__LEADER_LEASE_SECS", "3")
            .env("STOCK_TRACKER__BEAT__STANDBY_RETRY_SECS", "1");
        if let Some(direct) = &settings.database.direct_url {
            // Behind the pooler, as the test's application is.
            command
                .env("STOCK_TRACKER__DATABASE__POOLER", "transaction")
                .env(
                    "STOCK_TRACKER__DATABASE__DIRECT_URL",
                    direct.expose_secret(),
                );
        }
        for (key, value) in extra {
            command.env(key, value);
        }
        let child = command
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        Self {
            child,
            log,
            port,
            _dir: dir,
        }
    }

    /// The role's `/metrics` (on its one port).
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `text`.
    pub async fn wait_for_log(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.output().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no `{text}` in:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes the process (SIGSTOP): alive, holding its connections, doing nothing.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen process go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        // A frozen process must run again to die of SIGKILL's cleanup.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        self.kill();
    }
}

pub async fn demo_connection(app: &TestApp, owner: &Account) -> String {
    let response = app
        .post_json(
            "/api/v1/marketplaces",
            Some(&owner.bearer()),
            &json!({"kind": "demo", "name": "Demo shop"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

pub async fn start_sync(app: &TestApp, owner: &Account, connection: &str) -> reqwest::Response {
    app.send(
        Method::POST,
        "/api/v1/sync",
        Some(&owner.bearer()),
        Some(&json!({"connection_id": connection})),
    )
    .await
}

/// Polls a job until it reaches `status`.
pub async fn wait_for_job(
    app: &TestApp,
    owner: &Account,
    job: &str,
    status: &str,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let body: Value = app
            .get_as(&format!("/api/v1/sync/jobs/{job}"), &owner.bearer())
            .await
            .json()
            .await
            .unwrap();
        if body["status"] == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "job never reached {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn count(app: &TestApp, sql: &str, tenant: Uuid) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(tenant)
        .fetch_one(&mut app.database.owner_connection().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_demo_sync_runs_end_to_end_and_a_second_one_records_only_changes() {
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| {
        queues.apply(s);
        s.worker.demo_products = 120;
        s.worker.page_size = 50;
    })
    .await;
    let owner = app.register("sync-e2e@example.com").await;
    let connection = demo_connection(&app, &owner).await;
    // Cached before the sync: the sync must invalidate it.
    let before = app.get_as("/api/v1/products", &owner.bearer()).await;
    assert_eq!(before.headers()["x-cache"], "MISS");
    let worker = Role::start(
        "worker",
        &app.state.settings,
        &[
            ("STOCK_TRACKER__WORKER__DEMO_PRODUCTS", "120".into()),
            ("STOCK_TRACKER__WORKER__PAGE_SIZE", "50".into()),
        ],
    );

    let response = start_sync(&app, &owner, &connection).await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["status"], "queued");
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/sync/jobs/{job_id}"));

    let done = wait_for_job(&app, &owner, &job_id, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(done["products_seen"], 120);
    assert_eq!(done["products_created"], 120);
    assert_eq!(done["stock_changes"], 120);
    assert!(done["duration_ms"].as_i64().is_some());

    let listed: Value = app
        .get_as("/api/v1/products?limit=200", &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 120);
    let tenant = owner.tenant_id;
    let completed = count(
        &app,
        "SELECT count(*) FROM outbox_events WHERE tenant_id = $1 AND event_type = 'sync.completed'",
        tenant,
    )
    .await;
    assert_eq!(completed, 1);
    let low = count(
        &app,
        "SELECT count(*) FROM outbox_events WHERE tenant_id = $1 AND event_type = 'stock.low'",
        tenant,
    )
    .await;
    assert_eq!(low, done["low_stock_products"].as_i64().unwrap());

    // The second sync: the demo marketplace changed about a third of the stock.
    let second = start_sync(&app, &owner, &connection).await;
    assert_eq!(second.status(), 202);
    let second: Value = second.json().await.unwrap();
    let second_id = second["job_id"].as_str().unwrap().to_owned();
    let done = wait_for_job(
        &app,
        &owner,
        &second_id,
        "succeeded",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(done["products_created"], 0);
    let changed = done["stock_changes"].as_i64().unwrap();
    assert!((10..=80).contains(&changed), "{done}");
    let history = count(
        &app,
        "SELECT count(*) FROM product_stock_history WHERE tenant_id = $1",
        tenant,
    )
    .await;
    assert_eq!(history, 120 + changed);

    // The worker's own endpoints.
    let metrics = worker.metrics_text().await;
    assert!(
        metrics.contains(
            r#"stock_tracker_worker_tasks_total{status="succeeded",task="sync_tenant_products"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"stock_tracker_sync_jobs_total{marketplace="demo",outcome="succeeded"} 2"#)
    );
    // 240 listings read over the two syncs: 120 created, the changed ones updated.
    let updated = done["products_updated"].as_i64().unwrap();
    for (outcome, expected) in [
        ("created", 120),
        ("updated", updated),
        ("unchanged", 240 - 120 - updated),
    ] {
        let line = format!(
            "stock_tracker_sync_products_total{{marketplace=\"demo\",outcome=\"{outcome}\"}} {expected}\n"
        );
        assert!(metrics.contains(&line), "no `{line}` in {metrics}");
    }
    // Its catalogue lists every family it exports (a labelled family whose
    // first event has not happened yet, such as a failed statement, is not
    // exported until then).
    let exported: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let catalog: Vec<Value> =
        reqwest::get(format!("http://127.0.0.1:{}/metrics/catalog", worker.port))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let catalogued: std::collections::BTreeSet<&str> =
        catalog.iter().filter_map(|m| m["name"].as_str()).collect();
    let uncatalogued: Vec<_> = exported.difference(&catalogued).collect();
    assert!(
        uncatalogued.is_empty(),
        "not in the catalogue: {uncatalogued:?}"
    );
    // The queues as the broker sees them: this worker consumes both.
    for queue in [&queues.sync, &queues.notifications] {
        let consumers = format!("stock_tracker_queue_consumers{{queue=\"{queue}\"}} 1\n");
        assert!(
            metrics.contains(&consumers),
            "no `{consumers}` in {metrics}"
        );
        assert!(metrics.contains(&format!("stock_tracker_queue_depth{{queue=\"{queue}\"}} ")));
    }
    let live = reqwest::get(format!("http://127.0.0.1:{}/health/live", worker.port))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let ready = reqwest::get(format!("http://127.0.0.1:{}/health/ready", worker.port))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    // Logs carry the task, tenant and job.
    assert!(worker.output().contains(&job_id));
}

#[tokio::test]
async fn a_second_request_returns_the_active_job_and_a_down_broker_still_answers_202() {
    // The default test broker URL refuses connections.
    let app = spawn_app_with(|_| {}).await;
    let owner = app.register("dup@example.com").await;
    let connection = demo_connection(&app, &owner).await;
    let first = start_sync(&app, &owner, &connection).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let second = start_sync(&app, &owner, &connection).await;
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["job_id"], second["job_id"]);
    assert_eq!(second["status"], "queued");
    let jobs: Value = app
        .get_as("/api/v1/sync/jobs?status=queued", &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(jobs["items"].as_array().unwrap().len(), 1);
    // Validation and isolation.
    let bad = app
        .send(
            Method::POST,
            "/api/v1/sync",
            Some(&owner.bearer()),
            Some(&json!({})),
        )
        .await;
    assert_eq!(bad.status(), 422);
    let other = app.register("dup-other@example.com").await;
    assert_eq!(start_sync(&app, &other, &connection).await.status(), 404);
    let path = format!("/api/v1/sync/jobs/{}", first["job_id"].as_str().unwrap());
    assert_eq!(app.get_as(&path, &other.bearer()).await.status(), 404);
    let viewer = app
        .add_user(&owner, "dup-viewer@example.com", "viewer")
        .await;
    assert_eq!(start_sync(&app, &viewer, &connection).await.status(), 403);
    // Readiness tells the broker is down, and stays 200 (degraded).
    let ready = app.get("/api/v1/health/ready").await;
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["components"]["broker"]["status"], "down");
}

#[tokio::test]
async fn jobs_created_while_the_broker_is_down_are_swept_to_it_later() {
    let queues = TestQueues::new();
    let proxy = TcpProxy::start("127.0.0.1:5672".into()).await;
    let port = proxy.port;
    let app = spawn_app_with(|s| {
        queues.apply(s);
        s.broker.url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f").into();
    })
    .await;
    let owner = app.register("sweep@example.com").await;
    let connection = demo_connection(&app, &owner).await;
    proxy.cut();
    let response = start_sync(&app, &owner, &connection).await;
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    proxy.restore();

    // Worker and beat use the broker directly; beat's sweeper finds the job.
    let mut settings = (*app.state.settings).clone();
    settings.broker.url = BROKER.to_owned().into();
    let _worker = Role::start("worker", &settings, &[]);
    let beat = Role::start("beat", &settings, &[]);
    wait_for_job(&app, &owner, &job_id, "succeeded", Duration::from_secs(30)).await;
    assert!(
        beat.output().contains("handed due sync jobs to the broker"),
        "{}",
        beat.output()
    );
}

/// Starts a sync of `connection` and waits until its job reaches `status`.
pub async fn start_and_wait(
    app: &TestApp,
    owner: &Account,
    connection: &str,
    status: &str,
) -> Value {
    let response = start_sync(app, owner, connection).await;
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    wait_for_job(
        app,
        owner,
        job["job_id"].as_str().unwrap(),
        status,
        Duration::from_secs(30),
    )
    .await
}

#[tokio::test]
async fn a_worker_killed_mid_sync_is_replaced_and_the_sync_completes_once_in_effect() {
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| queues.apply(s)).await;
    let owner = app.register("killed@example.com").await;
    let connection = demo_connection(&app, &owner).await;
    let big = [
        ("STOCK_TRACKER__WORKER__DEMO_PRODUCTS", "30000".to_owned()),
        ("STOCK_TRACKER__WORKER__PAGE_SIZE", "250".to_owned()),
    ];
    let mut first = Role::start("worker", &app.state.settings, &big);
    let job: Value = start_sync(&app, &owner, &connection)
        .await
        .json()
        .await
        .unwrap();
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    // Kill it once some pages are committed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let products = count(
            &app,
            "SELECT count(*) FROM products WHERE tenant_id = $1",
            owner.tenant_id,
        )
        .await;
        if products > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sync never started:\n{}",
            first.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    let partial = count(
        &app,
        "SELECT count(*) FROM products WHERE tenant_id = $1",
        owner.tenant_id,
    )
    .await;
    assert!(partial < 30_000, "killed too late: {partial}");

    // The redelivered message finds the job under the dead worker's lease
    // and is dropped; once the lease runs out, beat's reaper queues the job
    // again and its sweeper hands it over.
    let _second = Role::start("worker", &app.state.settings, &big);
    let _beat = Role::start("beat", &app.state.settings, &[]);
    let done = wait_for_job(&app, &owner, &job_id, "succeeded", Duration::from_secs(120)).await;
    assert_eq!(done["attempts"], 2);
    let tenant = owner.tenant_id;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM products WHERE tenant_id = $1",
            tenant
        )
        .await,
        30_000
    );
    // Re-running committed pages changed nothing: one history entry per product.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM product_stock_history WHERE tenant_id = $1",
            tenant
        )
        .await,
        30_000
    );
    assert_eq!(count(&app, "SELECT count(*) FROM outbox_events WHERE tenant_id = $1 AND event_type = 'sync.completed'", tenant).await, 1);
}

#[tokio::test]
async fn only_one_beat_schedules_and_a_standby_takes_over() {
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| queues.apply(s)).await;
    let mut first = Role::start("beat", &app.state.settings, &[]);
    first
        .wait_for_log("beat holds the schedule", Duration::from_secs(20))
        .await;
    let second = Role::start("beat", &app.state.settings, &[]);
    second
        .wait_for_log(
            "another beat holds the schedule; standing by",
            Duration::from_secs(20),
        )
        .await;
    assert!(!second.output().contains("beat holds the schedule\""));
    // Both are alive, one leading; `healthcheck --role beat` is the probe.
    assert_eq!(beat_role(&first).await, "leader");
    assert_eq!(beat_role(&second).await, "standby");
    let port = second.port.to_string();
    let probe = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(["healthcheck", "--role", "beat"])
            .env("STOCK_TRACKER__BEAT__PORT", port)
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(probe.success());
    assert!(first.terminate().success());
    second
        .wait_for_log("beat holds the schedule\"", Duration::from_secs(20))
        .await;
    assert_eq!(beat_role(&second).await, "leader");
}

/// The role a running beat reports on its liveness endpoint (which must answer 200).
async fn beat_role(beat: &Role) -> String {
    let response = reqwest::get(format!("http://127.0.0.1:{}/health/live", beat.port))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    body["role"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_python_celery_client_can_enqueue_a_sync_with_or_without_naming_the_queue() {
    let queues = TestQueues::new();
    // The API cannot reach the broker: the jobs are recorded, queued, not sent.
    let app = spawn_app_with(|_| {}).await;
    let owner = app.register("python@example.com").await;
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let connection = demo_connection(&app, &owner).await;
        let job: Value = start_sync(&app, &owner, &connection)
            .await
            .json()
            .await
            .unwrap();
        jobs.push((connection, job["job_id"].as_str().unwrap().to_owned()));
    }

    let mut settings = (*app.state.settings).clone();
    queues.apply(&mut settings);
    let worker = Role::start("worker", &settings, &[]);
    // The worker declares its quorum queues first.
    worker
        .wait_for_log("worker consuming", Duration::from_secs(30))
        .await;
    // Exactly what docs/api.md shows a Python client doing: the queue type
    // and the routing of the service's task names, then `send_task` with an
    // explicit queue, and without one (routed by name).
    let venv = std::env::var("STOCK_TRACKER_VENV").unwrap_or_else(|_| {
        format!(
            "{}/.cache/stock-tracker/venv",
            std::env::var("HOME").unwrap()
        )
    });
    let script = format!(
        r#"
from celery import Celery
app = Celery(broker="{BROKER}")
app.conf.task_create_missing_queue_type = "quorum"
app.conf.task_routes = {{"sync_*": {{"queue": "{sync}"}}, "deliver_*": {{"queue": "{notifications}"}}}}
app.send_task("sync_tenant_products", args=["{tenant}", "{c1}", "{j1}"], queue="{sync}")
app.send_task("sync_tenant_products", args=["{tenant}", "{c2}", "{j2}"])
"#,
        tenant = owner.tenant_id,
        sync = queues.sync,
        notifications = queues.notifications,
        c1 = jobs[0].0,
        j1 = jobs[0].1,
        c2 = jobs[1].0,
        j2 = jobs[1].1,
    );
    let status = Command::new(format!("{venv}/bin/python"))
        .args(["-c", &script])
        .status()
        .expect("the Python venv exists (make python-tools)");
    assert!(status.success());
    for (_, job_id) in &jobs {
        let done = wait_for_job(&app, &owner, job_id, "succeeded", Duration::from_secs(30)).await;
        assert_eq!(done["attempts"], 1);
    }
}

#[tokio::test]
async fn sigterm_lets_the_running_sync_finish_before_the_worker_exits() {
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| queues.apply(s)).await;
    let owner = app.register("sigterm@example.com").await;
    let connection = demo_connection(&app, &owner).await;
    let mut worker = Role::start(
        "worker",
        &app.state.settings,
        &[
            ("STOCK_TRACKER__WORKER__DEMO_PRODUCTS", "10000".to_owned()),
            ("STOCK_TRACKER__WORKER__PAGE_SIZE", "500".to_owned()),
            (
                "STOCK_TRACKER__WORKER__SHUTDOWN_TIMEOUT_SECS",
                "60".to_owned(),
            ),
        ],
    );
    let job: Value = start_sync(&app, &owner, &connection)
        .await
        .json()
        .await
        .unwrap();
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    wait_for_job(&app, &owner, &job_id, "running", Duration::from_secs(30)).await;
    assert!(worker.terminate().success(), "{}", worker.output());
    // The worker finished the task it was running before it exited.
    let done = wait_for_job(&app, &owner, &job_id, "succeeded", Duration::from_secs(1)).await;
    assert_eq!(done["products_created"], 10_000);
    assert_eq!(done["attempts"], 1);
    assert!(worker.output().contains("worker stopped"));
    eprintln!(
        "a 10,000-product demo sync took {} ms",
        done["duration_ms"].as_i64().unwrap()
    );
}

#[tokio::test]
async fn beat_schedules_a_sync_of_every_idle_connection() {
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| queues.apply(s)).await;
    let first = app.register("beat-a@example.com").await;
    let second = app.register("beat-b@example.com").await;
    demo_connection(&app, &first).await;
    demo_connection(&app, &second).await;
    let _worker = Role::start("worker", &app.state.settings, &[]);
    let _beat = Role::start(
        "beat",
        &app.state.settings,
        &[("STOCK_TRACKER__BEAT__SYNC_INTERVAL_SECS", "3600".into())],
    );
    // Beat schedules sync_all_tenants at start; each tenant gets its job.
    for owner in [&first, &second] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let jobs: Value = app
                .get_as("/api/v1/sync/jobs?status=succeeded", &owner.bearer())
                .await
                .json()
                .await
                .unwrap();
            if jobs["items"].as_array().unwrap().len() == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no scheduled sync for {}",
                owner.tenant_id
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn idle_connections_are_scheduled_a_page_at_a_time_each_once() {
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| queues.apply(s)).await;
    let first = app.register("pages-a@example.com").await;
    let second = app.register("pages-b@example.com").await;
    for owner in [&first, &first, &first, &second, &second] {
        demo_connection(&app, owner).await;
    }
    // One more, already syncing: it is not idle.
    let busy = demo_connection(&app, &second).await;
    assert_eq!(start_sync(&app, &second, &busy).await.status(), 202);

    // Pages of two: three pages, five new jobs, the busy one untouched.
    let ctx = app.state.clone().into_inner();
    let started = stock_tracker::sync::service::schedule_idle_connections(&ctx, 2)
        .await
        .unwrap();
    assert_eq!(started, 5);
    let mut db = app.database.owner_connection().await;
    let per_connection: Vec<i64> = sqlx::query_scalar(
        "SELECT count(j.id) FROM marketplace_connections c
         LEFT JOIN sync_jobs j ON j.connection_id = c.id GROUP BY c.id",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(per_connection, [1; 6], "one job per connection");
    // Nothing is idle now.
    let again = stock_tracker::sync::service::schedule_idle_connections(&ctx, 2)
        .await
        .unwrap();
    assert_eq!(again, 0);
}

#[tokio::test]
async fn beat_purges_expired_revocations_and_refresh_tokens() {
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| queues.apply(s)).await;
    let owner = app.register("purge@example.com").await;
    let mut db = app.database.owner_connection().await;
    for (session, expires) in [
        (Uuid::now_v7(), "now() - interval '1 hour'"),
        (Uuid::now_v7(), "now() + interval '10 minutes'"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO revoked_sessions (session_id, tenant_id, user_id, expires_at) VALUES ($1, $2, $3, {expires})"
        )))
        .bind(session)
        .bind(owner.tenant_id)
        .bind(owner.user_id)
        .execute(&mut db)
        .await
        .unwrap();
    }
    sqlx::query(
        "UPDATE refresh_tokens SET expires_at = now() - interval '30 days' WHERE user_id = $1",
    )
    .bind(owner.user_id)
    .execute(&mut db)
    .await
    .unwrap();
    let beat = Role::start(
        "beat",
        &app.state.settings,
        &[("STOCK_TRACKER__BEAT__PURGE_INTERVAL_SECS", "1".into())],
    );
    beat.wait_for_log("retention ran", Duration::from_secs(20))
        .await;
    let revocations: i64 = sqlx::query_scalar("SELECT count(*) FROM revoked_sessions")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(revocations, 1, "the unexpired revocation stays");
    let refresh: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(refresh, 0);
}

#[tokio::test]
async fn a_sync_still_running_at_the_shutdown_timeout_is_handed_back_without_waiting_for_its_lease()
{
    let queues = TestQueues::new();
    let app = spawn_app_with(|s| queues.apply(s)).await;
    let owner = app.register("grace@example.com").await;
    let connection = demo_connection(&app, &owner).await;
    // A lease longer than the test: only the hand-back can queue the job
    // again in time, not beat's reaper.
    let env = [
        ("STOCK_TRACKER__WORKER__DEMO_PRODUCTS", "60000".to_owned()),
        ("STOCK_TRACKER__WORKER__PAGE_SIZE", "250".to_owned()),
        ("STOCK_TRACKER__WORKER__JOB_LEASE_SECS", "600".to_owned()),
        (
            "STOCK_TRACKER__WORKER__SHUTDOWN_TIMEOUT_SECS",
            "1".to_owned(),
        ),
    ];
    let mut first = Role::start("worker", &app.state.settings, &env);
    let job: Value = start_sync(&app, &owner, &connection)
        .await
        .json()
        .await
        .unwrap();
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    wait_for_job(&app, &owner, &job_id, "running", Duration::from_secs(30)).await;
    let stopping = Instant::now();
    assert!(first.terminate().success(), "{}", first.output());
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "the grace period and the hand-back bound the shutdown"
    );
    assert!(
        first
            .output()
            .contains("the job was handed back to the queue"),
        "{}",
        first.output()
    );
    // As the worker exits, the job is queued again, its attempt not counted.
    let back: Value = app
        .get_as(&format!("/api/v1/sync/jobs/{job_id}"), &owner.bearer())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(back["status"], "queued", "{back}");
    assert_eq!(back["attempts"], 0, "{back}");
    assert_eq!(
        back["error"], "the worker running it shut down; queued again",
        "{back}"
    );
    let products = "SELECT count(*) FROM products WHERE tenant_id = $1";
    let partial = count(&app, products, owner.tenant_id).await;
    assert!(partial < 60_000, "terminated too late: {partial}");

    // Beat's sweeper sends it again; another worker finishes it, once.
    let _second = Role::start("worker", &app.state.settings, &env);
    let _beat = Role::start("beat", &app.state.settings, &env);
    let done = wait_for_job(&app, &owner, &job_id, "succeeded", Duration::from_secs(120)).await;
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(done["products_seen"], 60_000);
    assert_eq!(count(&app, products, owner.tenant_id).await, 60_000);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM outbox_events WHERE tenant_id = $1 AND event_type LIKE 'sync.%'",
            owner.tenant_id
        )
        .await,
        1
    );
}
