//! The application builder: one [`Application::build`] for production and
//! tests. It connects to PostgreSQL and Redis, checks the schema, binds the
//! listener (port 0 picks a free port, as tests do) and assembles the
//! middleware stack and the routes.
//!
//! # Middleware order
//!
//! Outermost first — each layer sees what the layers inside it produce. A
//! layer that answers early (shedder, limiter) returns an `Ok` response, not
//! an `Err`, so the layers outside it still count and decorate it.
//!
//! 1. **request context** (id, span, access log): outermost so every response,
//!    even a CORS refusal or a shed request, carries `X-Request-ID` and is logged.
//! 2. **CORS**: before anything that can answer early, so 429/503/500 responses
//!    keep their CORS headers and preflights are answered before any limit.
//! 3. **compression**: compresses whatever the inner layers produce.
//! 4. **Sentry hub** (sentry-actix, when a DSN is set): a hub per request, so
//!    the scope the tenant-context layer fills belongs to this request alone.
//! 5. **metrics** (actix-web-prom): counts every response the service makes,
//!    including 401, 404, 405, 413, 415, 422, 429, the shedder's 503 and the
//!    panic guard's 500.
//! 6. **load shedding**: before any work — a shed request costs no token
//!    verification and no Redis call. Probes, metrics and docs pass.
//! 7. **authentication**: verifies credentials (a bearer token in memory, an
//!    API key through its cached grant) into a principal, or a rejection a
//!    protected route turns into 401. No database; never answers by itself,
//!    so public routes work with bad credentials.
//! 8. **rate limiting**: inside authentication because it keys on tenant,
//!    user and tier; its one Redis script also reads the bearer token's
//!    revocation state, settling authentication.
//! 9. **tenant context**: tags the Sentry scope and the log span with tenant
//!    and user, now that they are settled.
//! 10. **panic guard**: innermost, right around the handlers, so a panic turns
//!     into a JSON 500 that flows back out through metrics and logging.
//!
//! actix applies `.wrap()` calls inside-out: the last one is the outermost.

pub mod metrics_routes;
pub mod openapi;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::{Compress, Condition, from_fn};
use actix_web::{App, HttpServer, web};
use actix_web_prom::PrometheusMetricsBuilder;
use anyhow::Context;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_actix_web::{AppExt, scope};
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::password::PasswordHasher;
use crate::auth::revocation::RevocationStore;
use crate::auth::tenant_context;
use crate::auth::tokens::TokenKeys;
use crate::cache::ResponseCache;
use crate::config::{Layer, Settings};
use crate::crypto::SecretBox;
use crate::db::Database;
use crate::http::fallback::{self, RouteTable};
use crate::http::{cors, extractors, load_shedding, panic_guard, request_context};
use crate::rate_limit::RateLimiter;
use crate::redis_conn::{self, RedisGuard};
use crate::resilience::breaker::CircuitBreaker;
use crate::resilience::load::LoadMonitor;
use crate::telemetry::metrics::{HTTP_LATENCY_BUCKETS, Metrics, NAMESPACE};
use crate::worker::queue::TaskQueue;
use crate::{
    api_keys, auth, db, health, marketplaces, products, rate_limit, sync, telegram, tenants, users,
    webhooks,
};
use openapi::OpenApiJson;

/// What handlers share: configuration, connections and credentials machinery.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Database,
    /// The process's Redis connections (one per thread); clones share them.
    pub redis: redis_conn::Redis,
    pub metrics: Metrics,
    pub tokens: TokenKeys,
    pub passwords: PasswordHasher,
    pub revocations: Arc<RevocationStore>,
    pub secrets: SecretBox,
    pub cache: ResponseCache,
    pub rate_limiter: RateLimiter,
    /// The Redis circuit breaker and command timeout, shared by every Redis user.
    pub redis_guard: RedisGuard,
    pub load: Arc<LoadMonitor>,
    /// Hands tasks (syncs) to the broker.
    pub tasks: TaskQueue,
}

/// Every documented route. The OpenAPI document is generated from this same
/// function ([`openapi::document`]), so served and documented cannot differ.
pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(
        scope::scope("/api/v1")
            .configure(health::routes::configure)
            .configure(auth::routes::configure)
            .configure(users::routes::configure)
            .configure(api_keys::routes::configure)
            .configure(tenants::routes::configure)
            .configure(marketplaces::routes::configure)
            .configure(products::routes::configure)
            .configure(rate_limit::routes::configure)
            .configure(sync::routes::configure)
            .configure(webhooks::routes::configure)
            .configure(telegram::routes::configure),
    )
    .configure(metrics_routes::configure)
    .configure(openapi::configure);
}

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, |_| {}).await
    }

    /// Builds the application with extra routes mounted under the full
    /// middleware stack. Tests use it to mount probe handlers (one that
    /// panics, one that takes a JSON body) and see exactly what a client would.
    pub async fn build_with<F>(settings: Settings, extra_routes: F) -> anyhow::Result<Self>
    where
        F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    {
        install_crypto_provider();
        let metrics = Metrics::for_api();
        metrics.start_memory_sampler(&settings.metrics);
        let pool = db::connect_pool(&settings.database)?;
        db::check_schema(&pool).await?;
        let db_breaker = CircuitBreaker::new(
            "database",
            &settings.circuit_breakers.database,
            metrics.clone(),
        );
        let db = Database::new(pool, Arc::new(db_breaker), metrics.clone());
        let redis = redis_conn::Redis::new(&settings.redis)?;
        let redis_breaker =
            CircuitBreaker::new("redis", &settings.circuit_breakers.redis, metrics.clone());
        let redis_guard = RedisGuard::new(Arc::new(redis_breaker), &settings.redis);
        let load = LoadMonitor::new(settings.load_shedding.clone(), metrics.clone(), {
            let db = db.clone();
            move || db.waiters()
        });
        let http_metrics = PrometheusMetricsBuilder::new(NAMESPACE)
            .registry(metrics.registry.clone())
            .buckets(HTTP_LATENCY_BUCKETS)
            // Unmatched paths collapse to one label value: bounded cardinality.
            .mask_unmatched_patterns(request_context::UNMATCHED_ROUTE)
            // Swagger UI's assets match a regex tail; they are not API traffic.
            .exclude_regex("^/docs/")
            .build()
            .map_err(|err| anyhow::anyhow!("building HTTP metrics: {err}"))?;

        let document = openapi::document();
        let route_table = web::Data::new(RouteTable::from_openapi(&document));
        let openapi_json = web::Data::new(OpenApiJson(
            serde_json::to_string(&document).context("serializing the OpenAPI document")?,
        ));
        let tokens = TokenKeys::from_settings(&settings.auth).context("loading the JWT keys")?;
        let passwords = PasswordHasher::new(&settings.auth.argon2)?;
        let revocations =
            RevocationStore::new(&settings, redis.clone(), redis_guard.clone(), db.clone());
        let secrets = SecretBox::new(&settings.secrets.fernet_keys)?;
        let cache = ResponseCache::new(
            &settings,
            redis.clone(),
            redis_guard.clone(),
            metrics.clone(),
        );
        // Built once, outside the per-worker factory below: every worker
        // thread shares its in-process fallback counters.
        let rate_limiter = RateLimiter::new(
            &settings,
            redis.clone(),
            redis_guard.clone(),
            metrics.clone(),
        )?;
        rate_limiter.load_script().await;
        rate_limiter.warn_about_unserved_rules(&route_table);
        let tasks = TaskQueue::new(Arc::new(settings.clone()), metrics.clone());
        // A recovered dependency is used again within a probe interval.
        db.watch_recovery();
        redis_guard.watch_recovery(&redis);
        tasks.watch_recovery();
        let state = web::Data::new(AppState {
            settings: Arc::new(settings.clone()),
            db,
            redis,
            metrics,
            tokens,
            passwords,
            revocations,
            secrets,
            cache,
            rate_limiter,
            redis_guard,
            load,
            tasks,
        });

        let listener = TcpListener::bind(settings.server.address()).with_context(|| {
            format!(
                "cannot listen on {} (`server.host`, `server.port`)",
                settings.server.address()
            )
        })?;
        let port = listener.local_addr()?.port();

        let app_state = state.clone();
        let load_monitor = web::Data::from(state.load.clone());
        let cors_settings = settings.cors.clone();
        let max_body_bytes = settings.server.max_body_bytes;
        let sentry_enabled = sentry::Hub::main().client().is_some();
        let trace_requests = settings.sentry.traces_sample_rate > 0.0;
        let stack = settings.server.clone();
        if !stack.disabled_layers.is_empty() {
            tracing::warn!(disabled = ?stack.disabled_layers, "middleware layers switched off");
        }
        let mut server = HttpServer::new(move || {
            // Runs once per HTTP worker thread, on that thread.
            app_state.load.start_worker_probe();
            App::new()
                .app_data(app_state.clone())
                .app_data(load_monitor.clone())
                .app_data(route_table.clone())
                .app_data(openapi_json.clone())
                .configure(|cfg| extractors::configure(cfg, max_body_bytes))
                .configure(extra_routes.clone())
                .service(
                    SwaggerUi::new("/docs/{_:.*}")
                        .config(utoipa_swagger_ui::Config::new(["/openapi.json"])),
                )
                .default_service(web::to(fallback::not_found_or_method_not_allowed))
                // The order is documented in this module's header; last is outermost.
                // Each layer but authentication can be left out (`server.disabled_layers`).
                .wrap(Condition::new(
                    stack.layer_enabled(Layer::PanicGuard),
                    from_fn(panic_guard::panic_guard),
                ))
                .wrap(Condition::new(
                    stack.layer_enabled(Layer::TenantContext),
                    from_fn(tenant_context::tenant_context),
                ))
                .wrap(Condition::new(
                    stack.layer_enabled(Layer::RateLimit),
                    from_fn(rate_limit::middleware::rate_limit),
                ))
                .wrap(from_fn(auth::middleware::authenticate))
                .wrap(Condition::new(
                    stack.layer_enabled(Layer::LoadShedding),
                    from_fn(load_shedding::shed_load),
                ))
                .wrap(Condition::new(
                    stack.layer_enabled(Layer::Metrics),
                    http_metrics.clone(),
                ))
                .wrap(Condition::new(
                    sentry_enabled && stack.layer_enabled(Layer::Sentry),
                    sentry_actix::Sentry::builder()
                        // Reported where they happen (see `telemetry::error_reporting`).
                        .capture_server_errors(false)
                        .start_transaction(trace_requests)
                        .finish(),
                ))
                .wrap(Condition::new(
                    stack.layer_enabled(Layer::Compression),
                    Compress::default(),
                ))
                .wrap(Condition::new(
                    stack.layer_enabled(Layer::Cors),
                    cors::cors(&cors_settings),
                ))
                .wrap(Condition::new(
                    stack.layer_enabled(Layer::RequestContext),
                    from_fn(request_context::request_context),
                ))
                .into_utoipa_app()
                .configure(routes)
                .into_app()
        })
        .keep_alive(std::time::Duration::from_secs(
            settings.server.keep_alive_secs,
        ))
        // Graceful shutdown on SIGTERM/SIGINT: stop accepting, drain in-flight requests.
        .shutdown_timeout(settings.server.shutdown_timeout_secs);
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = server.listen(listener)?.run();
        Ok(Self {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGTERM/SIGINT, then drains and closes the pools.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        // Closed while the runtime still runs, so the AMQP connection ends cleanly.
        self.state.tasks.close().await;
        self.state.db.pool().close().await;
        result
    }
}

/// sqlx brings rustls with `ring`, reqwest with `aws-lc-rs`; rustls refuses to
/// pick one itself, so the process installs one before any TLS is used.
pub fn install_crypto_provider() {
    // An error means a provider is already installed (a second Application in
    // the same process): nothing to do.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
