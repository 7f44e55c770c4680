//! One's own sessions (tenant callers): `GET /v1/sessions`, `GET|DELETE /v1/sessions/{id}`.
//!
//! A session belongs to the (tenant, user) that created it: for anyone else it does not exist.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::{RuntimeName, TenantContext};
use tenantry_store::SessionRecord;

use crate::auth::TenantCaller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/sessions", get(list))
        .route("/v1/sessions/{id}", get(show).delete(stop))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::admission::admit,
        ))
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
    ApiQuery(q): ApiQuery<ListQuery>,
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

async fn own_session(state: &AppState, ctx: &TenantContext, id: &str) -> ApiResult<SessionRecord> {
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
    let id = own_session(&state, &ctx, &id).await?.id;
    let reset = q.storage.unwrap_or(false);
    let was_running = if reset {
        state.sessions.reset_storage(&ctx.tenant_uid, &id).await?
    } else {
        state
            .sessions
            .stop(&ctx.tenant_uid, &id, "stopped_by_user")
            .await
    };
    let s = own_session(&state, &ctx, id.as_str()).await?;
    let mut v = view(&state, &ctx, &s);
    v["was_running"] = json!(was_running);
    v["storage_reset"] = json!(reset);
    Ok(Json(v))
}
