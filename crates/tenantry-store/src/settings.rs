//! The control plane's settings of tiers and tenants (operator data): one opaque JSON body per
//! owner and kind, in `tier_settings` and `tenant_settings`.
//!
//! Settings are the operator's, with no row-level security, read and written as the connecting
//! user; the two tables have the same shape, so one set of statements serves both. A tenant's
//! settings are deleted with it (`Store::delete_tenant`). The store keeps each body as given:
//! its shape belongs to the layer that uses it. This module must never query a tenant table.

use serde::{Deserialize, Serialize};
use tenantry_core::{TenantId, TierName};

use crate::db::{Sql, sql};
use crate::row::{Row, to_json};
use crate::{Store, StoreError, missing_tenant};

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

/// The statements of one settings table, whose owner column is `owner`.
struct Table {
    /// What its rows are, for errors.
    what: &'static str,
    owner: &'static str,
    put: Sql,
    delete: Sql,
}

/// The `Table` of the settings table `$table`, whose owner column is `$owner`.
#[rustfmt::skip]
macro_rules! table {
    ($what:literal, $table:literal, $owner:literal) => {
        Table {
            what: $what,
            owner: $owner,
            put: Sql {
                sqlite: concat!(
                    "INSERT INTO ", $table, " (", $owner, ", kind, body, updated_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (", $owner, ", kind)
                     DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at"
                ),
                postgres: concat!(
                    "INSERT INTO ", $table, " (", $owner, ", kind, body, updated_at)
                     VALUES ($1, $2, $3::jsonb, $4)
                     ON CONFLICT (", $owner, ", kind)
                     DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at"
                ),
            },
            delete: Sql {
                sqlite: concat!("DELETE FROM ", $table, " WHERE ", $owner, " = ?1 AND kind = ?2"),
                postgres: concat!("DELETE FROM ", $table, " WHERE ", $owner, " = $1 AND kind = $2"),
            },
        }
    };
}

const TIERS: Table = table!("tier setting", "tier_settings", "tier");
const TENANTS: Table = table!("tenant setting", "tenant_settings", "tenant_id");

/// Columns: the table's owner column, `kind`, `body` (JSON text), `updated_at`.
fn setting_from_row<K, E: std::fmt::Display>(
    table: &Table,
    owner: impl FnOnce(String) -> Result<K, E>,
    row: &Row,
) -> Result<SettingRecord<K>, StoreError> {
    let kind = row.text("kind")?;
    Ok(SettingRecord {
        owner: row.parsed(table.owner, owner)?,
        kind: SettingKind::parse(&kind)
            .ok_or_else(|| StoreError::corrupt(format!("unknown setting kind {kind:?}")))?,
        body: row.json(table.what, "body")?,
        updated_at: row.int("updated_at")?,
    })
}

impl Store {
    /// The tiers' settings of one kind, ordered by tier (byte order on both backends).
    pub async fn list_tier_settings(
        &self,
        kind: SettingKind,
    ) -> Result<Vec<SettingRecord<TierName>>, StoreError> {
        let rows = sql!(self.operator_data() => fetch_all(
            sqlite: "SELECT tier, kind, body, updated_at FROM tier_settings
                     WHERE kind = ?1 ORDER BY tier",
            postgres: r#"SELECT tier, kind, body::text AS body, updated_at FROM tier_settings
                         WHERE kind = $1 ORDER BY tier COLLATE "C""#,
            kind.as_str(),
        ))?;
        rows.iter()
            .map(|row| setting_from_row(&TIERS, TierName::new, row))
            .collect()
    }

    /// Creates or replaces the tier's setting of `s.kind`. A setting of a tier that does not
    /// exist (or was deleted meanwhile) is `StoreError::Missing`.
    pub async fn put_tier_setting(&self, s: &SettingRecord<TierName>) -> Result<(), StoreError> {
        self.put_setting(&TIERS, s.owner.as_str(), s)
            .await
            .map_err(|e| e.missing_as(|| format!("tier {} not found", s.owner)))
    }

    /// Deletes the tier's setting of `kind`; `false` if it had none.
    pub async fn delete_tier_setting(
        &self,
        tier: &TierName,
        kind: SettingKind,
    ) -> Result<bool, StoreError> {
        self.delete_setting(&TIERS, tier.as_str(), kind).await
    }

    pub async fn get_tenant_setting(
        &self,
        tenant: &TenantId,
        kind: SettingKind,
    ) -> Result<Option<SettingRecord<TenantId>>, StoreError> {
        let row = sql!(self.operator_data() => fetch_optional(
            sqlite: "SELECT tenant_id, kind, body, updated_at FROM tenant_settings
                     WHERE tenant_id = ?1 AND kind = ?2",
            postgres: "SELECT tenant_id, kind, body::text AS body, updated_at FROM tenant_settings
                       WHERE tenant_id = $1 AND kind = $2",
            tenant.as_str(),
            kind.as_str(),
        ))?;
        row.as_ref()
            .map(|row| setting_from_row(&TENANTS, TenantId::new, row))
            .transpose()
    }

    /// Creates or replaces the tenant's setting of `s.kind`. A setting of a tenant that does
    /// not exist (or was deleted meanwhile) is `StoreError::Missing`. The tenant's settings
    /// are deleted with it.
    pub async fn put_tenant_setting(&self, s: &SettingRecord<TenantId>) -> Result<(), StoreError> {
        self.put_setting(&TENANTS, s.owner.as_str(), s)
            .await
            .map_err(|e| missing_tenant(e, &s.owner))
    }

    /// Deletes the tenant's setting of `kind`; `false` if it had none.
    pub async fn delete_tenant_setting(
        &self,
        tenant: &TenantId,
        kind: SettingKind,
    ) -> Result<bool, StoreError> {
        self.delete_setting(&TENANTS, tenant.as_str(), kind).await
    }

    async fn put_setting<K>(
        &self,
        table: &Table,
        owner: &str,
        s: &SettingRecord<K>,
    ) -> Result<(), StoreError> {
        sql!(self.operator_data() => execute(
            table.put,
            owner,
            s.kind.as_str(),
            to_json(&s.body)?,
            s.updated_at,
        ))?;
        Ok(())
    }

    async fn delete_setting(
        &self,
        table: &Table,
        owner: &str,
        kind: SettingKind,
    ) -> Result<bool, StoreError> {
        let deleted = sql!(self.operator_data() => execute(table.delete, owner, kind.as_str()))?;
        Ok(deleted == 1)
    }
}
