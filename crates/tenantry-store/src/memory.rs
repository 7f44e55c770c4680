//! Memory resources (operator data, like tool targets): each tenant's own memories and the
//! memories the operator shares with every tenant (`tenant_id` NULL).
//!
//! Definitions carry no tenant data (the events and records are in `memory_events` and
//! `memory_records`), so they have no row-level security; every read of a tenant's memories
//! takes its `TenantScope` and answers only its own and the shared ones, and writing a shared
//! memory takes the `OperatorGrant`. Deleting a memory deletes its events and records of every
//! tenant through the foreign keys' cascade. This module must never read events or records.

use tenantry_core::{CrossTenantGrant, OperatorGrant, TenantId, TenantScope};
use tenantry_memory::MemoryId;
use tenantry_memory::types::{Memory, MemoryOwner, Strategy};

use crate::db::sql;
use crate::row::{Row, json_col, to_json};
use crate::{Store, StoreError, missing_tenant};

/// Who writes a memory definition: a tenant (its own) or the operator (a shared one).
#[derive(Debug, Clone, Copy)]
pub enum MemoryWriter<'a> {
    Tenant(&'a TenantScope),
    Operator(&'a OperatorGrant),
}

impl MemoryWriter<'_> {
    fn tenant(&self) -> Option<&TenantId> {
        match self {
            MemoryWriter::Tenant(s) => Some(s.tenant()),
            MemoryWriter::Operator(_) => None,
        }
    }
}

macro_rules! memory_cols {
    ($dialect:ident) => {
        concat!(
            "id, tenant_id, name, description, event_expiry_days, ",
            json_col!($dialect, "strategies"),
            ", created_at, updated_at"
        )
    };
}

fn memory_from_row(row: &Row) -> Result<Memory, StoreError> {
    let owner = match row.opt_parsed("tenant_id", TenantId::new)? {
        Some(t) => MemoryOwner::Tenant(t),
        None => MemoryOwner::Shared,
    };
    let strategies: Vec<Strategy> = row.json("memory", "strategies")?;
    Ok(Memory {
        id: row.parsed("id", MemoryId::new)?,
        name: row.text("name")?,
        description: row.text("description")?,
        shared: owner == MemoryOwner::Shared,
        owner,
        event_expiry_days: u32::try_from(row.int("event_expiry_days")?)
            .map_err(StoreError::corrupt)?,
        strategies,
        status: "ACTIVE",
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

impl Store {
    /// Stores a new memory of the writer (its `owner` must be the writer's);
    /// `StoreError::Conflict` if the owner has a memory of that name.
    pub async fn insert_memory(
        &self,
        writer: MemoryWriter<'_>,
        m: &Memory,
    ) -> Result<(), StoreError> {
        let owner_ok = match (&m.owner, writer.tenant()) {
            (MemoryOwner::Tenant(t), Some(w)) => t == w,
            (MemoryOwner::Shared, None) => true,
            (MemoryOwner::Tenant(_), None) | (MemoryOwner::Shared, Some(_)) => false,
        };
        if !owner_ok {
            return Err(StoreError::Database(format!(
                "refusing to store memory {} for another owner than its writer",
                m.id
            )));
        }
        sql!(self.operator_data() => execute(
            sqlite: concat!("INSERT INTO memories (", memory_cols!(names), ")
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            postgres: concat!("INSERT INTO memories (", memory_cols!(names), ")
                               VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)"),
            m.id.as_str(),
            writer.tenant().map(TenantId::as_str),
            m.name.as_str(),
            m.description.as_str(),
            i64::from(m.event_expiry_days),
            to_json(&m.strategies)?,
            m.created_at,
            m.updated_at,
        ))
        .map_err(|e| e.conflict_as(|| format!("a memory named {} exists already", m.name)))
        .map_err(|e| match writer.tenant() {
            Some(t) => missing_tenant(e, t),
            None => e,
        })?;
        Ok(())
    }

    /// One of the scope's memories or a shared one.
    pub async fn get_memory(
        &self,
        scope: &TenantScope,
        id: &MemoryId,
    ) -> Result<Option<Memory>, StoreError> {
        let row = sql!(self.operator_data() => fetch_optional(
            sqlite: concat!("SELECT ", memory_cols!(sqlite), " FROM memories
                             WHERE id = ?1 AND (tenant_id = ?2 OR tenant_id IS NULL)"),
            postgres: concat!("SELECT ", memory_cols!(postgres), " FROM memories
                               WHERE id = $1 AND (tenant_id = $2 OR tenant_id IS NULL)"),
            id.as_str(),
            scope.tenant().as_str(),
        ))?;
        row.as_ref().map(memory_from_row).transpose()
    }

    /// The scope's memories and the shared ones, by id.
    pub async fn list_memories(&self, scope: &TenantScope) -> Result<Vec<Memory>, StoreError> {
        let rows = sql!(self.operator_data() => fetch_all(
            sqlite: concat!("SELECT ", memory_cols!(sqlite), " FROM memories
                             WHERE tenant_id = ?1 OR tenant_id IS NULL ORDER BY id"),
            postgres: concat!("SELECT ", memory_cols!(postgres), r#" FROM memories
                               WHERE tenant_id = $1 OR tenant_id IS NULL ORDER BY id COLLATE "C""#),
            scope.tenant().as_str(),
        ))?;
        rows.iter().map(memory_from_row).collect()
    }

    /// Every memory of every tenant and the shared ones (the expiry job's list).
    pub async fn list_all_memories(
        &self,
        _grant: &impl CrossTenantGrant,
    ) -> Result<Vec<Memory>, StoreError> {
        let rows = sql!(self.operator_data() => fetch_all(
            sqlite: concat!("SELECT ", memory_cols!(sqlite), " FROM memories ORDER BY id"),
            postgres: concat!("SELECT ", memory_cols!(postgres), r#" FROM memories ORDER BY id COLLATE "C""#),
        ))?;
        rows.iter().map(memory_from_row).collect()
    }

    /// Replaces a memory's description, expiry and strategies; `false` if the writer has no
    /// such memory (a tenant never changes a shared one).
    pub async fn update_memory(
        &self,
        writer: MemoryWriter<'_>,
        m: &Memory,
    ) -> Result<bool, StoreError> {
        let n = sql!(self.operator_data() => execute(
            sqlite: "UPDATE memories SET description = ?3, event_expiry_days = ?4, strategies = ?5,
                            updated_at = ?6
                     WHERE id = ?1 AND coalesce(tenant_id, '') = ?2",
            postgres: "UPDATE memories SET description = $3, event_expiry_days = $4,
                              strategies = $5::jsonb, updated_at = $6
                       WHERE id = $1 AND coalesce(tenant_id, '') = $2",
            m.id.as_str(),
            writer.tenant().map_or("", TenantId::as_str),
            m.description.as_str(),
            i64::from(m.event_expiry_days),
            to_json(&m.strategies)?,
            m.updated_at,
        ))?;
        Ok(n == 1)
    }

    /// Deletes a memory of the writer with its events and records (every tenant's, for a
    /// shared one); `false` if the writer has no such memory.
    pub async fn delete_memory(
        &self,
        writer: MemoryWriter<'_>,
        id: &MemoryId,
    ) -> Result<bool, StoreError> {
        let n = sql!(self.operator_data() => execute(
            sqlite: "DELETE FROM memories WHERE id = ?1 AND coalesce(tenant_id, '') = ?2",
            postgres: "DELETE FROM memories WHERE id = $1 AND coalesce(tenant_id, '') = $2",
            id.as_str(),
            writer.tenant().map_or("", TenantId::as_str),
        ))?;
        Ok(n == 1)
    }
}
