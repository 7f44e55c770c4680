//! The tenant registry (operator data), and the deletion of a tenant with everything it owns.
//!
//! Registry rows have no row-level security and are read and written as the connecting user.
//! Deleting a tenant is the one operation here that touches tenant data: on PostgreSQL it
//! deletes the tenant's rows inside the tenant's own scope (`tenantry_app`, `app.tenant_id`),
//! so row-level security checks even the operator's deletion. This module must never read
//! tenant data, and must never delete a row of a tenant other than the one named.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::PgConnection;
use tenantry_core::{Tenant, TenantId, TenantStatus, TenantUid, TierName};

use crate::db::{Db, Sql, sql};
use crate::postgres;
use crate::row::{Row, json_col, to_json};
use crate::{Store, StoreError};

/// What deleting a tenant removed from the store: rows, by table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TenantDeletion {
    pub rows: BTreeMap<&'static str, u64>,
}

/// A table and the delete of one tenant's rows from it, whose column `$col` names the tenant.
macro_rules! delete_of {
    ($table:literal, $col:literal) => {
        (
            $table,
            Sql {
                sqlite: concat!("DELETE FROM ", $table, " WHERE ", $col, " = ?1"),
                postgres: concat!("DELETE FROM ", $table, " WHERE ", $col, " = $1"),
            },
        )
    };
}

/// Every tenant-data table with the delete that `delete_tenant` runs on it (on PostgreSQL in
/// the tenant's scope). A new tenant table must be added here; the foreign key to `tenants`
/// makes a forgotten one fail the deletion, and the PostgreSQL connect-time check verifies
/// row-level security on each. The usage ledger has no foreign key: it is kept for billing
/// unless purged.
pub(crate) const TENANT_TABLES: &[(&str, Sql)] = &[
    delete_of!("api_keys", "tenant_id"),
    delete_of!("access_keys", "tenant_id"),
    delete_of!("memory_events", "tenant_id"),
    delete_of!("memory_records", "tenant_id"),
    delete_of!("sessions", "tenant_id"),
    delete_of!("usage_records", "tenant_id"),
    delete_of!("vault_credentials", "tenant_id"),
    delete_of!("vault_data_keys", "tenant_id"),
    delete_of!("knowledge_chunks", "tenant_id"),
    delete_of!("knowledge_documents", "tenant_id"),
    delete_of!("knowledge_partitions", "tenant_id"),
];

/// The operator data of a tenant, deleted with it after its tenant data (on PostgreSQL as
/// the connecting user).
const TENANT_OWNED: &[(&str, Sql)] = &[
    delete_of!("runtimes", "dedicated_tenant"),
    delete_of!("tenant_settings", "tenant_id"),
    delete_of!("policy_sets", "tenant_id"),
    delete_of!("tool_targets", "tenant_id"),
    delete_of!("guardrail_profiles", "tenant_id"),
    delete_of!("memories", "tenant_id"),
    delete_of!("knowledge_bases", "owner_tenant"),
];

/// The columns of `tenants`: `names` for an insert, or a select list of `sqlite` or `postgres`.
#[rustfmt::skip]
macro_rules! tenant_cols {
    ($dialect:ident) => {
        concat!(
            "id, uid, name, tier, status, region, ", json_col!($dialect, "isolation"), ", ",
            json_col!($dialect, "features"), ", ", json_col!($dialect, "entitlements"),
            ", created_at, updated_at"
        )
    };
}

/// The columns an update of a tenant replaces besides `updated_at` (`name` to `entitlements`,
/// in the order of `tenant_cols!`), as they are bound.
struct Fields<'a> {
    name: &'a str,
    tier: &'a str,
    status: &'a str,
    region: &'a str,
    isolation: String,
    features: String,
    entitlements: String,
}

impl<'a> Fields<'a> {
    fn of(t: &'a Tenant) -> Result<Self, StoreError> {
        Ok(Fields {
            name: &t.name,
            tier: t.tier.as_str(),
            status: t.status.as_str(),
            region: &t.region,
            isolation: to_json(&t.isolation)?,
            features: to_json(&t.features)?,
            entitlements: to_json(&t.entitlements)?,
        })
    }
}

fn tenant_from_row(row: &Row) -> Result<Tenant, StoreError> {
    let id = row.parsed("id", TenantId::new)?;
    let status_text = row.text("status")?;
    let status = TenantStatus::parse(&status_text).ok_or_else(|| {
        StoreError::corrupt(format!("tenant {id}: unknown status {status_text:?}"))
    })?;
    Ok(Tenant {
        uid: row.parsed("uid", TenantUid::new)?,
        name: row.text("name")?,
        tier: row.parsed("tier", TierName::new)?,
        status,
        isolation: row.json("tenant", "isolation")?,
        region: row.text("region")?,
        features: row.json("tenant", "features")?,
        entitlements: row.json("tenant", "entitlements")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        id,
    })
}

/// PostgreSQL: locks the tenant's row, then enters its scope; `false` if there is no such
/// tenant. A write of the tenant's data takes a key-share lock on that row (its foreign-key
/// check), so a write under way finishes before the deletion starts (and its rows are deleted
/// with the rest) and a later one waits and then finds the tenant gone. Without it, a write
/// committed between the deletes and the registry row's makes the deletion fail on its
/// foreign key, or deadlock.
async fn pg_begin_deletion(conn: &mut PgConnection, id: &TenantId) -> Result<bool, StoreError> {
    let locked: Option<i32> = sqlx::query_scalar("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE")
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    if locked.is_some() {
        postgres::enter_scope(conn, id).await?;
    }
    Ok(locked.is_some())
}

impl Store {
    /// Registers a tenant; `StoreError::Conflict` if the id is taken.
    pub async fn create_tenant(&self, t: &Tenant) -> Result<(), StoreError> {
        let f = Fields::of(t)?;
        sql!(self.operator_data() => execute(
            sqlite: concat!("INSERT INTO tenants (", tenant_cols!(names), ")
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
            postgres: concat!("INSERT INTO tenants (", tenant_cols!(names), ")
                               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9::jsonb,
                                       $10, $11)"),
            t.id.as_str(),
            t.uid.as_str(),
            f.name, f.tier, f.status, f.region, f.isolation, f.features, f.entitlements,
            t.created_at,
            t.updated_at,
        ))
        .map_err(|e| e.conflict_as(|| format!("tenant {} already exists", t.id)))?;
        Ok(())
    }

    /// All tenants, ordered by id (byte order on both backends).
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sql!(self.operator_data() => fetch_all(
            sqlite: concat!("SELECT ", tenant_cols!(sqlite), " FROM tenants ORDER BY id"),
            postgres: concat!(
                "SELECT ", tenant_cols!(postgres), r#" FROM tenants ORDER BY id COLLATE "C""#
            ),
        ))?;
        rows.iter().map(tenant_from_row).collect()
    }

    pub async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let row = sql!(self.operator_data() => fetch_optional(
            sqlite: concat!("SELECT ", tenant_cols!(sqlite), " FROM tenants WHERE id = ?1"),
            postgres: concat!("SELECT ", tenant_cols!(postgres), " FROM tenants WHERE id = $1"),
            id.as_str(),
        ))?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    /// Replaces every field of the tenant except `id` and `created_at`; `false` if absent.
    pub async fn update_tenant(&self, t: &Tenant) -> Result<bool, StoreError> {
        let f = Fields::of(t)?;
        let updated = sql!(self.operator_data() => execute(
            sqlite: "UPDATE tenants SET name = ?2, tier = ?3, status = ?4, region = ?5,
                            isolation = ?6, features = ?7, entitlements = ?8, updated_at = ?9
                     WHERE id = ?1",
            postgres: "UPDATE tenants SET name = $2, tier = $3, status = $4, region = $5,
                              isolation = $6::jsonb, features = $7::jsonb,
                              entitlements = $8::jsonb, updated_at = $9
                       WHERE id = $1",
            t.id.as_str(),
            f.name, f.tier, f.status, f.region, f.isolation, f.features, f.entitlements,
            t.updated_at,
        ))?;
        Ok(updated == 1)
    }

    /// Deletes the tenant, all its data rows (API keys, sessions, vault; the usage ledger only
    /// if `purge_usage`, otherwise it is kept for billing), its settings, policy sets and tool
    /// targets, and the runtimes dedicated to it, in one transaction; what it removed, or
    /// `None` if there was no such tenant. It only deletes rows: stopping the tenant's
    /// sandboxes and removing their session storage is the runtime layer's job.
    ///
    /// On PostgreSQL the tenant data goes through row-level security (in the tenant's scope, as
    /// `tenantry_app`), then the operator data and the registry row as the connecting user.
    pub async fn delete_tenant(
        &self,
        id: &TenantId,
        purge_usage: bool,
    ) -> Result<Option<TenantDeletion>, StoreError> {
        let mut db = self.operator_data_tx().await?;
        if let Db::Postgres(held) = &mut db
            && !pg_begin_deletion(held.conn(), id).await?
        {
            db.rollback().await?;
            return Ok(None);
        }
        let mut removed = TenantDeletion::default();
        for (table, delete) in TENANT_TABLES {
            if *table == "usage_records" && !purge_usage {
                continue;
            }
            removed
                .rows
                .insert(table, sql!(db.execute(*delete, id.as_str()))?);
        }
        if let Db::Postgres(held) = &mut db {
            postgres::leave_scope(held.conn()).await?;
        }
        for (table, delete) in TENANT_OWNED {
            removed
                .rows
                .insert(table, sql!(db.execute(*delete, id.as_str()))?);
        }
        let deleted = sql!(db.execute(
            sqlite: "DELETE FROM tenants WHERE id = ?1",
            postgres: "DELETE FROM tenants WHERE id = $1",
            id.as_str(),
        ))?;
        if deleted == 0 {
            db.rollback().await?;
            return Ok(None);
        }
        db.commit().await?;
        Ok(Some(removed))
    }
}
