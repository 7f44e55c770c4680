//! The `bedrock-agentcore-control` operations on memory resources: CreateMemory, GetMemory,
//! ListMemories, UpdateMemory, DeleteMemory, each one `MemoryService` call.
//!
//! The wire differs from the service's shapes here: strategies are a union keyed by kind
//! (`semanticMemoryStrategy`, ...), the expiry is `eventExpiryDuration` in days, a memory has
//! an ARN, and a custom strategy's instructions sit in its `configuration`. Settings the
//! platform has no use for (KMS keys, execution roles, indexed keys, stream delivery, tags)
//! are accepted and not kept; episodic strategies are refused.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::TenantContext;

use super::{AwsBody, caller, epoch_seconds, failed, paged};
use crate::auth::TenantCaller;
use crate::aws::error::AwsError;
use crate::extract::ApiPath;
use crate::memory::{
    CreateMemory, Memory, MemoryId, PageRequest, StrategyChange, StrategyId, StrategyInput,
    StrategyKind, UpdateMemory,
};
use crate::state::AppState;

type AwsResult = Result<Response, AwsError>;

pub(super) fn routes(prefix: &str) -> Router<AppState> {
    let p = |path: &str| format!("{prefix}{path}");
    Router::new()
        .route(&p("/memories/create"), post(create_memory))
        .route(&p("/memories/{memoryId}/details"), get(get_memory))
        .route(&p("/memories/"), post(list_memories))
        .route(&p("/memories/{memoryId}/update"), put(update_memory))
        .route(&p("/memories/{memoryId}/delete"), delete(delete_memory))
}

/// A strategy's settings on the wire (every kind has the same ones we read).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StrategyWire {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    namespaces: Option<Vec<String>>,
    #[serde(default)]
    namespace_templates: Option<Vec<String>>,
    #[serde(default)]
    configuration: Option<Value>,
}

/// The union of strategy kinds (`semanticMemoryStrategy`, ...).
#[derive(Debug, Deserialize)]
enum StrategyUnion {
    #[serde(rename = "semanticMemoryStrategy")]
    Semantic(StrategyWire),
    #[serde(rename = "summaryMemoryStrategy")]
    Summary(StrategyWire),
    #[serde(rename = "userPreferenceMemoryStrategy")]
    UserPreference(StrategyWire),
    #[serde(rename = "customMemoryStrategy")]
    Custom(StrategyWire),
    #[serde(rename = "episodicMemoryStrategy")]
    Episodic(serde::de::IgnoredAny),
}

/// The instructions of a custom strategy: the `appendToPrompt` of its override's extraction
/// (`semanticOverride`, `summaryOverride`, `userPreferenceOverride`).
fn custom_prompt(configuration: Option<&Value>) -> Option<String> {
    let c = configuration?;
    [
        "semanticOverride",
        "summaryOverride",
        "userPreferenceOverride",
    ]
    .iter()
    .find_map(|o| {
        let over = c.get(o)?;
        over.pointer("/extraction/appendToPrompt")
            .or_else(|| over.pointer("/consolidation/appendToPrompt"))
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

fn namespaces_of(
    templates: Option<Vec<String>>,
    legacy: Option<Vec<String>>,
) -> Option<Vec<String>> {
    templates.or(legacy)
}

impl TryFrom<StrategyUnion> for StrategyInput {
    type Error = AwsError;

    fn try_from(u: StrategyUnion) -> Result<Self, AwsError> {
        let (kind, w) = match u {
            StrategyUnion::Semantic(w) => (StrategyKind::Semantic, w),
            StrategyUnion::Summary(w) => (StrategyKind::Summarization, w),
            StrategyUnion::UserPreference(w) => (StrategyKind::UserPreference, w),
            StrategyUnion::Custom(w) => (StrategyKind::Custom, w),
            StrategyUnion::Episodic(_) => {
                return Err(AwsError::validation(
                    "episodic memory strategies are not supported; use semantic, summary, user \
                     preference or custom strategies",
                ));
            }
        };
        let prompt = match kind {
            StrategyKind::Custom => custom_prompt(w.configuration.as_ref()),
            StrategyKind::Semantic | StrategyKind::Summarization | StrategyKind::UserPreference => {
                None
            }
        };
        Ok(StrategyInput {
            name: w.name,
            description: w.description.unwrap_or_default(),
            kind,
            namespaces: namespaces_of(w.namespace_templates, w.namespaces),
            prompt,
        })
    }
}

/// A memory as the control plane answers it.
fn memory_json(ctx: &TenantContext, m: &Memory) -> Value {
    let strategies: Vec<Value> = m
        .strategies
        .iter()
        .map(|s| {
            json!({
                "strategyId": s.strategy_id,
                "name": s.name,
                "description": s.description,
                "type": s.kind.as_str(),
                "namespaces": s.namespaces,
                "namespaceTemplates": s.namespaces,
                "status": "ACTIVE",
            })
        })
        .collect();
    json!({
        "arn": arn(ctx, &m.id),
        "id": m.id,
        "name": m.name,
        "description": m.description,
        "eventExpiryDuration": m.event_expiry_days,
        "status": m.status,
        "createdAt": epoch_seconds(m.created_at),
        "updatedAt": epoch_seconds(m.updated_at),
        "strategies": strategies,
    })
}

/// A memory's ARN: the platform in the partition's place, the tenant in the account's.
fn arn(ctx: &TenantContext, id: &MemoryId) -> String {
    format!(
        "arn:tenantry:bedrock-agentcore:{}:{}:memory/{id}",
        ctx.region, ctx.tenant_id
    )
}

fn memory_id(raw: String) -> Result<MemoryId, AwsError> {
    MemoryId::new(raw).map_err(|e| AwsError::validation(e.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateMemoryWire {
    name: String,
    #[serde(default)]
    description: Option<String>,
    event_expiry_duration: u32,
    #[serde(default)]
    memory_strategies: Vec<StrategyUnion>,
}

async fn create_memory(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    AwsBody(wire): AwsBody<CreateMemoryWire>,
) -> AwsResult {
    let strategies = wire
        .memory_strategies
        .into_iter()
        .map(StrategyInput::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let input = CreateMemory {
        name: wire.name,
        description: wire.description.unwrap_or_default(),
        event_expiry_days: Some(wire.event_expiry_duration),
        strategies,
    };
    let caller = caller(&state, &ctx).await?;
    let memory = state
        .memory
        .create_memory(&caller, input)
        .await
        .map_err(failed)?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "memory": memory_json(&ctx, &memory) })),
    )
        .into_response())
}

async fn get_memory(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(id): ApiPath<String>,
) -> AwsResult {
    let id = memory_id(id)?;
    let caller = caller(&state, &ctx).await?;
    let memory = state
        .memory
        .get_memory(&caller, &id)
        .await
        .map_err(failed)?;
    Ok(axum::Json(json!({ "memory": memory_json(&ctx, &memory) })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListMemoriesWire {
    #[serde(default)]
    max_results: Option<u32>,
    #[serde(default)]
    next_token: Option<String>,
}

async fn list_memories(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    AwsBody(wire): AwsBody<ListMemoriesWire>,
) -> AwsResult {
    let caller = caller(&state, &ctx).await?;
    let page = state
        .memory
        .list_memories(
            &caller,
            PageRequest {
                max_results: wire.max_results,
                next_token: wire.next_token,
            },
        )
        .await
        .map_err(failed)?;
    let memories: Vec<Value> = page
        .items
        .iter()
        .map(|m| {
            json!({
                "arn": arn(&ctx, &m.id),
                "id": m.id,
                "status": m.status,
                "createdAt": epoch_seconds(m.created_at),
                "updatedAt": epoch_seconds(m.updated_at),
            })
        })
        .collect();
    Ok(axum::Json(paged("memories", memories, page.next_token)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModifyStrategyWire {
    memory_strategy_id: StrategyId,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    namespaces: Option<Vec<String>>,
    #[serde(default)]
    namespace_templates: Option<Vec<String>>,
    #[serde(default)]
    configuration: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteStrategyWire {
    memory_strategy_id: StrategyId,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StrategiesChangeWire {
    #[serde(default)]
    add_memory_strategies: Vec<StrategyUnion>,
    #[serde(default)]
    modify_memory_strategies: Vec<ModifyStrategyWire>,
    #[serde(default)]
    delete_memory_strategies: Vec<DeleteStrategyWire>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateMemoryWire {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    event_expiry_duration: Option<u32>,
    #[serde(default)]
    memory_strategies: Option<StrategiesChangeWire>,
}

async fn update_memory(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(id): ApiPath<String>,
    AwsBody(wire): AwsBody<UpdateMemoryWire>,
) -> AwsResult {
    let id = memory_id(id)?;
    let change = wire.memory_strategies.unwrap_or_default();
    let update = UpdateMemory {
        description: wire.description,
        event_expiry_days: wire.event_expiry_duration,
        add_strategies: change
            .add_memory_strategies
            .into_iter()
            .map(StrategyInput::try_from)
            .collect::<Result<Vec<_>, _>>()?,
        modify_strategies: change
            .modify_memory_strategies
            .into_iter()
            .map(|m| StrategyChange {
                prompt: custom_prompt(m.configuration.as_ref()),
                memory_strategy_id: m.memory_strategy_id,
                description: m.description,
                namespaces: namespaces_of(m.namespace_templates, m.namespaces),
            })
            .collect(),
        delete_strategies: change
            .delete_memory_strategies
            .into_iter()
            .map(|d| d.memory_strategy_id)
            .collect(),
    };
    let caller = caller(&state, &ctx).await?;
    let memory = state
        .memory
        .update_memory(&caller, &id, update)
        .await
        .map_err(failed)?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "memory": memory_json(&ctx, &memory) })),
    )
        .into_response())
}

async fn delete_memory(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(id): ApiPath<String>,
) -> AwsResult {
    let id = memory_id(id)?;
    let caller = caller(&state, &ctx).await?;
    let memory = state
        .memory
        .delete_memory(&caller, &id)
        .await
        .map_err(failed)?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "memoryId": memory.id, "status": "DELETING" })),
    )
        .into_response())
}
