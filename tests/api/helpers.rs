//! Test harness: `spawn_app()` and friends.
//!
//! Databases: a template database named after the migrations' checksums is
//! created and migrated once (guarded by an advisory lock, since test
//! processes may run in parallel); each test clones it (`CREATE DATABASE …
//! TEMPLATE`, milliseconds) and drops its clone when the `TestApp` drops.
//! Set `TEST_LOG=1` to see the application's logs.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::str::FromStr;
use std::sync::{LazyLock, Once};

use actix_web::{HttpResponse, web};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use stock_tracker::app::Application;
use stock_tracker::config::{Pooler, Settings};
use stock_tracker::db::{MIGRATOR, observed};
use stock_tracker::http::extractors::ValidatedJson;
use stock_tracker::infra::Infra;
use uuid::Uuid;

use crate::processes::through_pgbouncer;

static TRACING: Once = Once::new();

fn init_tracing(settings: &Settings) {
    TRACING.call_once(|| {
        // Always installed (Sentry breadcrumbs come from it); printed with TEST_LOG=1.
        let quiet = std::env::var_os("TEST_LOG").is_none();
        // The writer runs for the whole test process: its guard is kept.
        if let Ok(guard) = stock_tracker::telemetry::logging::init(&settings.logging, quiet) {
            std::mem::forget(guard);
        }
    });
}

/// The settings every test starts from: the real defaults and environment
/// (so `DATABASE_URL` and `REDIS_URL` apply), on a free port.
pub fn base_settings() -> Settings {
    let mut settings = Settings::load(None).expect("test configuration is valid");
    settings.server.port = 0;
    settings.server.host = "127.0.0.1".parse().unwrap();
    settings.server.workers = 1;
    settings.server.shutdown_timeout_secs = 1;
    settings.redis.key_prefix = format!("stock_tracker_test:{}:", Uuid::new_v4().simple());
    limits_out_of_reach(&mut settings);
    // Nothing listens there: tests that run no worker never touch RabbitMQ
    // (their sync jobs stay queued). Worker tests point at the real broker
    // with queues of their own (see `workers.rs`).
    settings.broker.url = "amqp://guest:guest@127.0.0.1:1/%2f".to_owned().into();
    settings.broker.send_timeout_ms = 500;
    settings
}

/// The value of one series (name and labels exactly as exported) in a
/// Prometheus text exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Every rate limit raised beyond what a test sends, the limiter still
/// running on every request; the rate-limit tests lower the ones they test.
pub fn limits_out_of_reach(settings: &mut Settings) {
    const HIGH: u64 = 1_000_000;
    let limits = &mut settings.rate_limit;
    for table in [
        &mut limits.tiers.free,
        &mut limits.tiers.premium,
        &mut limits.tiers.enterprise,
        &mut limits.tiers.internal,
        &mut limits.anonymous,
    ] {
        table.second = HIGH;
        table.minute = HIGH;
        table.hour = HIGH;
    }
    limits.global.limit = HIGH;
    limits.anonymous_global.limit = HIGH;
    limits.api_key_lookups.limit = HIGH;
    for rule in limits.rules.values_mut() {
        rule.limit = HIGH;
    }
}

fn server_options(settings: &Settings) -> PgConnectOptions {
    PgConnectOptions::from_str(settings.database.url.expose_secret()).expect("valid DATABASE_URL")
}

/// `base` pointed at another database, as a URL (the app takes URLs).
fn url_for_database(settings: &Settings, database: &str) -> String {
    let mut url = url::Url::parse(settings.database.url.expose_secret()).unwrap();
    url.set_path(&format!("/{database}"));
    url.to_string()
}

static TEMPLATE_NAME: LazyLock<String> = LazyLock::new(|| {
    let mut hasher = DefaultHasher::new();
    for migration in MIGRATOR.iter() {
        migration.version.hash(&mut hasher);
        migration.checksum.hash(&mut hasher);
    }
    format!("stock_tracker_template_{:016x}", hasher.finish())
});

async fn admin_connection(settings: &Settings) -> PgConnection {
    PgConnection::connect_with(&server_options(settings).database("postgres"))
        .await
        .expect("PostgreSQL is reachable (start it with `make services`)")
}

/// Creates and migrates the template database once per migration set.
async fn ensure_template(settings: &Settings) -> String {
    let name = TEMPLATE_NAME.clone();
    let mut admin = admin_connection(settings).await;
    sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
        .bind(&name)
        .execute(&mut admin)
        .await
        .unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    if !exists {
        let mut template_settings = settings.database.clone();
        template_settings.url = SecretString::from(url_for_database(settings, &name));
        stock_tracker::db::migrate(&template_settings)
            .await
            .expect("migrating the template database");
    }
    sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(&name)
        .execute(&mut admin)
        .await
        .unwrap();
    name
}

/// A database of the test's own, dropped (with its connections) on drop.
pub struct TestDatabase {
    pub name: String,
    admin_options: PgConnectOptions,
}

impl TestDatabase {
    /// A migrated database cloned from the template.
    pub async fn migrated(settings: &Settings) -> Self {
        let template = ensure_template(settings).await;
        let database = Self::create(settings, Some(&template)).await;
        // As deployed: `migrate` also sets what the clone did not copy from
        // the template (the database's own grants).
        let mut clone_settings = settings.database.clone();
        clone_settings.url = SecretString::from(url_for_database(settings, &database.name));
        stock_tracker::db::migrate(&clone_settings)
            .await
            .expect("migrating the test database");
        database
    }

    /// An empty database, as before `stock-tracker migrate`.
    pub async fn empty(settings: &Settings) -> Self {
        Self::create(settings, None).await
    }

    async fn create(settings: &Settings, template: Option<&str>) -> Self {
        let name = format!("stock_tracker_test_{}", Uuid::new_v4().simple());
        let mut admin = admin_connection(settings).await;
        let statement = match template {
            Some(template) => format!(r#"CREATE DATABASE "{name}" TEMPLATE "{template}""#),
            None => format!(r#"CREATE DATABASE "{name}""#),
        };
        admin
            .execute(AssertSqlSafe(statement))
            .await
            .expect("creating the test database");
        Self {
            name,
            admin_options: server_options(settings).database("postgres"),
        }
    }

    /// A connection as the URL's own role (the tables' owner), like `migrate` uses.
    pub async fn owner_connection(&self) -> PgConnection {
        PgConnection::connect_with(&self.admin_options.clone().database(&self.name))
            .await
            .unwrap()
    }

    /// Terminates every connection to this database and refuses new ones:
    /// PostgreSQL is unreachable as far as the application can tell.
    pub async fn make_unreachable(&self) {
        let mut admin = PgConnection::connect_with(&self.admin_options)
            .await
            .unwrap();
        admin
            .execute(AssertSqlSafe(format!(
                r#"ALTER DATABASE "{}" ALLOW_CONNECTIONS false"#,
                self.name
            )))
            .await
            .unwrap();
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(&self.name)
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let options = self.admin_options.clone();
        // Drop runs outside async context; use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    if let Ok(mut admin) = PgConnection::connect_with(&options).await {
                        let _ = admin
                            .execute(AssertSqlSafe(format!(
                                r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                            )))
                            .await;
                    }
                });
        })
        .join();
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: web::Data<Infra>,
    pub database: TestDatabase,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn metrics_text(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns the application after `customize` adjusts its settings.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let settings = base_settings();
    let database = TestDatabase::migrated(&settings).await;
    spawn_on(settings, database, customize).await
}

/// Spawns the application on a database the test migrated itself.
pub async fn spawn_app_on(database: TestDatabase) -> TestApp {
    spawn_on(base_settings(), database, |_| {}).await
}

async fn spawn_on(
    mut settings: Settings,
    database: TestDatabase,
    customize: impl FnOnce(&mut Settings),
) -> TestApp {
    init_tracing(&settings);
    settings.database.url = SecretString::from(url_for_database(&settings, &database.name));
    through_pooler(&mut settings);
    customize(&mut settings);
    let app = Application::build_with(settings, probe_routes)
        .await
        .expect("the application builds");
    let port = app.port();
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),

        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        state,
        database,
    }
}

/// The settings of a test database, for tests that build the app themselves.
pub fn settings_for(database: &TestDatabase) -> Settings {
    let mut settings = base_settings();
    settings.database.url = SecretString::from(url_for_database(&settings, &database.name));
    through_pooler(&mut settings);
    settings
}

/// In `make test`'s pass through a transaction pooler (a PgBouncer started
/// by `scripts/pgbouncer.sh run`, its port in
/// `STOCK_TRACKER_TEST_PGBOUNCER_PORT`), the service reaches its database
/// through it, as production behind PgBouncer does.
fn through_pooler(settings: &mut Settings) {
    let Ok(port) = std::env::var("STOCK_TRACKER_TEST_PGBOUNCER_PORT") else {
        return;
    };
    let port = port
        .parse()
        .expect("STOCK_TRACKER_TEST_PGBOUNCER_PORT is a port");
    let direct = settings.database.url.expose_secret().to_owned();
    settings.database.url = through_pgbouncer(&direct, port).into();
    settings.database.pooler = Pooler::Transaction;
    settings.database.direct_url = Some(direct.into());
}

/// Handlers mounted only in tests, under the full middleware stack, to
/// exercise what no production route does on purpose.
pub fn probe_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/__probe/panic", web::get().to(panicking))
        .route(
            "/__probe/panic-with-tokens/{token}",
            web::get().to(panicking_with_tokens),
        )
        .route("/__probe/echo", web::post().to(echo))
        .route("/__probe/items/{id}", web::get().to(item))
        .route("/__probe/slow", web::get().to(slow))
        .route("/__probe/block", web::get().to(block_worker))
        .route("/__probe/hold-db", web::get().to(hold_db))
        .route("/__probe/slow-query", web::get().to(slow_query))
        .route("/__probe/failing-query", web::get().to(failing_query));
}

/// One statement that takes 150 ms (over the default slow threshold), run
/// through the service's statement telemetry as kind `probe.sleep`.
async fn slow_query(state: web::Data<Infra>) -> HttpResponse {
    sqlx::query("SELECT pg_sleep(0.15)")
        .execute(observed("probe.sleep", state.db.pool()))
        .await
        .expect("pg_sleep");
    HttpResponse::Ok().finish()
}

/// One statement that fails (division by zero), as kind `probe.fail`.
async fn failing_query(state: web::Data<Infra>) -> HttpResponse {
    let failed = sqlx::query("SELECT 1 / 0")
        .execute(observed("probe.fail", state.db.pool()))
        .await
        .is_err();
    assert!(failed);
    HttpResponse::Ok().finish()
}

/// Takes 600 ms without blocking its worker.
async fn slow() -> HttpResponse {
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    HttpResponse::Ok().finish()
}

/// Blocks its worker thread for 600 ms, as CPU-bound or blocking code would.
async fn block_worker() -> HttpResponse {
    std::thread::sleep(std::time::Duration::from_millis(600));
    HttpResponse::Ok().finish()
}

/// Holds a PostgreSQL connection for 800 ms.
async fn hold_db(state: web::Data<Infra>) -> HttpResponse {
    let _tx = state.db.begin().await.expect("a connection");
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    HttpResponse::Ok().finish()
}

async fn panicking() -> HttpResponse {
    tracing::info!("probe handler about to panic");
    panic!("database password is hunter2 and this SQL failed: SELECT secret FROM vault");
}

/// Credentials in free text: a log line, the panic message, the path.
/// `PROBE_TOKENS`: a JWT, an API key, a webhook secret, a bot token.
pub const PROBE_TOKENS: [&str; 4] = [
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwcm9iZSJ9.cHJvYmUtc2lnbmF0dXJl",
    "stk_probe123_cHJvYmUta2V5LXNlY3JldC1ieXRlcy1oZXJl",
    "whsec_cHJvYmUtd2ViaG9vay1zZWNyZXQ=",
    "987654321:AAProbeBotTokenSecretPart_0123456789",
];

async fn panicking_with_tokens(path: web::Path<String>) -> HttpResponse {
    let [jwt, api_key, webhook_secret, bot_token] = PROBE_TOKENS;
    tracing::info!("calling https://api.telegram.org/bot{bot_token}/sendMessage");
    panic!(
        "delivery signed with {webhook_secret} failed for {jwt} (key {api_key}, path {})",
        path.into_inner()
    );
}

#[derive(Debug, Serialize, Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct Echo {
    #[garde(length(min = 1, max = 20))]
    pub name: String,
    #[garde(range(min = 1, max = 10))]
    pub count: u32,
    #[garde(skip)]
    pub tags: Vec<String>,
}

async fn echo(body: ValidatedJson<Echo>) -> web::Json<Echo> {
    web::Json(body.0)
}

#[derive(Debug, Deserialize)]
pub struct Paging {
    pub limit: u32,
}

async fn item(id: web::Path<Uuid>, paging: web::Query<Paging>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"id": *id, "limit": paging.limit}))
}

/// A password that passes the policy.
pub const PASSWORD: &str = "correct-horse-battery-staple";

#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    pub expires_in: u64,
}

/// A signed-in user of a tenant.
#[derive(Debug, Clone)]
pub struct Account {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub tokens: Tokens,
}

impl Account {
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.tokens.access_token)
    }
}

impl TestApp {
    pub async fn post_json(
        &self,
        path: &str,
        auth: Option<&str>,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send().await.expect("request sent")
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request sent")
    }

    /// As [`Self::send`], authenticated with an API key.
    pub async fn send_with_key(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<&serde_json::Value>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .header("x-api-key", key);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request sent")
    }

    pub async fn get_as(&self, path: &str, auth: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, Some(auth), None)
            .await
    }

    pub async fn get_with_key(&self, path: &str, key: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("x-api-key", key)
            .send()
            .await
            .expect("request sent")
    }

    /// Registers a new tenant whose owner is `email`, and signs in.
    pub async fn register(&self, email: &str) -> Account {
        let response = self
            .post_json(
                "/api/v1/auth/register",
                None,
                &serde_json::json!({
                    "email": email,
                    "password": PASSWORD,
                    "tenant_name": format!("Tenant of {email}"),
                    "full_name": "Owner",
                }),
            )
            .await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        let body: serde_json::Value = response.json().await.unwrap();
        let tokens = self.login(email, PASSWORD).await;
        Account {
            user_id: body["user"]["id"].as_str().unwrap().parse().unwrap(),
            tenant_id: body["tenant"]["id"].as_str().unwrap().parse().unwrap(),
            tokens,
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> Tokens {
        let response = self
            .post_json(
                "/api/v1/auth/login",
                None,
                &serde_json::json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        response.json().await.unwrap()
    }

    /// Creates a user with `role` in `admin`'s tenant and signs them in.
    pub async fn add_user(&self, admin: &Account, email: &str, role: &str) -> Account {
        let response = self
            .post_json(
                "/api/v1/users",
                Some(&admin.bearer()),
                &serde_json::json!({"email": email, "password": PASSWORD, "role": role}),
            )
            .await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        let body: serde_json::Value = response.json().await.unwrap();
        Account {
            user_id: body["id"].as_str().unwrap().parse().unwrap(),
            tenant_id: admin.tenant_id,
            tokens: self.login(email, PASSWORD).await,
        }
    }

    /// Creates an API key with `role` and returns the secret key.
    pub async fn create_api_key(&self, admin: &Account, role: &str) -> (Uuid, String) {
        let response = self
            .post_json(
                "/api/v1/api-keys",
                Some(&admin.bearer()),
                &serde_json::json!({"name": format!("{role} key"), "role": role}),
            )
            .await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        let body: serde_json::Value = response.json().await.unwrap();
        (
            body["id"].as_str().unwrap().parse().unwrap(),
            body["key"].as_str().unwrap().to_owned(),
        )
    }
}

impl TestApp {
    /// Creates a manual product and returns its JSON.
    pub async fn create_product(
        &self,
        account: &Account,
        sku: &str,
        name: &str,
        price: &str,
        stock: i32,
    ) -> serde_json::Value {
        let response = self
            .post_json(
                "/api/v1/products",
                Some(&account.bearer()),
                &serde_json::json!({"sku": sku, "name": name, "price": price, "stock": stock}),
            )
            .await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        response.json().await.unwrap()
    }

    /// Follows `next_cursor` from `first_path` to the end; returns every item.
    pub async fn collect_pages(
        &self,
        account: &Account,
        first_path: &str,
    ) -> Vec<serde_json::Value> {
        let mut items = Vec::new();
        let separator = if first_path.contains('?') { '&' } else { '?' };
        // A path may start mid-way (with a cursor); later pages replace it.
        let base = match first_path.find("cursor=") {
            Some(at) => first_path[..at].trim_end_matches(['&', '?']).to_owned(),
            None => first_path.to_owned(),
        };
        let separator = if base.contains('?') { '&' } else { separator };
        let mut path = first_path.to_owned();
        loop {
            let response = self.get_as(&path, &account.bearer()).await;
            assert_eq!(
                response.status(),
                200,
                "{path}: {}",
                response.text().await.unwrap()
            );
            let page: serde_json::Value = response.json().await.unwrap();
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("{base}{separator}cursor={cursor}"),
                None => return items,
            }
        }
    }
}

impl TestApp {
    /// Waits until Redis holds the revocation state of `tenant` (a fresh
    /// key prefix has none; the tenant's first token check fills it in the
    /// background).
    pub async fn wait_for_revocation_sync(&self, tenant: Uuid) {
        let settings = &self.state.settings;
        let marker = format!("{}auth:{{{tenant}}}:synced", settings.redis.key_prefix);
        let mut conn = self.state.redis.connection();
        for _ in 0..200 {
            let exists: bool = redis::cmd("EXISTS")
                .arg(&marker)
                .query_async(&mut conn)
                .await
                .unwrap();
            if exists {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the revocation state was never synced to Redis");
    }

    /// Starts another instance of the application with the same settings —
    /// same database, same Redis prefix: a second replica. Returns its base URL.
    pub async fn spawn_replica(&self) -> String {
        let settings = (*self.state.settings).clone();
        let app = Application::build_with(settings, probe_routes)
            .await
            .expect("the replica builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        address
    }
}
