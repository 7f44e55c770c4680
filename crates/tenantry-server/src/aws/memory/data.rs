//! The `bedrock-agentcore` data plane of memory: events (CreateEvent, GetEvent, DeleteEvent,
//! ListEvents, ListActors, ListSessions) and records (RetrieveMemoryRecords,
//! ListMemoryRecords, GetMemoryRecord, DeleteMemoryRecord, BatchCreate/Update/Delete
//! MemoryRecords), each mapped onto one `MemoryService` call.
//!
//! Request bodies are read into the service's own input types where the wire shape is the
//! same (the service's types carry AgentCore's field names), and into a wire type of this
//! module where it differs (RetrieveMemoryRecords' `searchCriteria`, `namespacePath`, the
//! batch delete's list of objects).

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::{AwsBody, caller, failed, paged};
use crate::auth::TenantCaller;
use crate::aws::error::AwsError;
use crate::extract::ApiPath;
use crate::memory::{
    ActorId, Branch, EventId, EventMetadataValue, ListEvents, ListRecords, MemoryId,
    MemorySessionId, MetadataFilter, NewEvent, NewRecord, PageRequest, PayloadItem, RecordId,
    RecordUpdate, RetrieveRecords,
};
use crate::state::AppState;

type AwsResult = Result<Response, AwsError>;

pub(super) fn routes(prefix: &str) -> Router<AppState> {
    let p = |path: &str| format!("{prefix}{path}");
    Router::new()
        .route(&p("/memories/{memoryId}/events"), post(create_event))
        .route(
            &p("/memories/{memoryId}/actor/{actorId}/sessions/{sessionId}/events/{eventId}"),
            get(get_event).delete(delete_event),
        )
        .route(
            &p("/memories/{memoryId}/actor/{actorId}/sessions/{sessionId}"),
            post(list_events),
        )
        .route(&p("/memories/{memoryId}/actors"), post(list_actors))
        .route(
            &p("/memories/{memoryId}/actor/{actorId}/sessions"),
            post(list_sessions),
        )
        .route(&p("/memories/{memoryId}/retrieve"), post(retrieve_records))
        .route(&p("/memories/{memoryId}/memoryRecords"), post(list_records))
        .route(
            &p("/memories/{memoryId}/memoryRecord/{memoryRecordId}"),
            get(get_record),
        )
        .route(
            &p("/memories/{memoryId}/memoryRecords/{memoryRecordId}"),
            axum::routing::delete(delete_record),
        )
        .route(
            &p("/memories/{memoryId}/memoryRecords/batchCreate"),
            post(batch_create),
        )
        .route(
            &p("/memories/{memoryId}/memoryRecords/batchUpdate"),
            post(batch_update),
        )
        .route(
            &p("/memories/{memoryId}/memoryRecords/batchDelete"),
            post(batch_delete),
        )
}

/// An id from a path, or `ValidationException`.
fn id<T>(
    raw: String,
    parse: impl FnOnce(String) -> Result<T, tenantry_memory::MemoryError>,
) -> Result<T, AwsError> {
    parse(raw).map_err(|e| AwsError::validation(e.to_string()))
}

fn memory_id(raw: String) -> Result<MemoryId, AwsError> {
    id(raw, MemoryId::new)
}

/// The path of one event: memory, actor, session, event.
fn event_path(
    (memory, actor, session, event): (String, String, String, String),
) -> Result<(MemoryId, ActorId, MemorySessionId, EventId), AwsError> {
    Ok((
        memory_id(memory)?,
        id(actor, ActorId::new)?,
        id(session, MemorySessionId::new)?,
        id(event, EventId::new)?,
    ))
}

fn ok(body: serde_json::Value) -> AwsResult {
    Ok(axum::Json(body).into_response())
}

// ---- events

/// CreateEvent's body. Newer SDKs also send `extractionMode`/`extractionConfig`; they are
/// read and not acted on (every conversational event is offered to the memory's strategies).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateEventWire {
    actor_id: ActorId,
    #[serde(default)]
    session_id: Option<MemorySessionId>,
    #[serde(with = "tenantry_memory::types::epoch")]
    event_timestamp: i64,
    payload: Vec<PayloadItem>,
    #[serde(default)]
    branch: Option<Branch>,
    #[serde(default)]
    client_token: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, EventMetadataValue>,
}

async fn create_event(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(memory): ApiPath<String>,
    AwsBody(wire): AwsBody<CreateEventWire>,
) -> AwsResult {
    let event = NewEvent {
        actor_id: wire.actor_id,
        session_id: wire.session_id,
        event_timestamp: wire.event_timestamp,
        payload: wire.payload,
        branch: wire.branch,
        client_token: wire.client_token,
        metadata: wire.metadata,
    };
    let caller = caller(&state, &ctx).await?;
    let event = state
        .memory
        .create_event(&caller, &memory_id(memory)?, event)
        .await
        .map_err(failed)?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "event": event }))).into_response())
}

async fn get_event(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(path): ApiPath<(String, String, String, String)>,
) -> AwsResult {
    let (memory, actor, session, event) = event_path(path)?;
    let caller = caller(&state, &ctx).await?;
    let event = state
        .memory
        .get_event(&caller, &memory, &actor, &session, &event)
        .await
        .map_err(failed)?;
    ok(json!({ "event": event }))
}

async fn delete_event(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(path): ApiPath<(String, String, String, String)>,
) -> AwsResult {
    let (memory, actor, session, event) = event_path(path)?;
    let caller = caller(&state, &ctx).await?;
    state
        .memory
        .delete_event(&caller, &memory, &actor, &session, &event)
        .await
        .map_err(failed)?;
    ok(json!({ "eventId": event }))
}

async fn list_events(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath((memory, actor, session)): ApiPath<(String, String, String)>,
    AwsBody(wire): AwsBody<ListEvents>,
) -> AwsResult {
    let memory = memory_id(memory)?;
    let actor = id(actor, ActorId::new)?;
    let session = id(session, MemorySessionId::new)?;
    let request = wire;
    let caller = caller(&state, &ctx).await?;
    let page = state
        .memory
        .list_events(&caller, &memory, &actor, &session, request)
        .await
        .map_err(failed)?;
    ok(paged("events", page.items, page.next_token))
}

async fn list_actors(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(memory): ApiPath<String>,
    AwsBody(wire): AwsBody<PageRequest>,
) -> AwsResult {
    let memory = memory_id(memory)?;
    let caller = caller(&state, &ctx).await?;
    let request = wire;
    let page = state
        .memory
        .list_actors(&caller, &memory, request)
        .await
        .map_err(failed)?;
    ok(paged("actorSummaries", page.items, page.next_token))
}

/// ListSessions' body: a page, and a filter that can only say `HAS_EVENTS` (every session
/// the service lists has events).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListSessionsWire {
    #[serde(default)]
    max_results: Option<u32>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    filter: Option<serde_json::Value>,
}

async fn list_sessions(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath((memory, actor)): ApiPath<(String, String)>,
    AwsBody(wire): AwsBody<ListSessionsWire>,
) -> AwsResult {
    let memory = memory_id(memory)?;
    let actor = id(actor, ActorId::new)?;
    let _has_events_only = wire.filter;
    let request = PageRequest {
        max_results: wire.max_results,
        next_token: wire.next_token,
    };
    let caller = caller(&state, &ctx).await?;
    let page = state
        .memory
        .list_sessions(&caller, &memory, &actor, request)
        .await
        .map_err(failed)?;
    ok(paged("sessionSummaries", page.items, page.next_token))
}

// ---- records

/// A namespace of the wire: `namespacePath` (a prefix) or `namespace`; both are prefixes of
/// the service's retrieval.
fn namespace_of(
    namespace: Option<String>,
    path: Option<String>,
) -> Result<Option<String>, AwsError> {
    match (namespace, path) {
        (Some(_), Some(_)) => Err(AwsError::validation(
            "give either namespace or namespacePath, not both",
        )),
        (Some(n), None) | (None, Some(n)) => Ok(Some(n)),
        (None, None) => Ok(None),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SearchCriteria {
    search_query: String,
    #[serde(default)]
    memory_strategy_id: Option<String>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    metadata_filters: Vec<MetadataFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetrieveWire {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    namespace_path: Option<String>,
    search_criteria: SearchCriteria,
    /// One page holds every result (`topK` at most 100).
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    max_results: Option<u32>,
}

async fn retrieve_records(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(memory): ApiPath<String>,
    AwsBody(wire): AwsBody<RetrieveWire>,
) -> AwsResult {
    let memory = memory_id(memory)?;
    let _one_page = (wire.next_token, wire.max_results);
    let criteria = wire.search_criteria;
    let request = RetrieveRecords {
        namespace: namespace_of(wire.namespace, wire.namespace_path)?,
        search_query: criteria.search_query,
        memory_strategy_id: criteria.memory_strategy_id,
        top_k: criteria.top_k,
        metadata_filters: criteria.metadata_filters,
    };
    let caller = caller(&state, &ctx).await?;
    let found = state
        .memory
        .retrieve_records(&caller, &memory, request)
        .await
        .map_err(failed)?;
    ok(json!({ "memoryRecordSummaries": found }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListRecordsWire {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    namespace_path: Option<String>,
    #[serde(default)]
    memory_strategy_id: Option<String>,
    #[serde(default)]
    max_results: Option<u32>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    metadata_filters: Vec<MetadataFilter>,
}

async fn list_records(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(memory): ApiPath<String>,
    AwsBody(wire): AwsBody<ListRecordsWire>,
) -> AwsResult {
    let memory = memory_id(memory)?;
    let request = ListRecords {
        namespace: namespace_of(wire.namespace, wire.namespace_path)?,
        memory_strategy_id: wire.memory_strategy_id,
        metadata_filters: wire.metadata_filters,
        max_results: wire.max_results,
        next_token: wire.next_token,
    };
    let caller = caller(&state, &ctx).await?;
    let page = state
        .memory
        .list_records(&caller, &memory, request)
        .await
        .map_err(failed)?;
    ok(paged("memoryRecordSummaries", page.items, page.next_token))
}

async fn get_record(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath((memory, record)): ApiPath<(String, String)>,
) -> AwsResult {
    let memory = memory_id(memory)?;
    let record = id(record, RecordId::new)?;
    let caller = caller(&state, &ctx).await?;
    let found = state
        .memory
        .get_record(&caller, &memory, &record)
        .await
        .map_err(failed)?;
    ok(json!({ "memoryRecord": found }))
}

async fn delete_record(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath((memory, record)): ApiPath<(String, String)>,
) -> AwsResult {
    let memory = memory_id(memory)?;
    let record = id(record, RecordId::new)?;
    let caller = caller(&state, &ctx).await?;
    state
        .memory
        .delete_record(&caller, &memory, &record)
        .await
        .map_err(failed)?;
    ok(json!({ "memoryRecordId": record }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchCreateWire {
    records: Vec<NewRecord>,
    /// Each record's `requestIdentifier` already makes its outcome recognisable.
    #[serde(default)]
    client_token: Option<String>,
}

async fn batch_create(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(memory): ApiPath<String>,
    AwsBody(wire): AwsBody<BatchCreateWire>,
) -> AwsResult {
    let memory = memory_id(memory)?;
    let _token = wire.client_token;
    let caller = caller(&state, &ctx).await?;
    let outcome = state
        .memory
        .batch_create_records(&caller, &memory, wire.records)
        .await
        .map_err(failed)?;
    Ok((StatusCode::CREATED, axum::Json(outcome)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchUpdateWire {
    records: Vec<RecordUpdate>,
}

async fn batch_update(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(memory): ApiPath<String>,
    AwsBody(wire): AwsBody<BatchUpdateWire>,
) -> AwsResult {
    let memory = memory_id(memory)?;
    let caller = caller(&state, &ctx).await?;
    let outcome = state
        .memory
        .batch_update_records(&caller, &memory, wire.records)
        .await
        .map_err(failed)?;
    Ok(axum::Json(outcome).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RecordRef {
    memory_record_id: RecordId,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchDeleteWire {
    records: Vec<RecordRef>,
}

async fn batch_delete(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(memory): ApiPath<String>,
    AwsBody(wire): AwsBody<BatchDeleteWire>,
) -> AwsResult {
    let memory = memory_id(memory)?;
    let ids = wire
        .records
        .into_iter()
        .map(|r| r.memory_record_id)
        .collect();
    let caller = caller(&state, &ctx).await?;
    let outcome = state
        .memory
        .batch_delete_records(&caller, &memory, ids)
        .await
        .map_err(failed)?;
    Ok(axum::Json(outcome).into_response())
}
