//! Stored record types that are not part of `tenantry-core`, and the one place where rows of
//! either dialect are decoded into records.
//!
//! Decoding is strict: an id that no longer validates, JSON that no longer parses or a status
//! this build does not know is reported as `StoreError::Corrupt`, never patched up or skipped.
//! This module must never run a query.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;
use tenantry_core::{Tenant, TenantId, TenantIsolation, TenantStatus, Tier, TierName, UserId};

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

/// Typed column access shared by the SQLite and PostgreSQL rows, so each record is decoded by
/// one function for both dialects. JSON columns are always read as text.
pub(crate) trait Columns {
    fn text(&self, col: &str) -> Result<String, StoreError>;
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

/// Columns: `id`, `name`, `tier`, `status`, `isolation`, `region`, `features`,
/// `entitlements`, `created_at`, `updated_at`.
pub(crate) fn tenant_from_row(row: &impl Columns) -> Result<Tenant, StoreError> {
    let id = TenantId::new(row.text("id")?).map_err(StoreError::corrupt)?;
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
    })
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
