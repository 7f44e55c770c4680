//! Versioned guardrail profiles (operator data): one history of versions per scope, a named
//! profile (which tiers refer to by name) or a tenant's override, of which at most one version
//! is active. The versioning is `versions`', shared with policy sets (`policy`).
//!
//! The store keeps a profile's JSON as given; parsing and validating it is
//! `tenantry-guardrails`' job, before `put_guardrail_profile`. A tenant's override is deleted
//! with the tenant; a named profile belongs to no tenant. This module must never query a tenant
//! table.

use serde::{Deserialize, Serialize};
use tenantry_core::TenantId;

use crate::db::{Db, sql};
use crate::row::Row;
use crate::versions::{Owner, Versions, pg_lock, versions};
use crate::{Store, StoreError};

/// Whose profile it is: a named profile (tiers refer to it) or one tenant's override.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum GuardrailScope {
    Profile(String),
    Tenant(TenantId),
}

/// Whether `name` can name a profile: 1 to 64 lower-case letters, digits, `-` or `_`.
pub fn is_valid_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl GuardrailScope {
    fn kind(&self) -> &'static str {
        match self {
            GuardrailScope::Profile(_) => "profile",
            GuardrailScope::Tenant(_) => "tenant",
        }
    }

    fn key(&self) -> &str {
        match self {
            GuardrailScope::Profile(n) => n,
            GuardrailScope::Tenant(t) => t.as_str(),
        }
    }

    fn tenant(&self) -> Option<&str> {
        match self {
            GuardrailScope::Tenant(t) => Some(t.as_str()),
            GuardrailScope::Profile(_) => None,
        }
    }

    /// Parses `profile:NAME` or `tenant:ID`.
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, key) = s.split_once(':')?;
        Self::from_parts(kind, key).ok()
    }

    fn from_parts(kind: &str, key: &str) -> Result<Self, StoreError> {
        match kind {
            "profile" if is_valid_profile_name(key) => Ok(GuardrailScope::Profile(key.to_owned())),
            "tenant" => TenantId::new(key)
                .map(GuardrailScope::Tenant)
                .map_err(StoreError::corrupt),
            _ => Err(StoreError::corrupt(format!(
                "guardrail scope {kind:?} {key:?}"
            ))),
        }
    }
}

impl std::fmt::Display for GuardrailScope {
    /// `profile:strict`, `tenant:acme`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind(), self.key())
    }
}

/// One stored version of a scope's guardrail profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardrailRecord {
    pub scope: GuardrailScope,
    /// 1, 2, 3... per scope, never reused.
    pub version: i64,
    /// The profile as JSON text.
    pub body: String,
    pub created_at: i64,
    pub active: bool,
}

/// The largest profile the store accepts, in bytes.
pub const MAX_GUARDRAIL_BYTES: usize = 256 * 1024;

/// The columns of `guardrail_profiles` besides `active`, the same in both dialects.
macro_rules! profile_cols {
    () => {
        "scope_kind, scope_key, version, body, created_at"
    };
}

const PROFILES: Versions = versions! {
    table: "guardrail_profiles",
    columns: profile_cols!(),
    insert: "scope_kind, scope_key, tenant_id, version, body, created_at",
    values: ["?1, ?2, ?3, ?4, ?5, ?6", "$1, $2, $3, $4, $5, $6"],
    postgres_order: "scope_kind, scope_key",
};

fn record_from_row(row: &Row) -> Result<GuardrailRecord, StoreError> {
    Ok(GuardrailRecord {
        scope: GuardrailScope::from_parts(&row.text("scope_kind")?, &row.text("scope_key")?)?,
        version: row.int("version")?,
        body: row.text("body")?,
        created_at: row.int("created_at")?,
        active: row.int("active_int")? != 0,
    })
}

impl Store {
    /// Stores `body` as the next version of `scope`'s profile and makes it the active one. An
    /// override of a tenant that does not exist is `StoreError::Missing`.
    pub async fn put_guardrail_profile(
        &self,
        scope: &GuardrailScope,
        body: &str,
        at: i64,
    ) -> Result<GuardrailRecord, StoreError> {
        if body.len() > MAX_GUARDRAIL_BYTES {
            return Err(StoreError::Database(format!(
                "refusing to store a guardrail profile of {} bytes (at most {MAX_GUARDRAIL_BYTES})",
                body.len()
            )));
        }
        let put = async {
            let mut db = self.guardrail_tx(scope).await?;
            let next = PROFILES
                .start_next(&mut db, scope.kind(), scope.key())
                .await?;
            let row = sql!(db.fetch_one(
                PROFILES.insert,
                scope.kind(),
                scope.key(),
                scope.tenant(),
                next,
                body,
                at,
            ))?;
            db.commit().await?;
            record_from_row(&row)
        };
        put.await.map_err(|e| match scope {
            GuardrailScope::Profile(_) => e,
            GuardrailScope::Tenant(t) => e.missing_as(|| format!("tenant {t} not found")),
        })
    }

    /// Every version of `scope`'s profile, newest first.
    pub async fn list_guardrail_profiles(
        &self,
        scope: &GuardrailScope,
    ) -> Result<Vec<GuardrailRecord>, StoreError> {
        let rows = PROFILES.list(self, scope.kind(), scope.key()).await?;
        rows.iter().map(record_from_row).collect()
    }

    /// The active version of every scope: what the guardrails load.
    pub async fn list_active_guardrail_profiles(&self) -> Result<Vec<GuardrailRecord>, StoreError> {
        let rows = PROFILES.list_active(self).await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Makes `version` the active version of `scope` (a rollback or roll forward); `None`,
    /// changing nothing, if there is no such version.
    pub async fn activate_guardrail_profile(
        &self,
        scope: &GuardrailScope,
        version: i64,
    ) -> Result<Option<GuardrailRecord>, StoreError> {
        let db = self.guardrail_tx(scope).await?;
        let row = PROFILES
            .activate(db, scope.kind(), scope.key(), Some(version))
            .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// A transaction that writes `scope`'s profiles: on PostgreSQL it holds the scope's lock,
    /// and a tenant's row first, so a concurrent deletion of the tenant cannot deadlock with
    /// the write (`StoreError::Missing` if the tenant does not exist).
    async fn guardrail_tx(&self, scope: &GuardrailScope) -> Result<Db, StoreError> {
        let mut db = self.operator_data_tx().await?;
        if let Db::Postgres(held) = &mut db {
            let owner = scope.tenant().map(Owner::Tenant);
            pg_lock(held.conn(), owner, PROFILES.table, &scope.to_string()).await?;
        }
        Ok(db)
    }
}
