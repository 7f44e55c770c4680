//! The Tenantry server: configuration, the ingress middleware, the control plane and the
//! tenant endpoints, wired into one axum application.
//!
//! `Server::start` is the one way to run it, used by `tenantry serve`, the demo and the
//! testkit alike. This crate must never take a tenant's identity from anything but a verified
//! credential (see `auth`).

#![forbid(unsafe_code)]

pub mod admission;
pub mod audit;
pub mod auth;
pub mod aws;
pub mod config;
pub mod error;
pub mod extract;
pub mod guardrails;
pub mod json;
pub mod key_cache;
pub mod knowledge;
pub mod ledger;
pub mod memory;
pub mod middleware;
pub mod models;
pub mod registry;
pub mod routes;
pub mod runtimes;
pub mod sessions;
pub mod state;
pub mod statedir;
pub mod tenants;
pub mod tools;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tenantry_identity::{ActorIssuer, AdminKeyCheck, Verifier, WorkloadIssuer};
use tenantry_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::Config;
pub use state::AppState;

/// The sandbox backend this server launches sessions' sandboxes with, chosen from its
/// configuration: the process backend when a helper is configured and the host supports it,
/// otherwise one that refuses every launch and says why (the server still serves everything
/// else). Another backend (e.g. microVMs) is chosen here; the session manager takes any.
fn sandbox_backend(
    config: &Config,
    storage_refusal: Option<&str>,
) -> Arc<dyn tenantry_runtime::Sandbox> {
    use tenantry_runtime::{ProcessSandbox, ProcessSandboxConfig, UnavailableSandbox};
    let (helper, args) = match (config.sandbox_helper(), storage_refusal) {
        (None, _) => {
            return Arc::new(UnavailableSandbox::new("no sandbox helper is configured"));
        }
        (Some(_), Some(why)) => return Arc::new(UnavailableSandbox::new(why)),
        (Some(helper), None) => helper,
    };
    let mut process = ProcessSandboxConfig::new(helper);
    process.helper_args = args;
    process.run_root = sessions::SessionManager::sandbox_run_root(&config.runtime.run_dir);
    match ProcessSandbox::new(process) {
        Ok(backend) => {
            if config.runtime.favor_dynamic_cgroups {
                tune_cgroup_migrations();
            }
            Arc::new(backend)
        }
        Err(e) => {
            tracing::warn!(error = %e, "sessions cannot start: the process sandbox is unavailable");
            Arc::new(UnavailableSandbox::new(e.to_string()))
        }
    }
}

/// Applies `favordynmods` (see `RuntimeConfig::favor_dynamic_cgroups`) and says what happened.
fn tune_cgroup_migrations() {
    match tenantry_runtime::favor_dynamic_migrations() {
        Ok(tenantry_runtime::MigrationTuning::AlreadySet(at)) => {
            tracing::debug!(mount = %at.display(), "cgroup favordynmods is set");
        }
        Ok(tenantry_runtime::MigrationTuning::Set(at)) => {
            tracing::info!(mount = %at.display(),
                "remounted a cgroup hierarchy with favordynmods: sandboxes join their cgroups without an RCU grace period");
        }
        Err(e) => {
            tracing::info!(error = %e,
                "cgroup favordynmods is not set: each new sandbox may wait an RCU grace period (several ms) to join its cgroups");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot open the store at {url}: {source}")]
    Store {
        url: String,
        source: tenantry_store::StoreError,
    },
    #[error("cannot use the limiter at {url}: {message}")]
    Limiter { url: String, message: String },
    #[error("identity set-up failed: {0}")]
    Identity(String),
    #[error("model gateway set-up failed: {0}")]
    Models(#[from] models::GatewayStartError),
    #[error("guardrails set-up failed: {0}")]
    Guardrails(#[from] guardrails::GuardrailsStartError),
    #[error("tool gateway set-up failed: {0}")]
    Tools(#[from] tools::ToolsStartError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// Builds the shared state: opens (and migrates) the store, seeds the tiers of the config,
/// loads keys and issuers, starts the model and tool gateways.
pub async fn build_state(config: Config) -> Result<AppState, StartError> {
    statedir::secure(&config);
    let store = Store::connect(&config.database.url)
        .await
        .map_err(|source| StartError::Store {
            url: redact_url(&config.database.url),
            source,
        })?;
    for tier in &config.tiers {
        let inserted = store
            .seed_tier(tier)
            .await
            .map_err(|source| StartError::Store {
                url: redact_url(&config.database.url),
                source,
            })?;
        if inserted {
            tracing::info!(tier = %tier.name, "tier created from config");
        }
    }
    let limiter_err = |e: tenantry_limits::LimitError| StartError::Limiter {
        url: redact_url(&config.limits.url),
        message: e.to_string(),
    };
    let limiter = tenantry_limits::Limiter::connect(&config.limits.url)
        .await
        .map_err(limiter_err)?;
    limiter.ping().await.map_err(limiter_err)?;
    // The platform's own authority for work no caller asked for (budget seeding here, session
    // sweeps below); minted once, never reachable from a handler.
    let system = tenantry_core::SystemGrant::at_start();
    let seeded = models::limits::seed_from_ledger(system, &store, &limiter)
        .await
        .map_err(|source| StartError::Store {
            url: redact_url(&config.database.url),
            source,
        })?;
    if seeded > 0 {
        tracing::info!(
            tenants = seeded,
            "in-process budgets seeded from this month's ledger"
        );
    }
    let admin = AdminKeyCheck::new(&config.admin_key()?);
    let workload_key = &config.identity.workload_key_file;
    if !workload_key.exists() {
        if let Some(dir) = workload_key.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StartError::Identity(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        WorkloadIssuer::generate_key(workload_key)
            .map_err(|e| StartError::Identity(e.to_string()))?;
        tracing::info!(path = %workload_key.display(), "created the workload-token secret");
    }
    let workload =
        WorkloadIssuer::load(workload_key).map_err(|e| StartError::Identity(e.to_string()))?;
    let actor = actor_issuer(&config.identity.actor_key_file)?;
    let public_url = config.public_url();
    let dev = &config.identity.dev_issuer;
    let dev_issuer = if dev.enabled {
        let issuer = config
            .load_dev_issuer()
            .map_err(|e| StartError::Identity(e.to_string()))?;
        Some(Arc::new(issuer))
    } else {
        None
    };
    let verifier = Verifier::new(
        config.identity.issuers.clone(),
        dev_issuer.as_deref().cloned(),
    )
    .map_err(|e| StartError::Identity(e.to_string()))?
    .with_min_refresh_interval(Duration::from_secs(
        config.identity.jwks_min_refresh_seconds,
    ));
    let env = config.models_env.clone();
    let ledger = ledger::Ledger::start(store.clone());
    let models = models::Gateway::start(
        &config.models,
        &|k| env.get(k),
        store.clone(),
        ledger.clone(),
    )
    .await?;
    let registry = Arc::new(registry::RegistryCache::default());
    let guardrails =
        guardrails::Guardrails::start(&config.guardrails.profiles, store.clone(), models.clone())
            .await?;
    let tools = tools::Tools::start(
        &config,
        store.clone(),
        registry.clone(),
        guardrails.clone(),
        limiter.clone(),
        ledger.clone(),
        actor.clone(),
    )
    .await?;
    let session_settings = sessions::SessionSettings {
        storage_root: config.runtime.storage_dir.clone(),
        run_root: config.runtime.run_dir.clone(),
        ready_timeout: Duration::from_secs(config.runtime.ready_timeout_seconds.max(1)),
        time_divisor: config.runtime.time_divisor,
        node: config.node_id()?,
        compute_every: Duration::from_secs(config.runtime.compute_sample_seconds),
        storage_limit: config.runtime.storage_limit,
    };
    let session_storage = sessions::SessionStorage::prepare(&session_settings);
    let backend = sandbox_backend(&config, session_storage.refusal());
    let sessions = sessions::SessionManager::new(
        session_settings,
        session_storage,
        backend,
        store.clone(),
        ledger.clone(),
        workload.clone(),
        system,
    );
    let knowledge = knowledge::Knowledge::new(store.clone(), config.knowledge.clone());
    let metrics = Arc::new(tenantry_telemetry::Metrics::new(tenantry_telemetry::Caps {
        tenants: config.telemetry.metrics_tenant_cap,
        ..tenantry_telemetry::Caps::default()
    }));
    sessions.set_metrics(metrics.clone());
    ledger.set_metrics(metrics.clone());
    let audit = audit::Audit::start(store.clone(), config.telemetry.audit_retention_days);
    tools.set_audit(audit.clone());
    guardrails.set_observers(audit.clone(), metrics.clone());
    let (extraction, extraction_rx) =
        memory::extraction::Queue::new(config.memory.extraction_queue);
    let memory = memory::MemoryService::new(store.clone(), extraction);
    let access_keys = aws::AccessKeys::new(store.clone(), tools.vault().clone(), system);
    let state = AppState {
        inner: Arc::new(state::Inner {
            config,
            public_url,
            store,
            verifier,
            admin,
            limiter,
            workload,
            actor,
            dev_issuer,
            registry,
            api_keys: key_cache::ApiKeyCache::default(),
            access_keys,
            metrics,
            audit,
            sessions,
            models,
            tools,
            guardrails,
            ledger,
            memory,
            knowledge,
        }),
    };
    memory::extraction::spawn(Arc::downgrade(&state.inner), extraction_rx);
    memory::expiry::spawn(
        Arc::downgrade(&state.inner),
        system,
        Duration::from_secs(state.config.memory.expiry_interval_seconds),
    );
    // Runtime-hosted tool targets run in this server's sessions (a weak reference: the state
    // owns the catalogue).
    state
        .tools
        .catalog()
        .set_host(Arc::new(tools::HostedSessions::new(Arc::downgrade(
            &state.inner,
        ))));
    Ok(state)
}

/// The key that signs actor tokens, created (0600) if it does not exist yet. It is not the
/// workload secret: a token endpoint that verifies actor tokens must not be able to mint
/// workload tokens.
fn actor_issuer(path: &std::path::Path) -> Result<ActorIssuer, StartError> {
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StartError::Identity(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        ActorIssuer::generate_key(path).map_err(|e| StartError::Identity(e.to_string()))?;
        tracing::info!(path = %path.display(), "created the actor-token key");
    }
    ActorIssuer::load(path).map_err(|e| StartError::Identity(e.to_string()))
}

/// The whole application with its middleware, ready to serve.
pub fn app(state: AppState) -> axum::Router {
    routes::router(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            aws::auth::verify_signed,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state,
            middleware::ingress,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    tracing::error!("a handler panicked; this is a bug");
    error::ApiError::new(
        tenantry_core::ErrorCode::Internal,
        "internal error; see the server log",
    )
    .into_response()
}

/// A running server. Dropping it does not stop it; call `shutdown`.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    /// Where `telemetry.metrics_listen` serves `/metrics`, when configured.
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Binds `listen` (or the config's `server.listen`) and serves in a background task.
    pub async fn start(config: Config, listen: Option<SocketAddr>) -> Result<Server, StartError> {
        let addr = match listen {
            Some(a) => a,
            None => config.listen_addr()?,
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: addr.to_string(),
            source,
        })?;
        let state = build_state(config).await?;
        let app = app(state.clone());
        state.sessions.start(app.clone()).await;
        tenants::start_watch(&state);
        let (stop, mut stopped) = watch::channel(false);
        let metrics_addr = match state.config.telemetry.metrics_listen.clone() {
            Some(at) => Some(serve_metrics(&state, &at, stopped.clone()).await?),
            None => None,
        };
        // Small JSON responses must not wait for Nagle's algorithm.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        });
        Ok(Server {
            addr,
            metrics_addr,
            state,
            stop,
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, stops the sessions, waits (up to 10 s) for requests in
    /// flight, and then (up to 10 s more) for the usage ledger to drain: every entry queued
    /// by then, a compute sample of a stopped session or an abandoned stream's, is written.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.state.sessions.shutdown().await;
        if !self.state.audit.flush(Duration::from_secs(5)).await {
            tracing::warn!("audit events were still being written after 5 s");
        }
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server stopped with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
            Err(_) => tracing::warn!("requests still in flight after 10 s; stopping anyway"),
        }
        self.state.ledger.drain(Duration::from_secs(10)).await;
    }

    /// Serves until the task ends (it does not, short of an I/O error).
    pub async fn wait(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Serves `GET /metrics` alone, without authentication, on `at` until `stopped` turns true.
async fn serve_metrics(
    state: &AppState,
    at: &str,
    mut stopped: watch::Receiver<bool>,
) -> Result<SocketAddr, StartError> {
    let listen_error = |source| StartError::Listen {
        addr: at.to_string(),
        source,
    };
    let listener = TcpListener::bind(at).await.map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;
    let scrape = state.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let state = scrape.clone();
            async move { routes::system::render_metrics(&state) }
        }),
    );
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    tracing::info!(%addr, "serving /metrics without authentication");
    Ok(addr)
}

/// A database URL with its password replaced, fit for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) | Err(_) => url.to_string(),
    }
}

/// Installs the process-wide log subscriber (`TENANTRY_LOG` sets the filter, default `info`).
pub fn init_logging(format: config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TENANTRY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a terminal: a file or a pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match format {
        config::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
    // A second call (tests, the demo) keeps the first subscriber.
    drop(result);
}
