//! The runtime layer's closed error enum. Each variant maps, without a wildcard arm, to a
//! `tenantry_core::ErrorCode`, so a new failure cannot go unclassified.
//!
//! How an agent *ended* (exit code, signal, out of memory) is not an error of this layer: it is a
//! `SandboxExit` the caller turns into its own answer (`sandbox_oom`, `agent_error`...).

use std::path::PathBuf;
use std::time::Duration;

use tenantry_core::ErrorCode;

/// Why a sandbox could not be started, reached or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec asks for something that cannot be (relative paths, a mount path outside
    /// `/mnt/`, an empty command...). The message names the field and the fix.
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),

    /// The host lacks a kernel feature the sandbox needs (user namespaces, cgroup controllers,
    /// Landlock, seccomp). The message says which and what the kernel answered.
    #[error("{feature} unavailable: {detail}")]
    Unsupported {
        feature: &'static str,
        detail: String,
    },

    /// Creating, configuring, reading or removing the session's cgroup failed.
    #[error("cgroup {action} failed for {path}: {source}")]
    Cgroup {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The helper executable could not be run.
    #[error("cannot run the sandbox helper {path}: {source}")]
    Helper {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The helper or the in-sandbox init reported a failure while building the sandbox.
    #[error("sandbox set-up failed: {0}")]
    Setup(String),

    /// The sandbox was built but the agent command could not be executed inside it.
    #[error("the agent command could not be started: {0}")]
    AgentSpawn(String),

    /// The helper did not report the sandbox ready in time.
    #[error("the sandbox did not start within {0:?}")]
    StartTimeout(Duration),

    /// The operation needs a running sandbox, and this one has ended.
    #[error("the sandbox is not running: {0}")]
    NotRunning(String),

    /// The agent did not listen on its port in time.
    #[error("the agent did not listen on port {port} within {waited:?}")]
    AgentNotReady { port: u16, waited: Duration },

    /// Connecting to the agent's bridge socket failed.
    #[error("cannot connect to the agent: {0}")]
    AgentConnect(#[source] std::io::Error),

    /// This host has no sandbox backend (see `UnavailableSandbox`); the message says why.
    #[error("this server cannot start sandboxes: {0}")]
    NoBackend(String),

    /// Any other I/O failure on the host side, with what was being done.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl SandboxError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SandboxError::Io {
            context: context.into(),
            source,
        }
    }

    /// The platform-wide classification of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            SandboxError::InvalidSpec(_) => ErrorCode::InvalidRequest,
            SandboxError::Unsupported { .. }
            | SandboxError::Cgroup { .. }
            | SandboxError::Helper { .. }
            | SandboxError::Setup(_)
            | SandboxError::Io { .. } => ErrorCode::Internal,
            SandboxError::AgentSpawn(_) => ErrorCode::UpstreamError,
            SandboxError::NoBackend(_)
            | SandboxError::StartTimeout(_)
            | SandboxError::NotRunning(_)
            | SandboxError::AgentNotReady { .. }
            | SandboxError::AgentConnect(_) => ErrorCode::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_is_classified() {
        let io = || std::io::Error::other("x");
        let cases = [
            (
                SandboxError::InvalidSpec("x".into()),
                ErrorCode::InvalidRequest,
            ),
            (
                SandboxError::Unsupported {
                    feature: "user namespaces",
                    detail: "EPERM".into(),
                },
                ErrorCode::Internal,
            ),
            (
                SandboxError::Cgroup {
                    action: "create",
                    path: "/x".into(),
                    source: io(),
                },
                ErrorCode::Internal,
            ),
            (
                SandboxError::AgentSpawn("x".into()),
                ErrorCode::UpstreamError,
            ),
            (
                SandboxError::AgentNotReady {
                    port: 8080,
                    waited: Duration::from_secs(1),
                },
                ErrorCode::Unavailable,
            ),
            (SandboxError::AgentConnect(io()), ErrorCode::Unavailable),
            (
                SandboxError::NoBackend("no helper".into()),
                ErrorCode::Unavailable,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err}");
        }
        let e = SandboxError::Unsupported {
            feature: "user namespaces",
            detail: "clone(CLONE_NEWUSER) failed: EPERM".into(),
        };
        assert_eq!(
            e.to_string(),
            "user namespaces unavailable: clone(CLONE_NEWUSER) failed: EPERM"
        );
    }
}
