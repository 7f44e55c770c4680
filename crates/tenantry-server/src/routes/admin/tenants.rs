//! Tenants and their API keys, for the operator (`/v1/admin/tenants`): create, show, update,
//! delete (with everything of the tenant), and the tenant's keys. Every handler takes an
//! `Operator`, which only the operator key yields; tenant credentials are refused with 403.

use super::{parse_tenant, require_tenant, scope_of};
use crate::audit::AuditNote;
use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::json::ApiJson;
use crate::routes::api_keys::{self, CreateApiKey, CreatedApiKey, Creator};
use crate::state::AppState;
use axum::Extension;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tenantry_core::{
    IsolationSettings, Tenant, TenantId, TenantIsolation, TenantScope, TenantStatus, TenantUid,
    Tier, TierName, unix_now,
};
use tenantry_store::ApiKeyRecord;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/tenants", get(list_tenants).post(create_tenant))
        .route(
            "/v1/admin/tenants/{id}",
            get(get_tenant).patch(update_tenant).delete(delete_tenant),
        )
        .route(
            "/v1/admin/tenants/{id}/api-keys",
            get(list_keys).post(create_key),
        )
        .route(
            "/v1/admin/tenants/{id}/api-keys/{key_id}",
            get(get_key).delete(revoke_key),
        )
        .route(
            "/v1/admin/tenants/{id}/sessions/{session}/logs",
            get(session_logs),
        )
}

/// Any session's agent output, for the operator (same query and answer as the tenant's
/// `GET /v1/sessions/{id}/logs`).
async fn session_logs(
    op: Operator,
    State(state): State<AppState>,
    ApiPath((id, session)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<crate::routes::tenant::sessions::LogsQuery>,
) -> ApiResult<axum::response::Response> {
    let tenant = require_tenant(&state, &parse_tenant(&id)?).await?;
    let scope = TenantScope::for_operator(op.0, tenant.id.clone());
    let record = state
        .store
        .get_session(&scope, &session)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    crate::routes::tenant::sessions::session_logs(&state, &tenant.uid, &record.id, q).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    id: TenantId,
    #[serde(default)]
    name: Option<String>,
    tier: TierName,
    #[serde(default)]
    status: Option<TenantStatus>,
    #[serde(default)]
    isolation: TenantIsolation,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    features: BTreeMap<String, bool>,
    #[serde(default)]
    entitlements: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateTenant {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tier: Option<TierName>,
    #[serde(default)]
    status: Option<TenantStatus>,
    #[serde(default)]
    isolation: Option<TenantIsolation>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    features: Option<BTreeMap<String, bool>>,
    #[serde(default)]
    entitlements: Option<serde_json::Map<String, Value>>,
}

fn check_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name must be 1 to 200 characters without control characters",
        ));
    }
    Ok(())
}

fn check_region(region: &str) -> ApiResult<()> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "region must be 1 to 64 letters, digits, '-' or '_' (e.g. eu-west-1)",
        ))
    }
}

fn check_tenant_fields(t: &Tenant) -> ApiResult<()> {
    check_name(&t.name)?;
    check_region(&t.region)?;
    if t.features.len() > 256 || t.features.keys().any(|k| k.is_empty() || k.len() > 64) {
        return Err(ApiError::invalid(
            "features: at most 256 flags, names of 1 to 64 characters",
        ));
    }
    let entitlements_len = serde_json::to_vec(&t.entitlements)
        .map(|v| v.len())
        .unwrap_or(0);
    if entitlements_len > 16 * 1024 {
        return Err(ApiError::invalid(
            "entitlements must be at most 16 KiB of JSON (they travel to agents as a header)",
        ));
    }
    Ok(())
}

async fn require_tier(state: &AppState, tier: &TierName) -> ApiResult<Tier> {
    match state.store.get_tier(tier).await? {
        Some(t) => Ok(t),
        None => {
            let known: Vec<String> = state
                .store
                .list_tiers()
                .await?
                .into_iter()
                .map(|t| t.name.to_string())
                .collect();
            Err(ApiError::invalid(format!(
                "unknown tier \"{tier}\"; known tiers: {}. Create one with PUT /v1/admin/tiers/{tier}",
                known.join(", ")
            )))
        }
    }
}

fn tenant_view(tenant: &Tenant, tier_isolation: IsolationSettings) -> Value {
    let mut v = serde_json::to_value(tenant).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "effective_isolation".into(),
            serde_json::to_value(tenant.isolation.resolve(tier_isolation)).unwrap_or(Value::Null),
        );
    }
    v
}

async fn view(state: &AppState, tenant: &Tenant) -> ApiResult<Value> {
    let tier_isolation = state
        .store
        .get_tier(&tenant.tier)
        .await?
        .map(|t| t.isolation)
        .unwrap_or_default();
    Ok(tenant_view(tenant, tier_isolation))
}

async fn create_tenant(
    _: Operator,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Extension<AuditNote>, Json<Value>)> {
    require_tier(&state, &req.tier).await?;
    let now = unix_now();
    let tenant = Tenant {
        name: req.name.unwrap_or_else(|| req.id.to_string()),
        id: req.id,
        uid: TenantUid::generate(),
        tier: req.tier,
        status: req.status.unwrap_or_default(),
        isolation: req.isolation,
        region: req.region.unwrap_or_else(|| "local".to_string()),
        features: req.features,
        entitlements: req.entitlements,
        created_at: now,
        updated_at: now,
    };
    check_tenant_fields(&tenant)?;
    state.store.create_tenant(&tenant).await?;
    state.registry.forget_tenant(&tenant.id);
    tracing::info!(tenant.id = %tenant.id, tier = %tenant.tier, "tenant created");
    let note = AuditNote {
        tenant: Some(tenant.id.clone()),
        target: Some(format!("tenant:{}", tenant.id)),
        detail: json!({"after": tenant}),
    };
    Ok((
        StatusCode::CREATED,
        Extension(note),
        Json(view(&state, &tenant).await?),
    ))
}

async fn list_tenants(_: Operator, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let tenants = state.store.list_tenants().await?;
    Ok(Json(json!({ "tenants": tenants })))
}

async fn load_tenant(state: &AppState, raw_id: &str) -> ApiResult<Tenant> {
    require_tenant(state, &parse_tenant(raw_id)?).await
}

async fn get_tenant(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let tenant = load_tenant(&state, &id).await?;
    Ok(Json(view(&state, &tenant).await?))
}

async fn update_tenant(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateTenant>,
) -> ApiResult<(Extension<AuditNote>, Json<Value>)> {
    let mut tenant = load_tenant(&state, &id).await?;
    let before = tenant.clone();
    if let Some(tier) = req.tier {
        require_tier(&state, &tier).await?;
        tenant.tier = tier;
    }
    if let Some(name) = req.name {
        tenant.name = name;
    }
    if let Some(status) = req.status {
        tenant.status = status;
    }
    if let Some(isolation) = req.isolation {
        tenant.isolation = isolation;
    }
    if let Some(region) = req.region {
        tenant.region = region;
    }
    if let Some(features) = req.features {
        tenant.features = features;
    }
    if let Some(entitlements) = req.entitlements {
        tenant.entitlements = entitlements;
    }
    check_tenant_fields(&tenant)?;
    tenant.updated_at = unix_now();
    if !state.store.update_tenant(&tenant).await? {
        return Err(ApiError::not_found("tenant"));
    }
    state.registry.forget_tenant(&tenant.id);
    if tenant.status == TenantStatus::Suspended {
        crate::tenants::suspended(&state, &tenant.id, &tenant.uid).await;
    }
    tracing::info!(tenant.id = %tenant.id, status = tenant.status.as_str(), tier = %tenant.tier, "tenant updated");
    let note = AuditNote {
        tenant: Some(tenant.id.clone()),
        target: Some(format!("tenant:{}", tenant.id)),
        detail: json!({"before": before, "after": tenant}),
    };
    Ok((Extension(note), Json(view(&state, &tenant).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteTenant {
    /// `usage`: also delete the tenant's usage ledger (kept for billing otherwise).
    #[serde(default)]
    purge: Option<String>,
}

/// Deletes a tenant and everything of it (see `tenants::delete`); answers what was removed.
async fn delete_tenant(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteTenant>,
) -> ApiResult<(Extension<AuditNote>, Json<crate::tenants::Removed>)> {
    let id = parse_tenant(&id)?;
    let purge_usage = match q.purge.as_deref() {
        None => false,
        Some("usage") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "purge={other:?} is not known; the only value is purge=usage (also delete the \
                 tenant's usage ledger, which is otherwise kept for billing)"
            )));
        }
    };
    let removed = crate::tenants::delete(&state, &id, purge_usage)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    let note = AuditNote {
        tenant: Some(id.clone()),
        target: Some(format!("tenant:{id}")),
        detail: json!({"removed": removed}),
    };
    Ok((Extension(note), Json(removed)))
}

// ---- tenant API keys

async fn list_keys(
    op: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let scope = scope_of(&state, op, &id).await?;
    let keys = state.store.list_api_keys(&scope).await?;
    Ok(Json(json!({ "api_keys": keys })))
}

async fn create_key(
    op: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    let scope = scope_of(&state, op, &id).await?;
    let created = api_keys::create(&state.store, &scope, Creator::Operator, req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn get_key(
    op: Operator,
    State(state): State<AppState>,
    ApiPath((id, key_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<ApiKeyRecord>> {
    let scope = scope_of(&state, op, &id).await?;
    api_keys::get(&state.store, &scope, &key_id).await.map(Json)
}

async fn revoke_key(
    op: Operator,
    State(state): State<AppState>,
    ApiPath((id, key_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<ApiKeyRecord>> {
    let scope = scope_of(&state, op, &id).await?;
    api_keys::revoke(&state, &scope, &key_id).await.map(Json)
}
