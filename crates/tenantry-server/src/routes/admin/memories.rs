//! Memory for the operator: a tenant's memories (`/v1/admin/tenants/{id}/memories`), erasing
//! one of its users' memory, and the memories shared by every tenant (`/v1/admin/memories`).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{require_tenant, scope_of};
use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::json::ApiJson;
use crate::memory::{ActorId, CreateMemory, MemoryCaller, MemoryId, PageRequest};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/admin/tenants/{id}/memories",
            get(list_tenant).post(create_tenant),
        )
        .route(
            "/v1/admin/tenants/{id}/memories/{memory_id}",
            delete(delete_tenant),
        )
        .route(
            "/v1/admin/tenants/{id}/memory/users/{user_id}",
            delete(erase_user),
        )
        .route("/v1/admin/memories", get(list_shared).post(create_shared))
        .route("/v1/admin/memories/{memory_id}", delete(delete_shared))
}

fn to_value(v: &impl serde::Serialize) -> ApiResult<Value> {
    serde_json::to_value(v).map_err(|e| ApiError::internal("encoding a memory answer", e))
}

/// The operator as a caller of one tenant's memory (tenant-wide, administering).
async fn operator_caller(state: &AppState, op: Operator, id: &str) -> ApiResult<MemoryCaller> {
    let scope = scope_of(state, op, id).await?;
    let tenant = require_tenant(state, scope.tenant()).await?;
    let days = state
        .registry
        .tier(&state.store, &tenant.tier)
        .await?
        .map_or(90, |t| t.memory_event_expiry_days);
    Ok(MemoryCaller::operator(op.0, tenant.id, days))
}

async fn create_tenant(
    op: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<CreateMemory>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let c = operator_caller(&state, op, &id).await?;
    let m = state.memory.create_memory(&c, input).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "memory": to_value(&m)? })),
    ))
}

async fn list_tenant(
    op: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let c = operator_caller(&state, op, &id).await?;
    let mut all = Vec::new();
    let mut page = PageRequest {
        max_results: Some(100),
        next_token: None,
    };
    loop {
        let p = state.memory.list_memories(&c, page.clone()).await?;
        all.extend(p.items);
        match p.next_token {
            Some(t) => page.next_token = Some(t),
            None => break,
        }
    }
    Ok(Json(json!({ "memories": to_value(&all)? })))
}

#[derive(Deserialize)]
struct TenantMemoryPath {
    id: String,
    memory_id: MemoryId,
}

async fn delete_tenant(
    op: Operator,
    State(state): State<AppState>,
    ApiPath(p): ApiPath<TenantMemoryPath>,
) -> ApiResult<Json<Value>> {
    let c = operator_caller(&state, op, &p.id).await?;
    let m = state.memory.delete_memory(&c, &p.memory_id).await?;
    Ok(Json(json!({ "memoryId": m.id, "status": "DELETED" })))
}

#[derive(Deserialize)]
struct UserPath {
    id: String,
    user_id: ActorId,
}

async fn erase_user(
    op: Operator,
    State(state): State<AppState>,
    ApiPath(p): ApiPath<UserPath>,
) -> ApiResult<Json<Value>> {
    let c = operator_caller(&state, op, &p.id).await?;
    crate::routes::tenant::memory::erase_everything_of(&state, &c, &p.user_id).await
}

async fn create_shared(
    op: Operator,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<CreateMemory>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let m = state.memory.create_shared_memory(op.0, input).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "memory": to_value(&m)? })),
    ))
}

async fn list_shared(op: Operator, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let all = state.memory.list_shared_memories(op.0).await?;
    Ok(Json(json!({ "memories": to_value(&all)? })))
}

async fn delete_shared(
    op: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<MemoryId>,
) -> ApiResult<Json<Value>> {
    let m = state.memory.delete_shared_memory(op.0, &id).await?;
    Ok(Json(json!({ "memoryId": m.id, "status": "DELETED" })))
}
