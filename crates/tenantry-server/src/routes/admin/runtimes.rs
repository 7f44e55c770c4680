//! The control plane for runtimes: `/v1/admin/runtimes` (operator key only).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Map, Value, json};
use tenantry_core::{ErrorCode, RuntimeName, unix_now};

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::json::{ApiJson, parse_json};
use crate::runtimes::{Protocol, Runtime, RuntimeSpec, Tenancy};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/runtimes", get(list).post(create))
        .route(
            "/v1/admin/runtimes/{name}",
            get(show).patch(update).delete(remove),
        )
}

fn parse_name(raw: &str) -> ApiResult<RuntimeName> {
    RuntimeName::new(raw).map_err(|e| ApiError::invalid(e.to_string()))
}

fn parse_tenancy(v: Option<Value>) -> ApiResult<Tenancy> {
    match v {
        None => Ok(Tenancy::Shared),
        Some(v) => serde_json::from_value(v).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidJson,
                format!("tenancy must be \"shared\" or {{\"dedicated\": \"TENANT\"}}: {e}"),
            )
        }),
    }
}

fn parse_spec(state: &AppState, body: Map<String, Value>) -> ApiResult<RuntimeSpec> {
    let bytes = serde_json::to_vec(&Value::Object(body))
        .map_err(|e| ApiError::internal("re-encoding a runtime", e))?;
    let spec: RuntimeSpec = parse_json(&bytes)?;
    spec.validate().map_err(ApiError::invalid)?;
    check_workdir(state, &spec)?;
    Ok(spec)
}

/// An agent's working directory is visible (read-only) in every sandbox of its runtime: it must
/// not hold the state directory (keys, the database, every session's storage), nor be inside it.
fn check_workdir(state: &AppState, spec: &RuntimeSpec) -> ApiResult<()> {
    let canonical =
        |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let workdir = canonical(&spec.workdir);
    let state_dir = canonical(&state.config.base_dir);
    if state_dir.starts_with(&workdir) {
        return Err(ApiError::invalid(format!(
            "workdir {} contains the state directory {} (keys, database, session storage), which \
             every sandbox of the runtime would see; give the agent a directory of its own",
            workdir.display(),
            state_dir.display()
        )));
    }
    if workdir.starts_with(&state_dir) {
        return Err(ApiError::invalid(format!(
            "workdir {} is inside the state directory {}; keep agents outside it",
            workdir.display(),
            state_dir.display()
        )));
    }
    Ok(())
}

pub async fn load(state: &AppState, name: &RuntimeName) -> ApiResult<Option<Runtime>> {
    match state.store.get_runtime(name).await? {
        None => Ok(None),
        Some(record) => Runtime::from_record(record)
            .map(Some)
            .map_err(|e| ApiError::internal("reading a runtime", e)),
    }
}

/// Whether `runtime` can serve a runtime-hosted tool target owned by `owner` (`None`: shared
/// by all tenants): it must be an MCP server every tenant of the target may use.
pub fn hosted_runtime_fits(
    owner: Option<&tenantry_core::TenantId>,
    runtime: &Runtime,
) -> Result<(), String> {
    let name = &runtime.name;
    if runtime.spec.protocol != Protocol::Mcp {
        return Err(format!(
            "runtime {name} is not an MCP server: a runtime-hosted tool target needs protocol \
             \"mcp\" (streamable HTTP on port 8000 at /mcp)"
        ));
    }
    match (&runtime.tenancy, owner) {
        (Tenancy::Shared, _) => Ok(()),
        (Tenancy::Dedicated(_), Some(o)) if runtime.visible_to(o) => Ok(()),
        (Tenancy::Dedicated(t), None) => Err(format!(
            "runtime {name} is dedicated to tenant {t}; a target shared by all tenants needs a \
             shared runtime (or give the target \"tenant\": \"{t}\")"
        )),
        (Tenancy::Dedicated(t), Some(o)) => Err(format!(
            "runtime {name} is dedicated to tenant {t} and cannot serve tenant {o}'s target"
        )),
    }
}

/// The tool targets a runtime serves, for a change that would break them.
fn hosted_targets(state: &AppState, name: &RuntimeName) -> Vec<tenantry_tools::TargetSpec> {
    state
        .tools
        .catalog()
        .specs()
        .into_iter()
        .filter(|t| matches!(&t.kind, tenantry_tools::TargetKind::Runtime { runtime } if runtime == name))
        .collect()
}

/// A runtime dedicated to one tenant gets its warm pool filled now rather than after that
/// tenant's first session (a shared runtime's pools are per tenant, filled on each tenant's
/// first session). Best effort: a tenant or tier that cannot be read leaves the pool to fill
/// on first use.
async fn fill_dedicated_pool(state: &AppState, runtime: &Runtime) {
    let Tenancy::Dedicated(owner) = &runtime.tenancy else {
        return;
    };
    if runtime.spec.warm_pool == 0 {
        return;
    }
    let Ok(Some(tenant)) = state.registry.tenant(&state.store, owner).await else {
        return;
    };
    let Ok(Some(tier)) = state.registry.tier(&state.store, &tenant.tier).await else {
        return;
    };
    state.sessions.fill_warm_pool(
        runtime.clone(),
        tenant.id.clone(),
        tenant.uid.clone(),
        tenantry_core::Tier::clone(&tier),
    );
}

async fn require_tenant_exists(state: &AppState, tenancy: &Tenancy) -> ApiResult<()> {
    if let Tenancy::Dedicated(t) = tenancy
        && state.store.get_tenant(t).await?.is_none()
    {
        return Err(ApiError::invalid(format!(
            "tenancy: tenant {t} does not exist; create it first"
        )));
    }
    Ok(())
}

async fn create(
    _: Operator,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<Runtime>)> {
    let Value::Object(mut body) = body else {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "the body must be a JSON object",
        ));
    };
    let name = match body.remove("name") {
        Some(Value::String(n)) => parse_name(&n)?,
        Some(_) | None => {
            return Err(ApiError::invalid(
                "name is required: a slug such as echo-agent",
            ));
        }
    };
    let tenancy = parse_tenancy(body.remove("tenancy"))?;
    let spec = parse_spec(&state, body)?;
    require_tenant_exists(&state, &tenancy).await?;
    let now = unix_now();
    let runtime = Runtime {
        name,
        tenancy,
        spec,
        created_at: now,
        updated_at: now,
    };
    let record = runtime
        .to_record()
        .map_err(|e| ApiError::internal("encoding a runtime", e))?;
    state.store.create_runtime(&record).await?;
    state.registry.forget_runtime(&runtime.name);
    tracing::info!(runtime = %runtime.name, "runtime created");
    fill_dedicated_pool(&state, &runtime).await;
    Ok((StatusCode::CREATED, Json(runtime)))
}

async fn list(_: Operator, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let mut runtimes = Vec::new();
    for record in state.store.list_runtimes().await? {
        runtimes.push(
            Runtime::from_record(record).map_err(|e| ApiError::internal("reading a runtime", e))?,
        );
    }
    Ok(Json(json!({ "runtimes": runtimes })))
}

async fn show(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Runtime>> {
    let name = parse_name(&name)?;
    load(&state, &name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("runtime"))
}

/// Changes the given top-level fields of the spec (and `tenancy`); the rest stays. Sessions
/// started afterwards use the new spec; running ones keep theirs.
async fn update(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(patch): ApiJson<Value>,
) -> ApiResult<Json<Runtime>> {
    let name = parse_name(&name)?;
    let mut runtime = load(&state, &name)
        .await?
        .ok_or_else(|| ApiError::not_found("runtime"))?;
    let Value::Object(mut patch) = patch else {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "the body must be a JSON object",
        ));
    };
    if patch
        .remove("name")
        .is_some_and(|n| n != Value::String(name.to_string()))
    {
        return Err(ApiError::invalid(
            "a runtime cannot be renamed; create a new one",
        ));
    }
    if let Some(t) = patch.remove("tenancy") {
        runtime.tenancy = parse_tenancy(Some(t))?;
        require_tenant_exists(&state, &runtime.tenancy).await?;
    }
    let Value::Object(mut body) = serde_json::to_value(&runtime.spec)
        .map_err(|e| ApiError::internal("encoding a runtime", e))?
    else {
        return Err(ApiError::internal("encoding a runtime", "not an object"));
    };
    body.extend(patch);
    runtime.spec = parse_spec(&state, body)?;
    for target in hosted_targets(&state, &runtime.name) {
        hosted_runtime_fits(target.tenant.as_ref(), &runtime).map_err(|why| {
            ApiError::new(
                ErrorCode::Conflict,
                format!("tool target {} runs on this runtime: {why}", target.name),
            )
        })?;
    }
    runtime.updated_at = unix_now();
    let record = runtime
        .to_record()
        .map_err(|e| ApiError::internal("encoding a runtime", e))?;
    if !state.store.update_runtime(&record).await? {
        return Err(ApiError::not_found("runtime"));
    }
    state.registry.forget_runtime(&runtime.name);
    state.sessions.runtime_changed(&runtime.name).await;
    tracing::info!(runtime = %runtime.name, "runtime updated");
    fill_dedicated_pool(&state, &runtime).await;
    Ok(Json(runtime))
}

async fn remove(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let name = parse_name(&name)?;
    let serving: Vec<String> = hosted_targets(&state, &name)
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    if !serving.is_empty() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "runtime {name} hosts the tool target(s) {}; remove them first (tenantry tool remove NAME)",
                serving.join(", ")
            ),
        ));
    }
    if !state.store.delete_runtime(&name).await? {
        return Err(ApiError::not_found("runtime"));
    }
    state.registry.forget_runtime(&name);
    state.sessions.runtime_deleted(&name).await;
    tracing::info!(runtime = %name, "runtime deleted");
    Ok(StatusCode::NO_CONTENT)
}
