//! `stock-tracker`: one binary, several roles (clap subcommands). Each role is
//! a thin wrapper over the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use stock_tracker::accounts::first_admin::FirstAdmin;
use stock_tracker::app::Application;
use stock_tracker::app::openapi;
use stock_tracker::config::Settings;
use stock_tracker::infra::install_crypto_provider;
use stock_tracker::{db, telemetry};

#[derive(Parser)]
#[command(
    name = "stock-tracker",
    version,
    about = "Multi-tenant stock tracking REST backend"
)]
struct Cli {
    /// A TOML file layered over the built-in defaults (environment variables still win).
    #[arg(long, global = true, env = "STOCK_TRACKER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API until SIGTERM or SIGINT.
    Serve,
    /// Run background tasks from the broker's queues (sync, notifications).
    Worker,
    /// Schedule periodic tasks and re-send jobs left queued (run exactly one).
    Beat,
    /// Create the database if missing, the application role, and apply migrations.
    Migrate,
    /// Probe the local liveness endpoint: exit 0 when it answers 200, 1 otherwise.
    Healthcheck {
        /// Whose liveness endpoint to probe on 127.0.0.1, at the port this
        /// configuration gives that role.
        #[arg(long, value_enum, default_value_t = Role::Api)]
        role: Role,
        /// Endpoint to probe instead.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// Print the OpenAPI document as JSON.
    Openapi,
    /// Re-encrypt every stored secret (marketplace credentials, webhook
    /// signing secrets, Telegram bot tokens) with the first key of
    /// `secrets.fernet_keys` (run after adding a new first key; then the old
    /// keys can be dropped). Safe to interrupt and to run again.
    RotateKeys,
    /// Make an existing user a platform administrator (may change any
    /// tenant's tier); their tenant moves to the `internal` tier.
    GrantPlatformAdmin {
        /// The user's email.
        email: String,
    },
}

/// A long-running role, as `healthcheck --role` names it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Role {
    Api,
    Worker,
    Beat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("stock-tracker: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("stock-tracker: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// What a long-running role holds until it ends: dropping it flushes the
/// queued spans, then the queued log lines (fields drop in this order).
struct TelemetryGuard {
    _tracing: Option<telemetry::traces::Tracing>,
    _logs: Option<telemetry::logging::LogGuard>,
}

/// Logs, and traces when `tracing.otlp_endpoint` is set, for a long-running role.
fn init_telemetry(settings: &Settings, role: &str) -> anyhow::Result<TelemetryGuard> {
    let (tracing, tracer) = match telemetry::traces::init(settings, role)? {
        Some((tracing, tracer)) => (Some(tracing), Some(tracer)),
        None => (None, None),
    };
    let logs = telemetry::logging::init_with_tracer(&settings.logging, false, tracer).ok();
    Ok(TelemetryGuard {
        _tracing: tracing,
        _logs: logs,
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Openapi => {
            let doc = serde_json::to_string_pretty(&openapi::document())?;
            println!("{doc}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let settings = Settings::load(cli.config.as_deref())?;
            let _logs = telemetry::logging::init(&settings.logging, false).ok();
            install_crypto_provider();
            db::migrate(&settings.database).await?;
            tracing::info!("migrations applied");
            match stock_tracker::accounts::first_admin::ensure(&settings).await? {
                FirstAdmin::NotConfigured => {}
                FirstAdmin::Existing { user_id } => {
                    tracing::info!(%user_id, "the first administrator exists")
                }
                FirstAdmin::Created { user_id } => {
                    println!(
                        "first administrator created (user {user_id}); sign in with its password file's password"
                    );
                }
                FirstAdmin::CreatedWithSetupLink { user_id, link } => {
                    println!(
                        "first administrator created (user {user_id}); choose its password within its lifetime at:\n{link}"
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::RotateKeys => {
            let settings = Settings::load(cli.config.as_deref())?;
            let _logs = telemetry::logging::init(&settings.logging, false).ok();
            install_crypto_provider();
            for column in stock_tracker::key_rotation::rotate_keys(&settings).await? {
                println!(
                    "{}: {} re-encrypted, {} already under the current key",
                    column.column.holds, column.rotated, column.current
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::GrantPlatformAdmin { email } => {
            let settings = Settings::load(cli.config.as_deref())?;
            install_crypto_provider();
            let tenant_id =
                stock_tracker::tenants::service::grant_platform_admin(&settings.database, &email)
                    .await?;
            println!(
                "{email} is now a platform administrator (tenant {tenant_id} is on the internal tier)"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            let settings = Settings::load(cli.config.as_deref())?;
            // Held until the process ends: dropping it flushes queued spans and logs.
            let telemetry_guard = init_telemetry(&settings, "api")?;
            let environment = format!("{:?}", settings.environment).to_lowercase();
            // Held until the process ends: dropping it flushes queued reports.
            let error_reporting = telemetry::error_reporting::init(&settings);
            let app = Application::build(settings.clone()).await?;
            tracing::info!(
                host = %settings.server.host,
                port = app.port(),
                environment,
                version = env!("CARGO_PKG_VERSION"),
                error_reporting = error_reporting.is_some(),
                "serving"
            );
            app.run_until_stopped().await?;
            tracing::info!("stopped");
            drop(error_reporting);
            drop(telemetry_guard);
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker => {
            let settings = Settings::load(cli.config.as_deref())?;
            // Held until the process ends: dropping it flushes queued spans and logs.
            let telemetry_guard = init_telemetry(&settings, "worker")?;
            let error_reporting = telemetry::error_reporting::init(&settings);
            stock_tracker::worker::runner::run(settings).await?;
            drop(error_reporting);
            drop(telemetry_guard);
            Ok(ExitCode::SUCCESS)
        }
        Command::Beat => {
            let settings = Settings::load(cli.config.as_deref())?;
            // Held until the process ends: dropping it flushes queued spans and logs.
            let telemetry_guard = init_telemetry(&settings, "beat")?;
            let error_reporting = telemetry::error_reporting::init(&settings);
            stock_tracker::worker::beat::run(settings).await?;
            drop(error_reporting);
            drop(telemetry_guard);
            Ok(ExitCode::SUCCESS)
        }
        Command::Healthcheck {
            role,
            url,
            timeout_secs,
        } => {
            let url = match url {
                Some(url) => url,
                None => {
                    let settings = Settings::load(cli.config.as_deref())?;
                    match role {
                        Role::Api => format!(
                            "http://127.0.0.1:{}/api/v1/health/live",
                            settings.server.port
                        ),
                        Role::Worker => {
                            format!("http://127.0.0.1:{}/health/live", settings.worker.port)
                        }
                        Role::Beat => {
                            format!("http://127.0.0.1:{}/health/live", settings.beat.port)
                        }
                    }
                }
            };
            install_crypto_provider();
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(timeout_secs))
                .build()
                .context("building the HTTP client")?;
            match client.get(&url).send().await {
                Ok(response) if response.status().is_success() => Ok(ExitCode::SUCCESS),
                Ok(response) => {
                    eprintln!("unhealthy: {url} answered {}", response.status());
                    Ok(ExitCode::FAILURE)
                }
                Err(err) => {
                    eprintln!("unhealthy: {url}: {}", err.without_url());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
