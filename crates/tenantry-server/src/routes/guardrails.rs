//! Guardrails over HTTP: the operator's control plane (`/v1/admin/guardrails`: profiles per
//! name and tenants' overrides, versioned, with rollback, and the decision counters) and the
//! tenants' standalone check (`POST /v1/guardrails/apply`, also reachable by agents through
//! the bridge with their workload token).
//!
//! A profile is validated (and compiled) before it is stored; a refused one names the field and
//! the fix. A tenant sees only its own profile's decisions: the apply endpoint takes the
//! tenant from the credential, and accepts only a profile that tenant may use (its tier's).

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
use tenantry_guardrails::{Guard, Outcome, Profile, Stage};
use tenantry_store::{GuardrailRecord, GuardrailScope};

use crate::auth::{CallerTier, Operator, TenantCaller};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::json::ApiJson;
use crate::state::AppState;

pub fn admin_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/guardrails", get(list_active))
        .route("/v1/admin/guardrails/{scope}", get(versions).put(upload))
        .route("/v1/admin/guardrails/{scope}/activate", post(activate))
        .route("/v1/admin/guardrails/{scope}/rollback", post(rollback))
}

pub fn tenant_routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/guardrails/apply", post(apply))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::admission::admit,
        ))
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
    if let GuardrailScope::Tenant(t) = scope
        && state.store.get_tenant(t).await?.is_none()
    {
        return Err(ApiError::not_found("tenant"));
    }
    Ok(())
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
    let active = versions
        .iter()
        .find(|r| r.active)
        .map(|r| r.version)
        .ok_or_else(|| ApiError::not_found("guardrail profile"))?;
    let previous = versions
        .iter()
        .map(|r| r.version)
        .filter(|v| *v < active)
        .max()
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "{scope} has no version before {active} to roll back to"
            ))
        })?;
    activate_version(&state, &scope, previous).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Source {
    Input,
    Output,
    ToolInput,
    ToolResult,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyRequest {
    text: String,
    source: Source,
    /// A named profile the caller's tenant may use (its tier's); default: the one that applies
    /// to the caller's traffic.
    #[serde(default)]
    profile: Option<String>,
}

/// The standalone check: the decision, the categories found, and the text as masked.
async fn apply(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    CallerTier(tier): CallerTier,
    ApiJson(req): ApiJson<ApplyRequest>,
) -> ApiResult<Json<Value>> {
    let tier = tier.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("the tier {} of the caller does not exist", ctx.tier),
        )
    })?;
    let applied = match &req.profile {
        // Only the tier's profile may be named: any other name is as absent as a profile that
        // was never created (no enumeration of other tiers' or tenants' profiles).
        Some(name) if tier.guardrail_profile.as_deref() == Some(name.as_str()) => state
            .guardrails
            .named(name)
            .ok_or_else(|| ApiError::not_found("guardrail profile"))?,
        Some(_) => return Err(ApiError::not_found("guardrail profile")),
        None => match state.guardrails.applied(&ctx.tenant_id, &tier)? {
            Some(a) => a,
            None => {
                return Ok(Json(json!({
                    "decision": "pass", "categories": [], "text": req.text, "profile": null,
                })));
            }
        },
    };
    let stage = match req.source {
        Source::Input => Stage::ModelInput,
        Source::Output => Stage::ModelOutput,
        Source::ToolInput => Stage::ToolInput,
        Source::ToolResult => Stage::ToolResult,
    };
    let guard = &applied.guard;
    let check_ctx = state.guardrails.context(&ctx.tenant_id, &applied.leak);
    let verdict = guard.check(stage, &req.text, &check_ctx).await;
    state
        .guardrails
        .record(&ctx.tenant_id, stage, guard, &verdict.findings);
    let categories: Vec<Value> = verdict
        .findings
        .iter()
        .map(|f| json!({"category": f.category, "action": f.action}))
        .collect();
    let (decision, text) = match verdict.outcome {
        Outcome::Pass => ("pass", Some(req.text)),
        Outcome::Masked(m) => ("masked", Some(m)),
        Outcome::Blocked { .. } => ("blocked", None),
    };
    Ok(Json(json!({
        "decision": decision,
        "categories": categories,
        "text": text,
        "profile": {"source": guard.source, "version": guard.version},
    })))
}
