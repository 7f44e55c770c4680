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
use crate::runtimes::{Protocol, Runtime};

mod agent;
mod bridge;
mod headers;
mod launch;
mod lifecycle;
mod storage;
mod warm;

use agent::{
    AgentSender, InFlight, Tracked, agent_connection, agent_unavailable, ended_error,
    forward_error, ping, ping_busy,
};
use bridge::{Binding, bridge_auth};
pub use headers::{
    AGENTCORE_SESSION_HEADER, SESSION_HEADER, new_session_id, subject_of, valid_session_id,
};
use headers::{MCP_SESSION_HEADER, agent_headers};
use storage::{measure_storage, storage_exceeded};

/// Longest wait for the agent's response headers.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(900);
/// How often the lifecycle loop looks at live sessions.
const TICK: Duration = Duration::from_millis(500);
/// How often session storage is checked for expiry.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
const TOUCH_PERSIST_EVERY: i64 = 30;
const INVOCATION_TOKEN_TTL: Duration = Duration::from_secs(900);

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

type LiveKey = (TenantId, String);
/// A session's place in the live map; its lock serialises starting and stopping the session.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Live>>>>;

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
}

pub fn status_code_of(e: &ApiError) -> StatusCode {
    StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
