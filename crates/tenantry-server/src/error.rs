//! API errors: one JSON shape, `{"error":{"code","message","type","request_id"}}`, for every
//! failure. `type` is the OpenAI error type of the code, so OpenAI client libraries pointed at
//! the model gateway classify Tenantry's errors as they do OpenAI's.
//!
//! Errors of the layers below (store, identity, limits, sessions) are classified here through
//! their own exhaustive `code()` mappings; internal details are logged, never sent to the
//! caller.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tenantry_core::{Blame, ErrorCode};
use tenantry_identity::AuthError;
use tenantry_limits::LimitError;
use tenantry_store::StoreError;

use crate::sessions::SessionError;

tokio::task_local! {
    /// The id of the request being served, set by the request-id middleware for the whole
    /// handling of the request so that every error response carries it.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds after which a retry may succeed, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// The one answer for "absent" and "belongs to another tenant": same code, same message.
    pub fn not_found(kind: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{kind} not found"))
    }

    pub fn internal(context: &str, detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "{context}");
        Self::new(
            ErrorCode::Internal,
            format!("internal error while {context}; see the server log"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let code = e.code();
        match code.blame() {
            Blame::Caller => ApiError::new(code, e.to_string()),
            Blame::Upstream => {
                tracing::warn!(error = %e, "store unavailable");
                ApiError::new(code, "the store is unavailable; retry shortly")
            }
            Blame::Internal => ApiError::internal("accessing the store", e),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let code = e.code();
        match code.blame() {
            Blame::Caller => ApiError::new(code, e.to_string()),
            Blame::Upstream => {
                tracing::warn!(error = %e, "identity provider keys unavailable");
                ApiError::new(code, format!("cannot verify the token right now: {e}"))
            }
            Blame::Internal => ApiError::internal("verifying a token", e),
        }
    }
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        let code = e.code();
        let retry_after = e.retry_after_secs();
        let mut err = match code.blame() {
            Blame::Caller => ApiError::new(code, e.to_string()),
            Blame::Upstream => {
                tracing::warn!(error = %e, "limiter unavailable; refusing");
                ApiError::new(
                    code,
                    "the limiter cannot decide right now; the request is refused, retry shortly",
                )
            }
            Blame::Internal => ApiError::internal("checking limits", e),
        };
        err.retry_after = retry_after;
        err
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Store(e) => ApiError::from(e),
            SessionError::Internal { context, detail } => ApiError::internal(context, detail),
            SessionError::NotFound
            | SessionError::TooManySessions { .. }
            | SessionError::StorageExceeded { .. }
            | SessionError::BodyTooLarge { .. }
            | SessionError::BodyPastLimit
            | SessionError::NoSandboxes(_)
            | SessionError::RuntimeCannotStart { .. }
            | SessionError::SandboxStart(_)
            | SessionError::AgentUnavailable(_)
            | SessionError::OutOfMemory
            | SessionError::AgentError(_)
            | SessionError::NotBound => ApiError::new(e.code(), e.to_string()),
        }
    }
}

/// The OpenAI error `type` closest to a code (`invalid_request_error`, `rate_limit_error`...).
pub const fn openai_type(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidRequest
        | ErrorCode::InvalidJson
        | ErrorCode::PayloadTooLarge
        | ErrorCode::UnsupportedMediaType
        | ErrorCode::MethodNotAllowed
        | ErrorCode::Conflict
        | ErrorCode::GuardrailBlocked => "invalid_request_error",
        ErrorCode::Unauthenticated | ErrorCode::InvalidToken => "authentication_error",
        ErrorCode::Forbidden | ErrorCode::ModelNotEntitled | ErrorCode::TenantSuspended => {
            "permission_error"
        }
        ErrorCode::NotFound => "not_found_error",
        ErrorCode::RateLimited => "rate_limit_error",
        ErrorCode::BudgetExceeded | ErrorCode::StorageExceeded => "insufficient_quota",
        ErrorCode::Unavailable | ErrorCode::Internal => "server_error",
        ErrorCode::UpstreamError
        | ErrorCode::AgentUnavailable
        | ErrorCode::AgentError
        | ErrorCode::SandboxOom => "api_error",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({
            "error": {
                "code": self.code.as_str(),
                "message": self.message,
                "type": openai_type(self.code),
                "request_id": current_request_id(),
            }
        });
        let mut response = (status, axum::Json(body)).into_response();
        // For the ingress's metrics: the error's code, without parsing the body.
        response.extensions_mut().insert(self.code);
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert("retry-after", v);
        }
        if self.code == ErrorCode::Unauthenticated || self.code == ErrorCode::InvalidToken {
            response.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Bearer realm=\"tenantry\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_errors_keep_their_code_and_hide_internal_details() {
        let e = ApiError::from(SessionError::NotFound);
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::NotFound, "session not found")
        );
        let e = ApiError::from(SessionError::OutOfMemory);
        assert_eq!(e.code, ErrorCode::SandboxOom);
        assert_eq!(e.retry_after, None);
        let e = ApiError::from(SessionError::Internal {
            context: "binding the platform bridge",
            detail: "/run/x: permission denied".into(),
        });
        assert_eq!(e.code, ErrorCode::Internal);
        assert_eq!(
            e.message,
            "internal error while binding the platform bridge; see the server log"
        );
    }
}
