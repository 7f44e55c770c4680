//! Access key pairs for AWS Signature V4 (tenant data): each pair's public id, its owner and
//! roles, and its secret access key sealed by the tenant's vault data key.
//!
//! SigV4 is an HMAC keyed by the secret, so unlike an API key the secret itself must be
//! recoverable to verify a signature; this module stores and returns only the sealed bytes
//! (the vault seals and opens them). Every statement filters by one tenant and, on
//! PostgreSQL, runs in that tenant's scoped transaction. The credential check looks only
//! within the tenant the presented access key id names. This module must never return a
//! key of another tenant than the one asked for.

use serde::Serialize;
use tenantry_core::{TenantId, TenantScope, UserId};

use crate::db::sql;
use crate::row::{Row, json_col, to_json};
use crate::{Store, StoreError, missing_tenant};

/// An access key pair as stored. The secret is sealed; `sealed_secret` is never serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessKeyRecord {
    /// The access key id, unique within its tenant (it names the tenant too).
    pub id: String,
    pub tenant_id: TenantId,
    pub name: String,
    /// The user the key acts as.
    pub user_id: UserId,
    pub roles: Vec<String>,
    /// The secret access key sealed by the tenant's vault data key; never serialized.
    #[serde(skip)]
    pub sealed_secret: Vec<u8>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub expires_at: Option<i64>,
}

impl AccessKeyRecord {
    /// Whether the key may authenticate at `now` (unix seconds): not revoked and not expired.
    pub fn is_usable_at(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|exp| now < exp)
    }
}

macro_rules! access_key_cols {
    ($dialect:ident) => {
        concat!(
            "tenant_id, id, name, user_id, ",
            json_col!($dialect, "roles"),
            ", sealed_secret, created_at, revoked_at, expires_at"
        )
    };
}

fn access_key_from_row(row: &Row) -> Result<AccessKeyRecord, StoreError> {
    Ok(AccessKeyRecord {
        id: row.text("id")?,
        tenant_id: row.parsed("tenant_id", TenantId::new)?,
        name: row.text("name")?,
        user_id: row.parsed("user_id", UserId::new)?,
        roles: row.json("access key", "roles")?,
        sealed_secret: row.bytes("sealed_secret")?,
        created_at: row.int("created_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        expires_at: row.opt_int("expires_at")?,
    })
}

impl Store {
    /// Stores a new access key. Its `tenant_id` must be the scope's tenant;
    /// `StoreError::Conflict` if the tenant already has a key with that id.
    pub async fn insert_access_key(
        &self,
        scope: &TenantScope,
        key: &AccessKeyRecord,
    ) -> Result<(), StoreError> {
        let tenant = scope.tenant();
        if &key.tenant_id != tenant {
            return Err(StoreError::Database(format!(
                "refusing to store an access key of tenant {} in the scope of tenant {tenant}",
                key.tenant_id
            )));
        }
        sql!(self.tenant_data(tenant) => execute(
            sqlite: concat!("INSERT INTO access_keys (", access_key_cols!(names), ")
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            postgres: concat!("INSERT INTO access_keys (", access_key_cols!(names), ")
                               VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9)"),
            tenant.as_str(),
            &key.id,
            &key.name,
            key.user_id.as_str(),
            to_json(&key.roles)?,
            &key.sealed_secret,
            key.created_at,
            key.revoked_at,
            key.expires_at,
        ))
        .map_err(|e| e.conflict_as(|| format!("access key {} already exists", key.id)))
        .map_err(|e| missing_tenant(e, tenant))?;
        Ok(())
    }

    /// The scope's access keys (revoked ones included), ordered by `created_at`, then id.
    pub async fn list_access_keys(
        &self,
        scope: &TenantScope,
    ) -> Result<Vec<AccessKeyRecord>, StoreError> {
        let tenant = scope.tenant();
        let rows = sql!(self.tenant_data(tenant) => fetch_all(
            sqlite: concat!("SELECT ", access_key_cols!(sqlite), " FROM access_keys
                             WHERE tenant_id = ?1 ORDER BY created_at, id"),
            postgres: concat!("SELECT ", access_key_cols!(postgres), r#" FROM access_keys
                               WHERE tenant_id = $1 ORDER BY created_at, id COLLATE "C""#),
            tenant.as_str(),
        ))?;
        rows.iter().map(access_key_from_row).collect()
    }

    /// The scope's access key `key_id`; `None` if the scope's tenant has no such key.
    pub async fn get_access_key(
        &self,
        scope: &TenantScope,
        key_id: &str,
    ) -> Result<Option<AccessKeyRecord>, StoreError> {
        self.find_access_key(scope.tenant(), key_id).await
    }

    /// Marks the key revoked at `at` and returns it; `None` if the scope's tenant has no such
    /// key. Revoking again keeps the first `revoked_at`.
    pub async fn revoke_access_key(
        &self,
        scope: &TenantScope,
        key_id: &str,
        at: i64,
    ) -> Result<Option<AccessKeyRecord>, StoreError> {
        let tenant = scope.tenant();
        let row = sql!(self.tenant_data(tenant) => fetch_optional(
            sqlite: concat!("UPDATE access_keys SET revoked_at = COALESCE(revoked_at, ?3)
                             WHERE tenant_id = ?1 AND id = ?2
                             RETURNING ", access_key_cols!(sqlite)),
            postgres: concat!("UPDATE access_keys SET revoked_at = COALESCE(revoked_at, $3)
                               WHERE tenant_id = $1 AND id = $2
                               RETURNING ", access_key_cols!(postgres)),
            tenant.as_str(),
            key_id,
            at,
        ))?;
        row.as_ref().map(access_key_from_row).transpose()
    }

    /// Deletes the key for good; `false` if the scope's tenant has no such key.
    pub async fn delete_access_key(
        &self,
        scope: &TenantScope,
        key_id: &str,
    ) -> Result<bool, StoreError> {
        let tenant = scope.tenant();
        let deleted = sql!(self.tenant_data(tenant) => execute(
            sqlite: "DELETE FROM access_keys WHERE tenant_id = ?1 AND id = ?2",
            postgres: "DELETE FROM access_keys WHERE tenant_id = $1 AND id = $2",
            tenant.as_str(),
            key_id,
        ))?;
        Ok(deleted > 0)
    }

    /// The credential check's lookup: `tenant`'s key `key_id` (the tenant named by the access
    /// key id itself), only if it is usable now. The caller opens the sealed secret and
    /// verifies the signature with it.
    pub async fn usable_access_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
    ) -> Result<Option<AccessKeyRecord>, StoreError> {
        let found = self.find_access_key(tenant, key_id).await?;
        let now = tenantry_core::unix_now();
        Ok(found.filter(|k| k.is_usable_at(now)))
    }

    async fn find_access_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
    ) -> Result<Option<AccessKeyRecord>, StoreError> {
        let row = sql!(self.tenant_data(tenant) => fetch_optional(
            sqlite: concat!("SELECT ", access_key_cols!(sqlite), " FROM access_keys
                             WHERE tenant_id = ?1 AND id = ?2"),
            postgres: concat!("SELECT ", access_key_cols!(postgres), " FROM access_keys
                               WHERE tenant_id = $1 AND id = $2"),
            tenant.as_str(),
            key_id,
        ))?;
        row.as_ref().map(access_key_from_row).transpose()
    }
}
