//! One's own sessions (tenant callers): `GET /v1/sessions`, `GET|DELETE /v1/sessions/{id}`,
//! and the agent's output, `GET /v1/sessions/{id}/logs` (`?follow=true` streams it as SSE).
//!
//! A session belongs to the (tenant, user) that created it: for anyone else it does not exist.
//! Its logs are also readable by the tenant's admins (and by the operator, under
//! `/v1/admin/tenants/{tenant}/sessions/{id}/logs`).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::{RuntimeName, SessionId, TenantContext, TenantUid};
use tenantry_store::SessionRecord;

use crate::auth::TenantCaller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::routes::api_keys::TENANT_ADMIN_ROLE;
use crate::sessions::{LogCursor, LogLine};
use crate::state::AppState;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/sessions", get(list))
        .route("/v1/sessions/{id}", get(show).delete(stop))
        .route("/v1/sessions/{id}/logs", get(logs))
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

/// The query of a logs request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// How many of the last lines (default 200, at most 10,000).
    #[serde(default)]
    tail: Option<usize>,
    /// `true`: after the last lines, stream new ones as server-sent events until the caller
    /// goes away.
    #[serde(default)]
    follow: Option<bool>,
}

const DEFAULT_TAIL: usize = 200;
const MAX_TAIL: usize = 10_000;

/// The session's agent output: for its owner and the tenant's admins; for anyone else the
/// session does not exist.
async fn logs(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult<axum::response::Response> {
    let session = state
        .store
        .get_session(&ctx.scope(), &id)
        .await?
        .filter(|s| s.user_id == ctx.user_id || ctx.has_role(TENANT_ADMIN_ROLE))
        .ok_or_else(|| ApiError::not_found("session"))?;
    session_logs(&state, &ctx.tenant_uid, &session.id, q).await
}

/// The last lines of a session's log as JSON, or, with `follow`, as an event stream that goes
/// on with each new line (`event: log`, data `{"time_ms", "text"}`).
pub async fn session_logs(
    state: &AppState,
    tenant: &TenantUid,
    session: &SessionId,
    q: LogsQuery,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let tail = q.tail.unwrap_or(DEFAULT_TAIL);
    if tail > MAX_TAIL {
        return Err(ApiError::invalid(format!(
            "tail must be at most {MAX_TAIL} lines"
        )));
    }
    // The cursor first: a line written between the two reads is streamed, not lost.
    let cursor = state.sessions.log_cursor(tenant, session);
    let lines = state.sessions.read_log(tenant, session, tail).await?;
    if !q.follow.unwrap_or(false) {
        return Ok(Json(json!({ "session": session, "lines": lines })).into_response());
    }
    Ok(crate::routes::event_stream(follow_log(lines, cursor)))
}

/// The stream of a followed log: the last lines, then new ones as they are written, with a
/// comment every 15 s so idle connections stay open.
fn follow_log(first: Vec<LogLine>, cursor: LogCursor) -> axum::body::Body {
    const POLL: std::time::Duration = std::time::Duration::from_millis(200);
    const KEEP_ALIVE_POLLS: u32 = 75;
    let start = (Some(first), cursor, 0u32);
    let events = futures_util::stream::unfold(start, |(first, mut cursor, idle)| async move {
        let (lines, idle) = match first {
            Some(lines) => (lines, 0),
            None => {
                tokio::time::sleep(POLL).await;
                let lines = cursor.next_lines().await;
                let idle = if lines.is_empty() { idle + 1 } else { 0 };
                (lines, idle)
            }
        };
        let mut out = String::new();
        for line in &lines {
            let data = serde_json::to_string(line).unwrap_or_default();
            out.push_str("event: log\ndata: ");
            out.push_str(&data);
            out.push_str("\n\n");
        }
        let idle = if idle >= KEEP_ALIVE_POLLS {
            out.push_str(": keep-alive\n\n");
            0
        } else {
            idle
        };
        Some((
            Ok::<_, std::convert::Infallible>(bytes::Bytes::from(out)),
            (None, cursor, idle),
        ))
    });
    axum::body::Body::from_stream(events)
}
