//! Cedar policy sets per platform, tier and tenant, for the operator (`/v1/admin/policies`):
//! versioned, applied without a restart. An upload is validated against the Cedar schema of the
//! tools known now, and refused with the line and column of each problem.

use super::{require_tenant, require_tier};
use crate::auth::Operator;
use crate::error::{ApiError, ApiResult, current_request_id, openai_type};
use crate::extract::ApiPath;
use crate::json::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::{ErrorCode, OperatorGrant, TenantId, TenantScope, TierName, UserId, unix_now};
use tenantry_policy::{Mode, PolicyError, PolicyScope, PolicySetRecord};
use tenantry_tools::{CallerIdentity, TargetName};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/policies", get(list_policies).post(upload_policy))
        .route("/v1/admin/policies/schema", get(policy_schema))
        .route(
            "/v1/admin/policies/{scope}",
            get(policy_versions).delete(deactivate_policy),
        )
        .route("/v1/admin/policies/{scope}/activate", post(activate_policy))
        .route("/v1/admin/policies/{scope}/rollback", post(rollback_policy))
}

/// `platform`, `tier:NAME` or `tenant:ID`.
fn parse_scope(raw: &str) -> ApiResult<PolicyScope> {
    let bad = || {
        ApiError::invalid(format!(
            "{raw:?} is not a policy scope: write platform, tier:NAME or tenant:ID"
        ))
    };
    match raw.split_once(':') {
        None if raw == "platform" => Ok(PolicyScope::Platform),
        Some(("tier", t)) => TierName::new(t)
            .map(PolicyScope::Tier)
            .map_err(|e| ApiError::invalid(e.to_string())),
        Some(("tenant", t)) => TenantId::new(t)
            .map(PolicyScope::Tenant)
            .map_err(|e| ApiError::invalid(e.to_string())),
        None | Some(_) => Err(bad()),
    }
}

async fn require_scope(state: &AppState, scope: &PolicyScope) -> ApiResult<()> {
    match scope {
        PolicyScope::Platform => Ok(()),
        PolicyScope::Tier(t) => require_tier(state, t).await,
        PolicyScope::Tenant(t) => require_tenant(state, t).await.map(drop),
    }
}

fn record_view(r: &PolicySetRecord, with_text: bool) -> Value {
    let mut v = json!({
        "scope": r.scope.to_string(),
        "version": r.version,
        "mode": r.mode.as_str(),
        "active": r.active,
        "created_at": r.created_at,
    });
    if with_text && let Some(obj) = v.as_object_mut() {
        obj.insert("text".into(), json!(r.text));
    }
    v
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadPolicy {
    #[serde(default)]
    tier: Option<TierName>,
    #[serde(default)]
    tenant: Option<TenantId>,
    #[serde(default)]
    platform: bool,
    /// The Cedar policy set.
    text: String,
    #[serde(default)]
    mode: Mode,
}

/// A refused upload: the error shape, with every diagnostic and its position.
fn invalid_policy(e: &PolicyError) -> Response {
    let code = ErrorCode::InvalidRequest;
    let body = json!({
        "error": {
            "code": code.as_str(),
            "message": e.to_string(),
            "type": openai_type(code),
            "request_id": current_request_id(),
            "diagnostics": e.diagnostics(),
        }
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// Most tenants whose credentials are used to learn the tools of upstream MCP servers that
/// need one, before validating a tier's or the platform's policy set.
const DISCOVERY_TENANTS: usize = 20;

/// The user an operator's stand-in acts as: a service principal no identity provider's token
/// and no API key can name (key names have no ':'), so no one else owns its sessions.
pub const PLATFORM_STAND_IN: &str = "tenantry:policy-discovery";

/// An operator's stand-in for a tenant, to list the tools that tenant would see.
fn stand_in(grant: OperatorGrant, tenant: &tenantry_core::Tenant) -> Option<CallerIdentity> {
    let c = CallerIdentity::new(
        TenantScope::for_operator(grant, tenant.id.clone()),
        UserId::service(PLATFORM_STAND_IN).ok()?,
        tenant.tier.clone(),
        tenantry_core::CredentialKind::ApiKey {
            key_id: "operator".into(),
        },
    );
    Some(c)
}

/// Makes the policy engine learn the tools it can before validating an upload for `scope`:
/// every target's tools, listed with the credentials of the scope's tenant (or of up to
/// `DISCOVERY_TENANTS` tenants on the tier, or on the platform) where a target needs one.
/// Returns the targets whose tools could not be learned, and why.
async fn discover_tools(state: &AppState, grant: OperatorGrant, scope: &PolicyScope) -> Vec<Value> {
    let gateway = state.tools.gateway();
    let mut left = gateway.discover(None).await;
    if !left.is_empty() {
        let tenants = match state.store.list_tenants().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list tenants to learn their tools");
                Vec::new()
            }
        };
        let candidates = tenants
            .iter()
            .filter(|t| match scope {
                PolicyScope::Platform => true,
                PolicyScope::Tier(tier) => &t.tier == tier,
                PolicyScope::Tenant(id) => &t.id == id,
            })
            .take(DISCOVERY_TENANTS);
        for tenant in candidates {
            let Some(caller) = stand_in(grant, tenant) else {
                continue;
            };
            let missing: Vec<TargetName> = gateway
                .discover(Some(&caller))
                .await
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            left.retain(|(name, _)| missing.contains(name));
            if left.is_empty() {
                break;
            }
        }
    }
    left.into_iter()
        .map(|(target, why)| json!({"target": target, "reason": why}))
        .collect()
}

async fn upload_policy(
    op: Operator,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<UploadPolicy>,
) -> ApiResult<Response> {
    let scope = match (req.tier, req.tenant, req.platform) {
        (Some(t), None, false) => PolicyScope::Tier(t),
        (None, Some(t), false) => PolicyScope::Tenant(t),
        (None, None, true) => PolicyScope::Platform,
        (None, None, false)
        | (Some(_), Some(_), _)
        | (Some(_), None, true)
        | (None, Some(_), true) => {
            return Err(ApiError::invalid(
                "give exactly one of `tier`, `tenant` or `platform: true`",
            ));
        }
    };
    require_scope(&state, &scope).await?;
    if req.text.len() > tenantry_store::MAX_POLICY_TEXT_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the policy set is longer than {} bytes",
                tenantry_store::MAX_POLICY_TEXT_BYTES
            ),
        ));
    }
    let unknown_targets = discover_tools(&state, op.0, &scope).await;
    let validated = match state.tools.engine().validate(&req.text) {
        Ok(v) => v,
        Err(e @ PolicyError::Invalid { .. }) => {
            tracing::info!(target: "audit", event = "policy_refused", scope = %scope,
                problems = e.diagnostics().len(), "policy set refused");
            return Ok(invalid_policy(&e));
        }
        Err(e) => return Err(ApiError::internal("validating a policy set", e)),
    };
    let record = state
        .store
        .put_policy_set(&scope, &req.text, req.mode, unix_now())
        .await?;
    state.tools.reload_policies(true).await?;
    tracing::info!(target: "audit", event = "policy_set_uploaded", scope = %scope,
        version = record.version, mode = record.mode.as_str(), "policy set uploaded");
    let mut view = record_view(&record, false);
    if let Some(obj) = view.as_object_mut() {
        obj.insert("policies".into(), json!(validated.policies));
        obj.insert("warnings".into(), json!(validated.warnings));
        obj.insert("targets_not_inspected".into(), json!(unknown_targets));
    }
    let tenant = match &scope {
        PolicyScope::Tenant(t) => Some(t.clone()),
        PolicyScope::Tier(_) | PolicyScope::Platform => None,
    };
    let note = crate::audit::AuditNote {
        tenant,
        target: Some(scope.to_string()),
        detail: json!({"version": record.version, "mode": record.mode.as_str()}),
    };
    Ok((StatusCode::CREATED, axum::Extension(note), Json(view)).into_response())
}

async fn list_policies(_: Operator, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let active = state.store.list_active_policy_sets().await?;
    let platform_is_starter = !active
        .iter()
        .any(|r| matches!(r.scope, PolicyScope::Platform));
    Ok(Json(json!({
        "active": active.iter().map(|r| record_view(r, false)).collect::<Vec<_>>(),
        "platform": if platform_is_starter { "starter" } else { "stored" },
        "starter_policy": tenantry_policy::STARTER_POLICY,
    })))
}

async fn policy_schema(_: Operator, State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        state.tools.engine().schema_text(),
    )
        .into_response()
}

async fn policy_versions(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(scope): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let scope = parse_scope(&scope)?;
    require_scope(&state, &scope).await?;
    let versions = state.store.list_policy_sets(&scope).await?;
    Ok(Json(json!({
        "scope": scope.to_string(),
        "versions": versions.iter().map(|r| record_view(r, true)).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Activate {
    version: i64,
}

async fn activate(state: &AppState, scope: &PolicyScope, version: i64) -> ApiResult<Json<Value>> {
    let record = state
        .store
        .activate_policy_set(scope, version)
        .await?
        .ok_or_else(|| ApiError::not_found("policy set version"))?;
    state.tools.reload_policies(true).await?;
    tracing::info!(target: "audit", event = "policy_set_activated", scope = %scope,
        version = record.version, "policy set version activated");
    Ok(Json(record_view(&record, false)))
}

async fn activate_policy(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(scope): ApiPath<String>,
    ApiJson(req): ApiJson<Activate>,
) -> ApiResult<Json<Value>> {
    let scope = parse_scope(&scope)?;
    require_scope(&state, &scope).await?;
    activate(&state, &scope, req.version).await
}

/// Activates the newest version older than the active one.
async fn rollback_policy(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(scope): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let scope = parse_scope(&scope)?;
    require_scope(&state, &scope).await?;
    let versions = state.store.list_policy_sets(&scope).await?;
    let previous = super::previous_version(
        &scope,
        versions.iter().map(|r| (r.version, r.active)),
        || {
            ApiError::invalid(format!(
                "{scope} has no active policy set; activate a version instead"
            ))
        },
    )?;
    activate(&state, &scope, previous).await
}

async fn deactivate_policy(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(scope): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let scope = parse_scope(&scope)?;
    require_scope(&state, &scope).await?;
    state.store.deactivate_policy_set(&scope).await?;
    state.tools.reload_policies(true).await?;
    tracing::info!(target: "audit", event = "policy_set_deactivated", scope = %scope, "policy set deactivated");
    Ok(StatusCode::NO_CONTENT)
}
