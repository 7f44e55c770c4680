//! Invoking agents and managing one's sessions (tenant callers):
//! `POST /v1/runtimes/{runtime}/invocations`, `GET /v1/sessions`, `GET|DELETE /v1/sessions/{id}`.
//!
//! A session belongs to the (tenant, user) that created it: for anyone else it does not exist.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::{ErrorCode, RuntimeName, TenantContext};
use tenantry_limits::{ConcurrencyKey, Dimension, Subject};
use tenantry_store::SessionRecord;

use crate::auth::{CallerTier, TenantCaller};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::runtimes::Protocol;
use crate::sessions::{AGENTCORE_SESSION_HEADER, Invocation, SESSION_HEADER, subject_of};
use crate::state::AppState;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/runtimes/{runtime}/invocations", post(invoke))
        .route("/v1/sessions", get(list))
        .route("/v1/sessions/{id}", get(show).delete(stop))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::admission::admit,
        ))
}

/// The session id the caller asked for, or a new one.
fn session_id(headers: &HeaderMap) -> ApiResult<String> {
    let given = headers
        .get(SESSION_HEADER)
        .or_else(|| headers.get(AGENTCORE_SESSION_HEADER));
    match given {
        None => Ok(tenantry_core::SessionId::generate().into_string()),
        Some(v) => {
            let id = v
                .to_str()
                .map_err(|_| ApiError::invalid("the session id header is not valid text"))?;
            if tenantry_core::SessionId::is_valid(id) {
                Ok(id.to_string())
            } else {
                Err(ApiError::invalid(
                    "a session id must be 33 to 256 characters of letters, digits, '-', '_' and '.'",
                ))
            }
        }
    }
}

async fn invoke(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    CallerTier(tier): CallerTier,
    ApiPath(runtime): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, ApiError> {
    let name = RuntimeName::new(&runtime).map_err(|_| ApiError::not_found("runtime"))?;
    let runtime = state
        .registry
        .runtime(&state.store, &name)
        .await
        .map_err(|e| ApiError::internal("reading a runtime", e))?
        .filter(|r| r.visible_to(&ctx.tenant_id))
        .ok_or_else(|| ApiError::not_found("runtime"))?;
    // An MCP server's tools are called through the tool gateway only, where the tenant's
    // policy, the tool-call rate and metering apply to every call: a direct invocation would
    // pass its JSON-RPC around all three.
    if runtime.spec.protocol == Protocol::Mcp {
        return Err(ApiError::invalid(format!(
            "runtime {name} is an MCP server: call its tools through /mcp (as the tool target \
             that names it), where policy, rate limits and metering apply"
        )));
    }
    let runtime = crate::runtimes::Runtime::clone(&runtime);
    let tier = tier
        .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "the tenant's tier does not exist"))?;
    let session = session_id(&headers)?;
    let permit = match tier.limits.concurrent_invocations {
        None => None,
        Some(max) => {
            let key = ConcurrencyKey::new(
                Subject::tenant(ctx.tenant_id.clone()),
                Dimension::Invocations,
            );
            Some(state.limiter.acquire(&key, max).await?)
        }
    };
    let subject = subject_of(&ctx, &headers);
    let invocation = Invocation {
        runtime,
        session_id: session,
        caller_headers: &headers,
        platform_headers: HeaderMap::new(),
        subject,
        body,
        permit,
    };
    Ok(state.sessions.invoke(&ctx, &tier, invocation).await?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    runtime: Option<String>,
}

fn view(state: &AppState, ctx: &TenantContext, s: &SessionRecord) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        // Which server process runs it is the operator's business.
        o.remove("node");
        o.insert(
            "running".into(),
            json!(state.sessions.is_running(&ctx.tenant_uid, &s.id)),
        );
    }
    v
}

/// The caller's own sessions (a user sees only the sessions they created).
async fn list(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let runtime = match q.runtime {
        Some(r) => Some(RuntimeName::new(r).map_err(|e| ApiError::invalid(e.to_string()))?),
        None => None,
    };
    let sessions = state
        .store
        .list_sessions(&ctx.scope(), Some(&ctx.user_id), runtime.as_ref())
        .await?;
    let views: Vec<Value> = sessions.iter().map(|s| view(&state, &ctx, s)).collect();
    Ok(Json(json!({ "sessions": views })))
}

async fn own_session(
    state: &AppState,
    ctx: &tenantry_core::TenantContext,
    id: &str,
) -> ApiResult<SessionRecord> {
    state
        .store
        .get_session(&ctx.scope(), id)
        .await?
        .filter(|s| s.user_id == ctx.user_id)
        .ok_or_else(|| ApiError::not_found("session"))
}

async fn show(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let s = own_session(&state, &ctx, &id).await?;
    Ok(Json(view(&state, &ctx, &s)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StopQuery {
    /// `true`: also delete everything in the session's storage.
    #[serde(default)]
    storage: Option<bool>,
}

/// Stops the session's sandbox; its storage stays and the next invocation resumes it. With
/// `?storage=true` the storage is deleted too (reset): the next invocation starts on empty
/// storage, in the same session.
async fn stop(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<StopQuery>,
) -> ApiResult<Json<Value>> {
    own_session(&state, &ctx, &id).await?;
    let reset = q.storage.unwrap_or(false);
    let was_running = if reset {
        state.sessions.reset_storage(&ctx.tenant_uid, &id).await?
    } else {
        state
            .sessions
            .stop(&ctx.tenant_uid, &id, "stopped_by_user")
            .await
    };
    let s = own_session(&state, &ctx, &id).await?;
    let mut v = view(&state, &ctx, &s);
    v["was_running"] = json!(was_running);
    v["storage_reset"] = json!(reset);
    Ok(Json(v))
}
