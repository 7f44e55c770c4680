//! The closed error taxonomy. Every layer's error enum maps, without a wildcard arm, into an
//! `ErrorCode`; the code decides the HTTP status, the stable machine-readable name, whether a
//! retry can help and who caused it. A new variant here must be classified in every `match`.

use serde::Serialize;

/// Who caused an error: the caller, an upstream we depend on, or Tenantry itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    Caller,
    Upstream,
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is well-formed JSON but its content is wrong (bad id, bad value...).
    InvalidRequest,
    /// The body is not JSON, or not the JSON the endpoint takes (unknown or missing fields).
    InvalidJson,
    /// The body is larger than the endpoint accepts.
    PayloadTooLarge,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// No credential was sent.
    Unauthenticated,
    /// A credential was sent but is not valid (bad signature, expired, revoked...).
    InvalidToken,
    /// The credential is valid but does not allow this operation.
    Forbidden,
    /// The caller asked for a model its tier (or tenant) is not entitled to.
    ModelNotEntitled,
    /// The caller's tenant is suspended.
    TenantSuspended,
    /// The resource does not exist, or belongs to another tenant (indistinguishable by design).
    NotFound,
    MethodNotAllowed,
    /// The resource already exists.
    Conflict,
    RateLimited,
    BudgetExceeded,
    /// A dependency (store, identity provider) cannot decide right now; the request is refused.
    Unavailable,
    /// An upstream we called failed.
    UpstreamError,
    /// The session's agent could not be reached: it crashed, never listened, or was stopped.
    AgentUnavailable,
    /// The session's agent answered with something that is not HTTP.
    AgentError,
    /// The session's sandbox was killed for going over its memory limit.
    SandboxOom,
    /// The session's storage holds more than its tier allows.
    StorageExceeded,
    /// A guardrail of the tenant's profile refused the text (input, output or tool traffic).
    GuardrailBlocked,
    /// A bug or an unexpected state in Tenantry.
    Internal,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::ModelNotEntitled => "model_not_entitled",
            ErrorCode::TenantSuspended => "tenant_suspended",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::AgentUnavailable => "agent_unavailable",
            ErrorCode::AgentError => "agent_error",
            ErrorCode::SandboxOom => "sandbox_oom",
            ErrorCode::StorageExceeded => "storage_exceeded",
            ErrorCode::GuardrailBlocked => "guardrail_blocked",
            ErrorCode::Internal => "internal",
        }
    }

    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest | ErrorCode::InvalidJson => 400,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Unauthenticated | ErrorCode::InvalidToken => 401,
            ErrorCode::Forbidden | ErrorCode::ModelNotEntitled | ErrorCode::TenantSuspended => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::RateLimited | ErrorCode::BudgetExceeded => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::UpstreamError
            | ErrorCode::AgentUnavailable
            | ErrorCode::AgentError
            | ErrorCode::SandboxOom => 502,
            ErrorCode::StorageExceeded => 507,
            ErrorCode::GuardrailBlocked => 422,
            ErrorCode::Internal => 500,
        }
    }

    pub const fn retryable(self) -> bool {
        match self {
            ErrorCode::RateLimited
            | ErrorCode::Unavailable
            | ErrorCode::UpstreamError
            | ErrorCode::AgentUnavailable => true,
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidJson
            | ErrorCode::PayloadTooLarge
            | ErrorCode::UnsupportedMediaType
            | ErrorCode::Unauthenticated
            | ErrorCode::InvalidToken
            | ErrorCode::Forbidden
            | ErrorCode::ModelNotEntitled
            | ErrorCode::TenantSuspended
            | ErrorCode::NotFound
            | ErrorCode::MethodNotAllowed
            | ErrorCode::Conflict
            | ErrorCode::BudgetExceeded
            | ErrorCode::AgentError
            | ErrorCode::SandboxOom
            | ErrorCode::StorageExceeded
            | ErrorCode::GuardrailBlocked
            | ErrorCode::Internal => false,
        }
    }

    pub const fn blame(self) -> Blame {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidJson
            | ErrorCode::PayloadTooLarge
            | ErrorCode::UnsupportedMediaType
            | ErrorCode::Unauthenticated
            | ErrorCode::InvalidToken
            | ErrorCode::Forbidden
            | ErrorCode::ModelNotEntitled
            | ErrorCode::TenantSuspended
            | ErrorCode::NotFound
            | ErrorCode::MethodNotAllowed
            | ErrorCode::Conflict
            | ErrorCode::RateLimited
            | ErrorCode::BudgetExceeded
            | ErrorCode::StorageExceeded
            | ErrorCode::GuardrailBlocked => Blame::Caller,
            // The agent is the tenant's code: to the platform it is an upstream.
            ErrorCode::Unavailable
            | ErrorCode::UpstreamError
            | ErrorCode::AgentUnavailable
            | ErrorCode::AgentError
            | ErrorCode::SandboxOom => Blame::Upstream,
            ErrorCode::Internal => Blame::Internal,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
