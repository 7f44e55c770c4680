//! Guardrail profiles, for the operator (`/v1/admin/guardrails`): profiles per name and
//! tenants' overrides, versioned, with rollback. A profile is validated (and compiled) before it
//! is stored; a refused one names the field and the fix.

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::json::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::{ErrorCode, unix_now};
use tenantry_guardrails::{Guard, Profile};
use tenantry_store::{GuardrailRecord, GuardrailScope};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/guardrails", get(list_active))
        .route("/v1/admin/guardrails/{scope}", get(versions).put(upload))
        .route("/v1/admin/guardrails/{scope}/activate", post(activate))
        .route("/v1/admin/guardrails/{scope}/rollback", post(rollback))
}
fn parse_scope(raw: &str) -> ApiResult<GuardrailScope> {
    GuardrailScope::parse(raw).ok_or_else(|| {
        ApiError::invalid(format!(
            "{raw:?} is not a guardrail scope; write profile:NAME (lower-case letters, digits, \
             '-', '_') or tenant:ID"
        ))
    })
}

async fn require_scope(state: &AppState, scope: &GuardrailScope) -> ApiResult<()> {
    match scope {
        GuardrailScope::Tenant(t) => super::require_tenant(state, t).await.map(drop),
        GuardrailScope::Profile(_) => Ok(()),
    }
}

fn view(r: &GuardrailRecord, with_body: bool) -> Value {
    let mut v = json!({
        "scope": r.scope.to_string(),
        "version": r.version,
        "active": r.active,
        "created_at": r.created_at,
    });
    if with_body
        && let (Some(obj), Ok(body)) = (v.as_object_mut(), serde_json::from_str::<Value>(&r.body))
    {
        obj.insert("profile".into(), body);
    }
    v
}

async fn list_active(_: Operator, State(state): State<AppState>) -> Json<Value> {
    let active: Vec<Value> = state
        .guardrails
        .active()
        .iter()
        .map(|r| view(r, false))
        .collect();
    let decisions: Vec<Value> = state
        .guardrails
        .counters()
        .into_iter()
        .map(|(tenant, category, action, stage, count)| {
            json!({"tenant": tenant, "category": category, "action": action,
                   "stage": stage, "count": count})
        })
        .collect();
    Json(json!({ "active": active, "decisions": decisions }))
}

async fn versions(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(scope): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let scope = parse_scope(&scope)?;
    require_scope(&state, &scope).await?;
    let versions = state.store.list_guardrail_profiles(&scope).await?;
    if versions.is_empty() {
        return Err(ApiError::not_found("guardrail profile"));
    }
    Ok(Json(json!({
        "scope": scope.to_string(),
        "versions": versions.iter().map(|r| view(r, true)).collect::<Vec<_>>(),
    })))
}

/// The body is the profile itself (JSON).
async fn upload(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(scope): ApiPath<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let scope = parse_scope(&scope)?;
    require_scope(&state, &scope).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the profile is not UTF-8"))?;
    let profile = Profile::from_json(text).map_err(|e| ApiError::invalid(e.to_string()))?;
    if matches!(scope, GuardrailScope::Profile(_))
        && (profile.inherit || !profile.protected_identifiers.is_empty())
    {
        return Err(ApiError::invalid(
            "`inherit` and `protected_identifiers` belong to a tenant's profile (tenant:ID), \
             not a named one",
        ));
    }
    Guard::compile(scope.to_string(), 0, &profile).map_err(|e| ApiError::invalid(e.to_string()))?;
    let normalised = serde_json::to_string(&profile)
        .map_err(|e| ApiError::internal("encoding a guardrail profile", e))?;
    let record = state
        .store
        .put_guardrail_profile(&scope, &normalised, unix_now())
        .await?;
    state.guardrails.reload(true).await?;
    tracing::info!(target: "audit", event = "guardrail_profile_uploaded", scope = %scope,
        version = record.version, checks = profile.checks.len(), "guardrail profile uploaded");
    Ok((StatusCode::CREATED, Json(view(&record, false))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Activate {
    version: i64,
}

async fn activate_version(
    state: &AppState,
    scope: &GuardrailScope,
    version: i64,
) -> ApiResult<Json<Value>> {
    let record = state
        .store
        .activate_guardrail_profile(scope, version)
        .await?
        .ok_or_else(|| ApiError::not_found("guardrail profile version"))?;
    state.guardrails.reload(true).await?;
    tracing::info!(target: "audit", event = "guardrail_profile_activated", scope = %scope,
        version = record.version, "guardrail profile version activated");
    Ok(Json(view(&record, false)))
}

async fn activate(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(scope): ApiPath<String>,
    ApiJson(req): ApiJson<Activate>,
) -> ApiResult<Json<Value>> {
    let scope = parse_scope(&scope)?;
    require_scope(&state, &scope).await?;
    activate_version(&state, &scope, req.version).await
}

/// Activates the newest version older than the active one.
async fn rollback(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(scope): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let scope = parse_scope(&scope)?;
    require_scope(&state, &scope).await?;
    let versions = state.store.list_guardrail_profiles(&scope).await?;
    let previous = super::previous_version(
        &scope,
        versions.iter().map(|r| (r.version, r.active)),
        || ApiError::not_found("guardrail profile"),
    )?;
    activate_version(&state, &scope, previous).await
}
