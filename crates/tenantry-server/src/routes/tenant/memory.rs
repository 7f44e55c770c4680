//! Memory for tenant callers and their agents (`/v1/memory/...`): memory resources, events,
//! actors, sessions, records, and erasure of a user. Every handler makes a `MemoryCaller`
//! from the verified caller and calls `MemoryService`; the JSON shapes are AgentCore Memory's
//! (see docs/API.md).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::TenantCaller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::json::ApiJson;
use crate::memory::{
    ActorId, CreateMemory, EventId, ListEvents, ListRecords, MemoryCaller, MemoryId,
    MemorySessionId, NewEvent, NewRecord, Order, PageRequest, RecordId, RecordUpdate,
    RetrieveRecords, UpdateMemory,
};
use crate::state::AppState;

pub fn routes(state: AppState) -> Router<AppState> {
    let m = "/v1/memory/memories/{memory_id}";
    Router::new()
        .route(
            "/v1/memory/memories",
            get(list_memories).post(create_memory),
        )
        .route(
            m,
            get(get_memory).patch(update_memory).delete(delete_memory),
        )
        .route(&format!("{m}/events"), post(create_event))
        .route(&format!("{m}/actors"), get(list_actors))
        .route(
            &format!("{m}/actors/{{actor_id}}/sessions"),
            get(list_sessions),
        )
        .route(
            &format!("{m}/actors/{{actor_id}}/sessions/{{session_id}}/events"),
            get(list_events_get),
        )
        .route(
            &format!("{m}/actors/{{actor_id}}/sessions/{{session_id}}/events/list"),
            post(list_events_post),
        )
        .route(
            &format!("{m}/actors/{{actor_id}}/sessions/{{session_id}}/events/{{event_id}}"),
            get(get_event).delete(delete_event),
        )
        .route(&format!("{m}/records/retrieve"), post(retrieve_records))
        .route(&format!("{m}/records/list"), post(list_records))
        .route(&format!("{m}/records/batch-create"), post(batch_create))
        .route(&format!("{m}/records/batch-update"), post(batch_update))
        .route(&format!("{m}/records/batch-delete"), post(batch_delete))
        .route(
            &format!("{m}/records/{{record_id}}"),
            get(get_record).delete(delete_record),
        )
        .route(
            "/v1/memory/users/{user_id}",
            axum::routing::delete(erase_user),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::admission::admit,
        ))
}

async fn caller(state: &AppState, ctx: &tenantry_core::TenantContext) -> ApiResult<MemoryCaller> {
    Ok(MemoryCaller::of_tenant(state, ctx).await?)
}

fn page_json(key: &str, items: Value, next: Option<String>) -> Json<Value> {
    let mut v = json!({ key: items });
    if let Some(n) = next {
        v["nextToken"] = json!(n);
    }
    Json(v)
}

fn to_value(v: &impl serde::Serialize) -> ApiResult<Value> {
    serde_json::to_value(v).map_err(|e| ApiError::internal("encoding a memory answer", e))
}

async fn create_memory(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiJson(input): ApiJson<CreateMemory>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let c = caller(&state, &ctx).await?;
    let m = state.memory.create_memory(&c, input).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "memory": to_value(&m)? })),
    ))
}

async fn list_memories(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &ctx).await?;
    let p = state.memory.list_memories(&c, page).await?;
    Ok(page_json("memories", to_value(&p.items)?, p.next_token))
}

async fn get_memory(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(id): ApiPath<MemoryId>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &ctx).await?;
    let m = state.memory.get_memory(&c, &id).await?;
    Ok(Json(json!({ "memory": to_value(&m)? })))
}

async fn update_memory(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(id): ApiPath<MemoryId>,
    ApiJson(change): ApiJson<UpdateMemory>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &ctx).await?;
    let m = state.memory.update_memory(&c, &id, change).await?;
    Ok(Json(json!({ "memory": to_value(&m)? })))
}

async fn delete_memory(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(id): ApiPath<MemoryId>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &ctx).await?;
    let m = state.memory.delete_memory(&c, &id).await?;
    Ok(Json(json!({ "memoryId": m.id, "status": "DELETED" })))
}

async fn create_event(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(id): ApiPath<MemoryId>,
    ApiJson(event): ApiJson<NewEvent>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let c = caller(&state, &ctx).await?;
    let e = state.memory.create_event(&c, &id, event).await?;
    Ok((StatusCode::CREATED, Json(json!({ "event": to_value(&e)? }))))
}

#[derive(Deserialize)]
struct SessionPath {
    memory_id: MemoryId,
    actor_id: ActorId,
    session_id: MemorySessionId,
}

#[derive(Deserialize)]
struct EventPath {
    memory_id: MemoryId,
    actor_id: ActorId,
    session_id: MemorySessionId,
    event_id: EventId,
}

#[derive(Deserialize)]
struct ActorPath {
    memory_id: MemoryId,
    actor_id: ActorId,
}

#[derive(Deserialize)]
struct RecordPath {
    memory_id: MemoryId,
    record_id: RecordId,
}

async fn get_event(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(p): ApiPath<EventPath>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &ctx).await?;
    let e = state
        .memory
        .get_event(&c, &p.memory_id, &p.actor_id, &p.session_id, &p.event_id)
        .await?;
    Ok(Json(json!({ "event": to_value(&e)? })))
}

async fn delete_event(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(p): ApiPath<EventPath>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &ctx).await?;
    state
        .memory
        .delete_event(&c, &p.memory_id, &p.actor_id, &p.session_id, &p.event_id)
        .await?;
    Ok(Json(json!({ "eventId": p.event_id })))
}

/// The query string of `GET .../events`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventsQuery {
    #[serde(default)]
    order: Option<Order>,
    #[serde(default)]
    max_results: Option<u32>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    include_payloads: Option<bool>,
}

async fn list_events(
    state: AppState,
    ctx: tenantry_core::TenantContext,
    p: SessionPath,
    request: ListEvents,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &ctx).await?;
    let page = state
        .memory
        .list_events(&c, &p.memory_id, &p.actor_id, &p.session_id, request)
        .await?;
    Ok(page_json("events", to_value(&page.items)?, page.next_token))
}

async fn list_events_get(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(p): ApiPath<SessionPath>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<Value>> {
    let request = ListEvents {
        include_payloads: q.include_payloads,
        filter: None,
        order: q.order.unwrap_or_default(),
        max_results: q.max_results,
        next_token: q.next_token,
    };
    list_events(state, ctx, p, request).await
}

async fn list_events_post(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(p): ApiPath<SessionPath>,
    ApiJson(request): ApiJson<ListEvents>,
) -> ApiResult<Json<Value>> {
    list_events(state, ctx, p, request).await
}

async fn list_actors(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(id): ApiPath<MemoryId>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &ctx).await?;
    let p = state.memory.list_actors(&c, &id, page).await?;
    Ok(page_json(
        "actorSummaries",
        to_value(&p.items)?,
        p.next_token,
    ))
}

async fn list_sessions(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(path): ApiPath<ActorPath>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &ctx).await?;
    let p = state
        .memory
        .list_sessions(&c, &path.memory_id, &path.actor_id, page)
        .await?;
    Ok(page_json(
        "sessionSummaries",
        to_value(&p.items)?,
        p.next_token,
    ))
}

async fn retrieve_records(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(id): ApiPath<MemoryId>,
    ApiJson(request): ApiJson<RetrieveRecords>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &ctx).await?;
    let found = state.memory.retrieve_records(&c, &id, request).await?;
    Ok(Json(json!({ "memoryRecordSummaries": to_value(&found)? })))
}

async fn list_records(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(id): ApiPath<MemoryId>,
    ApiJson(request): ApiJson<ListRecords>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &ctx).await?;
    let p = state.memory.list_records(&c, &id, request).await?;
    Ok(page_json(
        "memoryRecordSummaries",
        to_value(&p.items)?,
        p.next_token,
    ))
}

async fn get_record(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(p): ApiPath<RecordPath>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &ctx).await?;
    let r = state
        .memory
        .get_record(&c, &p.memory_id, &p.record_id)
        .await?;
    Ok(Json(json!({ "memoryRecord": to_value(&r)? })))
}

async fn delete_record(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(p): ApiPath<RecordPath>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &ctx).await?;
    state
        .memory
        .delete_record(&c, &p.memory_id, &p.record_id)
        .await?;
    Ok(Json(json!({ "memoryRecordId": p.record_id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch<T> {
    records: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RecordRef {
    memory_record_id: RecordId,
}

async fn batch_create(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(id): ApiPath<MemoryId>,
    ApiJson(batch): ApiJson<Batch<NewRecord>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let c = caller(&state, &ctx).await?;
    let out = state
        .memory
        .batch_create_records(&c, &id, batch.records)
        .await?;
    Ok((StatusCode::CREATED, Json(to_value(&out)?)))
}

async fn batch_update(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(id): ApiPath<MemoryId>,
    ApiJson(batch): ApiJson<Batch<RecordUpdate>>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &ctx).await?;
    let out = state
        .memory
        .batch_update_records(&c, &id, batch.records)
        .await?;
    Ok(Json(to_value(&out)?))
}

async fn batch_delete(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(id): ApiPath<MemoryId>,
    ApiJson(batch): ApiJson<Batch<RecordRef>>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &ctx).await?;
    let ids = batch
        .records
        .into_iter()
        .map(|r| r.memory_record_id)
        .collect();
    let out = state.memory.batch_delete_records(&c, &id, ids).await?;
    Ok(Json(to_value(&out)?))
}

async fn erase_user(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(user): ApiPath<ActorId>,
) -> ApiResult<Json<Value>> {
    let c = caller(&state, &ctx).await?;
    erase_everything_of(&state, &c, &user).await
}

/// A user's erasure: every event and record of the actor in the tenant's memories (the
/// memory service checks the caller may), then the knowledge documents the user owns, with
/// their chunks and vectors.
pub(crate) async fn erase_everything_of(
    state: &AppState,
    c: &crate::memory::MemoryCaller,
    user: &ActorId,
) -> ApiResult<Json<Value>> {
    let erased = state.memory.erase_actor(c, user).await?;
    // An actor id that is no user id cannot own documents.
    let documents = match tenantry_core::UserId::new(user.as_str()) {
        Ok(u) => state.knowledge.erase_user(c.scope(), &u).await?,
        Err(_) => 0,
    };
    Ok(Json(json!({
        "actorId": user,
        "deleted": to_value(&erased)?,
        "knowledge_documents_deleted": documents,
    })))
}
