//! The AWS-compatible surface: SigV4 access keys as a credential of the common authentication,
//! the AWS error shape, and the AWS-JSON (`rest-json`) routes of the AgentCore services that
//! the platform serves by endpoint URL.
//!
//! Where they live on the listener: each service under a path prefix of its own, because the
//! two AgentCore planes' paths overlap each other (`/memories/...`) and could meet ours:
//!
//! | service (botocore name)       | endpoint URL to configure              |
//! |-------------------------------|----------------------------------------|
//! | `bedrock-agentcore`           | `{public_url}/aws/bedrock-agentcore`   |
//! | `bedrock-agentcore-control`   | `{public_url}/aws/bedrock-agentcore-control` |
//!
//! boto3 keeps an endpoint URL's path and appends the operation's, and SigV4 signs the whole
//! path, so the prefix needs no special handling. Inside a sandbox the platform points
//! `AWS_ENDPOINT_URL_BEDROCK_AGENTCORE{,_CONTROL}` at the sandbox's bridge with these prefixes.
//!
//! This module owns the wire formats only: every operation maps onto the memory service of
//! `crate::memory` one to one, and must never hold storage or domain logic of its own.

pub mod access_keys;
pub mod auth;
pub mod error;
pub mod keys;
mod memory;
pub mod sigv4;

use axum::Router;
use axum::routing::any;

pub use auth::{AccessKeys, BridgeSigner, SigV4Outcome};
pub use error::{AwsError, AwsErrorKind};

use crate::state::AppState;

/// The path prefix of the `bedrock-agentcore` data plane.
pub const DATA_PLANE_PREFIX: &str = "/aws/bedrock-agentcore";
/// The path prefix of the `bedrock-agentcore-control` control plane.
pub const CONTROL_PLANE_PREFIX: &str = "/aws/bedrock-agentcore-control";

/// The AWS routes, under their prefixes, with tenant admission and the AWS error shape.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .merge(memory::routes())
        .route(
            &format!("{DATA_PLANE_PREFIX}/{{*rest}}"),
            any(error::unknown_operation),
        )
        .route(
            &format!("{CONTROL_PLANE_PREFIX}/{{*rest}}"),
            any(error::unknown_operation),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::admission::admit,
        ))
        .route_layer(axum::middleware::from_fn(error::aws_shape))
}

/// The region the sandbox's AWS SDKs are told (any region verifies; this one is conventional).
pub const SANDBOX_REGION: &str = "us-east-1";

/// The AWS environment of a sandbox whose bridge is at `endpoint` with `secret`: the AgentCore
/// endpoint URLs, a region, and the dummy key pair the bridge verifies (no session token, no
/// profile or shared credential files to find).
pub fn sandbox_env(endpoint: &str, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE",
            format!("{endpoint}{DATA_PLANE_PREFIX}"),
        ),
        (
            "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL",
            format!("{endpoint}{CONTROL_PLANE_PREFIX}"),
        ),
        ("AWS_REGION", SANDBOX_REGION.to_string()),
        ("AWS_DEFAULT_REGION", SANDBOX_REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", keys::SANDBOX_ACCESS_KEY_ID.to_string()),
        ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ]
}
