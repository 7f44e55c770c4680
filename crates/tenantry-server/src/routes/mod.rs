//! The HTTP surface: which path goes to which handler, and the limits in front of them.
//!
//! `admin/` is the operator's control plane, `tenant/` the tenants' endpoints, one module per
//! resource; `api_keys` (key creation shared by both) and `audit` (read by both, each its own
//! way) serve the two audiences; `system` is health, discovery and metrics.

pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod system;
pub mod tenant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tenantry_core::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let max_body = state.config.server.max_body_bytes;
    Router::new()
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/.well-known/jwks.json", get(system::jwks))
        .route("/.well-known/openid-configuration", get(system::discovery))
        .merge(tenant::routes(state.clone()))
        .merge(admin::routes())
        .merge(audit::routes())
        .merge(crate::aws::routes(state.clone()))
        .route("/metrics", get(system::metrics))
        .route_layer(axum::middleware::from_fn(crate::middleware::matched_route))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// A `text/event-stream` response of `body`, never cached or buffered on the way.
pub(crate) fn event_stream(body: axum::body::Body) -> axum::response::Response {
    use axum::http::header::{self, HeaderValue};
    let mut response = axum::response::Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint; see docs/API.md")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method",
    )
}
