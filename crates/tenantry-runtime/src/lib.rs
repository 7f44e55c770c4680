//! The agent runtime's sandboxes: one isolated sandbox per session, never shared.
//!
//! This crate owns the `Sandbox` abstraction and its `process` backend: a fresh process tree in
//! new user, mount, PID, IPC, UTS and network namespaces, on a read-only view of the host with a
//! private `/tmp` and only the session's storage writable, confined by cgroup limits (v2, or v1
//! on hybrid hosts), Landlock and a seccomp filter, and reachable only through two bridges: the
//! agent's port from the platform, and the platform endpoint from the agent. It also meters
//! each sandbox's CPU time and memory from its cgroup.
//!
//! Layout:
//! * `spec` — what to run (`SandboxSpec`) and its validation;
//! * `sandbox` — the backend trait (`Sandbox`), how a sandbox ended, what it consumed;
//! * `instance` — what a started sandbox offers whatever its backend (`SandboxInstance`, and
//!   `SandboxHandle`, the owning handle callers hold);
//! * `process` — the platform side of the process backend (`ProcessSandbox`, and
//!   `ProcessInstance` with its diagnostics: init pid, cgroups);
//! * `unavailable` — the backend of a host that cannot run sandboxes (`UnavailableSandbox`);
//! * `helper` — the helper executable that builds the sandbox, and the sandbox's init;
//! * `cgroup`, `seccomp` — limits and the syscall policy (kept as data);
//! * `protocol` — the wire formats between platform, helper and init;
//! * `probe` — what the host supports;
//! * `reap` — removal of what a platform process killed without cleaning up left behind;
//! * `storage` — fixed-size session storage (ext4 images), made ahead of need;
//! * `sys` — the only module with `unsafe`: thin wrappers around raw system calls.
//!
//! Threat model: the agent is hostile code (or prompt-injected code) running as root inside its
//! namespaces. It must not read or write anything of another session or of the host beyond the
//! read-only system directories, see or signal other processes, reach the network other than
//! the platform endpoint, or exhaust the host's memory, CPU or process table. Every layer
//! (mount table, Landlock, seccomp, capabilities, cgroups) is set so that one failing open does
//! not open the sandbox. Secrets never enter it: the agent's environment is only what its spec
//! says, and the platform endpoint's credentials are short-lived workload tokens (DESIGN.md §2).
//!
//! The crate must never run the helper logic inside a multi-threaded process: `helper_main()`
//! is called from a binary's `main` before any runtime starts.

#![deny(unsafe_op_in_unsafe_fn)]

mod bridge;
pub mod cgroup;
mod error;
mod helper;
mod instance;
mod output;
pub mod probe;
mod process;
pub mod protocol;
pub mod reap;
mod sandbox;
pub mod seccomp;
mod spec;
pub mod storage;
mod sys;
mod unavailable;

pub use bridge::AgentStream;
pub use cgroup::{CgroupLayout, MigrationTuning, favor_dynamic_migrations};
pub use error::SandboxError;
pub use helper::helper_main;
pub use instance::{AgentConnection, AgentIo, SandboxHandle, SandboxInstance};
pub use output::{OutputFeed, OutputLine};
pub use probe::{ProbeReport, probe};
pub use process::{
    DEFAULT_SANDBOX_UID, DEFAULT_SANDBOX_UID_COUNT, ProcessInstance, ProcessSandbox,
    ProcessSandboxConfig, port_listening_in,
};
pub use sandbox::{
    BackendKind, ComputeUsage, Sandbox, SandboxExit, SandboxFuture, SandboxReport, SandboxStatus,
    StartFuture,
};
pub use spec::{
    DEFAULT_AGENT_PORT, DEFAULT_MOUNT_PATH, DEFAULT_PATH, DEFAULT_PLATFORM_PORT, PlatformBridge,
    SandboxSpec,
};
pub use unavailable::UnavailableSandbox;

/// Marks every descriptor this process inherited beyond stdin, stdout and stderr
/// close-on-exec, so that no program it starts (the sandbox helper, and through it an agent)
/// inherits one. The platform calls it first thing in `main`; descriptors it opens itself are
/// close-on-exec already (Rust's standard library and Tokio open everything so).
pub fn seal_inherited_descriptors() -> std::io::Result<()> {
    sys::cloexec_from(3)
}
