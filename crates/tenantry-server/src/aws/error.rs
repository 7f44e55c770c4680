//! The AWS error shape of the AWS-compatible routes, as botocore reads it for `rest-json`
//! services: the exception's name in `x-amzn-ErrorType`, a JSON body `{"message": ...}`, the
//! status of the service model, and `x-amzn-RequestId`.
//!
//! Every error of those routes is one of these kinds; `AwsErrorKind::of` classifies our own
//! `ErrorCode`s without a wildcard arm, and `aws_shape` rewrites any of our JSON errors that a
//! shared layer (authentication, admission, body limits, path and JSON extractors) answered on
//! an AWS route.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tenantry_core::ErrorCode;

use super::sigv4::SigV4Error;
use crate::error::{ApiError, current_request_id};

/// The AWS exceptions the platform answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    Validation,
    ResourceNotFound,
    AccessDenied,
    /// An unknown or revoked access key, or a credential that is not ours.
    UnrecognizedClient,
    InvalidSignature,
    IncompleteSignature,
    MissingAuthenticationToken,
    Throttled,
    ServiceQuotaExceeded,
    Conflict,
    UnknownOperation,
    Service,
}

impl AwsErrorKind {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Validation => "ValidationException",
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::AccessDenied => "AccessDeniedException",
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::InvalidSignature => "InvalidSignatureException",
            Self::IncompleteSignature => "IncompleteSignatureException",
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::Throttled => "ThrottledException",
            Self::ServiceQuotaExceeded => "ServiceQuotaExceededException",
            Self::Conflict => "ConflictException",
            Self::UnknownOperation => "UnknownOperationException",
            Self::Service => "ServiceException",
        }
    }

    /// The status of the service models (403 for every authentication failure, as AWS does).
    pub const fn status(self) -> u16 {
        match self {
            Self::Validation => 400,
            Self::ResourceNotFound | Self::UnknownOperation => 404,
            Self::AccessDenied
            | Self::UnrecognizedClient
            | Self::InvalidSignature
            | Self::IncompleteSignature
            | Self::MissingAuthenticationToken => 403,
            Self::Throttled => 429,
            Self::ServiceQuotaExceeded => 402,
            Self::Conflict => 409,
            Self::Service => 500,
        }
    }

    /// The AWS kind of one of our codes.
    pub const fn of(code: ErrorCode) -> Self {
        match code {
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidJson
            | ErrorCode::PayloadTooLarge
            | ErrorCode::UnsupportedMediaType => Self::Validation,
            ErrorCode::Unauthenticated => Self::MissingAuthenticationToken,
            ErrorCode::InvalidToken => Self::UnrecognizedClient,
            ErrorCode::Forbidden
            | ErrorCode::ModelNotEntitled
            | ErrorCode::TenantSuspended
            | ErrorCode::GuardrailBlocked => Self::AccessDenied,
            ErrorCode::NotFound => Self::ResourceNotFound,
            ErrorCode::MethodNotAllowed => Self::UnknownOperation,
            ErrorCode::Conflict => Self::Conflict,
            ErrorCode::RateLimited => Self::Throttled,
            ErrorCode::BudgetExceeded | ErrorCode::StorageExceeded => Self::ServiceQuotaExceeded,
            ErrorCode::Unavailable
            | ErrorCode::Internal
            | ErrorCode::UpstreamError
            | ErrorCode::AgentUnavailable
            | ErrorCode::AgentError
            | ErrorCode::SandboxOom => Self::Service,
        }
    }
}

/// An error of an AWS route.
#[derive(Debug, Clone)]
pub struct AwsError {
    pub kind: AwsErrorKind,
    pub message: String,
    /// Our code, for metrics and the access log.
    pub code: ErrorCode,
    pub retry_after: Option<u64>,
}

impl AwsError {
    pub fn new(kind: AwsErrorKind, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            code,
            retry_after: None,
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(AwsErrorKind::Validation, ErrorCode::InvalidRequest, message)
    }

    /// The one answer for "absent" and "another tenant's" (law 3).
    pub fn not_found(what: &str) -> Self {
        Self::new(
            AwsErrorKind::ResourceNotFound,
            ErrorCode::NotFound,
            format!("{what} not found"),
        )
    }

    pub fn unrecognized_client() -> Self {
        Self::new(
            AwsErrorKind::UnrecognizedClient,
            ErrorCode::InvalidToken,
            "The security token included in the request is invalid.",
        )
    }
}

impl From<ApiError> for AwsError {
    fn from(e: ApiError) -> Self {
        Self {
            kind: AwsErrorKind::of(e.code),
            message: e.message,
            code: e.code,
            retry_after: e.retry_after,
        }
    }
}

impl From<tenantry_store::StoreError> for AwsError {
    fn from(e: tenantry_store::StoreError) -> Self {
        Self::from(ApiError::from(e))
    }
}

impl From<SigV4Error> for AwsError {
    fn from(e: SigV4Error) -> Self {
        let kind = match e {
            SigV4Error::Incomplete(_) => AwsErrorKind::IncompleteSignature,
            SigV4Error::Skewed | SigV4Error::WrongService | SigV4Error::Mismatch => {
                AwsErrorKind::InvalidSignature
            }
        };
        Self::new(kind, ErrorCode::InvalidToken, e.to_string())
    }
}

/// Marks a response already in the AWS shape, so `aws_shape` leaves it alone.
#[derive(Debug, Clone, Copy)]
struct AwsShaped;

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({ "message": self.message });
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            "x-amzn-errortype",
            HeaderValue::from_static(self.kind.name()),
        );
        if let Ok(v) = HeaderValue::from_str(&current_request_id()) {
            headers.insert("x-amzn-requestid", v);
        }
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            headers.insert("retry-after", v);
        }
        response.extensions_mut().insert(self.code);
        response.extensions_mut().insert(AwsShaped);
        response
    }
}

/// The largest error body of ours that `aws_shape` reads to take its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Route layer of the AWS routes: a refused SigV4 signature is answered with its AWS error,
/// and an error in our own shape (from a layer or extractor the routes share with the rest of
/// the API) in the AWS shape with the same message.
pub async fn aws_shape(req: Request, next: Next) -> Response {
    // A refused signature keeps its precise AWS error (InvalidSignature, Unrecognized...).
    if let Some(super::SigV4Outcome::Refused(e)) = req.extensions().get() {
        return e.clone().into_response();
    }
    let response = next.run(req).await;
    if response.extensions().get::<AwsShaped>().is_some() {
        return response;
    }
    let Some(code) = response.extensions().get::<ErrorCode>().copied() else {
        return response;
    };
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = axum::body::to_bytes(response.into_body(), MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| code.as_str().to_string());
    let mut err = AwsError::new(AwsErrorKind::of(code), code, message);
    err.retry_after = retry_after;
    err.into_response()
}

/// The answer to a path under an AWS prefix that names no operation.
pub async fn unknown_operation() -> AwsError {
    AwsError::new(
        AwsErrorKind::UnknownOperation,
        ErrorCode::NotFound,
        "no such operation; see docs/API.md for the AWS-compatible operations",
    )
}
