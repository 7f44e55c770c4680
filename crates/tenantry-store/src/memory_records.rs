//! Long-term memory records (tenant data) and their full-text search: SQLite FTS5 (porter
//! stemming, `bm25`) in the embedded store, PostgreSQL `to_tsvector('english')` with
//! `ts_rank` on PostgreSQL. Every statement filters by the scope's tenant and memory, and by
//! the caller's actor when it is limited to one; on PostgreSQL row-level security as well.
//!
//! Search terms are letters and digits only (`tenantry_memory::retrieve::query_terms`) and are
//! quoted here, so no query syntax of either engine reaches it from a caller.

use std::collections::BTreeMap;

use tenantry_core::TenantScope;
use tenantry_memory::types::{Record, RecordMetadataValue, TextContent};
use tenantry_memory::{ActorId, MemoryId, MemorySessionId, RecordId};

use crate::db::sql;
use crate::row::{Row, json_col, to_json};
use crate::{Store, StoreError, missing_tenant};

/// The most records one listing or search reads before metadata filters and ranking.
pub const MAX_LISTED_RECORDS: i64 = 10_000;

/// Which of a memory's records a listing or search reads.
#[derive(Debug, Clone, Copy)]
pub struct RecordQuery<'a> {
    pub memory: &'a MemoryId,
    /// A namespace prefix (`""`: every namespace).
    pub prefix: &'a str,
    pub strategy: Option<&'a str>,
    /// Only this actor's records (a caller limited to one actor).
    pub actor: Option<&'a ActorId>,
}

macro_rules! record_cols {
    ($dialect:ident, $p:literal) => {
        concat!(
            $p,
            "id, ",
            $p,
            "strategy_id, ",
            $p,
            "namespace, ",
            $p,
            "actor_id, ",
            $p,
            "session_id, ",
            $p,
            "text, ",
            $p,
            "created_at, ",
            $p,
            "updated_at, ",
            json_col!($dialect, "metadata")
        )
    };
}

fn record_from_row(row: &Row) -> Result<Record, StoreError> {
    let metadata: BTreeMap<String, RecordMetadataValue> = row.json("record", "metadata")?;
    Ok(Record {
        memory_record_id: row.parsed("id", RecordId::new)?,
        content: TextContent {
            text: row.text("text")?,
        },
        memory_strategy_id: row.text("strategy_id")?,
        namespaces: vec![row.text("namespace")?],
        actor_id: row.opt_parsed("actor_id", ActorId::new)?,
        session_id: row.opt_parsed("session_id", MemorySessionId::new)?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        metadata,
    })
}

fn namespace_of(r: &Record) -> Result<&str, StoreError> {
    r.namespaces.first().map(String::as_str).ok_or_else(|| {
        StoreError::Database("refusing to store a record without a namespace".into())
    })
}

/// `score = s / (1 + s)` of a non-negative engine score: 0 to 1, higher is closer.
fn squash(s: f64) -> f64 {
    let s = s.max(0.0);
    s / (1.0 + s)
}

impl Store {
    /// Stores a new record of a memory; `norm` is its normalised text.
    pub async fn insert_memory_record(
        &self,
        scope: &TenantScope,
        memory: &MemoryId,
        r: &Record,
        norm: &str,
    ) -> Result<(), StoreError> {
        let tenant = scope.tenant();
        sql!(self.tenant_data(tenant) => execute(
            sqlite: "INSERT INTO memory_records (tenant_id, memory_id, id, strategy_id, namespace,
                        actor_id, session_id, text, norm, metadata, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            postgres: "INSERT INTO memory_records (tenant_id, memory_id, id, strategy_id, namespace,
                        actor_id, session_id, text, norm, metadata, created_at, updated_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12)",
            tenant.as_str(),
            memory.as_str(),
            r.memory_record_id.as_str(),
            r.memory_strategy_id.as_str(),
            namespace_of(r)?,
            r.actor_id.as_ref().map(ActorId::as_str),
            r.session_id.as_ref().map(MemorySessionId::as_str),
            r.content.text.as_str(),
            norm,
            to_json(&r.metadata)?,
            r.created_at,
            r.updated_at,
        ))
        .map_err(|e| {
            missing_tenant(e, tenant).missing_as(|| format!("memory {memory} not found"))
        })?;
        Ok(())
    }

    /// Replaces a record's text, namespace, strategy, metadata and time (its actor and
    /// creation stay); `false` if the scope has no such record.
    pub async fn update_memory_record(
        &self,
        scope: &TenantScope,
        memory: &MemoryId,
        r: &Record,
        norm: &str,
    ) -> Result<bool, StoreError> {
        let tenant = scope.tenant();
        let n = sql!(self.tenant_data(tenant) => execute(
            sqlite: "UPDATE memory_records SET strategy_id = ?4, namespace = ?5, text = ?6,
                            norm = ?7, metadata = ?8, updated_at = ?9
                     WHERE tenant_id = ?1 AND memory_id = ?2 AND id = ?3",
            postgres: "UPDATE memory_records SET strategy_id = $4, namespace = $5, text = $6,
                              norm = $7, metadata = $8::jsonb, updated_at = $9
                       WHERE tenant_id = $1 AND memory_id = $2 AND id = $3",
            tenant.as_str(),
            memory.as_str(),
            r.memory_record_id.as_str(),
            r.memory_strategy_id.as_str(),
            namespace_of(r)?,
            r.content.text.as_str(),
            norm,
            to_json(&r.metadata)?,
            r.updated_at,
        ))?;
        Ok(n == 1)
    }

    /// One record (of `actor` only, when given).
    pub async fn get_memory_record(
        &self,
        scope: &TenantScope,
        memory: &MemoryId,
        id: &RecordId,
        actor: Option<&ActorId>,
    ) -> Result<Option<Record>, StoreError> {
        let tenant = scope.tenant();
        let row = sql!(self.tenant_data(tenant) => fetch_optional(
            sqlite: concat!("SELECT ", record_cols!(sqlite, ""), " FROM memory_records
                             WHERE tenant_id = ?1 AND memory_id = ?2 AND id = ?3
                               AND (?4 IS NULL OR actor_id = ?4)"),
            postgres: concat!("SELECT ", record_cols!(postgres, ""), " FROM memory_records
                               WHERE tenant_id = $1 AND memory_id = $2 AND id = $3
                                 AND ($4::text IS NULL OR actor_id = $4)"),
            tenant.as_str(),
            memory.as_str(),
            id.as_str(),
            actor.map(ActorId::as_str),
        ))?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// Deletes one record (of `actor` only, when given); `false` if there was none.
    pub async fn delete_memory_record(
        &self,
        scope: &TenantScope,
        memory: &MemoryId,
        id: &RecordId,
        actor: Option<&ActorId>,
    ) -> Result<bool, StoreError> {
        let tenant = scope.tenant();
        let n = sql!(self.tenant_data(tenant) => execute(
            sqlite: "DELETE FROM memory_records WHERE tenant_id = ?1 AND memory_id = ?2 AND id = ?3
                       AND (?4 IS NULL OR actor_id = ?4)",
            postgres: "DELETE FROM memory_records WHERE tenant_id = $1 AND memory_id = $2
                         AND id = $3 AND ($4::text IS NULL OR actor_id = $4)",
            tenant.as_str(),
            memory.as_str(),
            id.as_str(),
            actor.map(ActorId::as_str),
        ))?;
        Ok(n == 1)
    }

    /// The records a query reads, newest first (at most `MAX_LISTED_RECORDS`).
    pub async fn list_memory_records(
        &self,
        scope: &TenantScope,
        q: &RecordQuery<'_>,
    ) -> Result<Vec<Record>, StoreError> {
        let tenant = scope.tenant();
        let rows = sql!(self.tenant_data(tenant) => fetch_all(
            sqlite: concat!("SELECT ", record_cols!(sqlite, ""), " FROM memory_records
                             WHERE tenant_id = ?1 AND memory_id = ?2
                               AND substr(namespace, 1, length(?3)) = ?3
                               AND (?4 IS NULL OR strategy_id = ?4)
                               AND (?5 IS NULL OR actor_id = ?5)
                             ORDER BY updated_at DESC, id DESC LIMIT ?6"),
            postgres: concat!("SELECT ", record_cols!(postgres, ""), r#" FROM memory_records
                               WHERE tenant_id = $1 AND memory_id = $2
                                 AND left(namespace, length($3)) = $3
                                 AND ($4::text IS NULL OR strategy_id = $4)
                                 AND ($5::text IS NULL OR actor_id = $5)
                               ORDER BY updated_at DESC, id COLLATE "C" DESC LIMIT $6"#),
            tenant.as_str(),
            q.memory.as_str(),
            q.prefix,
            q.strategy,
            q.actor.map(ActorId::as_str),
            MAX_LISTED_RECORDS,
        ))?;
        rows.iter().map(record_from_row).collect()
    }

    /// The records of exactly one namespace and strategy (consolidation's candidates), newest
    /// first, at most `limit`.
    pub async fn memory_records_in_namespace(
        &self,
        scope: &TenantScope,
        memory: &MemoryId,
        namespace: &str,
        strategy: &str,
        limit: i64,
    ) -> Result<Vec<Record>, StoreError> {
        let tenant = scope.tenant();
        let rows = sql!(self.tenant_data(tenant) => fetch_all(
            sqlite: concat!("SELECT ", record_cols!(sqlite, ""), " FROM memory_records
                             WHERE tenant_id = ?1 AND memory_id = ?2 AND namespace = ?3
                               AND strategy_id = ?4
                             ORDER BY updated_at DESC LIMIT ?5"),
            postgres: concat!("SELECT ", record_cols!(postgres, ""), " FROM memory_records
                               WHERE tenant_id = $1 AND memory_id = $2 AND namespace = $3
                                 AND strategy_id = $4
                               ORDER BY updated_at DESC LIMIT $5"),
            tenant.as_str(),
            memory.as_str(),
            namespace,
            strategy,
            limit,
        ))?;
        rows.iter().map(record_from_row).collect()
    }

    /// Full-text search of the records a query reads for any of `terms` (letters and digits
    /// only): each with its engine score squashed to 0..1, best first (at most
    /// `MAX_LISTED_RECORDS`). No terms: nothing.
    pub async fn search_memory_records(
        &self,
        scope: &TenantScope,
        q: &RecordQuery<'_>,
        terms: &[String],
    ) -> Result<Vec<(Record, f64)>, StoreError> {
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let clean: Vec<&String> = terms
            .iter()
            .filter(|t| !t.is_empty() && t.chars().all(char::is_alphanumeric))
            .collect();
        if clean.is_empty() {
            return Ok(Vec::new());
        }
        let fts_match = clean
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(" OR ");
        let ts_query = clean
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(" | ");
        let tenant = scope.tenant();
        let rows = sql!(self.tenant_data(tenant) => fetch_all(
            sqlite: concat!("SELECT ", record_cols!(sqlite, "r."), ", -bm25(memory_records_fts) AS score
                             FROM memory_records_fts JOIN memory_records r
                               ON r.rid = memory_records_fts.rowid
                             WHERE memory_records_fts MATCH ?1 AND r.tenant_id = ?2
                               AND r.memory_id = ?3
                               AND substr(r.namespace, 1, length(?4)) = ?4
                               AND (?5 IS NULL OR r.strategy_id = ?5)
                               AND (?6 IS NULL OR r.actor_id = ?6)
                             ORDER BY score DESC LIMIT ?7"),
            postgres: concat!("SELECT ", record_cols!(postgres, ""), ", ts_rank(tsv, query)::float8 AS score
                               FROM memory_records, to_tsquery('english', $1) query
                               WHERE tsv @@ query AND tenant_id = $2 AND memory_id = $3
                                 AND left(namespace, length($4)) = $4
                                 AND ($5::text IS NULL OR strategy_id = $5)
                                 AND ($6::text IS NULL OR actor_id = $6)
                               ORDER BY score DESC LIMIT $7"),
            (if self.backend() == "sqlite" { fts_match } else { ts_query }),
            tenant.as_str(),
            q.memory.as_str(),
            q.prefix,
            q.strategy,
            q.actor.map(ActorId::as_str),
            MAX_LISTED_RECORDS,
        ))?;
        rows.iter()
            .map(|row| {
                let score: f64 = match row {
                    Row::Sqlite(r) => sqlx::Row::try_get(r, "score"),
                    Row::Postgres(r) => sqlx::Row::try_get(r, "score"),
                }
                .map_err(|e| StoreError::corrupt(format!("column score: {e}")))?;
                Ok((record_from_row(row)?, squash(score)))
            })
            .collect()
    }
}
