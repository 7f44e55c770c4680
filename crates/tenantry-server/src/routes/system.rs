//! Unauthenticated endpoints: health for orchestration, and the development issuer's OIDC
//! documents so that it can be used like any other issuer.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tenantry_core::ErrorCode;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store answers; otherwise 503 so a load balancer stops sending traffic.
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::new(ErrorCode::Unavailable, "the store does not answer")
    })?;
    Ok(Json(
        json!({"status": "ready", "store": state.store.backend()}),
    ))
}

fn dev_issuer_disabled() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "the development issuer is disabled on this server",
    )
}

pub async fn jwks(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let dev = state.dev_issuer.as_ref().ok_or_else(dev_issuer_disabled)?;
    Ok(Json(dev.jwks()))
}

pub async fn discovery(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let dev = state.dev_issuer.as_ref().ok_or_else(dev_issuer_disabled)?;
    Ok(Json(dev.discovery_document(&state.public_url)))
}
