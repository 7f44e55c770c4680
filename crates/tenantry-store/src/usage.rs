//! The usage ledger (tenant data, append-only): every billable thing that happened, attributed
//! to its tenant, and the operator's exact sums over it.
//!
//! A tenant's entries are appended and listed in its scope (on PostgreSQL in its scoped
//! transaction); the usage report is the one read across tenants, for holders of an
//! `OperatorGrant` (on PostgreSQL read-only as `tenantry_operator`). Every quantity is an
//! integer and every sum is exact on both backends. This module must never update or delete
//! an entry (deleting a tenant purges its ledger only when asked: `Store::delete_tenant`).

use serde::{Deserialize, Serialize};
use tenantry_core::{Money, OperatorGrant, RuntimeName, TenantId, TenantScope, UserId};

use crate::db::{Db, Sql, sql};
use crate::row::Row;
use crate::{Store, StoreError, missing_tenant};

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

/// The columns of `usage_records`, the same in both dialects; the cost is `cost_micros`.
macro_rules! usage_cols {
    () => {
        "tenant_id, id, user_id, runtime, session_id, kind, resource, provider, input_tokens, \
         output_tokens, cpu_ms, memory_mb_ms, calls, cost_micros, latency_ms, ttft_ms, status, at"
    };
}

fn usage_from_row(row: &Row) -> Result<UsageRecord, StoreError> {
    let id = row.text("id")?;
    let kind_text = row.text("kind")?;
    let kind = UsageKind::parse(&kind_text).ok_or_else(|| {
        StoreError::corrupt(format!("usage record {id}: unknown kind {kind_text:?}"))
    })?;
    Ok(UsageRecord {
        tenant_id: row.parsed("tenant_id", TenantId::new)?,
        user_id: row.opt_parsed("user_id", UserId::new)?,
        runtime: row.opt_parsed("runtime", RuntimeName::new)?,
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
fn usage_row_from_row(row: &Row) -> Result<UsageRow, StoreError> {
    Ok(UsageRow {
        group: row.text("grp")?,
        tenant_id: row.parsed("tenant_id", TenantId::new)?,
        calls: row.int("calls")?,
        input_tokens: row.int("input_tokens")?,
        output_tokens: row.int("output_tokens")?,
        cpu_ms: row.int("cpu_ms")?,
        memory_mb_ms: row.int("memory_mb_ms")?,
        cost: Money::from_micros(row.int("cost_micros")?),
        records: row.int("records")?,
    })
}

// ---- appending in batches ---------------------------------------------------------------------

/// Entries per `INSERT`. The ledger's group commit writes hundreds of entries per transaction
/// under load, and each statement is a round trip to the database (on SQLite, to its worker
/// thread); 18 columns each stays far below both dialects' limits on bound parameters (32,766
/// on SQLite, 65,535 on PostgreSQL).
const ROWS_PER_INSERT: usize = 256;

/// The multi-row `INSERT` of `$usages` (at most `ROWS_PER_INSERT`) of `$tenant`, for database
/// `$db`.
macro_rules! usage_insert {
    ($db:ty, $tenant:expr, $usages:expr) => {{
        let mut q = sqlx::QueryBuilder::<$db>::new(concat!(
            "INSERT INTO usage_records (",
            usage_cols!(),
            ") "
        ));
        let tenant: &TenantId = $tenant;
        q.push_values($usages.iter(), |mut b, u: &UsageRecord| {
            b.push_bind(tenant.as_str())
                .push_bind(u.id.as_str())
                .push_bind(u.user_id.as_ref().map(UserId::as_str))
                .push_bind(u.runtime.as_ref().map(RuntimeName::as_str))
                .push_bind(u.session_id.as_deref())
                .push_bind(u.kind.as_str())
                .push_bind(u.resource.as_deref())
                .push_bind(u.provider.as_deref())
                .push_bind(u.input_tokens)
                .push_bind(u.output_tokens)
                .push_bind(u.cpu_ms)
                .push_bind(u.memory_mb_ms)
                .push_bind(u.calls)
                .push_bind(u.cost.micros())
                .push_bind(u.latency_ms)
                .push_bind(u.ttft_ms)
                .push_bind(u.status.as_str())
                .push_bind(u.at);
        });
        q
    }};
}

// ---- the operator's report --------------------------------------------------------------------

/// The SQLite report grouped by the SQL expression `$grp` (over the columns of
/// `usage_records`). SQLite sums integers exactly and raises "integer overflow" rather than
/// wrap or fall back to floating point. `?1` is the tenant, or NULL for all.
macro_rules! sqlite_report {
    ($grp:expr) => {
        concat!(
            "SELECT ",
            $grp,
            " AS grp, tenant_id, sum(calls) AS calls, sum(input_tokens) AS input_tokens,
                    sum(output_tokens) AS output_tokens, sum(cpu_ms) AS cpu_ms,
                    sum(memory_mb_ms) AS memory_mb_ms, sum(cost_micros) AS cost_micros,
                    count(*) AS records
             FROM usage_records
             WHERE (?1 IS NULL OR tenant_id = ?1) AND at >= ?2 AND at < ?3
             GROUP BY tenant_id, grp
             ORDER BY tenant_id, grp"
        )
    };
}

/// The PostgreSQL report grouped by `$grp`. Sums of BIGINT are NUMERIC in PostgreSQL, exact;
/// the cast back to BIGINT fails loudly rather than wrap if a sum ever overflowed. `$1` is the
/// tenant or NULL for all.
macro_rules! postgres_report {
    ($grp:expr) => {
        concat!(
            "SELECT grp, tenant_id, sum(calls)::bigint AS calls,
                    sum(input_tokens)::bigint AS input_tokens,
                    sum(output_tokens)::bigint AS output_tokens, sum(cpu_ms)::bigint AS cpu_ms,
                    sum(memory_mb_ms)::bigint AS memory_mb_ms,
                    sum(cost_micros)::bigint AS cost_micros, count(*) AS records
             FROM (SELECT ",
            $grp,
            " AS grp, tenant_id, calls, input_tokens, output_tokens, cpu_ms, memory_mb_ms,
                          cost_micros
                   FROM usage_records
                   WHERE ($1::text IS NULL OR tenant_id = $1) AND at >= $2 AND at < $3) AS u
             GROUP BY tenant_id, grp
             ORDER BY tenant_id COLLATE \"C\", grp COLLATE \"C\""
        )
    };
}

/// The report grouped by `$grp` in both dialects, or by `$sqlite` and `$postgres`.
macro_rules! report {
    ($grp:expr) => {
        report!($grp, $grp)
    };
    ($sqlite:expr, $postgres:expr) => {
        Sql {
            sqlite: sqlite_report!($sqlite),
            postgres: postgres_report!($postgres),
        }
    };
}

/// The report query of each grouping.
fn usage_report_sql(group: UsageGroup) -> Sql {
    match group {
        UsageGroup::Tenant => report!("tenant_id"),
        UsageGroup::User => report!("COALESCE(user_id, '')"),
        UsageGroup::Model => {
            report!("CASE WHEN kind = 'model' THEN COALESCE(resource, '') ELSE '' END")
        }
        UsageGroup::Runtime => report!("COALESCE(runtime, '')"),
        // The UTC day, `YYYY-MM-DD`: on PostgreSQL with integer-exact date arithmetic, so no
        // time zone setting is involved.
        UsageGroup::Day => report!(
            "COALESCE(date(at, 'unixepoch'), '')",
            "to_char((DATE '1970-01-01' + floor(at / 86400.0)::integer)::timestamp, 'YYYY-MM-DD')"
        ),
        UsageGroup::Kind => report!("kind"),
    }
}

impl Store {
    /// Appends an entry to the scope's ledger. Its `tenant_id` must be the scope's tenant
    /// (anything else is refused as a bug); `StoreError::Conflict` if the tenant already has an
    /// entry with that id, so a retried write never counts twice. Entries are never updated.
    pub async fn record_usage(
        &self,
        scope: &TenantScope,
        usage: &UsageRecord,
    ) -> Result<(), StoreError> {
        self.record_usages(scope, std::slice::from_ref(usage)).await
    }

    /// Appends several entries to the scope's ledger in one transaction: all of them, or none
    /// (and the error of the first that failed). Every entry's `tenant_id` must be the scope's
    /// tenant. Cheaper than one `record_usage` each when entries arrive in bursts.
    pub async fn record_usages(
        &self,
        scope: &TenantScope,
        usages: &[UsageRecord],
    ) -> Result<(), StoreError> {
        let tenant = scope.tenant();
        if let Some(u) = usages.iter().find(|u| &u.tenant_id != tenant) {
            return Err(StoreError::Database(format!(
                "refusing to record usage of tenant {} in the scope of tenant {tenant}",
                u.tenant_id
            )));
        }
        if usages.is_empty() {
            return Ok(());
        }
        self.append_usages(tenant, usages)
            .await
            .map_err(|e| missing_tenant(e, tenant))
    }

    async fn append_usages(
        &self,
        tenant: &TenantId,
        usages: &[UsageRecord],
    ) -> Result<(), StoreError> {
        let mut db = self.tenant_data_tx(tenant).await?;
        for chunk in usages.chunks(ROWS_PER_INSERT) {
            match &mut db {
                Db::Sqlite(held) => usage_insert!(sqlx::Sqlite, tenant, chunk)
                    .build()
                    .execute(held.conn())
                    .await
                    .map(drop),
                Db::Postgres(held) => usage_insert!(sqlx::Postgres, tenant, chunk)
                    .build()
                    .execute(held.conn())
                    .await
                    .map(drop),
            }
            .map_err(|e| {
                // A duplicate id fails the whole statement, and so the batch: the ledger
                // writer retries entry by entry to find it.
                StoreError::from(e).conflict_as(|| {
                    format!(
                        "a usage record of this batch of {} already exists",
                        chunk.len()
                    )
                })
            })?;
        }
        db.commit().await
    }

    /// The scope's ledger entries with `from <= at < to` (unix seconds), newest first (by `at`,
    /// then id), at most `limit`.
    pub async fn list_usage(
        &self,
        scope: &TenantScope,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let tenant = scope.tenant();
        let rows = sql!(self.tenant_data(tenant) => fetch_all(
            sqlite: concat!("SELECT ", usage_cols!(), " FROM usage_records
                WHERE tenant_id = ?1 AND at >= ?2 AND at < ?3
                ORDER BY at DESC, id DESC
                LIMIT ?4"),
            postgres: concat!("SELECT ", usage_cols!(), r#" FROM usage_records
                WHERE tenant_id = $1 AND at >= $2 AND at < $3
                ORDER BY at DESC, id COLLATE "C" DESC
                LIMIT $4"#),
            tenant.as_str(),
            from,
            to,
            i64::from(limit),
        ))?;
        rows.iter().map(usage_from_row).collect()
    }

    /// Operator, across tenants (or of `query.tenant` only): exact sums of the ledger entries
    /// with `query.from <= at < query.to`, one row per tenant and group, ordered by tenant,
    /// then group key (byte order on both backends). Tenants without entries in the window have
    /// no row.
    pub async fn usage_report(
        &self,
        grant: OperatorGrant,
        query: &UsageQuery,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let rows = sql!(self.all_tenants(&grant) => fetch_all(
            usage_report_sql(query.group_by),
            query.tenant.as_ref().map(TenantId::as_str),
            query.from,
            query.to,
        ))?;
        rows.iter().map(usage_row_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored text of each kind is its serde name, and parses back.
    #[test]
    fn stored_kinds_match_serde_names() {
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
        assert_eq!(UsageKind::parse(""), None);
    }
}
