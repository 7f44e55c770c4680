//! The control plane of the model gateway, for the operator: routes per tier, a tenant's own
//! models and overrides, a tenant's limit overrides.
//!
//! Every change is validated against the configured catalogue before it is stored, kept in the
//! store, and applied to the live router without a restart (on this replica at once, on the
//! others within `REGISTRY_TTL`). Every handler takes an `Operator`.

use super::{parse_tenant, parse_tier, require_tenant, require_tier};
use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::json::ApiJson;
use crate::models::LimitOverrides;
use crate::models::limits::{ModelLimits, SubjectLimits};
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tenantry_core::TierName;
use tenantry_models::{ConfigError, TenantModels, TierRoutes};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/models", get(overview))
        .route(
            "/v1/admin/models/tiers/{tier}",
            get(get_tier_routes)
                .put(put_tier_routes)
                .delete(delete_tier_routes),
        )
        .route(
            "/v1/admin/tenants/{id}/models",
            get(get_tenant_models)
                .put(put_tenant_models)
                .delete(delete_tenant_models),
        )
        .route(
            "/v1/admin/tenants/{id}/limits",
            get(get_tenant_limits)
                .put(put_tenant_limits)
                .delete(delete_tenant_limits),
        )
}
/// A routing error of the body, with the key relative to the body (`aliases.fast`).
fn invalid_routes(e: &ConfigError, prefix: &str) -> ApiError {
    let key = e.key.strip_prefix(prefix).unwrap_or(&e.key);
    ApiError::invalid(format!("`{key}` is not valid: {}", e.message))
}

// ---- overview and tier routes

async fn overview(_: Operator, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let models = &state.config.models;
    let providers: BTreeMap<&String, &str> = models
        .providers
        .iter()
        .map(|(name, p)| (name, p.kind().as_str()))
        .collect();
    let mut tiers = serde_json::Map::new();
    for tier in state.store.list_tiers().await? {
        let (routes, source) = state.models.tier_routes(&tier.name);
        tiers.insert(
            tier.name.to_string(),
            json!({
                "source": source,
                "routes": routes,
                "allowed_models": tier.allowed_models,
            }),
        );
    }
    Ok(Json(json!({
        "providers": providers,
        "catalog": models.catalog,
        "default_max_tokens": models.default_max_tokens,
        "tiers": tiers,
    })))
}

fn tier_view(state: &AppState, tier: &TierName) -> Value {
    let (routes, source) = state.models.tier_routes(tier);
    json!({ "tier": tier, "source": source, "routes": routes })
}

async fn get_tier_routes(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(tier): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let tier = parse_tier(&tier)?;
    require_tier(&state, &tier).await?;
    Ok(Json(tier_view(&state, &tier)))
}

/// Replaces the routes of a tier (`default`, `aliases`, `fallback`, `default_max_tokens`).
async fn put_tier_routes(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(tier): ApiPath<String>,
    ApiJson(routes): ApiJson<TierRoutes>,
) -> ApiResult<Json<Value>> {
    let tier = parse_tier(&tier)?;
    require_tier(&state, &tier).await?;
    state
        .models
        .validate_tier_routes(&tier, &routes)
        .map_err(|e| invalid_routes(&e, &format!("tiers.{tier}.")))?;
    state.models.set_tier_routes(&tier, Some(&routes)).await?;
    tracing::info!(tier = %tier, "model routes of the tier set through the control plane");
    Ok(Json(tier_view(&state, &tier)))
}

/// Drops the control plane's routes of a tier: the configuration file's apply again.
async fn delete_tier_routes(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(tier): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let tier = parse_tier(&tier)?;
    require_tier(&state, &tier).await?;
    if !state.models.set_tier_routes(&tier, None).await? {
        return Err(ApiError::not_found(
            "model routes set through the control plane",
        ));
    }
    tracing::info!(tier = %tier, "model routes of the tier reset to the configuration file's");
    Ok(Json(tier_view(&state, &tier)))
}

// ---- a tenant's own models

async fn tenant_models_view(state: &AppState, tenant: &tenantry_core::Tenant) -> ApiResult<Value> {
    let stored = state.models.stored_tenant_models(&tenant.id).await?;
    let (models, source) = match stored {
        Some(m) => (Some(m), crate::models::RouteSource::ControlPlane),
        None => match state.models.config_tenant_models(&tenant.id) {
            Some(m) => (Some(m), crate::models::RouteSource::Config),
            None => (None, crate::models::RouteSource::None),
        },
    };
    // What the tenant's callers see in GET /v1/models with this routing.
    let available = match state.registry.tier(&state.store, &tenant.tier).await? {
        Some(tier) => state
            .models
            .router()
            .models_for(&tier, models.as_ref())
            .data
            .into_iter()
            .map(|m| m.id)
            .collect(),
        None => Vec::new(),
    };
    Ok(json!({
        "tenant": tenant.id,
        "tier": tenant.tier,
        "source": source,
        "models": models,
        "available": available,
    }))
}

async fn get_tenant_models(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let tenant = require_tenant(&state, &parse_tenant(&id)?).await?;
    Ok(Json(tenant_models_view(&state, &tenant).await?))
}

/// Replaces a tenant's own routing: its private models (e.g. fine-tuned), overrides of the
/// tier's `default` and aliases, and fallback chains.
async fn put_tenant_models(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(models): ApiJson<TenantModels>,
) -> ApiResult<Json<Value>> {
    let tenant = require_tenant(&state, &parse_tenant(&id)?).await?;
    state
        .models
        .router()
        .validate_tenant_models(&models)
        .map_err(|e| invalid_routes(&e, "tenant."))?;
    state
        .models
        .set_tenant_models(&tenant.id, Some(&models))
        .await?;
    tracing::info!(tenant.id = %tenant.id, "tenant model routing set through the control plane");
    Ok(Json(tenant_models_view(&state, &tenant).await?))
}

async fn delete_tenant_models(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let tenant = require_tenant(&state, &parse_tenant(&id)?).await?;
    if !state.models.set_tenant_models(&tenant.id, None).await? {
        return Err(ApiError::not_found(
            "model routing set through the control plane",
        ));
    }
    tracing::info!(tenant.id = %tenant.id, "tenant model routing removed");
    Ok(Json(tenant_models_view(&state, &tenant).await?))
}

// ---- a tenant's limit overrides

fn subject_json(l: &SubjectLimits) -> Value {
    json!({
        "model_requests_per_minute": l.requests_per_minute,
        "tokens_per_minute": l.tokens_per_minute,
        "budget_per_month": l.budget_per_month,
    })
}

async fn tenant_limits_view(state: &AppState, tenant: &tenantry_core::Tenant) -> ApiResult<Value> {
    let overrides = state.models.stored_tenant_limits(&tenant.id).await?;
    let effective = match state.registry.tier(&state.store, &tenant.tier).await? {
        Some(tier) => {
            let l = ModelLimits::of(&tier, overrides.as_ref());
            json!({"tenant": subject_json(&l.tenant), "per_user": subject_json(&l.user)})
        }
        None => Value::Null,
    };
    Ok(json!({
        "tenant": tenant.id,
        "tier": tenant.tier,
        "overrides": overrides,
        "effective": effective,
    }))
}

async fn get_tenant_limits(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let tenant = require_tenant(&state, &parse_tenant(&id)?).await?;
    Ok(Json(tenant_limits_view(&state, &tenant).await?))
}

/// Replaces a tenant's overrides of its tier's model limits.
async fn put_tenant_limits(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(overrides): ApiJson<LimitOverrides>,
) -> ApiResult<Json<Value>> {
    let tenant = require_tenant(&state, &parse_tenant(&id)?).await?;
    overrides.validate().map_err(ApiError::invalid)?;
    state
        .models
        .set_tenant_limits(&tenant.id, Some(&overrides))
        .await?;
    tracing::info!(tenant.id = %tenant.id, "tenant limit overrides set");
    Ok(Json(tenant_limits_view(&state, &tenant).await?))
}

async fn delete_tenant_limits(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let tenant = require_tenant(&state, &parse_tenant(&id)?).await?;
    if !state.models.set_tenant_limits(&tenant.id, None).await? {
        return Err(ApiError::not_found("limit overrides"));
    }
    tracing::info!(tenant.id = %tenant.id, "tenant limit overrides removed");
    Ok(Json(tenant_limits_view(&state, &tenant).await?))
}
