//! The session manager: one sandbox per session, started on first invocation (or taken from a
//! warm pool), resumed with its storage after a stop, stopped on idle timeout or maximum
//! lifetime, metered into the ledger when it stops, and its storage deleted after expiry.
//!
//! Sessions belong to the (tenant, user) that created them; this module is handed a verified
//! `TenantContext` and never looks a session up outside that tenant's scope. A sandbox is bound
//! to exactly one session and destroyed after it; warm sandboxes are kept per (runtime,
//! tenant), so even an unbound one never crosses tenants.
//!
//! The agent reaches the platform through a Unix socket of its own sandbox (the platform
//! bridge). Requests arriving there that carry the sandbox's bridge secret (the agent's
//! `OPENAI_API_KEY`) are re-authenticated as the session's workload token, so the secret is
//! worthless anywhere else and a warm sandbox needs no credential until it is bound.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tenantry_core::{
    ErrorCode, OperatorGrant, RuntimeName, TenantContext, TenantId, TenantScope, Tier, unix_now,
};
use tenantry_runtime::{
    PlatformBridge, ProcessSandbox, SandboxExit, SandboxHandle, SandboxSpec, SandboxStatus,
};
use tenantry_store::{SessionRecord, SessionStatus, Store, UsageKind, UsageRecord};

use crate::error::ApiError;
use crate::runtimes::{CUSTOM_HEADER_PREFIXES, Protocol, Runtime};

/// Longest wait for the agent's response headers.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(900);
/// How often the lifecycle loop looks at live sessions.
const TICK: Duration = Duration::from_millis(500);
/// How often session storage is checked for expiry.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
const TOUCH_PERSIST_EVERY: i64 = 30;
const INVOCATION_TOKEN_TTL: Duration = Duration::from_secs(900);

pub const SESSION_HEADER: &str = "x-tenantry-session-id";
/// The MCP session of a runtime-hosted MCP server, passed both ways.
const MCP_SESSION_HEADER: &str = "mcp-session-id";
pub const AGENTCORE_SESSION_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-session-id";

/// Whether a caller-chosen session id is acceptable: 33 to 256 characters of letters, digits,
/// `-`, `_` and `.`.
pub fn valid_session_id(id: &str) -> bool {
    (33..=256).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

pub fn new_session_id() -> String {
    format!("sess-{}", uuid::Uuid::new_v4())
}

/// One request for a session's agent (or hosted MCP server).
#[derive(Debug)]
pub struct Invocation<'a> {
    pub runtime: Runtime,
    pub session_id: String,
    /// The caller's headers: the allowlisted ones are passed on, the others dropped.
    pub caller_headers: &'a HeaderMap,
    /// Headers the platform itself sets (a tool target's credential), passed as they are.
    pub platform_headers: HeaderMap,
    /// The invoking user's JWT, kept for the agent's token exchanges while the session runs;
    /// `None` forgets the one kept before (the session was invoked with another credential).
    pub subject: Option<String>,
    pub body: Body,
    pub permit: Option<tenantry_limits::Permit>,
}

/// The user JWT a caller presented, for `Invocation::subject`: only a JWT caller has one.
pub fn subject_of(ctx: &TenantContext, headers: &HeaderMap) -> Option<String> {
    match &ctx.credential {
        tenantry_core::CredentialKind::Jwt { .. } => headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_string()),
        tenantry_core::CredentialKind::ApiKey { .. }
        | tenantry_core::CredentialKind::Workload { .. } => None,
    }
}

type LiveKey = (TenantId, String);
/// A session's place in the live map; its lock serialises starting and stopping the session.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Live>>>>;

/// Who a bound sandbox acts for: set when a sandbox is handed to a session.
#[derive(Debug, Default)]
struct Binding {
    token: Option<String>,
}

/// A running sandbox, bound to a session or waiting in a warm pool.
#[derive(Debug)]
struct Sandboxed {
    handle: SandboxHandle,
    binding: Arc<Mutex<Binding>>,
    bridge_task: tokio::task::JoinHandle<()>,
    run_dir: PathBuf,
    storage_dir: PathBuf,
    /// A warm sandbox's connection to its agent, opened (and used once, for `/ping`) while it
    /// waited, so that its session's first invocation finds the bridge and the agent warm.
    primed: Option<AgentSender>,
    /// How long its launch took, for the `session started` log.
    times: LaunchTimes,
}

/// The two steps of a launch: the backend's start (helper, namespaces, cgroups, agent
/// executed) and the wait until the agent listened.
#[derive(Debug, Clone, Copy, Default)]
struct LaunchTimes {
    start: Duration,
    listen: Duration,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Sandboxed {
    /// Stops a sandbox that was never bound to a session, and deletes its (warm) storage.
    async fn discard(self) {
        let _ = self.handle.stop().await;
        let _ = std::fs::remove_dir_all(&self.storage_dir);
    }
}

impl Drop for Sandboxed {
    fn drop(&mut self) {
        self.bridge_task.abort();
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

#[derive(Debug)]
struct Live {
    sandbox: Sandboxed,
    runtime: Runtime,
    user: tenantry_core::UserId,
    started: Instant,
    last_active_ms: AtomicU64,
    in_flight: AtomicU32,
    /// The tier's `sandbox.storage_mb`, in bytes.
    storage_limit: u64,
    /// Set when the storage was last measured above the limit.
    over_quota: Arc<AtomicBool>,
    /// Kept-alive connections to the agent, for the next invocations.
    connections: Mutex<Vec<AgentSender>>,
    /// When `last_active_at` was last written to the store (unix seconds).
    persisted_touch: std::sync::atomic::AtomicI64,
}

impl Live {
    fn touch(&self, epoch: Instant) {
        self.last_active_ms
            .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// The platform's view of the sandbox backend: available, or why not.
#[derive(Debug)]
enum Backend {
    Process(Box<ProcessSandbox>),
    Unavailable(String),
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    store: Store,
    workload: tenantry_identity::WorkloadIssuer,
    storage_root: PathBuf,
    run_root: PathBuf,
    ready_timeout: Duration,
    time_divisor: u32,
    epoch: Instant,
    live: Mutex<HashMap<LiveKey, Slot>>,
    /// The user JWT each live session was last invoked with: the `subject_token` of a token
    /// exchange the agent's tool calls need (never logged, forgotten when the session stops).
    subjects: Mutex<HashMap<LiveKey, String>>,
    warm: Mutex<HashMap<(RuntimeName, TenantId), Vec<Sandboxed>>>,
    /// The application served to agents on their bridge sockets; set once the router exists.
    app: OnceLock<axum::Router>,
}

/// Cheap to clone; all clones share the sessions.
#[derive(Debug, Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

/// Settings of the session manager, from `[runtime]` of the config.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub storage_root: PathBuf,
    pub run_root: PathBuf,
    /// The sandbox helper and its arguments; `None` when the platform cannot run sandboxes.
    pub helper: Option<(PathBuf, Vec<String>)>,
    /// Longest wait for a new sandbox's agent to listen on its port.
    pub ready_timeout: Duration,
    /// Divides every lifecycle duration (idle timeout, maximum lifetime): 1 in production;
    /// tests use a larger value to see a 60-second timeout in a fraction of that.
    pub time_divisor: u32,
    /// Remount a cgroup hierarchy with `favordynmods` (see `RuntimeConfig`).
    pub favor_dynamic_cgroups: bool,
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

fn agent_unavailable(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::AgentUnavailable, message)
}

/// The error for a sandbox that is no longer running.
fn ended_error(exit: SandboxExit, output: &[String]) -> ApiError {
    let tail = output
        .iter()
        .rev()
        .take(3)
        .rev()
        .cloned()
        .collect::<Vec<_>>()
        .join(" | ");
    let tail = if tail.is_empty() {
        String::new()
    } else {
        format!("; last output: {tail}")
    };
    match exit {
        SandboxExit::OutOfMemory => ApiError::new(
            ErrorCode::SandboxOom,
            "the agent was killed for going over the memory limit of its tier",
        ),
        SandboxExit::Exited { code } => {
            agent_unavailable(format!("the agent exited with code {code}{tail}"))
        }
        SandboxExit::Signaled { signal } => {
            agent_unavailable(format!("the agent was killed by signal {signal}{tail}"))
        }
        SandboxExit::Stopped => agent_unavailable("the session's sandbox was stopped"),
    }
}

impl SessionManager {
    pub fn new(
        settings: SessionSettings,
        store: Store,
        workload: tenantry_identity::WorkloadIssuer,
    ) -> Self {
        let backend = match &settings.helper {
            None => Backend::Unavailable("no sandbox helper is configured".into()),
            Some((helper, args)) => {
                let mut config = tenantry_runtime::ProcessSandboxConfig::new(helper);
                config.helper_args = args.clone();
                config.run_root = settings.run_root.join("sandboxes");
                match ProcessSandbox::new(config) {
                    Ok(b) => {
                        if settings.favor_dynamic_cgroups {
                            tune_cgroup_migrations();
                        }
                        Backend::Process(Box::new(b))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "sessions cannot start: the process sandbox is unavailable");
                        Backend::Unavailable(e.to_string())
                    }
                }
            }
        };
        Self {
            inner: Arc::new(Inner {
                backend,
                store,
                workload,
                storage_root: settings.storage_root,
                run_root: settings.run_root,
                ready_timeout: settings.ready_timeout,
                time_divisor: settings.time_divisor.max(1),
                epoch: Instant::now(),
                live: Mutex::new(HashMap::new()),
                subjects: Mutex::new(HashMap::new()),
                warm: Mutex::new(HashMap::new()),
                app: OnceLock::new(),
            }),
        }
    }

    /// Gives the manager the application agents reach through their bridge, and starts the
    /// lifecycle and storage-expiry loops.
    pub fn start(&self, app: axum::Router) {
        let _ = self.inner.app.set(app);
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut last_sweep = Instant::now();
            loop {
                tokio::time::sleep(TICK).await;
                let Some(inner) = weak.upgrade() else { return };
                let manager = SessionManager { inner };
                manager.lifecycle_tick().await;
                if last_sweep.elapsed() >= SWEEP_EVERY {
                    last_sweep = Instant::now();
                    manager.sweep_storage().await;
                }
            }
        });
    }

    /// Whether the session is running (workload tokens are honoured only then).
    pub fn is_live(&self, tenant: &TenantId, session: &str) -> bool {
        self.inner
            .live
            .lock()
            .map(|m| m.contains_key(&(tenant.clone(), session.to_string())))
            .unwrap_or(false)
    }

    /// The user JWT the running session was last invoked with, for a token exchange on behalf
    /// of that user by the session's agent; `None` when the session is not running or was
    /// invoked with another credential (an API key).
    pub fn subject_token(&self, tenant: &TenantId, session: &str) -> Option<String> {
        if !self.is_live(tenant, session) {
            return None;
        }
        self.inner
            .subjects
            .lock()
            .ok()?
            .get(&(tenant.clone(), session.to_string()))
            .cloned()
    }

    /// Sessions of the tenant running or starting, other than `key` itself.
    fn others_running(&self, key: &LiveKey) -> usize {
        self.inner
            .live
            .lock()
            .map(|m| m.keys().filter(|k| k.0 == key.0 && *k != key).count())
            .unwrap_or(0)
    }

    /// Where a session's storage lives on the host: below the tenant's directory, named by a
    /// hash of the session id so no caller-chosen string ever becomes a path.
    pub fn storage_dir(&self, tenant: &TenantId, session: &str) -> PathBuf {
        let digest = Sha256::digest(session.as_bytes());
        let name: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        self.inner.storage_root.join(tenant.as_str()).join(name)
    }

    // ---- invocation ---------------------------------------------------------------------

    /// Runs one invocation of `runtime` in the caller's session (created or resumed as
    /// needed) and returns the agent's response, streamed. The request goes to the agent's
    /// `POST /invocations`, or to `POST /mcp` of a runtime whose protocol is `mcp`.
    pub async fn invoke(
        &self,
        ctx: &TenantContext,
        tier: &Tier,
        invocation: Invocation<'_>,
    ) -> Result<Response<Body>, ApiError> {
        let Invocation {
            runtime,
            session_id,
            caller_headers,
            platform_headers,
            subject,
            body,
            permit,
        } = invocation;
        let scope = ctx.scope();
        let live = self
            .session(ctx, tier, &scope, &runtime, &session_id)
            .await?;
        if live.over_quota.load(Ordering::Relaxed) {
            return Err(storage_exceeded(live.storage_limit));
        }
        live.in_flight.fetch_add(1, Ordering::SeqCst);
        live.touch(self.inner.epoch);
        self.remember_subject(ctx, &session_id, subject);
        let guard = InFlight {
            live: live.clone(),
            epoch: self.inner.epoch,
            _permit: permit,
        };
        // `last_active_at` in the store only drives storage expiry (days): writing it at most
        // every 30 s keeps a store write off every invocation.
        let now = unix_now();
        if now - live.persisted_touch.load(Ordering::Relaxed) >= TOUCH_PERSIST_EVERY {
            live.persisted_touch.store(now, Ordering::Relaxed);
            let _ = self
                .inner
                .store
                .touch_session(&scope, &session_id, now)
                .await;
        }

        let token = self
            .inner
            .workload
            .mint(
                &ctx.tenant_id,
                &ctx.user_id,
                &session_id,
                runtime.name.as_str(),
                INVOCATION_TOKEN_TTL,
            )
            .map_err(|e| ApiError::internal("minting a workload token", e))?;
        let mut headers = agent_headers(ctx, &runtime, &session_id, &token, caller_headers);
        // The platform's own headers (tenant context, token, trace) are never replaced.
        for (name, value) in &platform_headers {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }

        if let Some(len) = caller_headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && len > runtime.spec.max_body_bytes
        {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the body is larger than runtime {}'s max_body_bytes",
                    runtime.name
                ),
            ));
        }
        let limited = http_body_util::Limited::new(body, runtime.spec.max_body_bytes as usize);

        let mut sender = agent_connection(&live).await?;
        let mut request = Request::post(runtime.spec.protocol.path())
            .body(Body::new(limited))
            .map_err(|e| ApiError::internal("building the agent request", e))?;
        *request.headers_mut() = headers;
        let response =
            match tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(request)).await {
                Err(_) => {
                    return Err(agent_unavailable(
                        "the agent did not answer within 15 minutes",
                    ));
                }
                Ok(Err(e)) => return Err(forward_error(&live, e).await),
                Ok(Ok(r)) => r,
            };
        let (parts, incoming) = response.into_parts();
        let mut out = Response::builder().status(parts.status);
        for name in ["content-type", "cache-control", "content-encoding"] {
            if let Some(v) = parts.headers.get(name) {
                out = out.header(name, v);
            }
        }
        if runtime.spec.protocol == Protocol::Mcp
            && let Some(v) = parts.headers.get(MCP_SESSION_HEADER)
        {
            out = out.header(MCP_SESSION_HEADER, v);
        }
        out = out.header(SESSION_HEADER, &session_id);
        let body = Body::new(Tracked {
            inner: Box::pin(incoming),
            connection: Some(sender),
            ended: false,
            _guard: guard,
        });
        out.body(body)
            .map_err(|e| ApiError::internal("building the response", e))
    }

    /// The live session for this caller: running already, resumed, or created.
    async fn session(
        &self,
        ctx: &TenantContext,
        tier: &Tier,
        scope: &TenantScope,
        runtime: &Runtime,
        session_id: &str,
    ) -> Result<Arc<Live>, ApiError> {
        let store = &self.inner.store;
        let key = (ctx.tenant_id.clone(), session_id.to_string());
        let slot = {
            let mut live = self
                .inner
                .live
                .lock()
                .map_err(|_| ApiError::internal("locking sessions", "poisoned"))?;
            live.entry(key.clone()).or_default().clone()
        };
        let mut guard = slot.lock().await;
        // A running session is answered from memory: its owner and runtime are known.
        if let Some(live) = guard.as_ref()
            && matches!(live.sandbox.handle.status(), SandboxStatus::Running)
        {
            if live.user != ctx.user_id || live.runtime.name != runtime.name {
                return Err(ApiError::not_found("session"));
            }
            return Ok(live.clone());
        }
        let entered = Instant::now();
        let record = store.get_session(scope, session_id).await?;
        if let Some(r) = &record
            && (r.user_id != ctx.user_id || r.runtime != runtime.name)
        {
            // Another user's (or another runtime's) session does not exist for this caller.
            self.forget_empty_slot(&key, &guard);
            return Err(ApiError::not_found("session"));
        }
        if let Some(live) = guard.as_ref() {
            if matches!(live.sandbox.handle.status(), SandboxStatus::Running) {
                return Ok(live.clone());
            }
            // The sandbox ended on its own (crash, OOM; the invocation that saw it was told).
            // Meter it and start a fresh sandbox on the same storage.
            if let Some(ended) = guard.take() {
                let exit = match ended.sandbox.handle.status() {
                    SandboxStatus::Ended(exit) => exit,
                    SandboxStatus::Running => SandboxExit::Stopped,
                };
                self.finish_keep_slot(&key, ended, exit.as_str()).await;
            }
        }
        let now = unix_now();
        if let Some(max) = tier.limits.concurrent_sessions
            && self.others_running(&key) >= max as usize
        {
            self.forget_empty_slot(&key, &guard);
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "tenant {} already has {max} running sessions (tier {})",
                    ctx.tenant_id, tier.name
                ),
            ));
        }
        let storage = self.storage_dir(&ctx.tenant_id, session_id);
        let storage_limit = u64::from(tier.sandbox.storage_mb) * 1024 * 1024;
        if record.is_some() && measure_storage(storage.clone()).await > storage_limit {
            self.forget_empty_slot(&key, &guard);
            return Err(storage_exceeded(storage_limit));
        }
        let resumed = match record {
            None => {
                let record = SessionRecord {
                    id: session_id.to_string(),
                    tenant_id: ctx.tenant_id.clone(),
                    user_id: ctx.user_id.clone(),
                    runtime: runtime.name.clone(),
                    status: SessionStatus::Active,
                    created_at: now,
                    last_active_at: now,
                    stopped_at: None,
                    stop_reason: None,
                };
                store.insert_session(scope, &record).await?;
                false
            }
            Some(_) => {
                store
                    .set_session_status(scope, session_id, SessionStatus::Active, None, now)
                    .await?;
                true
            }
        };
        let prepared = entered.elapsed();
        let warm = self.take_warm(runtime, &ctx.tenant_id, &storage, resumed);
        let from_pool = warm.is_some();
        let mut started = match warm {
            Some(s) => s,
            None => self
                .launch(runtime, &ctx.tenant_id, tier, session_id, &storage)
                .await
                .inspect_err(|_| {
                    self.forget_empty_slot(&key, &guard);
                })?,
        };
        // Bind: from now on the bridge secret stands for this session's workload token.
        let token = self
            .inner
            .workload
            .mint(
                &ctx.tenant_id,
                &ctx.user_id,
                session_id,
                runtime.name.as_str(),
                Duration::from_secs(runtime.spec.lifecycle.max_lifetime_seconds),
            )
            .map_err(|e| ApiError::internal("minting a workload token", e))?;
        if let Ok(mut b) = started.binding.lock() {
            b.token = Some(token);
        }
        let primed: Vec<AgentSender> = started.primed.take().into_iter().collect();
        let live = Arc::new(Live {
            sandbox: started,
            runtime: runtime.clone(),
            user: ctx.user_id.clone(),
            started: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            storage_limit,
            over_quota: Arc::new(AtomicBool::new(false)),
            connections: Mutex::new(primed),
            persisted_touch: std::sync::atomic::AtomicI64::new(now),
        });
        live.touch(self.inner.epoch);
        *guard = Some(live.clone());
        drop(guard);
        // Where the start-up time went: before the sandbox (session row, storage), and for a
        // sandbox launched for this session, its start and the wait for the agent to listen.
        let times = if from_pool {
            LaunchTimes::default()
        } else {
            live.sandbox.times
        };
        tracing::info!(
            tenant.id = %ctx.tenant_id,
            session.id = %session_id,
            runtime = %runtime.name,
            resumed,
            from_pool,
            prepare_us = micros(prepared),
            launch_us = micros(times.start),
            listen_us = micros(times.listen),
            total_us = micros(entered.elapsed()),
            "session started"
        );
        self.fill_warm_pool(runtime.clone(), ctx.tenant_id.clone(), tier.clone());
        Ok(live)
    }

    /// Keeps the invoking user's JWT for the session's token exchanges (see `subject_token`).
    fn remember_subject(&self, ctx: &TenantContext, session: &str, jwt: Option<String>) {
        let key = (ctx.tenant_id.clone(), session.to_string());
        if let Ok(mut subjects) = self.inner.subjects.lock() {
            match jwt {
                Some(token) => {
                    subjects.insert(key, token);
                }
                None => {
                    subjects.remove(&key);
                }
            }
        }
    }

    fn forget_empty_slot(
        &self,
        key: &LiveKey,
        guard: &tokio::sync::MutexGuard<'_, Option<Arc<Live>>>,
    ) {
        if guard.is_none()
            && let Ok(mut live) = self.inner.live.lock()
        {
            live.remove(key);
        }
    }

    /// Starts a sandbox for the runtime and waits until its agent listens.
    async fn launch(
        &self,
        runtime: &Runtime,
        tenant: &TenantId,
        tier: &Tier,
        label: &str,
        storage: &Path,
    ) -> Result<Sandboxed, ApiError> {
        let backend = match &self.inner.backend {
            Backend::Process(b) => b,
            Backend::Unavailable(why) => {
                return Err(ApiError::new(
                    ErrorCode::Unavailable,
                    format!("this server cannot start sandboxes: {why}"),
                ));
            }
        };
        std::fs::create_dir_all(storage)
            .map_err(|e| ApiError::internal("creating session storage", e))?;
        let run_dir = self
            .inner
            .run_root
            .join("bridges")
            .join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| ApiError::internal("creating a run directory", e))?;
        let socket = run_dir.join("platform.sock");
        let listener = tokio::net::UnixListener::bind(&socket)
            .map_err(|e| ApiError::internal("binding the platform bridge", e))?;
        let bridge_secret = format!("tsbx_{}", uuid::Uuid::new_v4().simple());
        let binding = Arc::new(Mutex::new(Binding::default()));
        let app = self.inner.app.get().cloned().ok_or_else(|| {
            ApiError::internal("starting a sandbox", "the session manager was not started")
        })?;
        let bridged = app.layer(axum::middleware::from_fn_with_state(
            (bridge_secret.clone(), binding.clone()),
            bridge_auth,
        ));
        let bridge_task = tokio::spawn(async move {
            let _ = axum::serve(listener, bridged).await;
        });

        let platform = PlatformBridge::new(&socket);
        let endpoint = platform.endpoint();
        let mut spec = SandboxSpec::new(
            label.to_string(),
            tenant.clone(),
            runtime.spec.command.clone(),
            runtime.spec.workdir.clone(),
            storage.to_path_buf(),
        );
        spec.env = runtime.spec.env.clone();
        spec.env
            .insert("OPENAI_BASE_URL".into(), format!("{endpoint}/v1"));
        spec.env
            .insert("OPENAI_API_KEY".into(), bridge_secret.clone());
        spec.mount_path = runtime.spec.storage.mount_path.clone();
        spec.resources = tier.sandbox.clone();
        spec.agent_port = runtime.spec.protocol.port();
        spec.platform = Some(platform);
        let sandboxed = |handle| Sandboxed {
            handle,
            binding,
            bridge_task,
            run_dir,
            storage_dir: storage.to_path_buf(),
            primed: None,
            times: LaunchTimes::default(),
        };
        let launched = Instant::now();
        let handle = backend.launch(spec).await.map_err(|e| {
            let code = e.code();
            if code == ErrorCode::InvalidRequest {
                ApiError::invalid(format!("runtime {} cannot start: {e}", runtime.name))
            } else {
                ApiError::new(code, format!("cannot start the sandbox: {e}"))
            }
        })?;
        let mut started = sandboxed(handle);
        started.times.start = launched.elapsed();
        let waited = Instant::now();
        if let Err(e) = started
            .handle
            .wait_for_agent(self.inner.ready_timeout)
            .await
        {
            let status = started.handle.status();
            let output = started.handle.recent_output();
            let _ = started.handle.stop().await;
            return Err(match status {
                SandboxStatus::Ended(exit) => ended_error(exit, &output),
                SandboxStatus::Running => agent_unavailable(format!(
                    "the agent did not listen on port {} within {} s: {e}",
                    runtime.spec.protocol.port(),
                    self.inner.ready_timeout.as_secs()
                )),
            });
        }
        started.times.listen = waited.elapsed();
        Ok(started)
    }

    // ---- warm pools -------------------------------------------------------------------------

    /// A pre-started sandbox of this runtime for this tenant, moved onto the session's
    /// storage. Only new sessions take one: a resumed session needs its own storage mounted.
    fn take_warm(
        &self,
        runtime: &Runtime,
        tenant: &TenantId,
        storage: &Path,
        resumed: bool,
    ) -> Option<Sandboxed> {
        if resumed || runtime.spec.warm_pool == 0 || storage.exists() {
            return None;
        }
        let mut warm = self.inner.warm.lock().ok()?;
        let pool = warm.get_mut(&(runtime.name.clone(), tenant.clone()))?;
        while let Some(mut candidate) = pool.pop() {
            if !matches!(candidate.handle.status(), SandboxStatus::Running) {
                continue;
            }
            if let Some(parent) = storage.parent()
                && std::fs::create_dir_all(parent).is_err()
            {
                pool.push(candidate);
                return None;
            }
            // The sandbox has the warm directory mounted; renaming it keeps the mount, so the
            // directory becomes this session's storage without touching the sandbox.
            if std::fs::rename(&candidate.storage_dir, storage).is_err() {
                continue;
            }
            candidate.storage_dir = storage.to_path_buf();
            return Some(candidate);
        }
        None
    }

    /// Warm sandboxes waiting now in the pool of `runtime` for `tenant`.
    pub fn warm_sandboxes(&self, runtime: &RuntimeName, tenant: &TenantId) -> usize {
        self.inner
            .warm
            .lock()
            .map(|w| {
                w.get(&(runtime.clone(), tenant.clone()))
                    .map_or(0, Vec::len)
            })
            .unwrap_or(0)
    }

    /// Fills the pool of `runtime` for `tenant` up to the runtime's `warm_pool`, in the
    /// background: after a session took a sandbox from it, or for a runtime dedicated to that
    /// tenant when it is created or changed, so that even its first session finds one.
    pub fn fill_warm_pool(&self, runtime: Runtime, tenant: TenantId, tier: Tier) {
        let want = runtime.spec.warm_pool as usize;
        if want == 0 {
            return;
        }
        let manager = self.clone();
        tokio::spawn(async move {
            let key = (runtime.name.clone(), tenant.clone());
            loop {
                let have = manager
                    .inner
                    .warm
                    .lock()
                    .map(|w| w.get(&key).map_or(0, Vec::len))
                    .unwrap_or(want);
                if have >= want {
                    return;
                }
                let label = format!("warm-{}", uuid::Uuid::new_v4().simple());
                let dir = manager.inner.storage_root.join(".warm").join(&label);
                match manager.launch(&runtime, &tenant, &tier, &label, &dir).await {
                    Ok(mut s) => {
                        s.primed = ping(&s.handle).await.map(|(sender, _)| sender);
                        // The runtime may have been changed or deleted while this sandbox
                        // started: a sandbox of an old spec must never be handed out.
                        let current = manager.inner.store.get_runtime(&runtime.name).await;
                        let unchanged =
                            matches!(&current, Ok(Some(r)) if r.updated_at == runtime.updated_at);
                        if !unchanged {
                            s.discard().await;
                            return;
                        }
                        if let Ok(mut w) = manager.inner.warm.lock() {
                            w.entry(key.clone()).or_default().push(s);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(runtime = %runtime.name, error = %e.message, "cannot fill the warm pool");
                        return;
                    }
                }
            }
        });
    }

    /// Stops the warm sandboxes of a runtime whose spec changed: new sessions get the new spec.
    pub async fn runtime_changed(&self, name: &RuntimeName) {
        let warm: Vec<Sandboxed> = self
            .inner
            .warm
            .lock()
            .map(|mut w| {
                let keys: Vec<_> = w.keys().filter(|(r, _)| r == name).cloned().collect();
                keys.into_iter()
                    .flat_map(|k| w.remove(&k).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        for s in warm {
            s.discard().await;
        }
    }

    /// Stops everything of a deleted runtime.
    pub async fn runtime_deleted(&self, name: &RuntimeName) {
        self.runtime_changed(name).await;
        for (key, live) in self.live_sessions() {
            if &live.runtime.name == name {
                self.stop_key(&key, "runtime_deleted").await;
            }
        }
    }

    // ---- stopping ---------------------------------------------------------------------------

    fn live_sessions(&self) -> Vec<(LiveKey, Arc<Live>)> {
        let slots: Vec<_> = self
            .inner
            .live
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        slots
            .into_iter()
            .filter_map(|(k, slot)| slot.try_lock().ok().and_then(|g| g.clone()).map(|l| (k, l)))
            .collect()
    }

    /// Stops a tenant's session at the caller's request; `false` if it was not running.
    pub async fn stop(&self, tenant: &TenantId, session: &str, reason: &str) -> bool {
        self.stop_key(&(tenant.clone(), session.to_string()), reason)
            .await
    }

    async fn stop_key(&self, key: &LiveKey, reason: &str) -> bool {
        let slot = match self.inner.live.lock() {
            Ok(m) => m.get(key).cloned(),
            Err(_) => None,
        };
        let Some(slot) = slot else { return false };
        let live = slot.lock().await.take();
        match live {
            Some(live) => {
                self.finish(key, live, reason).await;
                true
            }
            None => false,
        }
    }

    /// Stops a sandbox that left the live map, meters it, and records why the session stopped.
    async fn finish(&self, key: &LiveKey, live: Arc<Live>, reason: &str) {
        if let Ok(mut m) = self.inner.live.lock() {
            m.remove(key);
        }
        self.finish_keep_slot(key, live, reason).await;
    }

    /// `finish`, for a caller that holds the session's slot and goes on using it.
    async fn finish_keep_slot(&self, key: &LiveKey, live: Arc<Live>, reason: &str) {
        if let Ok(mut subjects) = self.inner.subjects.lock() {
            subjects.remove(key);
        }
        let report = live.sandbox.handle.stop().await;
        let (tenant, session) = key;
        let scope = TenantScope::for_operator(OperatorGrant::verified(), tenant.clone());
        let now = unix_now();
        if let Ok(report) = &report {
            let usage = report.usage;
            let record = UsageRecord {
                id: uuid::Uuid::now_v7().to_string(),
                tenant_id: tenant.clone(),
                user_id: Some(live.user.clone()),
                runtime: Some(live.runtime.name.clone()),
                session_id: Some(session.clone()),
                kind: UsageKind::Compute,
                resource: None,
                provider: None,
                input_tokens: 0,
                output_tokens: 0,
                cpu_ms: (usage.cpu_seconds * 1000.0).round() as i64,
                memory_mb_ms: (usage.memory_gb_seconds * 1024.0 * 1000.0).round() as i64,
                calls: 0,
                cost: tenantry_core::Money::ZERO,
                latency_ms: Some((usage.wall_seconds * 1000.0).round() as i64),
                ttft_ms: None,
                status: report.exit.as_str().to_string(),
                at: now,
            };
            if let Err(e) = self.inner.store.record_usage(&scope, &record).await {
                tracing::error!(error = %e, tenant.id = %tenant, session.id = %session, "cannot record compute usage");
            }
        }
        if let Err(e) = self
            .inner
            .store
            .set_session_status(&scope, session, SessionStatus::Stopped, Some(reason), now)
            .await
        {
            tracing::error!(error = %e, "cannot record that a session stopped");
        }
        tracing::info!(tenant.id = %tenant, session.id = %session, reason, "session stopped");
    }

    /// One pass of the lifecycle: idle timeout (unless the agent says `HealthyBusy`), maximum
    /// lifetime, and sandboxes that ended on their own.
    async fn lifecycle_tick(&self) {
        let now_ms = self.inner.epoch.elapsed().as_millis() as u64;
        let divisor = u64::from(self.inner.time_divisor);
        for (key, live) in self.live_sessions() {
            let lifecycle = live.runtime.spec.lifecycle;
            let max_lifetime =
                Duration::from_millis(lifecycle.max_lifetime_seconds * 1000 / divisor);
            if live.started.elapsed() >= max_lifetime {
                self.stop_key(&key, "max_lifetime").await;
                continue;
            }
            if let SandboxStatus::Ended(exit) = live.sandbox.handle.status() {
                if live.in_flight.load(Ordering::SeqCst) == 0 {
                    self.stop_key(&key, exit.as_str()).await;
                }
                continue;
            }
            let idle_ms = now_ms.saturating_sub(live.last_active_ms.load(Ordering::Relaxed));
            if live.in_flight.load(Ordering::SeqCst) > 0
                || idle_ms < lifecycle.idle_timeout_seconds * 1000 / divisor
            {
                continue;
            }
            if ping_busy(&live.sandbox.handle).await {
                live.touch(self.inner.epoch);
                continue;
            }
            self.stop_key(&key, "idle_timeout").await;
        }
    }

    /// Deletes the storage of sessions unused for longer than their runtime's expiry.
    async fn sweep_storage(&self) {
        let grant = OperatorGrant::verified();
        let store = &self.inner.store;
        let candidates = match store.sessions_idle_before(grant, unix_now(), 500).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list sessions for storage expiry");
                return;
            }
        };
        let mut expiry: HashMap<RuntimeName, u64> = HashMap::new();
        for (tenant, session, runtime) in candidates {
            let secs = match expiry.get(&runtime) {
                Some(s) => *s,
                None => {
                    let s = match store.get_runtime(&runtime).await {
                        Ok(Some(r)) => Runtime::from_record(r)
                            .map(|r| r.spec.storage.idle_expiry_seconds)
                            .unwrap_or(0),
                        // A deleted runtime's sessions can never resume: expire them now.
                        Ok(None) => 0,
                        Err(_) => continue,
                    };
                    expiry.insert(runtime.clone(), s);
                    s
                }
            };
            let scope = TenantScope::for_operator(grant, tenant.clone());
            let Ok(Some(record)) = store.get_session(&scope, &session).await else {
                continue;
            };
            let secs = (secs / u64::from(self.inner.time_divisor)) as i64;
            if record.status == SessionStatus::Active || record.last_active_at + secs > unix_now() {
                continue;
            }
            let dir = self.storage_dir(&tenant, &session);
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(error = %e, "cannot delete expired session storage");
                continue;
            }
            let _ = store.delete_session(&scope, &session).await;
            tracing::info!(tenant.id = %tenant, session.id = %session, "session storage expired");
        }
    }

    /// Stops every session (server shutdown).
    pub async fn shutdown(&self) {
        for (key, _) in self.live_sessions() {
            self.stop_key(&key, "platform_shutdown").await;
        }
        let warm: Vec<Sandboxed> = self
            .inner
            .warm
            .lock()
            .map(|mut w| w.drain().flat_map(|(_, v)| v).collect())
            .unwrap_or_default();
        for s in warm {
            s.discard().await;
        }
    }

    /// Runs an expiry sweep now (tests and operators; the loop runs it every 30 s).
    pub async fn sweep_now(&self) {
        self.sweep_storage().await;
    }
}

/// Classifies a failed exchange with the agent. A connection that drops mid-request is often
/// the kernel killing the agent: give the sandbox a moment to report how it ended.
async fn forward_error(live: &Live, e: hyper::Error) -> ApiError {
    let too_large =
        std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
    if too_large {
        return ApiError::new(
            ErrorCode::PayloadTooLarge,
            "the body is larger than the runtime's max_body_bytes",
        );
    }
    let handle = &live.sandbox.handle;
    if !e.is_parse() && !e.is_parse_status() {
        let _ = tokio::time::timeout(Duration::from_secs(1), handle.wait()).await;
    }
    if let SandboxStatus::Ended(exit) = handle.status() {
        return ended_error(exit, &handle.recent_output());
    }
    if handle.usage().oom_kills > 0 {
        return ended_error(SandboxExit::OutOfMemory, &[]);
    }
    if e.is_parse() || e.is_parse_status() {
        return ApiError::new(
            ErrorCode::AgentError,
            format!("the agent answered with something that is not HTTP: {e}"),
        );
    }
    agent_unavailable(format!(
        "the agent closed the connection without answering: {e}"
    ))
}

type AgentSender = hyper::client::conn::http1::SendRequest<Body>;

/// Kept-alive connections to one session's agent; more than this are closed after use.
const MAX_POOLED_CONNECTIONS: usize = 8;

/// A connection to the session's agent: a kept-alive one from its pool if one is ready,
/// otherwise a new one through the sandbox's agent bridge. Reusing connections spares a round
/// trip to the sandbox's init (which connects each new one) per invocation.
async fn agent_connection(live: &Live) -> Result<AgentSender, ApiError> {
    loop {
        let pooled = live.connections.lock().ok().and_then(|mut p| p.pop());
        let Some(mut sender) = pooled else { break };
        if sender.ready().await.is_ok() {
            return Ok(sender);
        }
    }
    let handle = &live.sandbox.handle;
    let stream = handle
        .connect_agent()
        .await
        .map_err(|e| match handle.status() {
            SandboxStatus::Ended(exit) => ended_error(exit, &handle.recent_output()),
            SandboxStatus::Running => agent_unavailable(format!("cannot reach the agent: {e}")),
        })?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| {
            ApiError::new(
                ErrorCode::AgentError,
                format!("the agent's connection failed: {e}"),
            )
        })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// `GET /ping` on a new connection to the agent: the answer's body and the connection, kept
/// alive for the next request. `None` when the agent does not answer within 2 s.
async fn ping(handle: &SandboxHandle) -> Option<(AgentSender, Bytes)> {
    let attempt = async {
        let stream = handle.connect_agent().await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::get("/ping")
            .header(
                axum::http::header::HOST,
                format!("127.0.0.1:{}", handle.agent_port()),
            )
            .body(Body::empty())
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        let bytes = resp.into_body().collect().await.ok()?.to_bytes();
        Some((sender, bytes))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
}

/// Asks the agent's `/ping` whether it is busy. Anything but a clear `HealthyBusy` is "not busy".
async fn ping_busy(handle: &SandboxHandle) -> bool {
    ping(handle)
        .await
        .and_then(|(_, bytes)| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|v| v.get("status").and_then(|s| s.as_str()) == Some("HealthyBusy"))
}

/// Headers the agent receives: the tenant context from the verified caller and the registry,
/// the workload token, trace context, and only the custom headers the runtime allows.
fn agent_headers(
    ctx: &TenantContext,
    runtime: &Runtime,
    session: &str,
    token: &str,
    caller: &HeaderMap,
) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    set("x-tenantry-tenant-id", ctx.tenant_id.as_str());
    set("x-tenantry-tier", ctx.tier.as_str());
    set("x-tenantry-user-id", ctx.user_id.as_str());
    set("x-tenantry-session-id", session);
    set(AGENTCORE_SESSION_HEADER, session);
    set("x-tenantry-region", &ctx.region);
    set(
        "x-tenantry-features",
        &serde_json::to_string(&ctx.features).unwrap_or_default(),
    );
    set(
        "x-tenantry-entitlements",
        &serde_json::to_string(&ctx.entitlements).unwrap_or_default(),
    );
    set("x-tenantry-workload-token", token);
    set(
        "x-amzn-bedrock-agentcore-runtime-workload-accesstoken",
        token,
    );
    set("workloadaccesstoken", token);
    for (name, value) in caller {
        let n = name.as_str();
        let pass = matches!(
            n,
            "content-type" | "accept" | "traceparent" | "tracestate" | "baggage" | "content-length"
        ) || (runtime.spec.protocol == Protocol::Mcp
            && matches!(
                n,
                MCP_SESSION_HEADER | "mcp-protocol-version" | "last-event-id"
            ))
            || (CUSTOM_HEADER_PREFIXES.iter().any(|p| n.starts_with(p))
                && runtime.spec.allows_header(n));
        if pass {
            h.append(name.clone(), value.clone());
        }
    }
    if !h.contains_key("traceparent") {
        let trace = uuid::Uuid::new_v4().simple().to_string();
        let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
        if let Ok(v) = HeaderValue::from_str(&format!("00-{trace}-{span}-01")) {
            h.insert("traceparent", v);
        }
    }
    // The agent listens on the sandbox's loopback; servers that check `Host` (MCP servers
    // guarding against DNS rebinding do) expect that address.
    h.insert(
        axum::http::header::HOST,
        HeaderValue::from_static(match runtime.spec.protocol {
            Protocol::Http => "127.0.0.1:8080",
            Protocol::Mcp => "127.0.0.1:8000",
        }),
    );
    h
}

/// On a sandbox's bridge socket: the sandbox's secret becomes the bound session's workload
/// token; any other credential is passed on unchanged (and verified as usual).
async fn bridge_auth(
    axum::extract::State((secret, binding)): axum::extract::State<(String, Arc<Mutex<Binding>>)>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    if presented.as_deref() == Some(secret.as_str()) {
        let token = binding.lock().ok().and_then(|b| b.token.clone());
        match token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
            Some(v) => {
                req.headers_mut()
                    .insert(axum::http::header::AUTHORIZATION, v);
            }
            None => {
                return ApiError::new(
                    ErrorCode::InvalidToken,
                    "this sandbox is not bound to a session yet",
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// Counts an invocation as in flight until its response body is finished or dropped, and
/// holds its concurrency permit that long.
struct InFlight {
    live: Arc<Live>,
    epoch: Instant,
    _permit: Option<tenantry_limits::Permit>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.live.touch(self.epoch);
        self.live.in_flight.fetch_sub(1, Ordering::SeqCst);
        // Measure the storage after each invocation; the next one is refused if it is over.
        let dir = self.live.sandbox.storage_dir.clone();
        let limit = self.live.storage_limit;
        let flag = self.live.over_quota.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                flag.store(measure_storage(dir).await > limit, Ordering::Relaxed);
            });
        }
    }
}

fn storage_exceeded(limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::StorageExceeded,
        format!(
            "the session's storage holds more than its tier allows ({} MiB); the agent must delete files, or the operator raise the tier's sandbox.storage_mb",
            limit / (1024 * 1024)
        ),
    )
}

/// Bytes used by the files below `dir` (symbolic links are not followed).
async fn measure_storage(dir: PathBuf) -> u64 {
    tokio::task::spawn_blocking(move || {
        let mut total = 0u64;
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    stack.push(entry.path());
                } else {
                    total = total.saturating_add(meta.len());
                }
            }
        }
        total
    })
    .await
    .unwrap_or(0)
}

/// The agent's response body on its way to the caller. Once it has been read to its end, the
/// connection it came on goes back to the session's pool for the next invocation. A body of
/// known length is at its end after its last byte: the server sending it on stops polling
/// there (`is_end_stream`), without the empty read that would say so.
struct Tracked {
    inner: Pin<Box<hyper::body::Incoming>>,
    connection: Option<AgentSender>,
    ended: bool,
    _guard: InFlight,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if (self.ended || http_body::Body::is_end_stream(&*self.inner))
            && let Some(sender) = self.connection.take()
            && !sender.is_closed()
            && let Ok(mut pool) = self._guard.live.connections.lock()
            && pool.len() < MAX_POOLED_CONNECTIONS
        {
            pool.push(sender);
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let polled = self.inner.as_mut().poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pub fn status_code_of(e: &ApiError) -> StatusCode {
    StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
