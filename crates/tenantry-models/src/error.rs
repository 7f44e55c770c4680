//! The two per-request error types of this crate: [`ProviderError`], why one upstream call
//! failed, and [`RouteError`], why a requested model cannot be routed for a tenant.
//!
//! Both map without a wildcard arm to an [`ErrorCode`] and a stable reason for metrics and the
//! ledger. Messages quote what the upstream said, trimmed; they must never contain a provider
//! credential or a request header.

use std::time::Duration;

use tenantry_core::ErrorCode;

pub(crate) use tenantry_core::upstream::trim_message;

/// Why one call to an upstream model provider failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The upstream answered with a non-success status (or, in a stream, an error event that
    /// carries one).
    #[error("the model provider answered {status}: {message}")]
    Upstream {
        status: u16,
        message: String,
        /// From a `Retry-After` header, when the upstream sent one.
        retry_after: Option<Duration>,
    },
    /// No answer (or, in a stream, no next byte) within the configured time.
    #[error("the model provider did not answer within {}ms ({what})", .after.as_millis())]
    Timeout { what: &'static str, after: Duration },
    /// The upstream could not be reached, or closed the connection before answering.
    #[error("cannot reach the model provider: {0}")]
    Connect(String),
    /// The upstream answered success with a body that is not what its protocol promises.
    #[error("the model provider's answer is malformed: {0}")]
    MalformedResponse(String),
    /// A stream that had started ended or failed before its end-of-answer marker.
    #[error("the model provider's stream broke off: {0}")]
    StreamBroken(String),
    /// The request cannot be expressed in this provider's wire format (e.g. an image URL for a
    /// provider that only takes inline images).
    #[error("the request cannot be sent to this model: {0}")]
    InvalidRequest(String),
    /// The provider does not offer this operation (e.g. embeddings from Anthropic).
    #[error("this model does not support {0}")]
    Unsupported(&'static str),
}

impl ProviderError {
    pub(crate) fn upstream(status: u16, message: impl Into<String>) -> Self {
        ProviderError::Upstream {
            status,
            message: trim_message(message.into()),
            retry_after: None,
        }
    }

    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        ProviderError::MalformedResponse(trim_message(message.into()))
    }

    pub(crate) fn broken(message: impl Into<String>) -> Self {
        ProviderError::StreamBroken(trim_message(message.into()))
    }

    /// Whether trying the next model of a fallback chain can help: the upstream is overloaded,
    /// rate-limiting us, failing, slow or unreachable. A refusal of the request itself (4xx) or
    /// a malformed answer is not retried elsewhere.
    pub fn is_retryable_for_fallback(&self) -> bool {
        match self {
            ProviderError::Upstream { status, .. } => {
                *status == 408 || *status == 429 || *status >= 500
            }
            ProviderError::Timeout { .. } | ProviderError::Connect(_) => true,
            ProviderError::MalformedResponse(_)
            | ProviderError::StreamBroken(_)
            | ProviderError::InvalidRequest(_)
            | ProviderError::Unsupported(_) => false,
        }
    }

    /// The platform error code given to the caller.
    ///
    /// An upstream 400/404/413/422 is the request's fault (too long a context, a bad parameter)
    /// and becomes `InvalidRequest`; an upstream 401/403 is our credential's fault and becomes
    /// `UpstreamError`; 429 becomes `RateLimited`; 503 and 529 (overloaded) `Unavailable`.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProviderError::Upstream { status, .. } => match *status {
                400 | 404 | 413 | 422 => ErrorCode::InvalidRequest,
                429 => ErrorCode::RateLimited,
                503 | 529 => ErrorCode::Unavailable,
                408 => ErrorCode::Unavailable,
                _ => ErrorCode::UpstreamError,
            },
            ProviderError::Timeout { .. } | ProviderError::Connect(_) => ErrorCode::Unavailable,
            ProviderError::MalformedResponse(_) | ProviderError::StreamBroken(_) => {
                ErrorCode::UpstreamError
            }
            ProviderError::InvalidRequest(_) | ProviderError::Unsupported(_) => {
                ErrorCode::InvalidRequest
            }
        }
    }

    /// A stable snake_case reason, for metrics labels and the ledger's status.
    pub fn reason(&self) -> &'static str {
        match self {
            ProviderError::Upstream { status, .. } => match *status {
                429 => "upstream_rate_limited",
                500..=599 => "upstream_server_error",
                _ => "upstream_refused",
            },
            ProviderError::Timeout { .. } => "upstream_timeout",
            ProviderError::Connect(_) => "upstream_unreachable",
            ProviderError::MalformedResponse(_) => "upstream_malformed",
            ProviderError::StreamBroken(_) => "upstream_stream_broken",
            ProviderError::InvalidRequest(_) => "untranslatable_request",
            ProviderError::Unsupported(_) => "unsupported_operation",
        }
    }

    /// How long the upstream asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Upstream { retry_after, .. } => *retry_after,
            ProviderError::Timeout { .. }
            | ProviderError::Connect(_)
            | ProviderError::MalformedResponse(_)
            | ProviderError::StreamBroken(_)
            | ProviderError::InvalidRequest(_)
            | ProviderError::Unsupported(_) => None,
        }
    }
}

/// Why a requested model cannot be routed for a tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The name is neither an alias of the tier or tenant, nor a model of the catalogue or of
    /// the tenant.
    #[error("model {0:?} does not exist; GET /v1/models lists the models you can use")]
    UnknownModel(String),
    /// The model exists but the tenant's tier does not include it.
    #[error("model {requested:?} is not included in tier {tier}")]
    NotEntitled { requested: String, tier: String },
    /// The request names no model and the tier has no `default`.
    #[error("tier {0} has no default model; name a model or ask the operator to set one")]
    NoDefault(String),
}

impl RouteError {
    pub fn code(&self) -> ErrorCode {
        match self {
            RouteError::UnknownModel(_) | RouteError::NoDefault(_) => ErrorCode::NotFound,
            RouteError::NotEntitled { .. } => ErrorCode::ModelNotEntitled,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            RouteError::UnknownModel(_) => "unknown_model",
            RouteError::NotEntitled { .. } => "model_not_entitled",
            RouteError::NoDefault(_) => "no_default_model",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn classification() {
        let e = ProviderError::upstream(503, "overloaded");
        assert!(e.is_retryable_for_fallback());
        assert_eq!(e.code(), ErrorCode::Unavailable);
        let e = ProviderError::upstream(429, "slow down");
        assert!(e.is_retryable_for_fallback());
        assert_eq!(e.code(), ErrorCode::RateLimited);
        let e = ProviderError::upstream(400, "bad");
        assert!(!e.is_retryable_for_fallback());
        assert_eq!(e.code(), ErrorCode::InvalidRequest);
        let e = ProviderError::upstream(401, "bad key");
        assert_eq!(e.code(), ErrorCode::UpstreamError);
        assert!(!ProviderError::malformed("x").is_retryable_for_fallback());
        let t = ProviderError::Timeout {
            what: "response",
            after: Duration::from_millis(5),
        };
        assert!(t.is_retryable_for_fallback());
        assert_eq!(
            RouteError::NotEntitled {
                requested: "big".into(),
                tier: "basic".into()
            }
            .code()
            .as_str(),
            "model_not_entitled"
        );
    }

    #[test]
    fn long_messages_are_trimmed() {
        let e = ProviderError::upstream(500, "x".repeat(10_000));
        assert!(e.to_string().len() < 600);
    }
}
