//! Versioned Cedar policy sets (operator data): one history of versions per scope (the
//! platform, a tier or a tenant), of which at most one version is active.
//!
//! Policy sets are the operator's, like tiers and runtimes, so they have no row-level security
//! and are read and written as the connecting user. A tenant's policy sets are deleted with the
//! tenant (`Store::delete_tenant`); the foreign keys refuse a set of a tier or tenant that does
//! not exist. The versioning is `versions`', shared with guardrail profiles.
//!
//! The store keeps a set's text as the operator wrote it; parsing and validating it is
//! `tenantry-policy`'s job, before `put_policy_set`. This module must never query a tenant
//! table.

use serde::{Deserialize, Serialize};
use tenantry_core::{TenantId, TierName};

use crate::db::{Db, sql};
use crate::row::Row;
use crate::versions::{Owner, Versions, pg_lock, versioned_cols, versions};
use crate::{Store, StoreError};

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

/// The columns of `policy_sets` besides `active`, the same in both dialects.
macro_rules! policy_cols {
    () => {
        "scope_kind, scope_key, version, text, mode, created_at"
    };
}

const POLICY_SETS: Versions = versions! {
    table: "policy_sets",
    columns: policy_cols!(),
    insert: "scope_kind, scope_key, tier, tenant_id, version, text, mode, created_at",
    values: ["?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8", "$1, $2, $3, $4, $5, $6, $7, $8"],
    postgres_order: r#"scope_kind COLLATE "C", scope_key COLLATE "C""#,
};

/// Columns: those of `policy_cols!`, and `active` as the integer `active_int` (0 or 1).
fn record_from_row(row: &Row) -> Result<PolicySetRecord, StoreError> {
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

/// Checks what the tables cannot: the text's size.
fn check_text(text: &str) -> Result<(), StoreError> {
    if text.len() > MAX_POLICY_TEXT_BYTES {
        return Err(StoreError::Database(format!(
            "refusing to store a policy set of {} bytes (at most {MAX_POLICY_TEXT_BYTES})",
            text.len()
        )));
    }
    Ok(())
}

impl Store {
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
        let put = async {
            let mut db = self.operator_data_tx().await?;
            if let Db::Postgres(held) = &mut db {
                let owner = match scope {
                    PolicyScope::Platform => None,
                    PolicyScope::Tier(t) => Some(Owner::Tier(t.as_str())),
                    PolicyScope::Tenant(t) => Some(Owner::Tenant(t.as_str())),
                };
                pg_lock(held.conn(), owner, POLICY_SETS.table, &lock_name(scope)).await?;
            }
            let next = POLICY_SETS
                .start_next(&mut db, scope.kind(), scope.key())
                .await?;
            let row = sql!(db.fetch_one(
                POLICY_SETS.insert,
                scope.kind(),
                scope.key(),
                scope.tier(),
                scope.tenant(),
                next,
                text,
                mode.as_str(),
                at,
            ))?;
            db.commit().await?;
            record_from_row(&row)
        };
        put.await.map_err(|e| match scope {
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
        let rows = POLICY_SETS.list(self, scope.kind(), scope.key()).await?;
        rows.iter().map(record_from_row).collect()
    }

    /// The active version of `scope`'s policy set; `None` if it has none.
    pub async fn get_active_policy_set(
        &self,
        scope: &PolicyScope,
    ) -> Result<Option<PolicySetRecord>, StoreError> {
        let row = sql!(self.operator_data() => fetch_optional(
            sqlite: concat!(
                "SELECT ", versioned_cols!(sqlite, policy_cols!()), " FROM policy_sets
                 WHERE scope_kind = ?1 AND scope_key = ?2 AND active = 1"
            ),
            postgres: concat!(
                "SELECT ", versioned_cols!(postgres, policy_cols!()), " FROM policy_sets
                 WHERE scope_kind = $1 AND scope_key = $2 AND active"
            ),
            scope.kind(),
            scope.key(),
        ))?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// The active version of every scope, ordered by scope kind, then key (byte order): what
    /// the policy engine loads.
    pub async fn list_active_policy_sets(&self) -> Result<Vec<PolicySetRecord>, StoreError> {
        let rows = POLICY_SETS.list_active(self).await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Makes `version` the active version of `scope` (a rollback, or a roll forward again) and
    /// returns it; `None`, changing nothing, if `scope` has no such version.
    pub async fn activate_policy_set(
        &self,
        scope: &PolicyScope,
        version: i64,
    ) -> Result<Option<PolicySetRecord>, StoreError> {
        let row = self.switch_policy_set(scope, Some(version)).await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// Leaves `scope` without an active policy set (its versions stay, for a later
    /// `activate_policy_set`).
    pub async fn deactivate_policy_set(&self, scope: &PolicyScope) -> Result<(), StoreError> {
        self.switch_policy_set(scope, None).await.map(drop)
    }

    async fn switch_policy_set(
        &self,
        scope: &PolicyScope,
        version: Option<i64>,
    ) -> Result<Option<Row>, StoreError> {
        let mut db = self.operator_data_tx().await?;
        if let Db::Postgres(held) = &mut db {
            pg_lock(held.conn(), None, POLICY_SETS.table, &lock_name(scope)).await?;
        }
        POLICY_SETS
            .activate(db, scope.kind(), scope.key(), version)
            .await
    }
}

/// The name of `scope`'s advisory lock within the table's.
fn lock_name(scope: &PolicyScope) -> String {
    format!("{}/{}", scope.kind(), scope.key())
}
