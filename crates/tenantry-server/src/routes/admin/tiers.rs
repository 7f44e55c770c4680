//! Tiers, for the operator: list, show, create or replace (`/v1/admin/tiers`).

use super::parse_tier;
use crate::audit::AuditNote;
use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::json::{ApiJson, parse_json};
use crate::state::AppState;
use axum::Extension;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};
use tenantry_core::{ErrorCode, Tier};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/tiers", get(list_tiers))
        .route("/v1/admin/tiers/{name}", get(get_tier).put(put_tier))
}

async fn list_tiers(_: Operator, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let tiers = state.store.list_tiers().await?;
    Ok(Json(json!({ "tiers": tiers })))
}

async fn get_tier(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Tier>> {
    let name = parse_tier(&name)?;
    let tier = state.store.get_tier(&name).await?;
    tier.map(Json).ok_or_else(|| ApiError::not_found("tier"))
}

/// Creates or replaces a tier. The body is a whole tier; `name` may be left out, and if given
/// must match the path.
async fn put_tier(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(mut body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Extension<AuditNote>, Json<Tier>)> {
    let name = parse_tier(&name)?;
    let object = body
        .as_object_mut()
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidJson, "the body must be a JSON object"))?;
    match object.get("name") {
        None => {
            object.insert("name".into(), Value::String(name.to_string()));
        }
        Some(Value::String(n)) if n == name.as_str() => {}
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "`name` in the body must be {name:?} (the name in the path) or left out"
            )));
        }
    }
    let bytes =
        serde_json::to_vec(&body).map_err(|e| ApiError::internal("re-encoding a tier", e))?;
    let tier: Tier = parse_json(&bytes)?;
    tier.validate()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let before = state.store.get_tier(&name).await?;
    let existed = before.is_some();
    state.store.put_tier(&tier).await?;
    state.registry.forget_tier(&name);
    tracing::info!(tier = %name, created = !existed, "tier saved");
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let note = AuditNote {
        tenant: None,
        target: Some(format!("tier:{name}")),
        detail: json!({"before": before, "after": tier}),
    };
    Ok((status, Extension(note), Json(tier)))
}
