//! What a started sandbox offers whatever its backend: the `SandboxInstance` trait that each
//! backend's running sandbox implements, and `SandboxHandle`, the owning handle the session
//! manager holds. Through it a caller reaches the agent, waits for it to listen, reads status,
//! usage and recent output, and stops the sandbox.
//!
//! It must never expose a backend's own details (host pids, cgroup directories, VM ids): those
//! stay on the backend's type (`ProcessInstance` for the process backend), reachable through
//! `SandboxHandle::downcast_ref` by code that names that type, such as tests and benchmarks.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tenantry_core::TenantId;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::SandboxError;
use crate::sandbox::{ComputeUsage, SandboxExit, SandboxFuture, SandboxReport, SandboxStatus};

/// A byte stream to the agent's port inside a sandbox, whatever carries it (the process
/// backend passes out a TCP socket of the sandbox's network namespace; a virtual machine would
/// use vsock).
pub trait AgentIo: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug> AgentIo for T {}

/// A new connection to a sandbox's agent (see `SandboxHandle::connect_agent`).
pub type AgentConnection = Box<dyn AgentIo>;

/// One running (or ended) sandbox of some backend. Implementations kill the sandbox when
/// dropped; `stop` also waits for the end and releases what the sandbox held.
pub trait SandboxInstance: Send + Sync + std::fmt::Debug + Any {
    /// This sandbox's own id (random; never reused).
    fn id(&self) -> &str;

    /// The session (or warm-pool label) the sandbox was started for.
    fn session_id(&self) -> &str;

    fn tenant(&self) -> &TenantId;

    /// The agent's port inside the sandbox.
    fn agent_port(&self) -> u16;

    /// Opens a new connection to the agent's port inside the sandbox.
    fn connect_agent(&self) -> SandboxFuture<'_, Result<AgentConnection, SandboxError>>;

    /// Waits until the agent listens on its port, the sandbox ends, or `timeout` passes.
    fn wait_for_agent(&self, timeout: Duration) -> SandboxFuture<'_, Result<(), SandboxError>>;

    /// Whether the sandbox still runs, or how it ended.
    fn status(&self) -> SandboxStatus;

    /// Waits until the sandbox ends (by itself or through `stop`), and says how.
    fn wait(&self) -> SandboxFuture<'_, SandboxExit>;

    /// Compute consumed so far (final figures once stopped).
    fn usage(&self) -> ComputeUsage;

    /// The last lines the agent wrote to stdout/stderr.
    fn recent_output(&self) -> Vec<String>;

    /// The kept output lines and every line after them, each once (see `crate::output`).
    fn follow_output(&self) -> crate::output::OutputFeed;

    /// Ends the sandbox, waits for the end, releases what it held, and returns how it ended
    /// with its final usage. Idempotent.
    fn stop(&self) -> SandboxFuture<'_, Result<SandboxReport, SandboxError>>;

    /// Where the host sees `inside` (an absolute path in the sandbox's file system) while the
    /// sandbox runs, if the backend can show it at all (a virtual machine's cannot).
    fn host_path(&self, inside: &Path) -> Option<PathBuf>;

    /// The instance as `Any`, for `SandboxHandle::downcast_ref`.
    fn as_any(&self) -> &dyn Any;
}

/// The owner of one sandbox, whatever its backend: what `Sandbox::launch` returns. Dropping it
/// kills the sandbox.
#[derive(Debug)]
pub struct SandboxHandle {
    instance: Box<dyn SandboxInstance>,
}

impl SandboxHandle {
    pub fn new(instance: impl SandboxInstance) -> Self {
        Self {
            instance: Box::new(instance),
        }
    }

    /// The backend's own type, for code that needs its details (e.g. the process backend's
    /// `ProcessInstance::init_pid` in tests); `None` for another backend's sandbox.
    pub fn downcast_ref<T: SandboxInstance>(&self) -> Option<&T> {
        self.instance.as_any().downcast_ref()
    }

    /// This sandbox's own id (random; never reused).
    pub fn id(&self) -> &str {
        self.instance.id()
    }

    /// The session (or warm-pool label) the sandbox was started for.
    pub fn session_id(&self) -> &str {
        self.instance.session_id()
    }

    pub fn tenant(&self) -> &TenantId {
        self.instance.tenant()
    }

    /// The agent's port inside the sandbox.
    pub fn agent_port(&self) -> u16 {
        self.instance.agent_port()
    }

    /// Opens a new connection to the agent's port inside the sandbox.
    pub async fn connect_agent(&self) -> Result<AgentConnection, SandboxError> {
        self.instance.connect_agent().await
    }

    /// Waits until the agent listens on its port, the sandbox ends, or `timeout` passes.
    pub async fn wait_for_agent(&self, timeout: Duration) -> Result<(), SandboxError> {
        self.instance.wait_for_agent(timeout).await
    }

    /// Whether the sandbox still runs, or how it ended.
    pub fn status(&self) -> SandboxStatus {
        self.instance.status()
    }

    /// Waits until the sandbox ends (by itself or through `stop`), and says how.
    pub async fn wait(&self) -> SandboxExit {
        self.instance.wait().await
    }

    /// Compute consumed so far (final figures once stopped).
    pub fn usage(&self) -> ComputeUsage {
        self.instance.usage()
    }

    /// The last lines the agent wrote to stdout/stderr.
    pub fn recent_output(&self) -> Vec<String> {
        self.instance.recent_output()
    }

    /// The kept output lines and every line after them, each once.
    pub fn follow_output(&self) -> crate::output::OutputFeed {
        self.instance.follow_output()
    }

    /// Ends the sandbox, waits for the end, releases what it held, and returns how it ended
    /// with its final usage. Idempotent.
    pub async fn stop(&self) -> Result<SandboxReport, SandboxError> {
        self.instance.stop().await
    }

    /// Where the host sees `inside` while the sandbox runs, if the backend can show it.
    pub fn host_path(&self, inside: &Path) -> Option<PathBuf> {
        self.instance.host_path(inside)
    }
}
