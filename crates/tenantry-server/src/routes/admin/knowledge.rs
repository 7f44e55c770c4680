//! Knowledge bases for the operator (`/v1/admin/knowledge/bases`): pooled bases (shared by all
//! tenants, each seeing only its own documents) and siloed bases created for one tenant.
//! Deleting a base deletes every tenant's documents in it.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::{TenantId, unix_now};
use tenantry_store::KnowledgeBaseRecord;

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::json::ApiJson;
use crate::routes::tenant::knowledge::{base_view, check_base_fields, new_base_id};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/admin/knowledge/bases",
            get(list_bases).post(create_base),
        )
        .route(
            "/v1/admin/knowledge/bases/{base}",
            get(get_base).delete(delete_base),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBase {
    name: String,
    #[serde(default)]
    description: String,
    /// The owning tenant of a siloed base; absent for a pooled one.
    #[serde(default)]
    tenant: Option<TenantId>,
}

async fn list_bases(_: Operator, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let bases = state.store.list_knowledge_bases(None).await?;
    let bases: Vec<Value> = bases.iter().map(base_view).collect();
    Ok(Json(json!({ "knowledge_bases": bases })))
}

async fn create_base(
    _: Operator,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateBase>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check_base_fields(&req.name, &req.description)?;
    let base = KnowledgeBaseRecord {
        id: new_base_id().to_string(),
        name: req.name,
        description: req.description,
        owner: req.tenant,
        created_at: unix_now(),
    };
    state.store.create_knowledge_base(&base).await?;
    Ok((StatusCode::CREATED, Json(base_view(&base))))
}

async fn get_base(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let base = state
        .store
        .get_knowledge_base(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("knowledge base"))?;
    Ok(Json(base_view(&base)))
}

async fn delete_base(
    Operator(grant): Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    if !state.store.delete_knowledge_base(&grant, &id).await? {
        return Err(ApiError::not_found("knowledge base"));
    }
    state.knowledge.forget_base(&id);
    Ok(StatusCode::NO_CONTENT)
}
