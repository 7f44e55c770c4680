//! A tenant's own API keys (`/v1/api-keys`), for its tenant-admins. Each handler takes a
//! `TenantCaller` and reaches keys only through the caller's own `TenantScope`.

use crate::auth::TenantCaller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::json::ApiJson;
use crate::routes::api_keys::{self, CreateApiKey, CreatedApiKey, Creator, TENANT_ADMIN_ROLE};
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};
use tenantry_core::{ErrorCode, TenantContext};
use tenantry_store::ApiKeyRecord;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/api-keys", get(list_keys).post(create_key))
        .route("/v1/api-keys/{key_id}", get(get_key).delete(revoke_key))
}
fn require_tenant_admin(ctx: &TenantContext) -> ApiResult<()> {
    if ctx.has_role(TENANT_ADMIN_ROLE) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("managing API keys needs the `{TENANT_ADMIN_ROLE}` role"),
        ))
    }
}

async fn list_keys(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
) -> ApiResult<Json<Value>> {
    let keys = state.store.list_api_keys(&ctx.scope()).await?;
    Ok(Json(json!({ "api_keys": keys })))
}

async fn get_key(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(key_id): ApiPath<String>,
) -> ApiResult<Json<ApiKeyRecord>> {
    api_keys::get(&state.store, &ctx.scope(), &key_id)
        .await
        .map(Json)
}

async fn create_key(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiJson(req): ApiJson<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    require_tenant_admin(&ctx)?;
    let created = api_keys::create(&state.store, &ctx.scope(), Creator::Tenant(&ctx), req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn revoke_key(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(key_id): ApiPath<String>,
) -> ApiResult<Json<ApiKeyRecord>> {
    // Look the key up before checking the role, so a non-admin learns nothing about other
    // tenants' keys either: both answers are the same 404 for a key outside the tenant.
    api_keys::get(&state.store, &ctx.scope(), &key_id).await?;
    require_tenant_admin(&ctx)?;
    api_keys::revoke(&state, &ctx.scope(), &key_id)
        .await
        .map(Json)
}
