//! The session manager: one sandbox per session, started on first invocation (or taken from a
//! warm pool), resumed with its storage after a stop, stopped on idle timeout or maximum
//! lifetime, metered into the ledger while it runs and when it stops, and its storage deleted
//! after expiry.
//!
//! Sessions belong to the (tenant, user) that created them; this module is handed a verified
//! `TenantContext` and never looks a session up outside that tenant's scope. Everything it
//! keeps of a tenant (live sessions, warm pools, session storage, the workload tokens it mints)
//! is keyed by the tenant's immutable uid, so a tenant deleted and created again under the same
//! id meets nothing of the old one. A sandbox is bound to exactly one session and destroyed
//! after it; warm sandboxes are kept per (runtime, tenant), so even an unbound one never
//! crosses tenants. Each sandbox is an instance with an id of its own, and the workload tokens
//! minted for it are honoured only while that very instance runs.
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
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tenantry_core::{
    RuntimeName, SessionId, SystemGrant, TenantContext, TenantId, TenantScope, TenantUid, Tier,
    UserId, unix_now,
};
use tenantry_identity::WorkloadSubject;
use tenantry_runtime::{
    PlatformBridge, Sandbox, SandboxExit, SandboxHandle, SandboxSpec, SandboxStatus,
};
use tenantry_store::{SessionRecord, SessionStatus, Store, UsageKind, UsageRecord};

use crate::ledger::Ledger;
use crate::runtimes::{Protocol, Runtime};

mod agent;
mod bridge;
mod error;
mod headers;
mod launch;
mod lifecycle;
mod logs;
mod start;
mod storage;
mod tenants;
mod warm;

use agent::{
    AgentSender, InFlight, Tracked, agent_connection, agent_unavailable, ended_error,
    forward_error, ping, ping_busy,
};
use bridge::{Binding, bridge_auth};
pub use error::SessionError;
pub use headers::{AGENTCORE_SESSION_HEADER, SESSION_HEADER, subject_of};
use headers::{MCP_SESSION_HEADER, agent_headers};
pub use logs::{LogCursor, LogLine};
pub use storage::SessionStorage;
use storage::{measure_storage, storage_exceeded};
use tenantry_runtime::ComputeUsage;
use tenantry_runtime::storage::{image_of, remove_storage};
pub use tenants::SessionsRemoved;

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
    pub session_id: SessionId,
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

/// A session, by its tenant's uid and its id.
type LiveKey = (TenantUid, SessionId);

/// A session's place while it starts or runs. The lock serialises starting, stopping and the
/// storage sweep of the session; `live` is read without it. An entry is in the map only while
/// its session starts (the lock is held) or runs (`live` is set): every path that leaves it
/// empty removes it, so the map counts exactly the sessions that hold or are getting a sandbox.
#[derive(Debug, Default)]
struct Entry {
    lock: Arc<tokio::sync::Mutex<()>>,
    live: Mutex<Option<Arc<Live>>>,
}

impl Entry {
    fn live(&self) -> Option<Arc<Live>> {
        self.live.lock().ok().and_then(|l| l.clone())
    }

    fn set(&self, live: Option<Arc<Live>>) -> Option<Arc<Live>> {
        match self.live.lock() {
            Ok(mut l) => std::mem::replace(&mut *l, live),
            Err(_) => None,
        }
    }
}

/// A running sandbox, bound to a session or waiting in a warm pool.
#[derive(Debug)]
struct Sandboxed {
    handle: SandboxHandle,
    binding: Arc<Mutex<Binding>>,
    bridge_task: tokio::task::JoinHandle<()>,
    run_dir: PathBuf,
    storage_dir: PathBuf,
    /// The image mounted as its storage (`storage_limit = "image"`); `None` when the storage
    /// is a plain directory, measured after each invocation (the soft limit).
    image: Option<PathBuf>,
    /// A warm sandbox's connection to its agent, opened (and used once, for `/ping`) while it
    /// waited, so that its session's first invocation finds the bridge and the agent warm.
    primed: Option<AgentSender>,
    /// How long its launch took, for the `session started` log.
    times: LaunchTimes,
}

/// The two steps of a launch: the backend's start (until the agent was executed in the
/// sandbox) and the wait until the agent listened.
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
        let _ = tenantry_runtime::storage::remove_storage(&self.storage_dir);
    }
}

impl Drop for Sandboxed {
    fn drop(&mut self) {
        self.bridge_task.abort();
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// What of a running sandbox's compute is in the ledger already.
#[derive(Debug, Clone, Copy, Default)]
struct Metered {
    cpu_seconds: f64,
    memory_gb_seconds: f64,
    wall_seconds: f64,
}

#[derive(Debug)]
struct Live {
    sandbox: Sandboxed,
    /// This sandbox instance's id: the workload tokens minted for it name it.
    instance: String,
    tenant: TenantId,
    tenant_uid: TenantUid,
    runtime: Runtime,
    user: UserId,
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
    /// The user JWT the session was last invoked with: the `subject_token` of a token exchange
    /// the agent's tool calls need (never logged, gone with the sandbox).
    subject: Mutex<Option<String>>,
    /// Compute already written to the ledger, and when it was last sampled.
    metered: Mutex<(Metered, Instant)>,
}

impl Live {
    fn touch(&self, epoch: Instant) {
        self.last_active_ms
            .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn running(&self) -> bool {
        matches!(self.sandbox.handle.status(), SandboxStatus::Running)
    }
}

#[derive(Debug)]
struct Inner {
    /// Whatever the server was built with (see `crate::sandbox_backend`): the manager only
    /// launches through it and never asks which kind it is, so a new backend needs no change
    /// here. A host that cannot run sandboxes has a backend that refuses every launch.
    backend: Arc<dyn Sandbox>,
    /// The platform's authority for the sweeps no caller asked for (idle expiry, storage).
    system: SystemGrant,
    store: Store,
    ledger: Ledger,
    workload: tenantry_identity::WorkloadIssuer,
    storage_root: PathBuf,
    /// The run directory shared by this node's platform processes (each one's in a directory
    /// of its own below it, named by its instance id: see `tenantry_runtime::reap`).
    run_root: PathBuf,
    /// This process's directory below `run_root`: bridge sockets and sandbox run directories.
    instance_run: PathBuf,
    /// Blank storage images, when the tier's storage size is enforced with images.
    blanks: Option<Arc<tenantry_runtime::storage::BlankImages>>,
    ready_timeout: Duration,
    time_divisor: u32,
    /// This process's node id, recorded on the sessions it runs.
    node: String,
    compute_every: Duration,
    epoch: Instant,
    sessions: Mutex<HashMap<LiveKey, Arc<Entry>>>,
    warm: Mutex<HashMap<(RuntimeName, TenantUid), Vec<Sandboxed>>>,
    /// The application served to agents on their bridge sockets; set once the router exists.
    app: OnceLock<axum::Router>,
    /// The server's metrics; set once the state exists.
    metrics: OnceLock<Arc<tenantry_telemetry::Metrics>>,
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
    /// Longest wait for a new sandbox's agent to listen on its port.
    pub ready_timeout: Duration,
    /// Divides every lifecycle duration (idle timeout, maximum lifetime): 1 in production;
    /// tests use a larger value to see a 60-second timeout in a fraction of that.
    pub time_divisor: u32,
    /// This process's node id (see `RuntimeConfig::node_id`).
    pub node: String,
    /// How often a running session's compute goes to the ledger.
    pub compute_every: Duration,
    /// How the tier's storage size is enforced (see `RuntimeConfig::storage_limit`).
    pub storage_limit: crate::config::StorageLimit,
}

impl SessionManager {
    /// Where the sandboxes of this platform process keep their run files (below `run_root`,
    /// in this process's own directory): the backend is configured with it.
    pub fn sandbox_run_root(run_root: &Path) -> PathBuf {
        run_root
            .join(tenantry_runtime::reap::instance_id())
            .join("sandboxes")
    }

    /// `storage` is the session storage prepared from the same settings (see
    /// `SessionStorage::prepare`); `backend` starts the sandboxes.
    pub fn new(
        settings: SessionSettings,
        storage: SessionStorage,
        backend: Arc<dyn Sandbox>,
        store: Store,
        ledger: Ledger,
        workload: tenantry_identity::WorkloadIssuer,
        system: SystemGrant,
    ) -> Self {
        let instance_run = settings
            .run_root
            .join(tenantry_runtime::reap::instance_id());
        let blanks = storage.blanks;
        Self {
            inner: Arc::new(Inner {
                backend,
                system,
                store,
                ledger,
                workload,
                storage_root: settings.storage_root,
                run_root: settings.run_root,
                instance_run,
                blanks,
                ready_timeout: settings.ready_timeout,
                time_divisor: settings.time_divisor.max(1),
                node: settings.node,
                compute_every: settings.compute_every,
                epoch: Instant::now(),
                sessions: Mutex::new(HashMap::new()),
                warm: Mutex::new(HashMap::new()),
                app: OnceLock::new(),
                metrics: OnceLock::new(),
            }),
        }
    }

    /// Gives the manager the application agents reach through their bridge, reconciles the
    /// store with what a previous process of this node left behind, and starts the lifecycle
    /// loop (idle and lifetime stops, compute samples, storage expiry).
    pub async fn start(&self, app: axum::Router) {
        let _ = self.inner.app.set(app);
        self.reconcile().await;
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

    fn entry(&self, key: &LiveKey) -> Option<Arc<Entry>> {
        self.inner.sessions.lock().ok()?.get(key).cloned()
    }

    /// The session's live sandbox, if it has one (running or ended but not yet reaped).
    fn live(&self, key: &LiveKey) -> Option<Arc<Live>> {
        self.entry(key)?.live()
    }

    /// Whether this sandbox instance of the session is running: workload tokens are honoured
    /// only then (a token minted for an earlier instance of the same session is not).
    pub fn is_live_instance(&self, tenant: &TenantUid, session: &str, instance: &str) -> bool {
        let Ok(session) = SessionId::new(session) else {
            return false;
        };
        self.live(&(tenant.clone(), session))
            .is_some_and(|l| l.instance == instance && l.running())
    }

    /// Whether the session has a running sandbox.
    pub fn is_running(&self, tenant: &TenantUid, session: &SessionId) -> bool {
        self.live(&(tenant.clone(), session.clone()))
            .is_some_and(|l| l.running())
    }

    /// Where sandbox starts are counted.
    pub fn set_metrics(&self, metrics: Arc<tenantry_telemetry::Metrics>) {
        let _ = self.inner.metrics.set(metrics);
    }

    /// Running sessions on this replica, counted per tenant.
    pub fn running_by_tenant(&self) -> HashMap<TenantId, usize> {
        let lives: Vec<Arc<Live>> = match self.inner.sessions.lock() {
            Ok(m) => m.values().filter_map(|e| e.live()).collect(),
            Err(_) => Vec::new(),
        };
        let mut counts = HashMap::new();
        for live in lives.iter().filter(|l| l.running()) {
            *counts.entry(live.tenant.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Sessions running or starting on this replica (sandboxes held or being launched).
    pub fn live_count(&self) -> usize {
        self.inner.sessions.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// The user JWT the running session was last invoked with, for a token exchange on behalf
    /// of that user by the session's agent; `None` when the session is not running or was
    /// invoked with another credential (an API key). `session` comes from a verified workload
    /// token.
    pub fn subject_token(&self, tenant: &TenantUid, session: &str) -> Option<String> {
        let session = SessionId::new(session).ok()?;
        let live = self.live(&(tenant.clone(), session))?;
        live.subject.lock().ok().and_then(|s| s.clone())
    }

    /// Sessions of the tenant running or starting, other than `key` itself.
    fn others_running(&self, key: &LiveKey) -> usize {
        self.inner
            .sessions
            .lock()
            .map(|m| m.keys().filter(|k| k.0 == key.0 && *k != key).count())
            .unwrap_or(0)
    }

    /// The directory of a tenant's session storage on this host, named by its uid.
    fn tenant_storage(&self, tenant: &TenantUid) -> PathBuf {
        self.inner.storage_root.join(tenant.as_str())
    }

    /// Where a session's storage lives on the host: below the tenant's directory (named by the
    /// tenant's uid), named by a hash of the session id so no caller-chosen string ever becomes
    /// a path.
    pub fn storage_dir(&self, tenant: &TenantUid, session: &SessionId) -> PathBuf {
        let digest = Sha256::digest(session.as_str().as_bytes());
        let name: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        self.tenant_storage(tenant).join(name)
    }

    /// A workload token for the session's current sandbox instance.
    fn mint_token(
        &self,
        ctx: &TenantContext,
        live: &Live,
        session: &str,
        ttl: Duration,
    ) -> Result<String, SessionError> {
        let subject = WorkloadSubject {
            tenant: ctx.tenant_id.clone(),
            tenant_uid: ctx.tenant_uid.clone(),
            user: ctx.user_id.clone(),
            session: session.to_string(),
            instance: live.instance.clone(),
            runtime: live.runtime.name.to_string(),
        };
        self.inner
            .workload
            .mint(&subject, ttl)
            .map_err(|e| SessionError::internal("minting a workload token", e))
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
    ) -> Result<Response<Body>, SessionError> {
        let Invocation {
            runtime,
            session_id,
            caller_headers,
            platform_headers,
            subject,
            body,
            permit,
        } = invocation;
        let (live, started) = self.session(ctx, tier, &runtime, &session_id).await?;
        // A session started for this invocation is stopped again if its caller goes away
        // before the exchange with the agent is over (see `FirstCall`): a cancelled start
        // leaves no sandbox behind.
        let first_call = started.then(|| self.first_call(&session_id, &live));
        let forwarded = self
            .forward(
                ctx,
                live,
                Invocation {
                    runtime,
                    session_id,
                    caller_headers,
                    platform_headers,
                    subject,
                    body,
                    permit,
                },
            )
            .await;
        if let Some(first) = first_call {
            first.answered();
        }
        forwarded
    }

    /// Sends one invocation to the session's running sandbox.
    async fn forward(
        &self,
        ctx: &TenantContext,
        live: Arc<Live>,
        invocation: Invocation<'_>,
    ) -> Result<Response<Body>, SessionError> {
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
        if live.sandbox.image.is_none() && live.over_quota.load(Ordering::Relaxed) {
            return Err(storage_exceeded(live.storage_limit));
        }
        live.in_flight.fetch_add(1, Ordering::SeqCst);
        live.touch(self.inner.epoch);
        if let Ok(mut kept) = live.subject.lock() {
            *kept = subject;
        }
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
                .touch_session(&scope, session_id.as_str(), now)
                .await;
        }

        let token = self.mint_token(ctx, &live, session_id.as_str(), INVOCATION_TOKEN_TTL)?;
        let mut headers = agent_headers(ctx, &runtime, session_id.as_str(), &token, caller_headers);
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
            return Err(SessionError::BodyTooLarge {
                runtime: runtime.name.clone(),
            });
        }
        let limited = http_body_util::Limited::new(body, runtime.spec.max_body_bytes as usize);

        let mut sender = agent_connection(&live).await?;
        let mut request = Request::post(runtime.spec.protocol.path())
            .body(Body::new(limited))
            .map_err(|e| SessionError::internal("building the agent request", e))?;
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
        out = out.header(SESSION_HEADER, session_id.as_str());
        let body = Body::new(Tracked {
            inner: Box::pin(incoming),
            connection: Some(sender),
            ended: false,
            _guard: guard,
        });
        out.body(body)
            .map_err(|e| SessionError::internal("building the response", e))
    }
}
