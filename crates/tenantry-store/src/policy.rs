//! Versioned Cedar policy sets (operator data): one history of versions per scope (the
//! platform, a tier or a tenant), of which at most one version is active.
//!
//! Policy sets are the operator's, like tiers and runtimes, so they have no row-level security
//! and are read and written as the connecting user. A tenant's policy sets are deleted with the
//! tenant (`Store::delete_tenant`); the foreign keys refuse a set of a tier or tenant that does
//! not exist. Both dialects live in this module (the statements are the same but for
//! placeholders and types), so the policy tables are found in one place.
//!
//! The store keeps a set's text as the operator wrote it; parsing and validating it is
//! `tenantry-policy`'s job, before `put_policy_set`. This module must never query a tenant
//! table.

use serde::{Deserialize, Serialize};
use tenantry_core::{TenantId, TierName};

use crate::StoreError;
use crate::record::Columns;

/// Whose policy set it is. The platform set applies to every caller; a tier's to the tenants
/// on that tier; a tenant's to that tenant only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum PolicyScope {
    Platform,
    Tier(TierName),
    Tenant(TenantId),
}

impl PolicyScope {
    /// `"platform"`, `"tier"` or `"tenant"`: the stored `scope_kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyScope::Platform => "platform",
            PolicyScope::Tier(_) => "tier",
            PolicyScope::Tenant(_) => "tenant",
        }
    }

    /// The tier or tenant it names; empty for the platform: the stored `scope_key`.
    pub fn key(&self) -> &str {
        match self {
            PolicyScope::Platform => "",
            PolicyScope::Tier(t) => t.as_str(),
            PolicyScope::Tenant(t) => t.as_str(),
        }
    }

    fn tier(&self) -> Option<&str> {
        match self {
            PolicyScope::Tier(t) => Some(t.as_str()),
            PolicyScope::Platform | PolicyScope::Tenant(_) => None,
        }
    }

    fn tenant(&self) -> Option<&str> {
        match self {
            PolicyScope::Tenant(t) => Some(t.as_str()),
            PolicyScope::Platform | PolicyScope::Tier(_) => None,
        }
    }

    fn parse(kind: &str, key: &str) -> Result<Self, StoreError> {
        match kind {
            "platform" if key.is_empty() => Ok(PolicyScope::Platform),
            "tier" => TierName::new(key)
                .map(PolicyScope::Tier)
                .map_err(StoreError::corrupt),
            "tenant" => TenantId::new(key)
                .map(PolicyScope::Tenant)
                .map_err(StoreError::corrupt),
            _ => Err(StoreError::corrupt(format!(
                "policy scope {kind:?} {key:?}"
            ))),
        }
    }
}

impl std::fmt::Display for PolicyScope {
    /// `platform`, `tier:basic`, `tenant:acme`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyScope::Platform => f.write_str("platform"),
            PolicyScope::Tier(t) => write!(f, "tier:{t}"),
            PolicyScope::Tenant(t) => write!(f, "tenant:{t}"),
        }
    }
}

/// Whether a policy set's decisions are applied (`enforce`) or only computed and logged
/// (`log_only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    #[default]
    Enforce,
    LogOnly,
}

impl PolicyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyMode::Enforce => "enforce",
            PolicyMode::LogOnly => "log_only",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enforce" => Some(Self::Enforce),
            "log_only" => Some(Self::LogOnly),
            _ => None,
        }
    }
}

/// One stored version of a scope's policy set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySetRecord {
    pub scope: PolicyScope,
    /// 1, 2, 3... per scope, never reused.
    pub version: i64,
    /// The Cedar text as uploaded.
    pub text: String,
    pub mode: PolicyMode,
    pub created_at: i64,
    /// Whether this version is the one in force for its scope (at most one is).
    pub active: bool,
}

/// The largest policy text the store accepts, in bytes.
pub const MAX_POLICY_TEXT_BYTES: usize = 256 * 1024;

/// Columns: `scope_kind`, `scope_key`, `version`, `text`, `mode`, `created_at`, and `active`
/// as the integer `active_int` (0 or 1) on both dialects.
fn record_from_row(row: &impl Columns) -> Result<PolicySetRecord, StoreError> {
    let scope = PolicyScope::parse(&row.text("scope_kind")?, &row.text("scope_key")?)?;
    let mode_text = row.text("mode")?;
    let mode = PolicyMode::parse(&mode_text)
        .ok_or_else(|| StoreError::corrupt(format!("policy mode {mode_text:?}")))?;
    Ok(PolicySetRecord {
        scope,
        version: row.int("version")?,
        text: row.text("text")?,
        mode,
        created_at: row.int("created_at")?,
        active: row.int("active_int")? != 0,
    })
}

macro_rules! sqlite_cols {
    () => {
        "scope_kind, scope_key, version, text, mode, created_at, active AS active_int"
    };
}

macro_rules! pg_cols {
    () => {
        "scope_kind, scope_key, version, text, mode, created_at, active::int::int8 AS active_int"
    };
}

// ---- SQLite ------------------------------------------------------------------------------------

pub(crate) mod sqlite {
    use sqlx::SqlitePool;

    use super::*;

    pub(crate) async fn put(
        pool: &SqlitePool,
        scope: &PolicyScope,
        text: &str,
        mode: PolicyMode,
        at: i64,
    ) -> Result<PolicySetRecord, StoreError> {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let next: i64 = sqlx::query_scalar(
            "SELECT COALESCE(max(version), 0) + 1 FROM policy_sets
             WHERE scope_kind = ?1 AND scope_key = ?2",
        )
        .bind(scope.kind())
        .bind(scope.key())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE policy_sets SET active = 0 WHERE scope_kind = ?1 AND scope_key = ?2 AND active = 1",
        )
        .bind(scope.kind())
        .bind(scope.key())
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(concat!(
            "INSERT INTO policy_sets (scope_kind, scope_key, tier, tenant_id, version, text, mode,
                                      created_at, active)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1)
             RETURNING ",
            sqlite_cols!()
        ))
        .bind(scope.kind())
        .bind(scope.key())
        .bind(scope.tier())
        .bind(scope.tenant())
        .bind(next)
        .bind(text)
        .bind(mode.as_str())
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        record_from_row(&row)
    }

    pub(crate) async fn list(
        pool: &SqlitePool,
        scope: &PolicyScope,
    ) -> Result<Vec<PolicySetRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            sqlite_cols!(),
            " FROM policy_sets WHERE scope_kind = ?1 AND scope_key = ?2 ORDER BY version DESC"
        ))
        .bind(scope.kind())
        .bind(scope.key())
        .fetch_all(pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    pub(crate) async fn get_active(
        pool: &SqlitePool,
        scope: &PolicyScope,
    ) -> Result<Option<PolicySetRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            sqlite_cols!(),
            " FROM policy_sets WHERE scope_kind = ?1 AND scope_key = ?2 AND active = 1"
        ))
        .bind(scope.kind())
        .bind(scope.key())
        .fetch_optional(pool)
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    pub(crate) async fn list_active(pool: &SqlitePool) -> Result<Vec<PolicySetRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            sqlite_cols!(),
            " FROM policy_sets WHERE active = 1 ORDER BY scope_kind, scope_key"
        ))
        .fetch_all(pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    pub(crate) async fn activate(
        pool: &SqlitePool,
        scope: &PolicyScope,
        version: Option<i64>,
    ) -> Result<Option<PolicySetRecord>, StoreError> {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(version) = version {
            let exists: Option<i64> = sqlx::query_scalar(
                "SELECT version FROM policy_sets
                 WHERE scope_kind = ?1 AND scope_key = ?2 AND version = ?3",
            )
            .bind(scope.kind())
            .bind(scope.key())
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_none() {
                tx.rollback().await?;
                return Ok(None);
            }
        }
        sqlx::query(
            "UPDATE policy_sets SET active = 0 WHERE scope_kind = ?1 AND scope_key = ?2 AND active = 1",
        )
        .bind(scope.kind())
        .bind(scope.key())
        .execute(&mut *tx)
        .await?;
        let row = match version {
            Some(version) => Some(
                sqlx::query(concat!(
                    "UPDATE policy_sets SET active = 1
                     WHERE scope_kind = ?1 AND scope_key = ?2 AND version = ?3
                     RETURNING ",
                    sqlite_cols!()
                ))
                .bind(scope.kind())
                .bind(scope.key())
                .bind(version)
                .fetch_one(&mut *tx)
                .await?,
            ),
            None => None,
        };
        tx.commit().await?;
        row.as_ref().map(record_from_row).transpose()
    }
}

// ---- PostgreSQL --------------------------------------------------------------------------------

pub(crate) mod postgres {
    use sqlx::PgPool;

    use super::*;

    pub(crate) async fn put(
        pool: &PgPool,
        scope: &PolicyScope,
        text: &str,
        mode: PolicyMode,
        at: i64,
    ) -> Result<PolicySetRecord, StoreError> {
        let mut tx = pool.begin().await?;
        // The scope's tier or tenant is locked first, as the foreign key would lock it but
        // before this transaction holds any policy row: a deletion of that tenant locks its
        // row and then deletes its policy rows, so taking the two in the other order (update
        // the active row, then the insert's foreign-key check) could deadlock with it.
        let owner = match scope {
            PolicyScope::Platform => None,
            PolicyScope::Tier(t) => Some((
                "SELECT 1 FROM tiers WHERE name = $1 FOR KEY SHARE",
                t.as_str(),
                "tier",
            )),
            PolicyScope::Tenant(t) => Some((
                "SELECT 1 FROM tenants WHERE id = $1 FOR KEY SHARE",
                t.as_str(),
                "tenant",
            )),
        };
        if let Some((sql, key, kind)) = owner {
            let found: Option<i32> = sqlx::query_scalar(sql)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Err(StoreError::Missing(format!("{kind} {key} not found")));
            }
        }
        // Serialises writers of one scope (replicas included) so versions are dense and the
        // single active row is never contended: a lock per scope, ended by the transaction.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("policy_sets/{}/{}", scope.kind(), scope.key()))
            .execute(&mut *tx)
            .await?;
        let next: i64 = sqlx::query_scalar(
            "SELECT COALESCE(max(version), 0) + 1 FROM policy_sets
             WHERE scope_kind = $1 AND scope_key = $2",
        )
        .bind(scope.kind())
        .bind(scope.key())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE policy_sets SET active = false
             WHERE scope_kind = $1 AND scope_key = $2 AND active",
        )
        .bind(scope.kind())
        .bind(scope.key())
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(concat!(
            "INSERT INTO policy_sets (scope_kind, scope_key, tier, tenant_id, version, text, mode,
                                      created_at, active)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true)
             RETURNING ",
            pg_cols!()
        ))
        .bind(scope.kind())
        .bind(scope.key())
        .bind(scope.tier())
        .bind(scope.tenant())
        .bind(next)
        .bind(text)
        .bind(mode.as_str())
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        record_from_row(&row)
    }

    pub(crate) async fn list(
        pool: &PgPool,
        scope: &PolicyScope,
    ) -> Result<Vec<PolicySetRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            pg_cols!(),
            " FROM policy_sets WHERE scope_kind = $1 AND scope_key = $2 ORDER BY version DESC"
        ))
        .bind(scope.kind())
        .bind(scope.key())
        .fetch_all(pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    pub(crate) async fn get_active(
        pool: &PgPool,
        scope: &PolicyScope,
    ) -> Result<Option<PolicySetRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            pg_cols!(),
            " FROM policy_sets WHERE scope_kind = $1 AND scope_key = $2 AND active"
        ))
        .bind(scope.kind())
        .bind(scope.key())
        .fetch_optional(pool)
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    pub(crate) async fn list_active(pool: &PgPool) -> Result<Vec<PolicySetRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            pg_cols!(),
            r#" FROM policy_sets WHERE active
               ORDER BY scope_kind COLLATE "C", scope_key COLLATE "C""#
        ))
        .fetch_all(pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    pub(crate) async fn activate(
        pool: &PgPool,
        scope: &PolicyScope,
        version: Option<i64>,
    ) -> Result<Option<PolicySetRecord>, StoreError> {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("policy_sets/{}/{}", scope.kind(), scope.key()))
            .execute(&mut *tx)
            .await?;
        if let Some(version) = version {
            let exists: Option<i64> = sqlx::query_scalar(
                "SELECT version FROM policy_sets
                 WHERE scope_kind = $1 AND scope_key = $2 AND version = $3",
            )
            .bind(scope.kind())
            .bind(scope.key())
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_none() {
                tx.rollback().await?;
                return Ok(None);
            }
        }
        sqlx::query(
            "UPDATE policy_sets SET active = false
             WHERE scope_kind = $1 AND scope_key = $2 AND active",
        )
        .bind(scope.kind())
        .bind(scope.key())
        .execute(&mut *tx)
        .await?;
        let row = match version {
            Some(version) => Some(
                sqlx::query(concat!(
                    "UPDATE policy_sets SET active = true
                     WHERE scope_kind = $1 AND scope_key = $2 AND version = $3
                     RETURNING ",
                    pg_cols!()
                ))
                .bind(scope.kind())
                .bind(scope.key())
                .bind(version)
                .fetch_one(&mut *tx)
                .await?,
            ),
            None => None,
        };
        tx.commit().await?;
        row.as_ref().map(record_from_row).transpose()
    }
}

/// Checks what the tables cannot: the text's size.
pub(crate) fn check_text(text: &str) -> Result<(), StoreError> {
    if text.len() > MAX_POLICY_TEXT_BYTES {
        return Err(StoreError::Database(format!(
            "refusing to store a policy set of {} bytes (at most {MAX_POLICY_TEXT_BYTES})",
            text.len()
        )));
    }
    Ok(())
}

// ---- the public API ----------------------------------------------------------------------------

impl crate::Store {
    /// Stores `text` as the next version of `scope`'s policy set and makes it the active one
    /// (the previous active version stays, inactive, for rollback). A set of a tier or tenant
    /// that does not exist (or was deleted meanwhile) is `StoreError::Missing`.
    pub async fn put_policy_set(
        &self,
        scope: &PolicyScope,
        text: &str,
        mode: PolicyMode,
        at: i64,
    ) -> Result<PolicySetRecord, StoreError> {
        check_text(text)?;
        let put = match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::put(s.pool(), scope, text, mode, at).await,
            crate::Backend::Postgres(p) => postgres::put(p.pool(), scope, text, mode, at).await,
        };
        put.map_err(|e| match scope {
            PolicyScope::Platform => e,
            PolicyScope::Tier(t) => e.missing_as(|| format!("tier {t} not found")),
            PolicyScope::Tenant(t) => e.missing_as(|| format!("tenant {t} not found")),
        })
    }

    /// Every version of `scope`'s policy set, newest first.
    pub async fn list_policy_sets(
        &self,
        scope: &PolicyScope,
    ) -> Result<Vec<PolicySetRecord>, StoreError> {
        match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::list(s.pool(), scope).await,
            crate::Backend::Postgres(p) => postgres::list(p.pool(), scope).await,
        }
    }

    /// The active version of `scope`'s policy set; `None` if it has none.
    pub async fn get_active_policy_set(
        &self,
        scope: &PolicyScope,
    ) -> Result<Option<PolicySetRecord>, StoreError> {
        match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::get_active(s.pool(), scope).await,
            crate::Backend::Postgres(p) => postgres::get_active(p.pool(), scope).await,
        }
    }

    /// The active version of every scope, ordered by scope kind, then key (byte order): what
    /// the policy engine loads.
    pub async fn list_active_policy_sets(&self) -> Result<Vec<PolicySetRecord>, StoreError> {
        match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::list_active(s.pool()).await,
            crate::Backend::Postgres(p) => postgres::list_active(p.pool()).await,
        }
    }

    /// Makes `version` the active version of `scope` (a rollback, or a roll forward again) and
    /// returns it; `None`, changing nothing, if `scope` has no such version.
    pub async fn activate_policy_set(
        &self,
        scope: &PolicyScope,
        version: i64,
    ) -> Result<Option<PolicySetRecord>, StoreError> {
        match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::activate(s.pool(), scope, Some(version)).await,
            crate::Backend::Postgres(p) => postgres::activate(p.pool(), scope, Some(version)).await,
        }
    }

    /// Leaves `scope` without an active policy set (its versions stay, for a later
    /// `activate_policy_set`).
    pub async fn deactivate_policy_set(&self, scope: &PolicyScope) -> Result<(), StoreError> {
        match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::activate(s.pool(), scope, None).await,
            crate::Backend::Postgres(p) => postgres::activate(p.pool(), scope, None).await,
        }
        .map(|_| ())
    }
}
