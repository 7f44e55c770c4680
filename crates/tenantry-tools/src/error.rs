//! The closed error types of the tool gateway: [`TargetError`] (registering a target),
//! [`UpstreamError`] (one call to an upstream failed) and [`ToolError`] (why a `tools/call`
//! did not produce a result).
//!
//! Each maps without a wildcard arm to an [`ErrorCode`] (hence HTTP status, retryability and
//! blame) and a stable snake_case reason for metrics and the ledger; the JSON-RPC code of a
//! `ToolError` follows from its `ErrorCode` in `crate::jsonrpc`. Messages quote upstreams,
//! trimmed, and never contain a credential, a request header or a URL with its query.

use std::time::Duration;

use tenantry_core::ErrorCode;

use crate::credentials::CredentialError;
use crate::meter::Refusal;
use crate::target::TargetName;

pub(crate) use tenantry_core::upstream::trim_message;

/// Why a target cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// A field of the spec is wrong; the message says how to fix it.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The OpenAPI document cannot be used.
    #[error("the OpenAPI document cannot be used: {0}")]
    InvalidSpec(String),
    /// The OpenAPI document could not be fetched from its URL.
    #[error("cannot fetch the OpenAPI document: {0}")]
    SpecFetch(String),
    /// The name is taken in a way that would make tool names ambiguous for some tenant.
    #[error("{0}")]
    Conflict(String),
    /// The HTTP client could not be built (a TLS set-up problem of this host).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl TargetError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        TargetError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            TargetError::Invalid { .. } | TargetError::InvalidSpec(_) => ErrorCode::InvalidRequest,
            TargetError::SpecFetch(_) => ErrorCode::UpstreamError,
            TargetError::Conflict(_) => ErrorCode::Conflict,
            TargetError::Client(_) => ErrorCode::Internal,
        }
    }
}

/// Why one call to an upstream (MCP server or HTTP API) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No complete answer within the target's timeout.
    #[error("the upstream did not answer within {}ms", .after.as_millis())]
    Timeout { after: Duration },
    /// The upstream could not be reached, or closed the connection before answering.
    #[error("cannot reach the upstream: {0}")]
    Connect(String),
    /// An MCP upstream answered with an HTTP error status.
    #[error("the upstream answered HTTP {status}: {message}")]
    Status { status: u16, message: String },
    /// The upstream answered something its protocol does not allow.
    #[error("the upstream's answer is malformed: {0}")]
    Malformed(String),
    /// An MCP upstream answered with a JSON-RPC error.
    #[error("the upstream refused the call ({code}): {message}")]
    Rpc { code: i64, message: String },
    /// The request could not be built (e.g. the credential is not a valid header value).
    #[error("cannot build the upstream request: {0}")]
    Request(String),
    /// A runtime-hosted server's session could not serve the call (the runtime is gone or
    /// not an MCP server, its sandbox cannot start, died or ran out of memory); `code` is the
    /// platform's code for it (`agent_unavailable`, `sandbox_oom`, `rate_limited`...).
    #[error("the runtime-hosted server cannot serve the call: {message}")]
    Runtime { code: ErrorCode, message: String },
}

impl UpstreamError {
    pub(crate) fn status(status: u16, message: impl Into<String>) -> Self {
        UpstreamError::Status {
            status,
            message: trim_message(message.into()),
        }
    }

    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        UpstreamError::Malformed(trim_message(message.into()))
    }

    pub(crate) fn rpc(code: i64, message: impl Into<String>) -> Self {
        UpstreamError::Rpc {
            code,
            message: trim_message(message.into()),
        }
    }

    /// An upstream 401/403 is our credential's fault, not the caller's: `UpstreamError`.
    /// 429 and 5xx say the upstream is overloaded or failing: retry later.
    pub fn code(&self) -> ErrorCode {
        match self {
            UpstreamError::Timeout { .. } | UpstreamError::Connect(_) => ErrorCode::Unavailable,
            UpstreamError::Status { status, .. } => match *status {
                429 => ErrorCode::RateLimited,
                502..=504 => ErrorCode::Unavailable,
                _ => ErrorCode::UpstreamError,
            },
            UpstreamError::Malformed(_) => ErrorCode::UpstreamError,
            UpstreamError::Rpc { code, .. } => match *code {
                crate::jsonrpc::INVALID_PARAMS => ErrorCode::InvalidRequest,
                _ => ErrorCode::UpstreamError,
            },
            UpstreamError::Request(_) => ErrorCode::Internal,
            UpstreamError::Runtime { code, .. } => *code,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            UpstreamError::Timeout { .. } => "upstream_timeout",
            UpstreamError::Connect(_) => "upstream_unreachable",
            UpstreamError::Status { .. } => "upstream_status",
            UpstreamError::Malformed(_) => "upstream_malformed",
            UpstreamError::Rpc { .. } => "upstream_rpc_error",
            UpstreamError::Request(_) => "request_unbuildable",
            UpstreamError::Runtime { .. } => "runtime_unavailable",
        }
    }
}

/// Why a `tools/call` produced no result. A tool that ran and failed is not an error here: it
/// is a result with `isError: true`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ToolError {
    /// No such tool for this caller: never registered, or another tenant's (indistinguishable).
    #[error("tool {0:?} not found; tools/list shows the tools you can call")]
    UnknownTool(String),
    /// The arguments do not fit the tool's input schema.
    #[error("invalid arguments for {tool}: {message}")]
    InvalidArguments { tool: String, message: String },
    /// The policy refuses this call.
    #[error("calling {tool} is not allowed: {reason}")]
    Denied { tool: String, reason: String },
    /// The policy engine could not decide; the call is refused (fail closed).
    #[error("cannot decide whether {tool} may be called right now; retry shortly ({reason})")]
    PolicyUndecided { tool: String, reason: String },
    /// The target needs a credential and the tenant has none for it.
    #[error(
        "target {target} needs a credential and none is configured for your tenant; ask the operator to add one"
    )]
    CredentialMissing { target: TargetName },
    /// The credential source failed or refused.
    #[error("the credential for target {target} is not available: {error}")]
    Credential {
        target: TargetName,
        error: CredentialError,
    },
    /// The server's metering hook refused the call (rate limit, budget).
    #[error("{}", .0.message)]
    Refused(Refusal),
    /// The upstream failed; `tool` is the exported name.
    #[error("{tool}: {error}")]
    Upstream { tool: String, error: UpstreamError },
}

impl ToolError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ToolError::UnknownTool(_) => ErrorCode::NotFound,
            ToolError::InvalidArguments { .. } => ErrorCode::InvalidRequest,
            ToolError::Denied { .. } | ToolError::CredentialMissing { .. } => ErrorCode::Forbidden,
            ToolError::PolicyUndecided { .. } => ErrorCode::Unavailable,
            ToolError::Credential { error, .. } => error.code(),
            ToolError::Refused(r) => r.code,
            ToolError::Upstream { error, .. } => error.code(),
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ToolError::UnknownTool(_) => "unknown_tool",
            ToolError::InvalidArguments { .. } => "invalid_arguments",
            ToolError::Denied { .. } => "policy_denied",
            ToolError::PolicyUndecided { .. } => "policy_undecided",
            ToolError::CredentialMissing { .. } => "credential_missing",
            ToolError::Credential { error, .. } => error.reason(),
            ToolError::Refused(r) => r.reason,
            ToolError::Upstream { error, .. } => error.reason(),
        }
    }

    /// Seconds after which a retry may succeed, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ToolError::Refused(r) => r.retry_after,
            ToolError::UnknownTool(_)
            | ToolError::InvalidArguments { .. }
            | ToolError::Denied { .. }
            | ToolError::PolicyUndecided { .. }
            | ToolError::CredentialMissing { .. }
            | ToolError::Credential { .. }
            | ToolError::Upstream { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let t = UpstreamError::Timeout {
            after: Duration::from_millis(250),
        };
        assert_eq!(t.code(), ErrorCode::Unavailable);
        assert!(t.to_string().contains("250ms"));
        assert_eq!(
            UpstreamError::status(401, "no").code(),
            ErrorCode::UpstreamError
        );
        assert_eq!(
            UpstreamError::status(503, "busy").code(),
            ErrorCode::Unavailable
        );
        assert_eq!(
            UpstreamError::rpc(-32602, "bad").code(),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            UpstreamError::rpc(-32603, "bug").code(),
            ErrorCode::UpstreamError
        );
        assert!(UpstreamError::malformed("x".repeat(5000)).to_string().len() < 700);
    }
}
