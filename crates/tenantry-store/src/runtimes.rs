//! Runtimes (operator data): the agent runtimes the operator registered, shared by all tenants
//! (pool) or dedicated to one (silo).
//!
//! Runtimes are the operator's, with no row-level security, read and written as the connecting
//! user. A dedicated runtime is deleted with its tenant (`Store::delete_tenant`); the foreign
//! key refuses one dedicated to a tenant that does not exist. The store keeps the spec as
//! opaque JSON: its shape belongs to the runtime layer. This module must never query a tenant
//! table.

use serde::{Deserialize, Serialize};
use tenantry_core::{RuntimeName, TenantId};

use crate::db::sql;
use crate::row::{Row, json_col, to_json};
use crate::{Store, StoreError, missing_tenant};

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

/// The columns of `runtimes`: `names` for an insert, or a select list of `sqlite` or
/// `postgres`.
macro_rules! runtime_cols {
    ($dialect:ident) => {
        concat!(
            "name, dedicated_tenant, ",
            json_col!($dialect, "body"),
            ", created_at, updated_at"
        )
    };
}

fn runtime_from_row(row: &Row) -> Result<RuntimeRecord, StoreError> {
    Ok(RuntimeRecord {
        name: row.parsed("name", RuntimeName::new)?,
        dedicated_tenant: row.opt_parsed("dedicated_tenant", TenantId::new)?,
        body: row.json("runtime", "body")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

/// A foreign-key refusal of a runtime dedicated to a tenant: that tenant does not exist.
fn missing_dedicated(e: StoreError, r: &RuntimeRecord) -> StoreError {
    match &r.dedicated_tenant {
        Some(tenant) => missing_tenant(e, tenant),
        None => e,
    }
}

impl Store {
    /// Registers a runtime; `StoreError::Conflict` if the name is taken. A runtime dedicated to
    /// a tenant that does not exist (or was deleted meanwhile) is `StoreError::Missing`.
    pub async fn create_runtime(&self, r: &RuntimeRecord) -> Result<(), StoreError> {
        sql!(self.operator_data() => execute(
            sqlite: concat!("INSERT INTO runtimes (", runtime_cols!(names), ")
                             VALUES (?1, ?2, ?3, ?4, ?5)"),
            postgres: concat!("INSERT INTO runtimes (", runtime_cols!(names), ")
                               VALUES ($1, $2, $3::jsonb, $4, $5)"),
            r.name.as_str(),
            r.dedicated_tenant.as_ref().map(TenantId::as_str),
            to_json(&r.body)?,
            r.created_at,
            r.updated_at,
        ))
        .map_err(|e| e.conflict_as(|| format!("runtime {} already exists", r.name)))
        .map_err(|e| missing_dedicated(e, r))?;
        Ok(())
    }

    pub async fn get_runtime(
        &self,
        name: &RuntimeName,
    ) -> Result<Option<RuntimeRecord>, StoreError> {
        let row = sql!(self.operator_data() => fetch_optional(
            sqlite: concat!("SELECT ", runtime_cols!(sqlite), " FROM runtimes WHERE name = ?1"),
            postgres: concat!("SELECT ", runtime_cols!(postgres), " FROM runtimes WHERE name = $1"),
            name.as_str(),
        ))?;
        row.as_ref().map(runtime_from_row).transpose()
    }

    /// All runtimes, ordered by name (byte order on both backends).
    pub async fn list_runtimes(&self) -> Result<Vec<RuntimeRecord>, StoreError> {
        let rows = sql!(self.operator_data() => fetch_all(
            sqlite: concat!("SELECT ", runtime_cols!(sqlite), " FROM runtimes ORDER BY name"),
            postgres: concat!(
                "SELECT ", runtime_cols!(postgres), r#" FROM runtimes ORDER BY name COLLATE "C""#
            ),
        ))?;
        rows.iter().map(runtime_from_row).collect()
    }

    /// Replaces `dedicated_tenant`, `body` and `updated_at` (not `name` nor `created_at`);
    /// `false` if absent.
    pub async fn update_runtime(&self, r: &RuntimeRecord) -> Result<bool, StoreError> {
        let updated = sql!(self.operator_data() => execute(
            sqlite: "UPDATE runtimes SET dedicated_tenant = ?2, body = ?3, updated_at = ?4
                     WHERE name = ?1",
            postgres: "UPDATE runtimes SET dedicated_tenant = $2, body = $3::jsonb, updated_at = $4
                       WHERE name = $1",
            r.name.as_str(),
            r.dedicated_tenant.as_ref().map(TenantId::as_str),
            to_json(&r.body)?,
            r.updated_at,
        ))
        .map_err(|e| missing_dedicated(e, r))?;
        Ok(updated == 1)
    }

    /// Deletes the runtime; `false` if absent. Its sessions' rows stay (they are the tenants'
    /// data, resolved by the runtime name) until they are stopped and swept.
    pub async fn delete_runtime(&self, name: &RuntimeName) -> Result<bool, StoreError> {
        let deleted = sql!(self.operator_data() => execute(
            sqlite: "DELETE FROM runtimes WHERE name = ?1",
            postgres: "DELETE FROM runtimes WHERE name = $1",
            name.as_str(),
        ))?;
        Ok(deleted == 1)
    }
}
