//! The vault's rows (tenant data): each tenant's wrapped data key and its credential versions,
//! stored only as ciphertext.
//!
//! Encryption is `tenantry-vault`'s job: this module stores and returns opaque bytes, and
//! never sees a plaintext secret or a key that is not wrapped. Like every tenant table, each
//! query filters by the scope's tenant, and on PostgreSQL runs in the scoped transaction
//! (`tenantry_app`, `app.tenant_id`) so row-level security refuses other tenants' rows too.

use serde::Serialize;
use tenantry_core::{TenantId, TenantScope, UserId};

use crate::db::{Db, sql};
use crate::row::{Row, json_col, to_json};
use crate::{Store, StoreError, missing_tenant};

/// A tenant's data key, wrapped by the platform's master key.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct VaultKeyRecord {
    pub tenant_id: TenantId,
    /// Identifies the master key that wrapped it (a fingerprint, not the key).
    pub master_key_id: String,
    #[serde(skip)]
    pub wrapped_key: Vec<u8>,
    pub created_at: i64,
}

impl std::fmt::Debug for VaultKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultKeyRecord")
            .field("tenant_id", &self.tenant_id)
            .field("master_key_id", &self.master_key_id)
            .field(
                "wrapped_key",
                &format_args!("<{} bytes>", self.wrapped_key.len()),
            )
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// One version of a stored credential.
#[derive(Clone, PartialEq, Serialize)]
pub struct CredentialRecord {
    pub tenant_id: TenantId,
    pub name: String,
    /// `None`: the tenant's own credential; `Some`: one user's.
    pub user_id: Option<UserId>,
    /// 1, 2, 3... per (tenant, name, user); the highest is current.
    pub version: i64,
    /// The kind of credential (the vault's vocabulary, e.g. `api_key`).
    pub kind: String,
    /// The fields that are not secret, as a JSON object.
    pub metadata: serde_json::Value,
    /// The secret fields, encrypted with the tenant's data key. Never serialized.
    #[serde(skip)]
    pub ciphertext: Vec<u8>,
    pub created_at: i64,
}

impl std::fmt::Debug for CredentialRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialRecord")
            .field("tenant_id", &self.tenant_id)
            .field("name", &self.name)
            .field("user_id", &self.user_id)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("metadata", &self.metadata)
            .field(
                "ciphertext",
                &format_args!("<{} bytes>", self.ciphertext.len()),
            )
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A credential version to store; the store assigns the version.
#[derive(Clone, PartialEq)]
pub struct NewCredential<'a> {
    pub name: &'a str,
    pub user_id: Option<&'a UserId>,
    pub kind: &'a str,
    pub metadata: &'a serde_json::Value,
    pub ciphertext: &'a [u8],
    pub created_at: i64,
}

impl std::fmt::Debug for NewCredential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCredential")
            .field("name", &self.name)
            .field("user_id", &self.user_id)
            .field("kind", &self.kind)
            .field(
                "ciphertext",
                &format_args!("<{} bytes>", self.ciphertext.len()),
            )
            .finish_non_exhaustive()
    }
}

/// The characters a credential name may have: 1 to 128, letters, digits and `-_.:/`.
pub fn is_valid_credential_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b))
}

fn check_new(c: &NewCredential<'_>) -> Result<(), StoreError> {
    if !is_valid_credential_name(c.name) {
        return Err(StoreError::Database(format!(
            "refusing to store a credential named {:?}: use 1 to 128 letters, digits and -_.:/",
            c.name.chars().take(80).collect::<String>()
        )));
    }
    if !c.metadata.is_object() {
        return Err(StoreError::Database(
            "refusing to store credential metadata that is not a JSON object".into(),
        ));
    }
    Ok(())
}

fn user_key(user: Option<&UserId>) -> &str {
    user.map_or("", UserId::as_str)
}

/// The columns of `vault_credentials`: `names` for an insert, or a select list of `sqlite` or
/// `postgres`.
macro_rules! cred_cols {
    ($dialect:ident) => {
        concat!(
            "tenant_id, name, user_id, version, kind, ",
            json_col!($dialect, "metadata"),
            ", ciphertext, created_at"
        )
    };
}

/// Columns: `tenant_id`, `master_key_id`, `wrapped_key`, `created_at`.
fn key_from_row(row: &Row) -> Result<VaultKeyRecord, StoreError> {
    Ok(VaultKeyRecord {
        tenant_id: row.parsed("tenant_id", TenantId::new)?,
        master_key_id: row.text("master_key_id")?,
        wrapped_key: row.bytes("wrapped_key")?,
        created_at: row.int("created_at")?,
    })
}

fn credential_from_row(row: &Row) -> Result<CredentialRecord, StoreError> {
    let user = row.text("user_id")?;
    Ok(CredentialRecord {
        tenant_id: row.parsed("tenant_id", TenantId::new)?,
        name: row.text("name")?,
        user_id: if user.is_empty() {
            None
        } else {
            Some(UserId::new(user).map_err(StoreError::corrupt)?)
        },
        version: row.int("version")?,
        kind: row.text("kind")?,
        metadata: row.json("credential", "metadata")?,
        ciphertext: row.bytes("ciphertext")?,
        created_at: row.int("created_at")?,
    })
}

impl Store {
    /// The scope's wrapped data key; `None` if the tenant has none yet.
    pub async fn get_vault_key(
        &self,
        scope: &TenantScope,
    ) -> Result<Option<VaultKeyRecord>, StoreError> {
        let tenant = scope.tenant();
        let row = sql!(self.tenant_data(tenant) => fetch_optional(
            sqlite: "SELECT tenant_id, master_key_id, wrapped_key, created_at FROM vault_data_keys
                     WHERE tenant_id = ?1",
            postgres: "SELECT tenant_id, master_key_id, wrapped_key, created_at FROM vault_data_keys
                       WHERE tenant_id = $1",
            tenant.as_str(),
        ))?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// Stores the scope's wrapped data key. Its `tenant_id` must be the scope's tenant;
    /// `StoreError::Conflict` if the tenant already has one (another replica made it first:
    /// read that one).
    pub async fn insert_vault_key(
        &self,
        scope: &TenantScope,
        key: &VaultKeyRecord,
    ) -> Result<(), StoreError> {
        let tenant = scope.tenant();
        if &key.tenant_id != tenant {
            return Err(StoreError::Database(format!(
                "refusing to store a data key of tenant {} in the scope of tenant {tenant}",
                key.tenant_id
            )));
        }
        sql!(self.tenant_data(tenant) => execute(
            sqlite: "INSERT INTO vault_data_keys (tenant_id, master_key_id, wrapped_key, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
            postgres: "INSERT INTO vault_data_keys (tenant_id, master_key_id, wrapped_key, created_at)
                       VALUES ($1, $2, $3, $4)",
            tenant.as_str(),
            &key.master_key_id,
            &key.wrapped_key,
            key.created_at,
        ))
        .map_err(|e| e.conflict_as(|| format!("tenant {tenant} already has a data key")))
        .map_err(|e| missing_tenant(e, tenant))?;
        Ok(())
    }

    /// Stores the next version of the scope's credential `(name, user)` and returns it.
    pub async fn insert_credential(
        &self,
        scope: &TenantScope,
        credential: &NewCredential<'_>,
    ) -> Result<CredentialRecord, StoreError> {
        check_new(credential)?;
        let tenant = scope.tenant();
        self.insert_credential_version(tenant, credential)
            .await
            .map_err(|e| missing_tenant(e, tenant))
    }

    async fn insert_credential_version(
        &self,
        tenant: &TenantId,
        c: &NewCredential<'_>,
    ) -> Result<CredentialRecord, StoreError> {
        let mut db = self.tenant_data_tx(tenant).await?;
        if let Db::Postgres(held) = &mut db {
            // Serialises writers of one credential (replicas included) so versions are dense.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!(
                    "vault_credentials/{tenant}/{}/{}",
                    c.name,
                    user_key(c.user_id)
                ))
                .execute(held.conn())
                .await?;
        }
        let row = sql!(db.fetch_one(
            sqlite: concat!("INSERT INTO vault_credentials (", cred_cols!(names), ")
                 SELECT ?1, ?2, ?3, COALESCE(max(version), 0) + 1, ?4, ?5, ?6, ?7
                 FROM vault_credentials WHERE tenant_id = ?1 AND name = ?2 AND user_id = ?3
                 RETURNING ", cred_cols!(sqlite)),
            postgres: concat!("INSERT INTO vault_credentials (", cred_cols!(names), ")
                 SELECT $1, $2, $3, COALESCE(max(version), 0) + 1, $4, $5::jsonb, $6, $7
                 FROM vault_credentials WHERE tenant_id = $1 AND name = $2 AND user_id = $3
                 RETURNING ", cred_cols!(postgres)),
            tenant.as_str(),
            c.name,
            user_key(c.user_id),
            c.kind,
            to_json(c.metadata)?,
            c.ciphertext,
            c.created_at,
        ))?;
        db.commit().await?;
        credential_from_row(&row)
    }

    /// The scope's credential `(name, user)` at `version`, or its current (highest) version
    /// when `version` is `None`; `None` if the scope's tenant has no such credential.
    pub async fn get_credential(
        &self,
        scope: &TenantScope,
        name: &str,
        user: Option<&UserId>,
        version: Option<i64>,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        let tenant = scope.tenant();
        let row = sql!(self.tenant_data(tenant) => fetch_optional(
            sqlite: concat!("SELECT ", cred_cols!(sqlite), " FROM vault_credentials
                 WHERE tenant_id = ?1 AND name = ?2 AND user_id = ?3
                   AND (?4 IS NULL OR version = ?4)
                 ORDER BY version DESC LIMIT 1"),
            postgres: concat!("SELECT ", cred_cols!(postgres), " FROM vault_credentials
                 WHERE tenant_id = $1 AND name = $2 AND user_id = $3
                   AND ($4::bigint IS NULL OR version = $4)
                 ORDER BY version DESC LIMIT 1"),
            tenant.as_str(),
            name,
            user_key(user),
            version,
        ))?;
        row.as_ref().map(credential_from_row).transpose()
    }

    /// Every version of every credential of the scope, ordered by name, user (the tenant's
    /// own first), then version, newest first.
    pub async fn list_credentials(
        &self,
        scope: &TenantScope,
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        let tenant = scope.tenant();
        let rows = sql!(self.tenant_data(tenant) => fetch_all(
            sqlite: concat!("SELECT ", cred_cols!(sqlite), " FROM vault_credentials
                 WHERE tenant_id = ?1
                 ORDER BY name, user_id, version DESC"),
            postgres: concat!("SELECT ", cred_cols!(postgres), r#" FROM vault_credentials
                 WHERE tenant_id = $1
                 ORDER BY name COLLATE "C", user_id COLLATE "C", version DESC"#),
            tenant.as_str(),
        ))?;
        rows.iter().map(credential_from_row).collect()
    }

    /// Deletes one version of the scope's credential `(name, user)`, or all of them when
    /// `version` is `None`; returns how many versions were deleted (0 if none existed).
    pub async fn delete_credential(
        &self,
        scope: &TenantScope,
        name: &str,
        user: Option<&UserId>,
        version: Option<i64>,
    ) -> Result<u64, StoreError> {
        let tenant = scope.tenant();
        let deleted = sql!(self.tenant_data(tenant) => execute(
            sqlite: "DELETE FROM vault_credentials
                     WHERE tenant_id = ?1 AND name = ?2 AND user_id = ?3
                       AND (?4 IS NULL OR version = ?4)",
            postgres: "DELETE FROM vault_credentials
                       WHERE tenant_id = $1 AND name = $2 AND user_id = $3
                         AND ($4::bigint IS NULL OR version = $4)",
            tenant.as_str(),
            name,
            user_key(user),
            version,
        ))?;
        Ok(deleted)
    }
}
