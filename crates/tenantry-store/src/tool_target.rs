//! Tool targets (operator data): the upstream MCP servers and OpenAPI documents the operator
//! registers for the tool gateway, one row per target name.
//!
//! Targets are the operator's, like runtimes, so they have no row-level security and are read
//! and written as the connecting user. A target of one tenant (silo) is deleted with that
//! tenant (`Store::delete_tenant`); the foreign key refuses a target of a tenant that does not
//! exist.
//!
//! The store keeps the spec (`body`) as opaque JSON: its shape, and the check that a name
//! means one owner, belong to `tenantry-tools`. A spec never holds a secret (credentials live
//! in the vault). This module must never query a tenant table.

use serde::{Deserialize, Serialize};
use tenantry_core::TenantId;

use crate::db::{Db, Sql, sql};
use crate::row::{Row, json_col, to_json};
use crate::{Backend, Store, StoreError, missing_tenant};

/// A registered tool target as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolTargetRecord {
    /// The target's name, unique across the platform.
    pub name: String,
    /// `None`: shared by all tenants. `Some`: that tenant's alone, deleted with it.
    pub tenant: Option<TenantId>,
    /// The target spec of the tool gateway, as JSON.
    pub body: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Longest target name the store accepts (the tool gateway's own rule is stricter).
const MAX_NAME_BYTES: usize = 128;

fn check_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(StoreError::Database(format!(
            "refusing to store a tool target named {:?}: names have 1 to {MAX_NAME_BYTES} bytes",
            name.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

/// The columns of `tool_targets`: `names` for an insert, or a select list of `sqlite` or
/// `postgres`.
macro_rules! target_cols {
    ($dialect:ident) => {
        concat!(
            "name, tenant_id, ",
            json_col!($dialect, "body"),
            ", created_at, updated_at"
        )
    };
}

/// Stores a target, or replaces the one of its name but for `created_at`. On PostgreSQL it
/// answers whether it inserted: `xmax = 0` holds for a freshly inserted row, not for one the
/// upsert updated.
#[rustfmt::skip]
const UPSERT: Sql = Sql {
    sqlite: concat!(
        "INSERT INTO tool_targets (", target_cols!(names), ") VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (name) DO UPDATE SET tenant_id = excluded.tenant_id, body = excluded.body,
                                          updated_at = excluded.updated_at"
    ),
    postgres: concat!(
        "INSERT INTO tool_targets (", target_cols!(names), ") VALUES ($1, $2, $3::jsonb, $4, $5)
         ON CONFLICT (name) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, body = EXCLUDED.body,
                                          updated_at = EXCLUDED.updated_at
         RETURNING (xmax = 0)"
    ),
};

/// Binds a target's columns, in the order of `target_cols!`, to the query `$query`.
macro_rules! bind_target {
    ($query:expr, $r:expr) => {
        $query
            .bind(&$r.name)
            .bind($r.tenant.as_ref().map(TenantId::as_str))
            .bind(to_json(&$r.body)?)
            .bind($r.created_at)
            .bind($r.updated_at)
    };
}

fn record_from_row(row: &Row) -> Result<ToolTargetRecord, StoreError> {
    let name = row.text("name")?;
    let body = row.json(&format!("tool target {name}"), "body")?;
    Ok(ToolTargetRecord {
        tenant: row.opt_parsed("tenant_id", TenantId::new)?,
        body,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        name,
    })
}

impl Store {
    /// Stores the target, replacing the one of the same name (its `created_at` is kept);
    /// `true` if it was new. A target of a tenant that does not exist (or was deleted
    /// meanwhile) is `StoreError::Missing`.
    pub async fn put_tool_target(&self, r: &ToolTargetRecord) -> Result<bool, StoreError> {
        check_name(&r.name)?;
        self.upsert_tool_target(r)
            .await
            .map_err(|e| match &r.tenant {
                Some(t) => missing_tenant(e, t),
                None => e,
            })
    }

    /// SQLite cannot tell an upsert's insert from its update, so it looks first, in the same
    /// write transaction; PostgreSQL tells from the row, in one statement.
    async fn upsert_tool_target(&self, r: &ToolTargetRecord) -> Result<bool, StoreError> {
        let mut db = match &self.backend {
            Backend::Sqlite(_) => self.operator_data_tx().await?,
            Backend::Postgres(_) => self.operator_data().await?,
        };
        let inserted = match &mut db {
            Db::Sqlite(held) => {
                let existed: Option<String> =
                    sqlx::query_scalar("SELECT name FROM tool_targets WHERE name = ?1")
                        .bind(&r.name)
                        .fetch_optional(held.conn())
                        .await?;
                let upsert = sqlx::query(UPSERT.sqlite);
                bind_target!(upsert, r).execute(held.conn()).await?;
                existed.is_none()
            }
            Db::Postgres(held) => {
                let upsert = sqlx::query_scalar(UPSERT.postgres);
                bind_target!(upsert, r).fetch_one(held.conn()).await?
            }
        };
        db.commit().await?;
        Ok(inserted)
    }

    pub async fn get_tool_target(
        &self,
        name: &str,
    ) -> Result<Option<ToolTargetRecord>, StoreError> {
        let row = sql!(self.operator_data() => fetch_optional(
            sqlite: concat!("SELECT ", target_cols!(sqlite), " FROM tool_targets WHERE name = ?1"),
            postgres: concat!(
                "SELECT ", target_cols!(postgres), " FROM tool_targets WHERE name = $1"
            ),
            name,
        ))?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// Every target, shared ones and every tenant's, ordered by name (byte order on both
    /// backends): what the tool gateway loads at start.
    pub async fn list_tool_targets(&self) -> Result<Vec<ToolTargetRecord>, StoreError> {
        let rows = sql!(self.operator_data() => fetch_all(
            sqlite: concat!("SELECT ", target_cols!(sqlite), " FROM tool_targets ORDER BY name"),
            postgres: concat!(
                "SELECT ", target_cols!(postgres), r#" FROM tool_targets ORDER BY name COLLATE "C""#
            ),
        ))?;
        rows.iter().map(record_from_row).collect()
    }

    /// Deletes the target; `false` if there was none.
    pub async fn delete_tool_target(&self, name: &str) -> Result<bool, StoreError> {
        let deleted = sql!(self.operator_data() => execute(
            sqlite: "DELETE FROM tool_targets WHERE name = ?1",
            postgres: "DELETE FROM tool_targets WHERE name = $1",
            name,
        ))?;
        Ok(deleted == 1)
    }
}
