//! Unauthenticated endpoints: health for orchestration, the platform's JWKS (the actor-token
//! key, and the development issuer's keys), and the development issuer's discovery document
//! so that it can be used like any other issuer.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
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

/// The platform's public keys: the actor-token key always (token endpoints verify agents'
/// actor tokens with it), and the development issuer's keys while it is enabled.
pub async fn jwks(State(state): State<AppState>) -> Json<Value> {
    let mut keys: Vec<Value> = state
        .dev_issuer
        .as_ref()
        .and_then(|dev| dev.jwks().get("keys").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    keys.push(state.actor.jwk().clone());
    Json(json!({ "keys": keys }))
}

pub async fn discovery(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let dev = state.dev_issuer.as_ref().ok_or_else(dev_issuer_disabled)?;
    Ok(Json(dev.discovery_document(&state.public_url)))
}

/// `GET /metrics`: the Prometheus exposition, to the operator key (or, without authentication,
/// on `telemetry.metrics_listen` when configured).
pub async fn metrics(_: crate::auth::Operator, State(state): State<AppState>) -> Response {
    render_metrics(&state)
}

/// The exposition with the session gauges read now.
pub fn render_metrics(state: &AppState) -> Response {
    let running = state.sessions.running_by_tenant();
    state
        .metrics
        .set_active_sessions(running.iter().map(|(t, n)| (t.as_str(), *n)));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            tenantry_telemetry::CONTENT_TYPE,
        )],
        state.metrics.render(),
    )
        .into_response()
}
