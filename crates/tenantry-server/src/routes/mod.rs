//! The HTTP surface: which path goes to which handler, and the limits in front of them.

pub mod admin;
pub mod audit;
pub mod guardrails;
pub mod invocations;
pub mod keys;
pub mod models;
pub mod models_admin;
pub mod runtimes;
pub mod system;
pub mod tenant;
pub mod tools;
pub mod tools_admin;

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
        .merge(runtimes::routes())
        .merge(invocations::routes(state.clone()))
        .merge(models::routes(state.clone()))
        .merge(models_admin::routes())
        .merge(tools::routes(state.clone()))
        .merge(tools_admin::routes())
        .merge(guardrails::admin_routes())
        .merge(guardrails::tenant_routes(state.clone()))
        .route("/metrics", get(system::metrics))
        .route_layer(axum::middleware::from_fn(crate::middleware::matched_route))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
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
