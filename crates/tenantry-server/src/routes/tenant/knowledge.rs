//! Knowledge bases for tenants (`/v1/knowledge/...`): the bases the caller's tenant reaches
//! (its own and the pooled ones), its documents in them, and retrieval. Creating and deleting
//! a base of the tenant's own takes the `tenant-admin` role; pooled bases are the operator's.
//! Another tenant's base, or a document the caller's tenant does not have, is 404.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::{ErrorCode, TenantContext, Tier, unix_now};
use tenantry_memory::knowledge::{Filter, KnowledgeBaseId};
use tenantry_memory::search::SearchMode;
use tenantry_store::KnowledgeBaseRecord;

use crate::auth::{CallerTier, TenantCaller};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::json::ApiJson;
use crate::knowledge::ingest::IngestRequest;
use crate::knowledge::retrieve::{Answer, Query};
use crate::routes::api_keys::TENANT_ADMIN_ROLE;
use crate::state::AppState;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/knowledge/bases", get(list_bases).post(create_base))
        .route(
            "/v1/knowledge/bases/{base}",
            get(get_base).delete(delete_base),
        )
        .route("/v1/knowledge/bases/{base}/documents", get(list_documents))
        .route(
            "/v1/knowledge/bases/{base}/documents/{document}",
            get(get_document).put(put_document).delete(delete_document),
        )
        .route("/v1/knowledge/bases/{base}/retrieve", post(retrieve))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::admission::admit,
        ))
}

/// A base as the API shows it.
pub(crate) fn base_view(b: &KnowledgeBaseRecord) -> Value {
    json!({
        "id": b.id,
        "name": b.name,
        "description": b.description,
        "isolation": if b.owner.is_some() { "silo" } else { "pool" },
        "owner": b.owner,
        "created_at": b.created_at,
    })
}

/// The caller's tier, needed to route embeddings; absent only if the tier was deleted.
pub(crate) fn tier_of(ctx: &TenantContext, tier: Option<Arc<Tier>>) -> ApiResult<Arc<Tier>> {
    tier.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("the tier {} of the caller does not exist", ctx.tier),
        )
    })
}

/// A fresh base id: ten uppercase letters and digits.
pub(crate) fn new_base_id() -> KnowledgeBaseId {
    KnowledgeBaseId::generate(uuid::Uuid::new_v4().as_bytes())
}

/// Checks a base's name and description.
pub(crate) fn check_base_fields(name: &str, description: &str) -> ApiResult<()> {
    if name.trim().is_empty() || name.len() > 128 {
        return Err(ApiError::invalid("name must be 1 to 128 bytes"));
    }
    if description.len() > 2048 {
        return Err(ApiError::invalid("description must be at most 2048 bytes"));
    }
    Ok(())
}

async fn list_bases(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
) -> ApiResult<Json<Value>> {
    let bases = state.store.list_knowledge_bases(Some(&ctx.scope())).await?;
    let bases: Vec<Value> = bases.iter().map(base_view).collect();
    Ok(Json(json!({ "knowledge_bases": bases })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBase {
    name: String,
    #[serde(default)]
    description: String,
}

async fn create_base(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiJson(req): ApiJson<CreateBase>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !ctx.has_role(TENANT_ADMIN_ROLE) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("creating a knowledge base needs the `{TENANT_ADMIN_ROLE}` role"),
        ));
    }
    check_base_fields(&req.name, &req.description)?;
    let base = KnowledgeBaseRecord {
        id: new_base_id().to_string(),
        name: req.name,
        description: req.description,
        owner: Some(ctx.tenant_id.clone()),
        created_at: unix_now(),
    };
    state.store.create_knowledge_base(&base).await?;
    Ok((StatusCode::CREATED, Json(base_view(&base))))
}

async fn get_base(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(base): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let base = state.knowledge.visible_base(&ctx, &base).await?;
    Ok(Json(base_view(&base)))
}

async fn delete_base(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(base): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let base = state.knowledge.visible_base(&ctx, &base).await?;
    if base.owner.is_none() || !ctx.has_role(TENANT_ADMIN_ROLE) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "deleting a knowledge base needs the `{TENANT_ADMIN_ROLE}` role, and a pooled base \
                 is deleted by the operator"
            ),
        ));
    }
    let grant = tenantry_core::SystemGrant::at_start();
    state.store.delete_knowledge_base(&grant, &base.id).await?;
    state.knowledge.forget_base(&base.id);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

async fn list_documents(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(base): ApiPath<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<Value>> {
    let base = state.knowledge.visible_base(&ctx, &base).await?;
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let docs = state
        .store
        .list_documents(&ctx.scope(), &base.id, page.after.as_deref(), limit)
        .await?;
    let next = (docs.len() == limit as usize)
        .then(|| docs.last().map(|d| d.id.clone()))
        .flatten();
    Ok(Json(json!({ "documents": docs, "next_after": next })))
}

async fn get_document(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath((base, doc)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let base = state.knowledge.visible_base(&ctx, &base).await?;
    let doc = state
        .store
        .get_document(&ctx.scope(), &base.id, &doc)
        .await?
        .ok_or_else(|| ApiError::not_found("document"))?;
    Ok(Json(serde_json::to_value(doc).unwrap_or(Value::Null)))
}

async fn put_document(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    CallerTier(tier): CallerTier,
    ApiPath((base, doc)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<IngestRequest>,
) -> ApiResult<Json<Value>> {
    let base = state.knowledge.visible_base(&ctx, &base).await?;
    let tier = tier_of(&ctx, tier)?;
    let ingested = state
        .knowledge
        .ingest(&state, &ctx, &tier, &base, &doc, req)
        .await?;
    Ok(Json(serde_json::to_value(ingested).unwrap_or(Value::Null)))
}

async fn delete_document(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath((base, doc)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let base = state.knowledge.visible_base(&ctx, &base).await?;
    state.knowledge.delete_document(&ctx, &base, &doc).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrieveRequest {
    query: String,
    #[serde(default = "five")]
    top_k: usize,
    /// A Bedrock-shaped `RetrievalFilter` over document metadata.
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    mode: Option<SearchMode>,
}

fn five() -> usize {
    5
}

async fn retrieve(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    CallerTier(tier): CallerTier,
    ApiPath(base): ApiPath<String>,
    ApiJson(req): ApiJson<RetrieveRequest>,
) -> ApiResult<Json<Answer>> {
    let base = state.knowledge.visible_base(&ctx, &base).await?;
    let tier = tier_of(&ctx, tier)?;
    if req.query.len() > 20_000 {
        return Err(ApiError::invalid("query must be at most 20,000 bytes"));
    }
    if !(1..=crate::knowledge::retrieve::MAX_TOP_K).contains(&req.top_k) {
        return Err(ApiError::invalid("top_k must be between 1 and 100"));
    }
    let filter = req
        .filter
        .as_ref()
        .map(Filter::from_json)
        .transpose()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let answer = state
        .knowledge
        .retrieve(
            &state,
            &ctx,
            &tier,
            &base,
            Query {
                text: req.query,
                top_k: req.top_k,
                filter,
                mode: req.mode,
            },
        )
        .await?;
    Ok(Json(answer))
}
