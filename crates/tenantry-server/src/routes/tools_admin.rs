//! The control plane of the tool gateway, for the operator: tool targets
//! (`/v1/admin/tool-targets`), Cedar policy sets per platform, tier and tenant
//! (`/v1/admin/policies`), and tenants' vault credentials
//! (`/v1/admin/tenants/{id}/credentials`).
//!
//! Targets and policy sets are kept in the store and applied without a restart (on this
//! replica at once, on the others within `REGISTRY_TTL`). A policy upload is validated against
//! the Cedar schema of the tools known now, and refused with the line and column of each
//! problem. Credentials are write-only: a response shows their metadata and versions, never a
//! secret, and a refused credential body is described without echoing its values. Every
//! handler takes an `Operator`.

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::{ErrorCode, OperatorGrant, TenantId, TenantScope, TierName, UserId, unix_now};
use tenantry_policy::{Mode, PolicyError, PolicyScope, PolicySetRecord};
use tenantry_store::ToolTargetRecord;
use tenantry_tools::{CallerIdentity, SpecSource, TargetError, TargetKind, TargetName, TargetSpec};
use tenantry_vault::{Credential, VaultError};

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult, current_request_id, openai_type};
use crate::extract::ApiPath;
use crate::json::ApiJson;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/admin/tool-targets",
            get(list_targets).post(create_target),
        )
        .route(
            "/v1/admin/tool-targets/{name}",
            get(get_target).put(put_target).delete(delete_target),
        )
        .route("/v1/admin/policies", get(list_policies).post(upload_policy))
        .route("/v1/admin/policies/schema", get(policy_schema))
        .route(
            "/v1/admin/policies/{scope}",
            get(policy_versions).delete(deactivate_policy),
        )
        .route("/v1/admin/policies/{scope}/activate", post(activate_policy))
        .route("/v1/admin/policies/{scope}/rollback", post(rollback_policy))
        .route("/v1/admin/tenants/{id}/credentials", get(list_credentials))
        .route(
            "/v1/admin/tenants/{id}/credentials/{name}",
            get(get_credential)
                .put(put_credential)
                .delete(delete_credential),
        )
}

fn parse_tenant(raw: &str) -> ApiResult<TenantId> {
    TenantId::new(raw).map_err(|e| ApiError::invalid(e.to_string()))
}

async fn require_tenant(state: &AppState, tenant: &TenantId) -> ApiResult<()> {
    match state.store.get_tenant(tenant).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found("tenant")),
    }
}

// ---- tool targets -------------------------------------------------------------------------------

fn target_error(e: TargetError) -> ApiError {
    ApiError::new(e.code(), e.to_string())
}

/// A target as the API shows it: the spec, with an inline OpenAPI document summarised.
fn target_view(spec: &TargetSpec) -> Value {
    let mut v = serde_json::to_value(spec).unwrap_or(Value::Null);
    if let TargetKind::Openapi {
        spec: SpecSource::Inline(text),
        ..
    } = &spec.kind
        && let Some(kind) = v.get_mut("kind").and_then(Value::as_object_mut)
    {
        kind.insert("spec".into(), json!({ "inline_bytes": text.len() }));
    }
    v
}

async fn list_targets(_: Operator, State(state): State<AppState>) -> Json<Value> {
    let targets: Vec<Value> = state
        .tools
        .catalog()
        .specs()
        .iter()
        .map(target_view)
        .collect();
    Json(json!({ "targets": targets }))
}

fn parse_name(raw: &str) -> ApiResult<TargetName> {
    TargetName::new(raw).map_err(target_error)
}

async fn get_target(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let name = parse_name(&name)?;
    state
        .tools
        .catalog()
        .get(&name)
        .map(|s| Json(target_view(&s)))
        .ok_or_else(|| ApiError::not_found("tool target"))
}

/// Validates, fetches a document given by URL, stores and applies a target. `replace`: an
/// existing target of that name (and owner) is replaced; otherwise it is a conflict.
async fn save_target(
    state: &AppState,
    spec: TargetSpec,
    replace: bool,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if let Some(tenant) = &spec.tenant
        && state.store.get_tenant(tenant).await?.is_none()
    {
        return Err(ApiError::invalid(format!(
            "unknown tenant \"{tenant}\": create it first, or leave `tenant` out for a target shared by all tenants"
        )));
    }
    if let TargetKind::Runtime { runtime } = &spec.kind {
        let found = crate::routes::runtimes::load(state, runtime)
            .await?
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "kind.runtime: unknown runtime \"{runtime}\"; create it first (tenantry runtime create)"
                ))
            })?;
        crate::routes::runtimes::hosted_runtime_fits(spec.tenant.as_ref(), &found)
            .map_err(|why| ApiError::invalid(format!("kind.runtime: {why}")))?;
    }
    let catalog = state.tools.catalog();
    let existing = catalog.get(&spec.name);
    if let Some(existing) = &existing {
        if !replace {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "tool target {} already exists; PUT /v1/admin/tool-targets/{} replaces it",
                    spec.name, spec.name
                ),
            ));
        }
        if existing.tenant != spec.tenant {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "tool target {} belongs to another owner; delete it before registering it again",
                    spec.name
                ),
            ));
        }
    }
    let resolved = catalog.resolve_spec(spec).await.map_err(target_error)?;
    let body = serde_json::to_value(&resolved)
        .map_err(|e| ApiError::internal("encoding a tool target", e))?;
    let now = unix_now();
    state
        .store
        .put_tool_target(&ToolTargetRecord {
            name: resolved.name.to_string(),
            tenant: resolved.tenant.clone(),
            body,
            created_at: now,
            updated_at: now,
        })
        .await?;
    let warnings = catalog
        .upsert(resolved.clone())
        .await
        .map_err(target_error)?;
    state.tools.target_changed(&resolved.name).await;
    tracing::info!(target: "audit", event = "tool_target_saved", target_name = %resolved.name,
        tenant = resolved.tenant.as_ref().map(TenantId::as_str).unwrap_or(""),
        replaced = existing.is_some(), "tool target saved");
    let mut view = target_view(&resolved);
    if let Some(obj) = view.as_object_mut() {
        obj.insert("warnings".into(), json!(warnings));
    }
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(view)))
}

async fn create_target(
    _: Operator,
    State(state): State<AppState>,
    ApiJson(spec): ApiJson<TargetSpec>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    save_target(&state, spec, false).await
}

async fn put_target(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(mut body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = parse_name(&name)?;
    let object = body
        .as_object_mut()
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidJson, "the body must be a JSON object"))?;
    match object.get("name") {
        None => {
            object.insert("name".into(), json!(name));
        }
        Some(Value::String(n)) if n == name.as_str() => {}
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "`name` in the body must be {name:?} (the name in the path) or left out"
            )));
        }
    }
    let spec: TargetSpec = serde_json::from_value(body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("the JSON does not match a tool target: {e}"),
        )
    })?;
    save_target(&state, spec, true).await
}

async fn delete_target(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let name = parse_name(&name)?;
    let stored = state.store.delete_tool_target(name.as_str()).await?;
    let loaded = state.tools.catalog().remove(&name);
    if !stored && !loaded {
        return Err(ApiError::not_found("tool target"));
    }
    state.tools.target_changed(&name).await;
    tracing::info!(target: "audit", event = "tool_target_deleted", target_name = %name, "tool target deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---- policy sets --------------------------------------------------------------------------------

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
        PolicyScope::Tier(t) => match state.store.get_tier(t).await? {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found("tier")),
        },
        PolicyScope::Tenant(t) => require_tenant(state, t).await,
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
    let mut c = CallerIdentity::new(
        tenant.id.clone(),
        UserId::service(PLATFORM_STAND_IN).ok()?,
        tenant.tier.clone(),
        tenantry_core::CredentialKind::ApiKey {
            key_id: "operator".into(),
        },
    );
    c.scope = Some(TenantScope::for_operator(grant, tenant.id.clone()));
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
    let active = versions
        .iter()
        .find(|r| r.active)
        .map(|r| r.version)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "{scope} has no active policy set; activate a version instead"
            ))
        })?;
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

// ---- vault credentials --------------------------------------------------------------------------

fn vault_error(e: VaultError) -> ApiError {
    let code = e.code();
    match code.blame() {
        tenantry_core::Blame::Caller => ApiError::new(code, e.to_string()),
        tenantry_core::Blame::Upstream => {
            tracing::warn!(reason = e.reason(), error = %e, "vault unavailable");
            ApiError::new(code, "the vault is unavailable; retry shortly")
        }
        tenantry_core::Blame::Internal => ApiError::internal("using the vault", e),
    }
}

async fn scope_of(state: &AppState, op: Operator, raw_id: &str) -> ApiResult<TenantScope> {
    let id = parse_tenant(raw_id)?;
    require_tenant(state, &id).await?;
    Ok(TenantScope::for_operator(op.0, id))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialQuery {
    /// One user's credential rather than the tenant's own.
    #[serde(default)]
    user: Option<UserId>,
    /// For deletion: one version only.
    #[serde(default)]
    version: Option<i64>,
}

fn query(q: Result<Query<CredentialQuery>, QueryRejection>) -> ApiResult<CredentialQuery> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::invalid(format!("bad query: {}", e.body_text())))
}

/// Parses a credential body without ever putting one of its values in the error message:
/// serde's messages can quote a value ("invalid type: string \"...\""), so only those that
/// name fields or kinds are passed on.
fn parse_credential(body: &[u8]) -> ApiResult<Credential> {
    serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        let names_only = ["unknown field", "missing field", "unknown variant", "missing field `kind`"]
            .iter()
            .any(|p| text.starts_with(p));
        let message = if names_only {
            format!("the body is not a credential: {text}")
        } else {
            format!(
                "the body is not a credential (line {}, column {}): expected {{\"kind\": \"api_key\", \"value\": \"...\"}}, \
                 {{\"kind\": \"oauth2_client_credentials\", ...}} or {{\"kind\": \"token_exchange\", ...}}",
                e.line(),
                e.column()
            )
        };
        ApiError::new(ErrorCode::InvalidJson, message)
    })
}

async fn list_credentials(
    op: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let scope = scope_of(&state, op, &id).await?;
    let list = state
        .tools
        .vault()
        .list(&scope)
        .await
        .map_err(vault_error)?;
    Ok(Json(json!({ "credentials": list })))
}

async fn get_credential(
    op: Operator,
    State(state): State<AppState>,
    ApiPath((id, name)): ApiPath<(String, String)>,
    q: Result<Query<CredentialQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    let scope = scope_of(&state, op, &id).await?;
    let info = state
        .tools
        .vault()
        .info(&scope, &name, q.user.as_ref())
        .await
        .map_err(vault_error)?
        .ok_or_else(|| ApiError::not_found("credential"))?;
    Ok(Json(json!(info)))
}

/// Stores a credential, or rotates it (a new version; older ones stay until deleted).
async fn put_credential(
    op: Operator,
    State(state): State<AppState>,
    ApiPath((id, name)): ApiPath<(String, String)>,
    q: Result<Query<CredentialQuery>, QueryRejection>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let q = query(q)?;
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !is_json {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the credential as JSON with `Content-Type: application/json`",
        ));
    }
    let credential = parse_credential(&body)?;
    let scope = scope_of(&state, op, &id).await?;
    let info = state
        .tools
        .vault()
        .put(&scope, &name, q.user.as_ref(), &credential)
        .await
        .map_err(vault_error)?;
    tracing::info!(target: "audit", event = "credential_stored", tenant = %scope.tenant(),
        credential = %info.name, user = info.user.as_ref().map(UserId::as_str).unwrap_or(""),
        kind = %info.kind, version = info.version, "credential stored");
    let status = if info.versions.len() > 1 {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(json!(info))))
}

async fn delete_credential(
    op: Operator,
    State(state): State<AppState>,
    ApiPath((id, name)): ApiPath<(String, String)>,
    q: Result<Query<CredentialQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    let scope = scope_of(&state, op, &id).await?;
    let deleted = state
        .tools
        .vault()
        .delete(&scope, &name, q.user.as_ref(), q.version)
        .await
        .map_err(vault_error)?;
    if deleted == 0 {
        return Err(ApiError::not_found("credential"));
    }
    tracing::info!(target: "audit", event = "credential_deleted", tenant = %scope.tenant(),
        credential = %name, versions = deleted, "credential deleted");
    Ok(Json(json!({ "deleted": deleted })))
}
