//! The shapes of memory: memory resources and their strategies, events and their payloads,
//! long-term records, metadata and filters, and the inputs of each operation.
//!
//! Field names and enum spellings follow AgentCore Memory's (camelCase, `USER`, `SEMANTIC`,
//! `{"conversational": ...}` / `{"blob": ...}`), so our REST API and the AgentCore-compatible
//! one carry the same JSON. Times are kept as Unix milliseconds and written on the wire as
//! Unix seconds with a fraction, as AgentCore's JSON protocol writes timestamps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tenantry_core::TenantId;

use crate::ids::{ActorId, EventId, MemoryId, MemorySessionId, RecordId, StrategyId};

/// Unix milliseconds on the wire as Unix seconds (a JSON number with a fraction).
pub mod epoch {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        #[allow(
            clippy::cast_precision_loss,
            reason = "milliseconds fit an f64 exactly"
        )]
        s.serialize_f64(*ms as f64 / 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let secs = f64::deserialize(d)?;
        if !secs.is_finite() || !(0.0..=253_402_300_799.0).contains(&secs) {
            return Err(serde::de::Error::custom(
                "a timestamp must be Unix seconds between 1970 and 9999",
            ));
        }
        #[allow(clippy::cast_possible_truncation, reason = "range checked above")]
        Ok((secs * 1000.0).round() as i64)
    }
}

/// The longest text of one conversational item (AgentCore's limit).
pub const MAX_EVENT_TEXT: usize = 100_000;
/// The most payload items of one event.
pub const MAX_PAYLOAD_ITEMS: usize = 100;
/// The longest text of a record.
pub const MAX_RECORD_TEXT: usize = 16_000;
/// The most records of one batch.
pub const MAX_BATCH: usize = 100;
/// The most results of one page.
pub const MAX_PAGE: u32 = 100;

/// What a strategy extracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StrategyKind {
    /// Facts stated in the conversation.
    Semantic,
    /// A summary of each session.
    Summarization,
    /// The user's preferences.
    UserPreference,
    /// What the strategy's own prompt asks for.
    Custom,
}

impl StrategyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Semantic => "SEMANTIC",
            StrategyKind::Summarization => "SUMMARIZATION",
            StrategyKind::UserPreference => "USER_PREFERENCE",
            StrategyKind::Custom => "CUSTOM",
        }
    }
}

/// A long-term strategy of a memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    pub strategy_id: StrategyId,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "type")]
    pub kind: StrategyKind,
    /// Namespace templates (`{memoryStrategyId}`, `{actorId}`, `{sessionId}`); the records
    /// go to the first.
    pub namespaces: Vec<String>,
    /// The extraction instructions of a `CUSTOM` strategy (appended to the platform's for the
    /// others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

/// A strategy to add to a memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StrategyInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "type")]
    pub kind: StrategyKind,
    /// Namespace templates; the kind's default when absent.
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    #[serde(default)]
    pub prompt: Option<String>,
}

/// A change of one strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StrategyChange {
    pub memory_strategy_id: StrategyId,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    #[serde(default)]
    pub prompt: Option<String>,
}

/// Who owns a memory resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MemoryOwner {
    /// One tenant's own memory (silo).
    Tenant(TenantId),
    /// The operator's memory, shared by every tenant (pool): each tenant sees only its own
    /// events and records in it.
    Shared,
}

/// A memory resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    pub id: MemoryId,
    pub name: String,
    pub description: String,
    /// `true` for a memory the operator shares with every tenant.
    pub shared: bool,
    #[serde(skip)]
    pub owner: MemoryOwner,
    /// Events are deleted this many days after they were written.
    pub event_expiry_days: u32,
    pub strategies: Vec<Strategy>,
    /// Always `ACTIVE`: a memory is usable as soon as it is created.
    pub status: &'static str,
    #[serde(with = "epoch")]
    pub created_at: i64,
    #[serde(with = "epoch")]
    pub updated_at: i64,
}

/// A new memory resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateMemory {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// 1 to 365 days; the tenant's tier's `memory_event_expiry_days` when absent.
    #[serde(default)]
    pub event_expiry_days: Option<u32>,
    #[serde(default)]
    pub strategies: Vec<StrategyInput>,
}

/// A change of a memory resource: each field given replaces or changes that part.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateMemory {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub event_expiry_days: Option<u32>,
    #[serde(default)]
    pub add_strategies: Vec<StrategyInput>,
    #[serde(default)]
    pub modify_strategies: Vec<StrategyChange>,
    #[serde(default)]
    pub delete_strategies: Vec<StrategyId>,
}

/// Who spoke a conversational item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Assistant,
    User,
    Tool,
    Other,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Assistant => "ASSISTANT",
            Role::User => "USER",
            Role::Tool => "TOOL",
            Role::Other => "OTHER",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextContent {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conversational {
    pub content: TextContent,
    pub role: Role,
}

/// One item of an event's payload: a conversational turn or any JSON (a blob).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PayloadItem {
    Conversational(Conversational),
    Blob(serde_json::Value),
}

/// A branch of a conversation: its name and the event it forks from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Branch {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_event_id: Option<EventId>,
}

/// An event's metadata value (AgentCore's union has only strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventMetadataValue {
    pub string_value: String,
}

/// An immutable event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub memory_id: MemoryId,
    pub actor_id: ActorId,
    pub session_id: MemorySessionId,
    pub event_id: EventId,
    #[serde(with = "epoch")]
    pub event_timestamp: i64,
    pub payload: Vec<PayloadItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<Branch>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, EventMetadataValue>,
}

/// A new event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewEvent {
    pub actor_id: ActorId,
    /// `default` when absent.
    #[serde(default)]
    pub session_id: Option<MemorySessionId>,
    #[serde(with = "epoch")]
    pub event_timestamp: i64,
    pub payload: Vec<PayloadItem>,
    #[serde(default)]
    pub branch: Option<Branch>,
    /// The same token on the same memory answers the event it first created.
    #[serde(default)]
    pub client_token: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, EventMetadataValue>,
}

/// Which end of a session's events a list starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Order {
    #[default]
    NewestFirst,
    OldestFirst,
}

/// A branch to list: its events, and with `includeParentBranches` the main line's before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BranchFilter {
    pub name: String,
    #[serde(default)]
    pub include_parent_branches: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventFilter {
    #[serde(default)]
    pub branch: Option<BranchFilter>,
    #[serde(default)]
    pub event_metadata: Vec<MetadataFilter>,
}

/// What page of a session's events to list.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListEvents {
    #[serde(default)]
    pub include_payloads: Option<bool>,
    #[serde(default)]
    pub filter: Option<EventFilter>,
    #[serde(default)]
    pub order: Order,
    #[serde(default)]
    pub max_results: Option<u32>,
    #[serde(default)]
    pub next_token: Option<String>,
}

/// A page request of a plain listing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PageRequest {
    #[serde(default)]
    pub max_results: Option<u32>,
    #[serde(default)]
    pub next_token: Option<String>,
}

/// One page of results and the token of the next, if there is one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActorSummary {
    pub actor_id: ActorId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub session_id: MemorySessionId,
    pub actor_id: ActorId,
    /// The first event's time.
    #[serde(with = "epoch")]
    pub created_at: i64,
}

/// A record's metadata value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RecordMetadataValue {
    StringValue(String),
    StringListValue(Vec<String>),
    NumberValue(f64),
    #[serde(with = "epoch")]
    DateTimeValue(i64),
}

/// A long-term record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub memory_record_id: RecordId,
    pub content: TextContent,
    pub memory_strategy_id: String,
    pub namespaces: Vec<String>,
    /// The actor the record is about, when known (extraction, or a namespace of a
    /// strategy's template); records without one are tenant-wide.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<ActorId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<MemorySessionId>,
    #[serde(with = "epoch")]
    pub created_at: i64,
    #[serde(with = "epoch")]
    pub updated_at: i64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, RecordMetadataValue>,
}

/// A record with its relevance to a query (0 to 1, higher is closer).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoredRecord {
    #[serde(flatten)]
    pub record: Record,
    pub score: f64,
}

/// `EQUALS_TO`, `EXISTS`, `NOT_EXISTS` (events and records); the rest for records only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilterOperator {
    EqualsTo,
    Exists,
    NotExists,
    Before,
    After,
    Contains,
    GreaterThan,
    GreaterThanOrEquals,
    LessThan,
    LessThanOrEquals,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterLeft {
    pub metadata_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterRight {
    pub metadata_value: RecordMetadataValue,
}

/// `left operator right`, e.g. `topic EQUALS_TO "billing"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetadataFilter {
    pub left: FilterLeft,
    pub operator: FilterOperator,
    #[serde(default)]
    pub right: Option<FilterRight>,
}

/// A search of a memory's records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetrieveRecords {
    /// A namespace prefix; `/` (every namespace the caller may read) when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    pub search_query: String,
    #[serde(default)]
    pub memory_strategy_id: Option<String>,
    /// 1 to 100; 10 when absent.
    #[serde(default)]
    pub top_k: Option<u32>,
    #[serde(default)]
    pub metadata_filters: Vec<MetadataFilter>,
}

/// A listing of a memory's records, newest first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListRecords {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub memory_strategy_id: Option<String>,
    #[serde(default)]
    pub metadata_filters: Vec<MetadataFilter>,
    #[serde(default)]
    pub max_results: Option<u32>,
    #[serde(default)]
    pub next_token: Option<String>,
}

/// A record to create directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewRecord {
    pub request_identifier: String,
    /// At most one namespace.
    pub namespaces: Vec<String>,
    pub content: TextContent,
    #[serde(with = "epoch")]
    pub timestamp: i64,
    #[serde(default)]
    pub memory_strategy_id: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, RecordMetadataValue>,
    /// Whose record it is; from the namespace when it matches a strategy's template, and
    /// always the caller's own actor for a caller limited to one.
    #[serde(default)]
    pub actor_id: Option<ActorId>,
}

/// A change of one record: each field given replaces that part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordUpdate {
    pub memory_record_id: RecordId,
    #[serde(with = "epoch")]
    pub timestamp: i64,
    #[serde(default)]
    pub content: Option<TextContent>,
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    #[serde(default)]
    pub memory_strategy_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, RecordMetadataValue>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordStatus {
    Succeeded,
    Failed,
}

/// The outcome of one record of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordOutcome {
    pub memory_record_id: String,
    pub status: RecordStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_identifier: Option<String>,
    /// The HTTP status of the failure (400, 404...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// The outcome of a batch: each record succeeded or failed on its own.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchOutcome {
    pub successful_records: Vec<RecordOutcome>,
    pub failed_records: Vec<RecordOutcome>,
}

/// What erasing an actor removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Erasure {
    pub events: u64,
    pub records: u64,
}
