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
//! 10. **idempotency**: applies `Idempotency-Key` to the operations that
//!     declare it; needs the settled tenant, and a request refused by the
//!     limiter holds no key. Outside the panic guard, so a panic's 500
//!     releases the key like any other failure.
//! 11. **panic guard**: innermost, right around the handlers, so a panic turns
//!     into a JSON 500 that flows back out through metrics and logging.
//!
//! actix applies `.wrap()` calls inside-out: the last one is the outermost.

pub mod metrics_routes;
pub mod openapi;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{Compress, Condition, from_fn};
use actix_web::{App, HttpServer, web};
use actix_web_prom::PrometheusMetricsBuilder;
use anyhow::Context;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_actix_web::{AppExt, scope};
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::login_backoff::LoginBackoff;
use crate::auth::password::PasswordHasher;
use crate::auth::revocation::RevocationStore;
use crate::auth::tenant_context;
use crate::auth::tokens::TokenKeys;
use crate::auth::{AuthEvents, AuthState};
use crate::config::{Layer, Settings};
use crate::http::fallback::{self, RouteTable};
use crate::http::{cors, extractors, load_shedding, panic_guard, request_context};
use crate::idempotency::{self, IdempotencyState, IdempotencyStore, IdempotentRoutes};
use crate::infra::Infra;
use crate::rate_limit::RateLimiter;
use crate::resilience::load::LoadMonitor;
use crate::telemetry::metrics::{Metrics, NAMESPACE};
use crate::{
    accounts, api_keys, audit, exports, health, invitations, marketplaces, products, rate_limit,
    sessions, sync, telegram, tenants, users, webhooks,
};
use openapi::OpenApiJson;

/// Every documented route. The OpenAPI document is generated from this same
/// function ([`openapi::document`]), so served and documented cannot differ.
pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(
        scope::scope("/api/v1")
            .configure(health::routes::configure)
            .configure(sessions::routes::configure)
            .configure(accounts::routes::configure)
            .configure(invitations::routes::configure)
            .configure(audit::routes::configure)
            .configure(exports::routes::configure)
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
    infra: web::Data<Infra>,
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
        let metrics = Metrics::new();
        metrics.start_memory_sampler(&settings.metrics);
        health::service::register_metrics(&metrics);
        // In `email.mode = log` the API writes its emails to the log itself.
        crate::email::delivery::register_metrics(&metrics);
        let infra = Infra::build(&settings, metrics.clone()).await?;
        infra.cache.declare(&products::service::CACHES);
        // One readiness check at start: the dependency gauges hold a result
        // from the first scrape on, not only after the first probe.
        health::service::readiness(&infra).await;
        let load = LoadMonitor::new(settings.load_shedding.clone(), &metrics, {
            let db = infra.db.clone();
            move || db.waiters()
        });
        let http_metrics = PrometheusMetricsBuilder::new(NAMESPACE)
            .registry(metrics.registry.clone())
            .buckets(metrics_routes::HTTP_REQUEST_DURATION.buckets)
            // Unmatched paths collapse to one label value: bounded cardinality.
            .mask_unmatched_patterns(request_context::UNMATCHED_ROUTE)
            // Swagger UI's assets match a regex tail; they are not API traffic.
            .exclude_regex("^/docs/")
            .build()
            .map_err(|err| anyhow::anyhow!("building HTTP metrics: {err}"))?;

        let document = openapi::document();
        let route_table = web::Data::new(RouteTable::from_openapi(&document));
        let idempotency = web::Data::new(IdempotencyState::new(
            IdempotencyStore::new(&settings, infra.redis.clone(), infra.redis_guard.clone()),
            IdempotentRoutes::from_openapi(&document),
            &metrics,
        ));
        let openapi_json = web::Data::new(OpenApiJson(
            serde_json::to_string(&document).context("serializing the OpenAPI document")?,
        ));
        let revocations = RevocationStore::new(
            &settings,
            infra.redis.clone(),
            infra.redis_guard.clone(),
            infra.db.clone(),
        );
        revocations
            .replay_invalidations(Duration::from_millis(settings.auth.invalidation_replay_ms));
        let auth = web::Data::new(AuthState {
            tokens: TokenKeys::from_settings(&settings.auth).context("loading the JWT keys")?,
            passwords: PasswordHasher::new(&settings.auth.argon2)?,
            revocations,
            refresh_token_ttl_secs: settings.auth.refresh_token_ttl_secs,
            events: AuthEvents::register(&metrics),
            login_backoff: LoginBackoff::new(
                infra.redis.clone(),
                infra.redis_guard.clone(),
                &settings.redis.key_prefix,
                &settings.auth.login_backoff,
            ),
        });
        // Built once, outside the per-worker factory below: every worker
        // thread shares its in-process fallback counters.
        let rate_limiter = RateLimiter::new(
            &settings,
            infra.redis.clone(),
            infra.redis_guard.clone(),
            &metrics,
        )?;
        rate_limiter.load_script().await;
        rate_limiter.warn_about_unserved_rules(&route_table);
        let rate_limiter = web::Data::new(rate_limiter);
        let infra = web::Data::new(infra);
        let load = web::Data::from(load);

        let listener = TcpListener::bind(settings.server.address()).with_context(|| {
            format!(
                "cannot listen on {} (`server.host`, `server.port`)",
                settings.server.address()
            )
        })?;
        let port = listener.local_addr()?.port();

        let app_infra = infra.clone();
        let cors_settings = settings.cors.clone();
        let max_body_bytes = settings.server.max_body_bytes;
        let sentry_enabled = sentry::Hub::main().client().is_some();
        let trace_requests = settings.sentry.traces_sample_rate > 0.0;
        let stack = settings.server.clone();
        #[cfg(feature = "bench-layers")]
        if !stack.disabled_layers.is_empty() {
            tracing::warn!(disabled = ?stack.disabled_layers, "middleware layers switched off");
        }
        let mut server = HttpServer::new(move || {
            // Runs once per HTTP worker thread, on that thread.
            load.start_worker_probe();
            App::new()
                // What handlers and layers take (each its own part):
                .app_data(app_infra.clone())
                .app_data(auth.clone())
                .app_data(rate_limiter.clone())
                .app_data(load.clone())
                .app_data(route_table.clone())
                .app_data(idempotency.clone())
                .app_data(openapi_json.clone())
                .configure(|cfg| extractors::configure(cfg, max_body_bytes))
                .configure(extra_routes.clone())
                .service(
                    SwaggerUi::new("/docs/{_:.*}")
                        .config(utoipa_swagger_ui::Config::new(["/openapi.json"])),
                )
                .default_service(web::to(fallback::not_found_or_method_not_allowed))
                // The order is documented in this module's header; last is outermost.
                // A `bench-layers` build can leave each layer but authentication
                // out (`server.disabled_layers`); in any other, every one is on.
                .wrap(Condition::new(
                    stack.layer_enabled(Layer::PanicGuard),
                    from_fn(panic_guard::panic_guard),
                ))
                .wrap(from_fn(idempotency::idempotency))
                .wrap(Condition::new(
                    stack.layer_enabled(Layer::TenantContext),
                    from_fn(tenant_context::tenant_context),
                ))
                .wrap(Condition::new(
                    stack.layer_enabled(Layer::RateLimit),
                    from_fn(rate_limit::middleware::rate_limit),
                ))
                .wrap(from_fn(crate::auth::middleware::authenticate))
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
            infra,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process's infrastructure (tests reach the database and settings through it).
    pub fn state(&self) -> web::Data<Infra> {
        self.infra.clone()
    }

    /// Serves until SIGTERM/SIGINT, then drains and closes the pools.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.infra.close().await;
        result
    }
}
