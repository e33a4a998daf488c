//! slipway-server as a library: configuration, the axum [`Router`] with the Console mounted,
//! and [`serve`], so tests can start the real application on port 0.

// The OpenAPI document is one large `json!` literal.
#![recursion_limit = "256"]

pub mod api;
pub mod auth;
pub mod config;
pub mod front_door;
pub mod page_cache;
pub mod refusals;

use app::{context::ConsoleContext, shell, App};
use axum::{extract::FromRef, routing::get, Router};
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::{future::Future, io, path::PathBuf, time::SystemTime};
use tokio::net::TcpListener;
use tower_http::{
    services::{ServeDir, ServeFile},
    trace::TraceLayer,
};

pub use config::Config;

/// Used when the binary was not built by cargo-leptos (which bakes `LEPTOS_OUTPUT_NAME` in);
/// must match `name` in `[[workspace.metadata.leptos]]`.
const OUTPUT_NAME: &str = "slipway";

/// Everything request handlers and server functions share.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub console: ConsoleContext,
    /// The same engine as `console.engine`, for the JSON API's handlers.
    pub engine: engine::Engine,
    /// Users, sessions, tokens and the audit log (the same as `console.auth`).
    pub auth: engine::Auth,
    /// Rendered app pages, kept while the engine's state is unchanged (and briefly).
    pub page_cache: page_cache::PageCache,
    /// Ends the API's event streams when the server shuts down.
    pub shutdown: api::ShutdownSignal,
    /// The Hosts the Console answers to and its own origin.
    pub origins: front_door::Origins,
    /// Bounds the audit log's rows of anonymous refusals.
    pub refusals: std::sync::Arc<refusals::AnonymousRefusals>,
}

impl AppState {
    pub fn new(
        leptos_options: LeptosOptions,
        engine: engine::Engine,
        auth: engine::Auth,
        examples_dir: PathBuf,
    ) -> Self {
        // Never fires unless replaced through `with_shutdown` (as `serve` does).
        let (_, shutdown) = api::ShutdownSignal::new();
        let origins = front_door::Origins::new(None, leptos_options.site_addr);
        Self {
            leptos_options,
            console: ConsoleContext::new(
                SystemTime::now(),
                engine.clone(),
                auth.clone(),
                examples_dir,
            ),
            engine,
            auth,
            page_cache: page_cache::PageCache::default(),
            shutdown,
            origins,
            refusals: Default::default(),
        }
    }

    /// Uses `shutdown` to end long-lived responses (the API's event streams).
    pub fn with_shutdown(mut self, shutdown: api::ShutdownSignal) -> Self {
        self.shutdown = shutdown;
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid Leptos configuration: {0}")]
    Leptos(String),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("server error: {0}")]
    Serve(#[source] io::Error),
    #[error("the deploy engine could not start: {0}")]
    Engine(#[from] engine::Error),
}

/// Leptos options from the `LEPTOS_*` environment (set by cargo-leptos and `make run`),
/// with the listen address taken from our own config: `--listen` wins over `LEPTOS_SITE_ADDR`.
pub fn leptos_options(config: &Config) -> Result<LeptosOptions, Error> {
    let mut options = get_configuration(None)
        .map_err(|e| Error::Leptos(e.to_string()))?
        .leptos_options;
    options.site_addr = config.listen;
    if options.output_name.is_empty() {
        options.output_name = OUTPUT_NAME.into();
    }
    Ok(options)
}

/// The whole HTTP application: `/healthz`, the JSON API under `/api/v1`, the Console's pages
/// and server functions, and static files from the site root (with the Console's 404 page for
/// anything else).
pub fn build_router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let console = state.console.clone();
    let context = move || provide_context(console.clone());

    // Only the built site's files are public, each served by its own route; every other
    // path is the Console's (its 404 page included), behind the access check.
    let site_root = PathBuf::from(state.leptos_options.site_root.as_ref());
    let pkg = ServeDir::new(site_root.join(state.leptos_options.site_pkg_dir.as_ref()))
        .precompressed_br()
        .precompressed_gzip();
    let favicon = ServeFile::new(site_root.join("favicon.svg"));
    let options = state.leptos_options.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .nest_service("/pkg", pkg)
        .route_service("/favicon.svg", favicon)
        .merge(api::router())
        .leptos_routes_with_context(&state, routes, context.clone(), {
            let options = options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::render_app_to_stream_with_context(
            context,
            move || shell(options.clone()),
        ))
        // Behind the access check: only signed-in callers get (their own) cached pages.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            page_cache::cache,
        ))
        // Every request, pages and API alike, passes the one access check (and audit).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

/// Binds `config.listen`.
pub async fn bind(config: &Config) -> Result<TcpListener, Error> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen.to_string(),
            source,
        })
}

/// Serves Slipway on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    tokio::fs::create_dir_all(&config.data_dir)
        .await
        .map_err(|source| Error::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
    let mut options = leptos_options(config)?;
    // The address actually bound (differs from the config when it asked for port 0).
    if let Ok(addr) = listener.local_addr() {
        options.site_addr = addr;
    }
    let router_listener = TcpListener::bind(config.router_listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.router_listen.to_string(),
            source,
        })?;
    // Deployed code must not trace this process or read its memory or environment.
    engine::sandbox::make_server_non_dumpable()?;
    let mut engine_config =
        engine::EngineConfig::new(config.database_url(), config.data_dir.clone());
    engine_config.isolation = config.isolation;
    engine_config.app_uid_base = config.app_uid_base;
    engine_config.archive_limits = config.archive.limits();
    engine_config.router = config.router.router_config();
    let engine = engine::Engine::start(engine_config, router_listener).await?;
    let mut auth = engine::Auth::new(engine.store().clone(), config.auth.clone());
    if let Some(clock) = &config.clock {
        auth = auth.with_clock(clock.0.clone());
    }
    if let Some(password) = auth
        .bootstrap_admin(config.admin_password.as_deref())
        .await
        .map_err(engine::Error::from)?
    {
        // Shown once: the database keeps only its argon2 hash.
        tracing::warn!(
            "created the first user `admin` with the password {password} — it is shown only \
             this once; sign in and change it (or start with SLIPWAY_ADMIN_PASSWORD set)"
        );
    }
    let (trigger, signal) = api::ShutdownSignal::new();
    // Deletes dead sessions now and then; ends when the server shuts down.
    let purge = tokio::spawn(purge_sessions(auth.clone(), signal.clone()));
    let mut state = AppState::new(options, engine.clone(), auth, config.examples_dir.clone())
        .with_shutdown(signal);
    state.console.secure_cookies = config.secure_cookies;
    state.origins =
        front_door::Origins::new(config.public_url.as_ref(), state.leptos_options.site_addr);
    state.page_cache =
        page_cache::PageCache::new(std::time::Duration::from_millis(config.page_cache_ms));
    let shutdown = async move {
        shutdown.await;
        // Event streams never end on their own; end them so in-flight requests can finish.
        trigger.fire();
    };

    tracing::info!(
        listen = %state.leptos_options.site_addr,
        router_listen = %engine.router_addr(),
        data_dir = %config.data_dir.display(),
        isolation = engine.isolation().name(),
        site_root = %state.leptos_options.site_root,
        "slipway-server ready"
    );
    let served = axum::serve(
        listener,
        build_router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(Error::Serve);
    // Fired by the shutdown (or never started, when serving failed): make sure it ends.
    purge.abort();
    let _ = purge.await;
    // Roll back running rollouts and stop the apps' processes; they come back at the next start.
    engine.shutdown().await;
    served?;
    tracing::info!("slipway-server stopped");
    Ok(())
}

/// Deletes sessions that can no longer be used (revoked, idle or too old) at start and then
/// every `purge_interval`, until `shutdown` fires. The expiry decisions read `auth`'s clock.
async fn purge_sessions(auth: engine::Auth, mut shutdown: api::ShutdownSignal) {
    let every = auth
        .config()
        .purge_interval
        .max(std::time::Duration::from_millis(10));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.fired() => return,
        }
        match auth.purge_sessions().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(sessions = n, "purged dead sessions"),
            Err(e) => tracing::warn!("could not purge dead sessions: {e}"),
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Logs to stderr; `RUST_LOG` filters (default: info for Slipway, warn for the rest).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("warn,server=info,app=info,engine=info,tower_http=warn")
    });
    // Ignore the error: a subscriber may already be installed (tests).
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
