//! Tool targets (operator data): the upstream MCP servers and OpenAPI documents the operator
//! registers for the tool gateway, one row per target name.
//!
//! Targets are the operator's, like runtimes, so they have no row-level security and are read
//! and written as the connecting user. A target of one tenant (silo) is deleted with that
//! tenant (`Store::delete_tenant`); the foreign key refuses a target of a tenant that does not
//! exist. Both dialects live in this module, as for policy sets.
//!
//! The store keeps the spec (`body`) as opaque JSON: its shape, and the check that a name
//! means one owner, belong to `tenantry-tools`. A spec never holds a secret (credentials live
//! in the vault). This module must never query a tenant table.

use serde::{Deserialize, Serialize};
use tenantry_core::TenantId;

use crate::StoreError;
use crate::record::{Columns, to_json};

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

/// Columns: `name`, `tenant_id`, `body` (JSON text), `created_at`, `updated_at`.
fn record_from_row(row: &impl Columns) -> Result<ToolTargetRecord, StoreError> {
    let name = row.text("name")?;
    let body_text = row.text("body")?;
    let body = serde_json::from_str(&body_text)
        .map_err(|e| StoreError::corrupt(format!("tool target {name} body: {e}")))?;
    Ok(ToolTargetRecord {
        tenant: row
            .opt_text("tenant_id")?
            .map(TenantId::new)
            .transpose()
            .map_err(StoreError::corrupt)?,
        body,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        name,
    })
}

// ---- SQLite ------------------------------------------------------------------------------------

pub(crate) mod sqlite {
    use sqlx::SqlitePool;

    use super::*;

    macro_rules! cols {
        () => {
            "name, tenant_id, body, created_at, updated_at"
        };
    }

    pub(crate) async fn put(pool: &SqlitePool, r: &ToolTargetRecord) -> Result<bool, StoreError> {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let existed: Option<String> =
            sqlx::query_scalar("SELECT name FROM tool_targets WHERE name = ?1")
                .bind(&r.name)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO tool_targets (name, tenant_id, body, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET tenant_id = excluded.tenant_id,
                 body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(&r.name)
        .bind(r.tenant.as_ref().map(TenantId::as_str))
        .bind(to_json(&r.body)?)
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(existed.is_none())
    }

    pub(crate) async fn get(
        pool: &SqlitePool,
        name: &str,
    ) -> Result<Option<ToolTargetRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            cols!(),
            " FROM tool_targets WHERE name = ?1"
        ))
        .bind(name)
        .fetch_optional(pool)
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    pub(crate) async fn list(pool: &SqlitePool) -> Result<Vec<ToolTargetRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            cols!(),
            " FROM tool_targets ORDER BY name"
        ))
        .fetch_all(pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    pub(crate) async fn delete(pool: &SqlitePool, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM tool_targets WHERE name = ?1")
            .bind(name)
            .execute(pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

// ---- PostgreSQL --------------------------------------------------------------------------------

pub(crate) mod postgres {
    use sqlx::PgPool;

    use super::*;

    macro_rules! cols {
        () => {
            "name, tenant_id, body::text AS body, created_at, updated_at"
        };
    }

    pub(crate) async fn put(pool: &PgPool, r: &ToolTargetRecord) -> Result<bool, StoreError> {
        // `xmax = 0` holds for a freshly inserted row, not for one the upsert updated.
        let inserted: bool = sqlx::query_scalar(
            "INSERT INTO tool_targets (name, tenant_id, body, created_at, updated_at)
             VALUES ($1, $2, $3::jsonb, $4, $5)
             ON CONFLICT (name) DO UPDATE SET tenant_id = EXCLUDED.tenant_id,
                 body = EXCLUDED.body, updated_at = EXCLUDED.updated_at
             RETURNING (xmax = 0)",
        )
        .bind(&r.name)
        .bind(r.tenant.as_ref().map(TenantId::as_str))
        .bind(to_json(&r.body)?)
        .bind(r.created_at)
        .bind(r.updated_at)
        .fetch_one(pool)
        .await?;
        Ok(inserted)
    }

    pub(crate) async fn get(
        pool: &PgPool,
        name: &str,
    ) -> Result<Option<ToolTargetRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            cols!(),
            " FROM tool_targets WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(pool)
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    pub(crate) async fn list(pool: &PgPool) -> Result<Vec<ToolTargetRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            cols!(),
            r#" FROM tool_targets ORDER BY name COLLATE "C""#
        ))
        .fetch_all(pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    pub(crate) async fn delete(pool: &PgPool, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM tool_targets WHERE name = $1")
            .bind(name)
            .execute(pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

// ---- the public API ----------------------------------------------------------------------------

impl crate::Store {
    /// Stores the target, replacing the one of the same name (its `created_at` is kept);
    /// `true` if it was new. A target of a tenant that does not exist (or was deleted
    /// meanwhile) is `StoreError::Missing`.
    pub async fn put_tool_target(&self, r: &ToolTargetRecord) -> Result<bool, StoreError> {
        check_name(&r.name)?;
        let put = match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::put(s.pool(), r).await,
            crate::Backend::Postgres(p) => postgres::put(p.pool(), r).await,
        };
        put.map_err(|e| match &r.tenant {
            Some(t) => e.missing_as(|| format!("tenant {t} not found")),
            None => e,
        })
    }

    pub async fn get_tool_target(
        &self,
        name: &str,
    ) -> Result<Option<ToolTargetRecord>, StoreError> {
        match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::get(s.pool(), name).await,
            crate::Backend::Postgres(p) => postgres::get(p.pool(), name).await,
        }
    }

    /// Every target, shared ones and every tenant's, ordered by name (byte order on both
    /// backends): what the tool gateway loads at start.
    pub async fn list_tool_targets(&self) -> Result<Vec<ToolTargetRecord>, StoreError> {
        match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::list(s.pool()).await,
            crate::Backend::Postgres(p) => postgres::list(p.pool()).await,
        }
    }

    /// Deletes the target; `false` if there was none.
    pub async fn delete_tool_target(&self, name: &str) -> Result<bool, StoreError> {
        match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::delete(s.pool(), name).await,
            crate::Backend::Postgres(p) => postgres::delete(p.pool(), name).await,
        }
    }
}
