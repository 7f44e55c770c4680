//! Tiers (operator data): one row per tier, the whole `Tier` kept as JSON.
//!
//! Tiers are the operator's, with no row-level security, read and written as the connecting
//! user; both dialects of each statement stand side by side. This module must never query a
//! tenant table.

use tenantry_core::{Tier, TierName, unix_now};

use crate::db::sql;
use crate::row::{Row, to_json};
use crate::{Store, StoreError};

/// Columns: `name`, `body` (the whole tier as JSON).
fn tier_from_row(row: &Row) -> Result<Tier, StoreError> {
    let name = row.parsed("name", TierName::new)?;
    let tier: Tier = row.json("tier", "body")?;
    if tier.name != name {
        return Err(StoreError::corrupt(format!(
            "tier row {name} holds a body named {}",
            tier.name
        )));
    }
    Ok(tier)
}

impl Store {
    /// All tiers, ordered by name (byte order on both backends).
    pub async fn list_tiers(&self) -> Result<Vec<Tier>, StoreError> {
        let rows = sql!(self.operator_data() => fetch_all(
            sqlite: "SELECT name, body FROM tiers ORDER BY name",
            postgres: r#"SELECT name, body::text AS body FROM tiers ORDER BY name COLLATE "C""#,
        ))?;
        rows.iter().map(tier_from_row).collect()
    }

    pub async fn get_tier(&self, name: &TierName) -> Result<Option<Tier>, StoreError> {
        let row = sql!(self.operator_data() => fetch_optional(
            sqlite: "SELECT name, body FROM tiers WHERE name = ?1",
            postgres: "SELECT name, body::text AS body FROM tiers WHERE name = $1",
            name.as_str(),
        ))?;
        row.as_ref().map(tier_from_row).transpose()
    }

    /// Inserts or replaces the tier.
    pub async fn put_tier(&self, tier: &Tier) -> Result<(), StoreError> {
        sql!(self.operator_data() => execute(
            sqlite: "INSERT INTO tiers (name, body, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET body = excluded.body,
                                                      updated_at = excluded.updated_at",
            postgres: "INSERT INTO tiers (name, body, updated_at) VALUES ($1, $2::jsonb, $3)
                       ON CONFLICT (name) DO UPDATE SET body = excluded.body,
                                                        updated_at = excluded.updated_at",
            tier.name.as_str(),
            to_json(tier)?,
            unix_now(),
        ))?;
        Ok(())
    }

    /// Inserts the tier only if no tier of that name exists; `true` if it was inserted. Used to
    /// seed tiers from config without overwriting the operator's later edits.
    pub async fn seed_tier(&self, tier: &Tier) -> Result<bool, StoreError> {
        let inserted = sql!(self.operator_data() => execute(
            sqlite: "INSERT INTO tiers (name, body, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO NOTHING",
            postgres: "INSERT INTO tiers (name, body, updated_at) VALUES ($1, $2::jsonb, $3)
                       ON CONFLICT (name) DO NOTHING",
            tier.name.as_str(),
            to_json(tier)?,
            unix_now(),
        ))?;
        Ok(inserted == 1)
    }
}
