//! Tenant API keys (tenant data): each key's public id, its owner and roles, and the SHA-256 of
//! the secret, never the secret itself.
//!
//! Every statement filters by the scope's tenant, and on PostgreSQL runs in the tenant's
//! scoped transaction, so row-level security refuses other tenants' keys too. The one read not
//! given a scope is the credential check, which looks only within the tenant the presented
//! key names. This module must never return a key of another tenant than the one asked for,
//! nor compare a secret hash in time that depends on where it differs.

use serde::Serialize;
use tenantry_core::{TenantId, TenantScope, UserId};

use crate::db::sql;
use crate::row::{Row, json_col, to_json};
use crate::{Store, StoreError, missing_tenant};

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

/// The columns of `api_keys`: `names` for an insert, or a select list of `sqlite` or
/// `postgres`.
macro_rules! key_cols {
    ($dialect:ident) => {
        concat!(
            "tenant_id, id, name, user_id, ",
            json_col!($dialect, "roles"),
            ", prefix, secret_hash, created_at, revoked_at, expires_at"
        )
    };
}

fn api_key_from_row(row: &Row) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id: row.text("id")?,
        tenant_id: row.parsed("tenant_id", TenantId::new)?,
        name: row.text("name")?,
        user_id: row.parsed("user_id", UserId::new)?,
        roles: row.json("api key", "roles")?,
        prefix: row.text("prefix")?,
        secret_hash: row.bytes("secret_hash")?,
        created_at: row.int("created_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        expires_at: row.opt_int("expires_at")?,
    })
}

/// Compares a presented secret hash with the stored one in constant time (for equal lengths)
/// and checks that the key is usable now.
fn check_api_key(found: Option<ApiKeyRecord>, presented: &[u8], now: i64) -> Option<ApiKeyRecord> {
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

impl Store {
    /// Stores a new key. Its `tenant_id` must be the scope's tenant (anything else is refused
    /// as a bug); `StoreError::Conflict` if the tenant already has a key with that id.
    pub async fn insert_api_key(
        &self,
        scope: &TenantScope,
        key: &ApiKeyRecord,
    ) -> Result<(), StoreError> {
        let tenant = scope.tenant();
        if &key.tenant_id != tenant {
            return Err(StoreError::Database(format!(
                "refusing to store an API key of tenant {} in the scope of tenant {tenant}",
                key.tenant_id
            )));
        }
        sql!(self.tenant_data(tenant) => execute(
            sqlite: concat!("INSERT INTO api_keys (", key_cols!(names), ")
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            postgres: concat!("INSERT INTO api_keys (", key_cols!(names), ")
                               VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10)"),
            tenant.as_str(),
            &key.id,
            &key.name,
            key.user_id.as_str(),
            to_json(&key.roles)?,
            &key.prefix,
            &key.secret_hash,
            key.created_at,
            key.revoked_at,
            key.expires_at,
        ))
        .map_err(|e| e.conflict_as(|| format!("API key {} already exists", key.id)))
        .map_err(|e| missing_tenant(e, tenant))?;
        Ok(())
    }

    /// The scope's keys (revoked ones included), ordered by `created_at`, then id.
    pub async fn list_api_keys(
        &self,
        scope: &TenantScope,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let tenant = scope.tenant();
        let rows = sql!(self.tenant_data(tenant) => fetch_all(
            sqlite: concat!("SELECT ", key_cols!(sqlite), " FROM api_keys
                             WHERE tenant_id = ?1 ORDER BY created_at, id"),
            postgres: concat!("SELECT ", key_cols!(postgres), r#" FROM api_keys
                               WHERE tenant_id = $1 ORDER BY created_at, id COLLATE "C""#),
            tenant.as_str(),
        ))?;
        rows.iter().map(api_key_from_row).collect()
    }

    /// The scope's key `key_id`; `None` if the scope's tenant has no such key.
    pub async fn get_api_key(
        &self,
        scope: &TenantScope,
        key_id: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.find_api_key(scope.tenant(), key_id).await
    }

    /// Marks the key revoked at `at` (unix seconds) and returns it; `None` if the scope's
    /// tenant has no such key. Revoking again keeps the first `revoked_at`.
    pub async fn revoke_api_key(
        &self,
        scope: &TenantScope,
        key_id: &str,
        at: i64,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let tenant = scope.tenant();
        let row = sql!(self.tenant_data(tenant) => fetch_optional(
            sqlite: concat!("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?3)
                             WHERE tenant_id = ?1 AND id = ?2
                             RETURNING ", key_cols!(sqlite)),
            postgres: concat!("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3)
                               WHERE tenant_id = $1 AND id = $2
                               RETURNING ", key_cols!(postgres)),
            tenant.as_str(),
            key_id,
            at,
        ))?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    /// The credential check of an API key `tk_{tenant}_{key_id}...`: looks up `key_id` within
    /// `tenant` only (the tenant named by the key itself), compares `secret_hash` (SHA-256 of
    /// the presented key) in constant time, and returns the record only if it matches, is not
    /// revoked and has not expired.
    pub async fn authenticate_api_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        secret_hash: &[u8],
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let found = self.find_api_key(tenant, key_id).await?;
        Ok(check_api_key(found, secret_hash, tenantry_core::unix_now()))
    }

    /// `tenant`'s key `key_id`.
    async fn find_api_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sql!(self.tenant_data(tenant) => fetch_optional(
            sqlite: concat!("SELECT ", key_cols!(sqlite), " FROM api_keys
                             WHERE tenant_id = ?1 AND id = ?2"),
            postgres: concat!("SELECT ", key_cols!(postgres), " FROM api_keys
                               WHERE tenant_id = $1 AND id = $2"),
            tenant.as_str(),
            key_id,
        ))?;
        row.as_ref().map(api_key_from_row).transpose()
    }
}
