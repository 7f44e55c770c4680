//! Tool targets, for the operator (`/v1/admin/tool-targets`): kept in the store and applied
//! without a restart (on this replica at once, on the others within `REGISTRY_TTL`).

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::json::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};
use tenantry_core::{ErrorCode, TenantId, unix_now};
use tenantry_store::ToolTargetRecord;
use tenantry_tools::{SpecSource, TargetError, TargetKind, TargetName, TargetSpec};

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
}

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
        let found = crate::routes::admin::runtimes::load(state, runtime)
            .await?
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "kind.runtime: unknown runtime \"{runtime}\"; create it first (tenantry runtime create)"
                ))
            })?;
        crate::routes::admin::runtimes::hosted_runtime_fits(spec.tenant.as_ref(), &found)
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
