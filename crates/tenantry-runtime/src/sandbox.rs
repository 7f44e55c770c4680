//! The backend-neutral face of a sandbox backend: the `Sandbox` trait that backends implement,
//! how a sandbox ended (`SandboxExit`), and what it consumed (`ComputeUsage`). What a started
//! sandbox offers is in `instance` (`SandboxInstance`, `SandboxHandle`).
//!
//! Session management (which session owns which sandbox, idle timeouts, warm pools) lives above
//! this layer; a backend only starts one isolated sandbox per call and never shares it. Nothing
//! here may name a backend's own details (pids, cgroups, VM ids): a caller holding an
//! `Arc<dyn Sandbox>` must work the same with every backend.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use crate::{SandboxError, SandboxHandle, SandboxSpec};

/// The isolation technology behind a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Namespaces, cgroups, Landlock and seccomp around a host process tree.
    Process,
    /// None: this host cannot run sandboxes (see `UnavailableSandbox`).
    Unavailable,
}

/// A boxed future of a backend or of one of its sandboxes (the traits stay object-safe).
pub type SandboxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What `Sandbox::launch` returns.
pub type StartFuture<'a> = SandboxFuture<'a, Result<SandboxHandle, SandboxError>>;

/// A sandbox backend: starts one fresh, isolated sandbox per call.
///
/// Object-safe so the session manager can hold an `Arc<dyn Sandbox>` chosen from configuration:
/// a new backend implements this trait and `SandboxInstance`, and is chosen where the server is
/// built; the session manager does not change.
pub trait Sandbox: Send + Sync + std::fmt::Debug {
    fn kind(&self) -> BackendKind;

    /// Whether this backend can start sandboxes on this host at all. `launch` refuses with the
    /// same error when it cannot; callers ask first so that they prepare nothing (storage,
    /// bridges) for a launch that cannot happen.
    fn check(&self) -> Result<(), SandboxError> {
        Ok(())
    }

    /// Starts a sandbox for `spec` and returns once the agent has been started in it (use
    /// `SandboxHandle::wait_for_agent` to know when it listens). The returned handle owns the
    /// sandbox: dropping it kills it.
    fn launch(&self, spec: SandboxSpec) -> StartFuture<'_>;

    /// Removes what sandboxes of platform processes that are gone (killed without cleaning
    /// up) left on this host, leaving those of platform processes still running alone; how
    /// many leftovers were removed. Blocking: call it off the async runtime.
    fn reap_leftovers(&self) -> usize {
        0
    }
}

/// How a sandbox's agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SandboxExit {
    /// The agent exited by itself with this code.
    Exited { code: i32 },
    /// The agent was killed by this signal (not by the memory limit, not by `stop()`).
    Signaled { signal: i32 },
    /// The kernel killed a process of the sandbox because the memory limit was reached.
    OutOfMemory,
    /// `stop()` (or dropping the handle) ended the sandbox.
    Stopped,
}

impl SandboxExit {
    /// A stable machine-readable name; `sandbox_oom` is what callers report to clients.
    pub const fn as_str(self) -> &'static str {
        match self {
            SandboxExit::Exited { .. } => "agent_exited",
            SandboxExit::Signaled { .. } => "agent_killed",
            SandboxExit::OutOfMemory => "sandbox_oom",
            SandboxExit::Stopped => "sandbox_stopped",
        }
    }
}

/// Whether a sandbox is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SandboxStatus {
    Running,
    Ended(SandboxExit),
}

/// Compute consumed by a sandbox, read from its cgroup. This is what the ledger bills.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct ComputeUsage {
    /// CPU time of every process of the sandbox (user + system), in seconds.
    pub cpu_seconds: f64,
    /// Highest memory use of the sandbox, in bytes (the cgroup's own high-water mark where the
    /// kernel keeps one, otherwise the highest sample).
    pub memory_peak_bytes: u64,
    /// Memory use integrated over the sandbox's lifetime, in GiB-seconds (2^30 bytes × s, the
    /// unit cloud functions bill in). Computed by sampling the cgroup's current usage (every
    /// sampling interval and at every `usage()` call) and integrating with the trapezoid rule,
    /// so an idle sandbox is billed for what it holds, not for its limit or its peak.
    pub memory_gb_seconds: f64,
    /// Number of times the kernel's OOM killer fired inside the sandbox.
    pub oom_kills: u64,
    /// Wall-clock lifetime so far, in seconds.
    pub wall_seconds: f64,
}

/// What `stop()` returns: how the sandbox ended and its final usage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SandboxReport {
    pub exit: SandboxExit,
    pub usage: ComputeUsage,
}
