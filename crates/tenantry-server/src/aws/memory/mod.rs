//! AgentCore Memory, wire-compatible: the `bedrock-agentcore` data-plane operations on events
//! and records (`data`) and the `bedrock-agentcore-control` operations on memory resources
//! (`control`), with the methods, paths, JSON shapes and errors of botocore's service models.
//!
//! Each operation is one call of `crate::memory::MemoryService` with a `MemoryCaller` made
//! from the verified caller (a SigV4 access key outside, the session's workload token through
//! a sandbox's bridge, or any other tenant credential): this module translates shapes and
//! nothing else. Another tenant's memory is `ResourceNotFoundException` like a missing one.

mod control;
mod data;

use axum::Router;
use tenantry_core::TenantContext;

use super::error::AwsError;
use crate::memory::{MemoryCaller, MemoryServiceError};
use crate::state::AppState;

/// Both planes' routes, each under its prefix.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(data::routes(super::DATA_PLANE_PREFIX))
        .merge(control::routes(super::CONTROL_PLANE_PREFIX))
}

/// The memory caller of a verified tenant caller.
async fn caller(state: &AppState, ctx: &TenantContext) -> Result<MemoryCaller, AwsError> {
    MemoryCaller::of_tenant(state, ctx).await.map_err(failed)
}

/// A page of a listing: `items` under `key`, and `nextToken` only when there is a next page.
fn paged(key: &str, items: impl serde::Serialize, next: Option<String>) -> serde_json::Value {
    let mut page = serde_json::Map::new();
    page.insert(key.to_string(), serde_json::json!(items));
    if let Some(token) = next {
        page.insert("nextToken".to_string(), token.into());
    }
    serde_json::Value::Object(page)
}

/// A memory error in the AWS shape.
fn failed(e: MemoryServiceError) -> AwsError {
    AwsError::from(crate::error::ApiError::from(e))
}

/// Unix milliseconds as boto3 reads a `timestamp` of a `rest-json` answer: epoch seconds.
fn epoch_seconds(ms: i64) -> f64 {
    #[allow(
        clippy::cast_precision_loss,
        reason = "milliseconds fit an f64 exactly"
    )]
    let secs = ms as f64 / 1000.0;
    secs
}

/// The JSON body of an AWS operation: an empty body is `{}` (botocore sends one for an
/// operation whose body members are all unset), anything unreadable `ValidationException`.
#[derive(Debug)]
struct AwsBody<T>(T);

impl<S, T> axum::extract::FromRequest<S> for AwsBody<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = AwsError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, AwsError> {
        let bytes = bytes::Bytes::from_request(req, state)
            .await
            .map_err(|e| AwsError::validation(format!("cannot read the body: {e}")))?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        crate::json::parse_json(bytes)
            .map(AwsBody)
            .map_err(AwsError::from)
    }
}
