//! Stored record types that are not part of `tenantry-core` (API keys, runtimes, sessions, the
//! usage ledger and its report), and the one place where rows of either dialect are decoded
//! into records.
//!
//! Decoding is strict: an id that no longer validates, JSON that no longer parses or a status
//! this build does not know is reported as `StoreError::Corrupt`, never patched up or skipped.
//! This module must never run a query.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use tenantry_core::{
    Money, RuntimeName, Tenant, TenantId, TenantIsolation, TenantStatus, TenantUid, Tier, TierName,
    UserId,
};

use crate::StoreError;

/// A tenant API key as stored. The secret itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    /// Public id of the key, unique within its tenant.
    pub id: String,
    pub tenant_id: TenantId,
    pub name: String,
    /// The user the key acts as.
    pub user_id: UserId,
    pub roles: Vec<String>,
    /// First characters of the key, shown to users to recognise it.
    pub prefix: String,
    /// SHA-256 of the full key; never serialized.
    #[serde(skip)]
    pub secret_hash: Vec<u8>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub expires_at: Option<i64>,
}

impl ApiKeyRecord {
    /// Whether the key may authenticate at `now` (unix seconds): not revoked and not expired.
    pub fn is_usable_at(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|exp| now < exp)
    }
}

/// A runtime as the operator registered it. The store keeps the spec (`body`) as opaque JSON:
/// its shape belongs to the runtime layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeRecord {
    pub name: RuntimeName,
    /// `None`: shared by all tenants (pool). `Some`: only this tenant's sessions run on it
    /// (silo), and the runtime is deleted with the tenant.
    pub dedicated_tenant: Option<TenantId>,
    /// The typed runtime spec of the runtime layer, as JSON.
    pub body: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Which control-plane setting of a tier or tenant a `SettingRecord` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingKind {
    /// Model routing: a tier's routes, or a tenant's own models and overrides (the shape is
    /// `tenantry-models`' `TierRoutes` / `TenantModels`).
    ModelRoutes,
    /// A tenant's overrides of its tier's limits (the shape is the server's).
    Limits,
}

impl SettingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SettingKind::ModelRoutes => "model_routes",
            SettingKind::Limits => "limits",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "model_routes" => Some(Self::ModelRoutes),
            "limits" => Some(Self::Limits),
            _ => None,
        }
    }
}

/// A setting the operator made through the control plane for one tier (`K = TierName`) or one
/// tenant (`K = TenantId`). The store keeps the body as opaque JSON: its shape belongs to the
/// layer that uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingRecord<K> {
    pub owner: K,
    pub kind: SettingKind,
    pub body: serde_json::Value,
    pub updated_at: i64,
}

/// The characters a session id may have: AgentCore's 33 to 256.
pub const SESSION_ID_CHARS: std::ops::RangeInclusive<usize> = 33..=256;

/// Whether `id` may name a session: 33 to 256 characters, none of them control characters.
pub fn is_valid_session_id(id: &str) -> bool {
    SESSION_ID_CHARS.contains(&id.chars().count()) && !id.chars().any(char::is_control)
}

/// Where a session is in its life. The runtime layer decides the transitions; the store only
/// records them (`Store::set_session_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// In use: invocations go to its sandbox.
    Active,
    /// Stopped by its user, the idle timeout or the maximum lifetime; invoking its id again
    /// resumes it with its session storage, until that storage expires.
    Stopped,
    /// Ended for good (e.g. its storage expired); the row waits for the sweeper.
    Expired,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "active",
            SessionStatus::Stopped => "stopped",
            SessionStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "stopped" => Some(Self::Stopped),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// A session of one (tenant, user) on one runtime. Its id is chosen by the caller and unique
/// only within the tenant: the key is `(tenant_id, id)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// 33 to 256 characters (`is_valid_session_id`).
    pub id: String,
    pub tenant_id: TenantId,
    /// The user that created the session; nobody else may use it.
    pub user_id: UserId,
    pub runtime: RuntimeName,
    pub status: SessionStatus,
    pub created_at: i64,
    pub last_active_at: i64,
    /// When the session last went from active to stopped or expired; `None` while active.
    pub stopped_at: Option<i64>,
    /// Why it stopped (e.g. `"user"`, `"idle_timeout"`); `None` while active.
    pub stop_reason: Option<String>,
    /// The server process (node) that runs the session, or ran it last (`""` if unknown).
    pub node: String,
}

/// What a ledger entry meters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageKind {
    /// A model call: tokens.
    Model,
    /// A tool call.
    Tool,
    /// Sandbox compute: CPU and memory time.
    Compute,
    /// Session storage.
    Storage,
}

impl UsageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageKind::Model => "model",
            UsageKind::Tool => "tool",
            UsageKind::Compute => "compute",
            UsageKind::Storage => "storage",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "model" => Some(Self::Model),
            "tool" => Some(Self::Tool),
            "compute" => Some(Self::Compute),
            "storage" => Some(Self::Storage),
            _ => None,
        }
    }
}

/// One entry of the usage ledger: something billable that happened, attributed to its tenant
/// (and user, runtime and session where known). Entries are never changed after they are
/// recorded. Every quantity is an integer, so sums are exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Unique within the tenant (a UUID v7 in text form); recording the same id twice is a
    /// `Conflict`, so a retried write cannot count twice.
    pub id: String,
    pub tenant_id: TenantId,
    pub user_id: Option<UserId>,
    pub runtime: Option<RuntimeName>,
    pub session_id: Option<String>,
    pub kind: UsageKind,
    /// The model name (kind `model`) or tool name (kind `tool`).
    pub resource: Option<String>,
    pub provider: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cpu_ms: i64,
    /// Memory held times time held, in megabyte-milliseconds.
    pub memory_mb_ms: i64,
    /// 1 for a model or tool call.
    pub calls: i64,
    pub cost: Money,
    pub latency_ms: Option<i64>,
    /// Time to first token.
    pub ttft_ms: Option<i64>,
    /// `"ok"`, `"error:CODE"` (e.g. `"error:upstream_error"`), `"cancelled"`...
    pub status: String,
    /// Unix seconds.
    pub at: i64,
}

/// How the operator's usage report groups ledger entries (always within each tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageGroup {
    /// One row per tenant; the group key is the tenant id.
    Tenant,
    /// By user id; entries without a user fall in the group `""`.
    User,
    /// By model name: the `resource` of `model` entries. Every other entry (tools, compute,
    /// storage) falls in the group `""`, so the groups still add up to the tenant's totals.
    Model,
    /// By runtime name; entries without a runtime fall in the group `""`.
    Runtime,
    /// By UTC calendar day of `at`, `"YYYY-MM-DD"`.
    Day,
    /// By kind: `"model"`, `"tool"`, `"compute"`, `"storage"`.
    Kind,
}

/// The operator's question to the ledger: the entries with `from <= at < to` (unix seconds:
/// `from` inclusive, `to` exclusive, so consecutive windows neither overlap nor leave gaps),
/// of one tenant or of all, grouped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageQuery {
    /// `None`: every tenant.
    pub tenant: Option<TenantId>,
    pub from: i64,
    pub to: i64,
    pub group_by: UsageGroup,
}

/// One group of the usage report: exact sums over the group's entries within one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// The group key (see `UsageGroup`); `""` for entries that have none.
    pub group: String,
    pub tenant_id: TenantId,
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cpu_ms: i64,
    pub memory_mb_ms: i64,
    pub cost: Money,
    /// How many ledger entries the group has.
    pub records: i64,
}

/// Typed column access shared by the SQLite and PostgreSQL rows, so each record is decoded by
/// one function for both dialects. JSON columns are always read as text.
pub(crate) trait Columns {
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError>;
}

macro_rules! impl_columns {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, col: &str) -> Result<String, StoreError> {
                self.try_get(col).map_err(|e| column_error(col, e))
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
                self.try_get(col).map_err(|e| column_error(col, e))
            }
            fn int(&self, col: &str) -> Result<i64, StoreError> {
                self.try_get(col).map_err(|e| column_error(col, e))
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
                self.try_get(col).map_err(|e| column_error(col, e))
            }
            fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError> {
                self.try_get(col).map_err(|e| column_error(col, e))
            }
        }
    };
}

impl_columns!(sqlx::sqlite::SqliteRow);
impl_columns!(sqlx::postgres::PgRow);

fn column_error(col: &str, e: sqlx::Error) -> StoreError {
    StoreError::corrupt(format!("column {col}: {e}"))
}

fn json<T: serde::de::DeserializeOwned>(
    what: &str,
    row: &impl Columns,
    col: &str,
) -> Result<T, StoreError> {
    let text = row.text(col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::corrupt(format!("{what} {col}: {e}")))
}

pub(crate) fn to_json(value: &impl Serialize) -> Result<String, StoreError> {
    // Serializing our own plain data types cannot fail; if it ever does, it is a bug, not a
    // database problem.
    serde_json::to_string(value).map_err(|e| StoreError::Database(format!("encoding JSON: {e}")))
}

/// Columns: `name`, `body` (the whole tier as JSON).
pub(crate) fn tier_from_row(row: &impl Columns) -> Result<Tier, StoreError> {
    let name = TierName::new(row.text("name")?).map_err(StoreError::corrupt)?;
    let tier: Tier = json("tier", row, "body")?;
    if tier.name != name {
        return Err(StoreError::corrupt(format!(
            "tier row {name} holds a body named {}",
            tier.name
        )));
    }
    Ok(tier)
}

/// Columns: `id`, `uid`, `name`, `tier`, `status`, `isolation`, `region`, `features`,
/// `entitlements`, `created_at`, `updated_at`.
pub(crate) fn tenant_from_row(row: &impl Columns) -> Result<Tenant, StoreError> {
    let id = TenantId::new(row.text("id")?).map_err(StoreError::corrupt)?;
    let uid = TenantUid::new(row.text("uid")?).map_err(StoreError::corrupt)?;
    let status_text = row.text("status")?;
    let status = TenantStatus::parse(&status_text).ok_or_else(|| {
        StoreError::corrupt(format!("tenant {id}: unknown status {status_text:?}"))
    })?;
    let isolation: TenantIsolation = json("tenant", row, "isolation")?;
    let features: BTreeMap<String, bool> = json("tenant", row, "features")?;
    let entitlements: serde_json::Map<String, serde_json::Value> =
        json("tenant", row, "entitlements")?;
    Ok(Tenant {
        name: row.text("name")?,
        tier: TierName::new(row.text("tier")?).map_err(StoreError::corrupt)?,
        status,
        isolation,
        region: row.text("region")?,
        features,
        entitlements,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        id,
        uid,
    })
}

/// What deleting a tenant removed from the store: rows, by table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TenantDeletion {
    pub rows: BTreeMap<&'static str, u64>,
}

/// Columns: `id`, `tenant_id`, `name`, `user_id`, `roles` (JSON array), `prefix`,
/// `secret_hash`, `created_at`, `revoked_at`, `expires_at`.
pub(crate) fn api_key_from_row(row: &impl Columns) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id: row.text("id")?,
        tenant_id: TenantId::new(row.text("tenant_id")?).map_err(StoreError::corrupt)?,
        name: row.text("name")?,
        user_id: UserId::new(row.text("user_id")?).map_err(StoreError::corrupt)?,
        roles: json("api key", row, "roles")?,
        prefix: row.text("prefix")?,
        secret_hash: row.bytes("secret_hash")?,
        created_at: row.int("created_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        expires_at: row.opt_int("expires_at")?,
    })
}

/// Columns: `name`, `dedicated_tenant`, `body` (JSON text), `created_at`, `updated_at`.
pub(crate) fn runtime_from_row(row: &impl Columns) -> Result<RuntimeRecord, StoreError> {
    Ok(RuntimeRecord {
        name: RuntimeName::new(row.text("name")?).map_err(StoreError::corrupt)?,
        dedicated_tenant: row
            .opt_text("dedicated_tenant")?
            .map(TenantId::new)
            .transpose()
            .map_err(StoreError::corrupt)?,
        body: json("runtime", row, "body")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

fn setting_kind(row: &impl Columns) -> Result<SettingKind, StoreError> {
    let text = row.text("kind")?;
    SettingKind::parse(&text)
        .ok_or_else(|| StoreError::corrupt(format!("unknown setting kind {text:?}")))
}

/// Columns: `tier`, `kind`, `body` (JSON text), `updated_at`.
pub(crate) fn tier_setting_from_row(
    row: &impl Columns,
) -> Result<SettingRecord<TierName>, StoreError> {
    Ok(SettingRecord {
        owner: TierName::new(row.text("tier")?).map_err(StoreError::corrupt)?,
        kind: setting_kind(row)?,
        body: json("tier setting", row, "body")?,
        updated_at: row.int("updated_at")?,
    })
}

/// Columns: `tenant_id`, `kind`, `body` (JSON text), `updated_at`.
pub(crate) fn tenant_setting_from_row(
    row: &impl Columns,
) -> Result<SettingRecord<TenantId>, StoreError> {
    Ok(SettingRecord {
        owner: TenantId::new(row.text("tenant_id")?).map_err(StoreError::corrupt)?,
        kind: setting_kind(row)?,
        body: json("tenant setting", row, "body")?,
        updated_at: row.int("updated_at")?,
    })
}

/// Columns: `tenant_id`, `id`, `user_id`, `runtime`, `status`, `created_at`,
/// `last_active_at`, `stopped_at`, `stop_reason`, `node`.
pub(crate) fn session_from_row(row: &impl Columns) -> Result<SessionRecord, StoreError> {
    let id = row.text("id")?;
    let status_text = row.text("status")?;
    let status = SessionStatus::parse(&status_text).ok_or_else(|| {
        StoreError::corrupt(format!("session {id}: unknown status {status_text:?}"))
    })?;
    Ok(SessionRecord {
        tenant_id: TenantId::new(row.text("tenant_id")?).map_err(StoreError::corrupt)?,
        user_id: UserId::new(row.text("user_id")?).map_err(StoreError::corrupt)?,
        runtime: RuntimeName::new(row.text("runtime")?).map_err(StoreError::corrupt)?,
        status,
        created_at: row.int("created_at")?,
        last_active_at: row.int("last_active_at")?,
        stopped_at: row.opt_int("stopped_at")?,
        stop_reason: row.opt_text("stop_reason")?,
        node: row.text("node")?,
        id,
    })
}

/// Columns: `tenant_id`, `id` (the start-up reconciliation's answer).
pub(crate) fn active_session_from_row(
    row: &impl Columns,
) -> Result<(TenantId, String), StoreError> {
    Ok((
        TenantId::new(row.text("tenant_id")?).map_err(StoreError::corrupt)?,
        row.text("id")?,
    ))
}

/// Columns: `tenant_id`, `id`, `runtime` (the storage-expiry sweep's answer).
pub(crate) fn idle_session_from_row(
    row: &impl Columns,
) -> Result<(TenantId, String, RuntimeName), StoreError> {
    Ok((
        TenantId::new(row.text("tenant_id")?).map_err(StoreError::corrupt)?,
        row.text("id")?,
        RuntimeName::new(row.text("runtime")?).map_err(StoreError::corrupt)?,
    ))
}

/// Columns: those of `usage_records` (`cost_micros` for the cost).
pub(crate) fn usage_from_row(row: &impl Columns) -> Result<UsageRecord, StoreError> {
    let id = row.text("id")?;
    let kind_text = row.text("kind")?;
    let kind = UsageKind::parse(&kind_text).ok_or_else(|| {
        StoreError::corrupt(format!("usage record {id}: unknown kind {kind_text:?}"))
    })?;
    Ok(UsageRecord {
        tenant_id: TenantId::new(row.text("tenant_id")?).map_err(StoreError::corrupt)?,
        user_id: row
            .opt_text("user_id")?
            .map(UserId::new)
            .transpose()
            .map_err(StoreError::corrupt)?,
        runtime: row
            .opt_text("runtime")?
            .map(RuntimeName::new)
            .transpose()
            .map_err(StoreError::corrupt)?,
        session_id: row.opt_text("session_id")?,
        kind,
        resource: row.opt_text("resource")?,
        provider: row.opt_text("provider")?,
        input_tokens: row.int("input_tokens")?,
        output_tokens: row.int("output_tokens")?,
        cpu_ms: row.int("cpu_ms")?,
        memory_mb_ms: row.int("memory_mb_ms")?,
        calls: row.int("calls")?,
        cost: Money::from_micros(row.int("cost_micros")?),
        latency_ms: row.opt_int("latency_ms")?,
        ttft_ms: row.opt_int("ttft_ms")?,
        status: row.text("status")?,
        at: row.int("at")?,
        id,
    })
}

/// Columns: `grp`, `tenant_id`, `calls`, `input_tokens`, `output_tokens`, `cpu_ms`,
/// `memory_mb_ms`, `cost_micros`, `records` (all sums as 64-bit integers).
pub(crate) fn usage_row_from_row(row: &impl Columns) -> Result<UsageRow, StoreError> {
    Ok(UsageRow {
        group: row.text("grp")?,
        tenant_id: TenantId::new(row.text("tenant_id")?).map_err(StoreError::corrupt)?,
        calls: row.int("calls")?,
        input_tokens: row.int("input_tokens")?,
        output_tokens: row.int("output_tokens")?,
        cpu_ms: row.int("cpu_ms")?,
        memory_mb_ms: row.int("memory_mb_ms")?,
        cost: Money::from_micros(row.int("cost_micros")?),
        records: row.int("records")?,
    })
}

/// Compares a presented secret hash with the stored one in constant time (for equal lengths)
/// and checks that the key is usable now.
pub(crate) fn check_api_key(
    found: Option<ApiKeyRecord>,
    presented: &[u8],
    now: i64,
) -> Option<ApiKeyRecord> {
    use subtle::ConstantTimeEq;
    match found {
        Some(record) => {
            let matches: bool = record.secret_hash.as_slice().ct_eq(presented).into();
            (matches && record.is_usable_at(now)).then_some(record)
        }
        None => {
            // Do the same work for an unknown key id, so the answer time does not tell a
            // missing key from a wrong secret.
            let _: bool = [0u8; 32].as_slice().ct_eq(presented).into();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored text of each status and kind is its serde name, and parses back.
    #[test]
    fn stored_names_match_serde_names() {
        for status in [
            SessionStatus::Active,
            SessionStatus::Stopped,
            SessionStatus::Expired,
        ] {
            let json = serde_json::to_value(status).ok();
            assert_eq!(json, Some(serde_json::json!(status.as_str())));
            assert_eq!(SessionStatus::parse(status.as_str()), Some(status));
        }
        for kind in [
            UsageKind::Model,
            UsageKind::Tool,
            UsageKind::Compute,
            UsageKind::Storage,
        ] {
            let json = serde_json::to_value(kind).ok();
            assert_eq!(json, Some(serde_json::json!(kind.as_str())));
            assert_eq!(UsageKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(SessionStatus::parse("Active"), None);
        assert_eq!(UsageKind::parse(""), None);
    }

    #[test]
    fn session_ids_are_33_to_256_characters_without_controls() {
        assert!(!is_valid_session_id(&"a".repeat(32)));
        assert!(is_valid_session_id(&"a".repeat(33)));
        assert!(is_valid_session_id(&"ü".repeat(256)));
        assert!(!is_valid_session_id(&"ü".repeat(257)));
        assert!(!is_valid_session_id(&format!("{}\t", "a".repeat(40))));
    }
}
