//! The session manager's closed error enum. Each variant maps, without a wildcard arm, to a
//! `tenantry_core::ErrorCode` (`code()`); the HTTP answer is made from it in `crate::error`
//! (`From<SessionError> for ApiError`), so this module never decides a status or a response
//! body. Messages are what callers see, except `Internal`'s detail and the store's internal
//! failures, which are logged and never sent.

use tenantry_core::{ErrorCode, RuntimeName, TenantId, TierName};
use tenantry_runtime::SandboxError;
use tenantry_store::StoreError;

/// Why a session could not be started, invoked, or its storage reset.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The session does not exist for this caller: never created, or another user's, another
    /// runtime's or another tenant's (the same answer for all of them).
    #[error("session not found")]
    NotFound,

    /// The tenant already runs as many sessions as its tier allows.
    #[error("tenant {tenant} already has {max} running sessions (tier {tier})")]
    TooManySessions {
        tenant: TenantId,
        max: u32,
        tier: TierName,
    },

    /// The session's storage (a directory, measured) holds more than the tier allows.
    #[error(
        "the session's storage holds more than its tier allows ({} MiB); the agent must delete files, the owner reset the storage (DELETE /v1/sessions/{{id}}?storage=true), or the operator raise the tier's sandbox.storage_mb",
        .limit_bytes / (1024 * 1024)
    )]
    StorageExceeded { limit_bytes: u64 },

    /// The invocation declared a body longer than the runtime's `max_body_bytes`.
    #[error("the body is larger than runtime {runtime}'s max_body_bytes")]
    BodyTooLarge { runtime: RuntimeName },

    /// The invocation's body went past the runtime's `max_body_bytes` while it was streamed.
    #[error("the body is larger than the runtime's max_body_bytes")]
    BodyPastLimit,

    /// This host cannot start sandboxes at all (the backend's `check` refused).
    #[error("{0}")]
    NoSandboxes(#[source] SandboxError),

    /// The runtime's spec cannot be started as it is (the backend found it invalid).
    #[error("runtime {runtime} cannot start: {source}")]
    RuntimeCannotStart {
        runtime: RuntimeName,
        #[source]
        source: SandboxError,
    },

    /// The backend could not start the sandbox.
    #[error("cannot start the sandbox: {0}")]
    SandboxStart(#[source] SandboxError),

    /// The agent cannot be reached, did not answer, ended, or its sandbox was stopped.
    #[error("{0}")]
    AgentUnavailable(String),

    /// The agent was killed by the memory limit of its tier.
    #[error("the agent was killed for going over the memory limit of its tier")]
    OutOfMemory,

    /// The agent answered, but not with HTTP, or its connection failed during the handshake.
    #[error("{0}")]
    AgentError(String),

    /// A sandbox's bridge secret was presented before the sandbox was bound to a session.
    #[error("this sandbox is not bound to a session yet")]
    NotBound,

    /// The store failed (or refused: a conflict, an unavailable database).
    #[error(transparent)]
    Store(#[from] StoreError),

    /// Anything else that went wrong on this server; `context` says what it was doing.
    #[error("internal error while {context}: {detail}")]
    Internal {
        context: &'static str,
        detail: String,
    },
}

impl SessionError {
    pub(super) fn internal(context: &'static str, detail: impl std::fmt::Display) -> Self {
        SessionError::Internal {
            context,
            detail: detail.to_string(),
        }
    }

    /// A launch the backend refused: the runtime's fault when its spec is invalid, the
    /// backend's error as it is otherwise.
    pub(super) fn launch_failed(runtime: &RuntimeName, source: SandboxError) -> Self {
        if source.code() == ErrorCode::InvalidRequest {
            SessionError::RuntimeCannotStart {
                runtime: runtime.clone(),
                source,
            }
        } else {
            SessionError::SandboxStart(source)
        }
    }

    /// The platform-wide classification of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            SessionError::NotFound => ErrorCode::NotFound,
            SessionError::TooManySessions { .. } => ErrorCode::RateLimited,
            SessionError::StorageExceeded { .. } => ErrorCode::StorageExceeded,
            SessionError::BodyTooLarge { .. } | SessionError::BodyPastLimit => {
                ErrorCode::PayloadTooLarge
            }
            SessionError::NoSandboxes(_) => ErrorCode::Unavailable,
            SessionError::RuntimeCannotStart { .. } => ErrorCode::InvalidRequest,
            SessionError::SandboxStart(source) => source.code(),
            SessionError::AgentUnavailable(_) => ErrorCode::AgentUnavailable,
            SessionError::OutOfMemory => ErrorCode::SandboxOom,
            SessionError::AgentError(_) => ErrorCode::AgentError,
            SessionError::NotBound => ErrorCode::InvalidToken,
            SessionError::Store(e) => e.code(),
            SessionError::Internal { .. } => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_is_classified_with_the_message_callers_see() {
        let runtime = RuntimeName::new("py").expect("runtime name");
        let cases = [
            (
                SessionError::NotFound,
                ErrorCode::NotFound,
                "session not found",
            ),
            (
                SessionError::TooManySessions {
                    tenant: TenantId::new("acme").expect("tenant id"),
                    max: 2,
                    tier: TierName::new("basic").expect("tier name"),
                },
                ErrorCode::RateLimited,
                "tenant acme already has 2 running sessions (tier basic)",
            ),
            (
                SessionError::BodyTooLarge {
                    runtime: runtime.clone(),
                },
                ErrorCode::PayloadTooLarge,
                "the body is larger than runtime py's max_body_bytes",
            ),
            (
                SessionError::BodyPastLimit,
                ErrorCode::PayloadTooLarge,
                "the body is larger than the runtime's max_body_bytes",
            ),
            (
                SessionError::NoSandboxes(SandboxError::NoBackend("no helper".into())),
                ErrorCode::Unavailable,
                "this server cannot start sandboxes: no helper",
            ),
            (
                SessionError::launch_failed(&runtime, SandboxError::InvalidSpec("x".into())),
                ErrorCode::InvalidRequest,
                "runtime py cannot start: invalid sandbox spec: x",
            ),
            (
                SessionError::launch_failed(&runtime, SandboxError::AgentSpawn("x".into())),
                ErrorCode::UpstreamError,
                "cannot start the sandbox: the agent command could not be started: x",
            ),
            (
                SessionError::AgentUnavailable("gone".into()),
                ErrorCode::AgentUnavailable,
                "gone",
            ),
            (
                SessionError::OutOfMemory,
                ErrorCode::SandboxOom,
                "the agent was killed for going over the memory limit of its tier",
            ),
            (
                SessionError::AgentError("not http".into()),
                ErrorCode::AgentError,
                "not http",
            ),
            (
                SessionError::NotBound,
                ErrorCode::InvalidToken,
                "this sandbox is not bound to a session yet",
            ),
            (
                SessionError::internal("doing x", "detail"),
                ErrorCode::Internal,
                "internal error while doing x: detail",
            ),
        ];
        for (err, code, message) in cases {
            assert_eq!(err.code(), code, "{err}");
            assert_eq!(err.to_string(), message);
        }
        let quota = SessionError::StorageExceeded {
            limit_bytes: 3 << 20,
        };
        assert_eq!(quota.code(), ErrorCode::StorageExceeded);
        assert!(
            quota.to_string().starts_with(
                "the session's storage holds more than its tier allows (3 MiB); the agent must"
            ),
            "{quota}"
        );
        assert!(
            quota
                .to_string()
                .contains("DELETE /v1/sessions/{id}?storage=true")
        );
    }
}
