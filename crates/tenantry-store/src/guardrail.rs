//! Versioned guardrail profiles (operator data): one history of versions per scope, a named
//! profile (which tiers refer to by name) or a tenant's override, of which at most one version
//! is active. The same pattern as policy sets (`policy`), both dialects side by side.
//!
//! The store keeps a profile's JSON as given; parsing and validating it is
//! `tenantry-guardrails`' job, before `put_guardrail_profile`. A tenant's override is deleted
//! with the tenant; a named profile belongs to no tenant. This module must never query a tenant
//! table.

use serde::{Deserialize, Serialize};
use tenantry_core::TenantId;

use crate::StoreError;
use crate::record::Columns;

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

fn record_from_row(row: &impl Columns) -> Result<GuardrailRecord, StoreError> {
    Ok(GuardrailRecord {
        scope: GuardrailScope::from_parts(&row.text("scope_kind")?, &row.text("scope_key")?)?,
        version: row.int("version")?,
        body: row.text("body")?,
        created_at: row.int("created_at")?,
        active: row.int("active_int")? != 0,
    })
}

// Each dialect's statements, `$cols` its column list, `$t`/`$f` its true and false.
macro_rules! dialect {
    ($name:ident, $pool:ty, $begin:path, $lock:path, $cols:expr, $t:expr, $f:expr, $p:expr) => {
        pub(crate) mod $name {
            use super::*;

            const COLS: &str = $cols;

            fn sql(s: String) -> sqlx::AssertSqlSafe<String> {
                sqlx::AssertSqlSafe(s)
            }

            fn ph(i: usize) -> String {
                format!("{}{}", $p, i)
            }

            pub(crate) async fn put(
                pool: &$pool,
                scope: &GuardrailScope,
                body: &str,
                at: i64,
            ) -> Result<GuardrailRecord, StoreError> {
                let mut tx = $begin(pool).await?;
                $lock(&mut tx, scope).await?;
                let next: i64 = sqlx::query_scalar(sql(format!(
                    "SELECT COALESCE(max(version), 0) + 1 FROM guardrail_profiles
                     WHERE scope_kind = {} AND scope_key = {}",
                    ph(1),
                    ph(2)
                )))
                .bind(scope.kind())
                .bind(scope.key())
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(sql(format!(
                    "UPDATE guardrail_profiles SET active = {} WHERE scope_kind = {} AND scope_key = {}",
                    $f,
                    ph(1),
                    ph(2)
                )))
                .bind(scope.kind())
                .bind(scope.key())
                .execute(&mut *tx)
                .await?;
                let row = sqlx::query(sql(format!(
                    "INSERT INTO guardrail_profiles
                        (scope_kind, scope_key, tenant_id, version, body, created_at, active)
                     VALUES ({}, {}, {}, {}, {}, {}, {}) RETURNING {COLS}",
                    ph(1),
                    ph(2),
                    ph(3),
                    ph(4),
                    ph(5),
                    ph(6),
                    $t
                )))
                .bind(scope.kind())
                .bind(scope.key())
                .bind(scope.tenant())
                .bind(next)
                .bind(body)
                .bind(at)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                record_from_row(&row)
            }

            pub(crate) async fn list(
                pool: &$pool,
                scope: &GuardrailScope,
            ) -> Result<Vec<GuardrailRecord>, StoreError> {
                let rows = sqlx::query(sql(format!(
                    "SELECT {COLS} FROM guardrail_profiles
                     WHERE scope_kind = {} AND scope_key = {} ORDER BY version DESC",
                    ph(1),
                    ph(2)
                )))
                .bind(scope.kind())
                .bind(scope.key())
                .fetch_all(pool)
                .await?;
                rows.iter().map(record_from_row).collect()
            }

            pub(crate) async fn list_active(
                pool: &$pool,
            ) -> Result<Vec<GuardrailRecord>, StoreError> {
                let rows = sqlx::query(sql(format!(
                    "SELECT {COLS} FROM guardrail_profiles WHERE active = {}
                     ORDER BY scope_kind, scope_key",
                    $t
                )))
                .fetch_all(pool)
                .await?;
                rows.iter().map(record_from_row).collect()
            }

            pub(crate) async fn activate(
                pool: &$pool,
                scope: &GuardrailScope,
                version: i64,
            ) -> Result<Option<GuardrailRecord>, StoreError> {
                let mut tx = $begin(pool).await?;
                $lock(&mut tx, scope).await?;
                let exists: Option<i64> = sqlx::query_scalar(sql(format!(
                    "SELECT version FROM guardrail_profiles
                     WHERE scope_kind = {} AND scope_key = {} AND version = {}",
                    ph(1),
                    ph(2),
                    ph(3)
                )))
                .bind(scope.kind())
                .bind(scope.key())
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
                if exists.is_none() {
                    tx.rollback().await?;
                    return Ok(None);
                }
                sqlx::query(sql(format!(
                    "UPDATE guardrail_profiles SET active = {} WHERE scope_kind = {} AND scope_key = {}",
                    $f,
                    ph(1),
                    ph(2)
                )))
                .bind(scope.kind())
                .bind(scope.key())
                .execute(&mut *tx)
                .await?;
                let row = sqlx::query(sql(format!(
                    "UPDATE guardrail_profiles SET active = {}
                     WHERE scope_kind = {} AND scope_key = {} AND version = {} RETURNING {COLS}",
                    $t,
                    ph(1),
                    ph(2),
                    ph(3)
                )))
                .bind(scope.kind())
                .bind(scope.key())
                .bind(version)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                record_from_row(&row).map(Some)
            }
        }
    };
}

// ---- SQLite ------------------------------------------------------------------------------------

async fn sqlite_begin(
    pool: &sqlx::SqlitePool,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// `BEGIN IMMEDIATE` already serialises writers on SQLite.
async fn sqlite_lock(
    _tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    _scope: &GuardrailScope,
) -> Result<(), StoreError> {
    Ok(())
}

dialect!(
    sqlite,
    sqlx::SqlitePool,
    sqlite_begin,
    sqlite_lock,
    "scope_kind, scope_key, version, body, created_at, active AS active_int",
    "1",
    "0",
    "?"
);

// ---- PostgreSQL --------------------------------------------------------------------------------

async fn pg_begin(
    pool: &sqlx::PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    pool.begin().await
}

/// Serialises writers of one scope (replicas included), so versions are dense and the single
/// active row is never contended; a tenant's row is locked first, as the foreign key would, so
/// a concurrent deletion of the tenant cannot deadlock with the write.
async fn pg_lock(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    scope: &GuardrailScope,
) -> Result<(), StoreError> {
    if let GuardrailScope::Tenant(t) = scope {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM tenants WHERE id = $1 FOR KEY SHARE")
                .bind(t.as_str())
                .fetch_optional(&mut **tx)
                .await?;
        if found.is_none() {
            return Err(StoreError::Missing(format!("tenant {t} not found")));
        }
    }
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("guardrail_profiles/{scope}"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

dialect!(
    postgres,
    sqlx::PgPool,
    pg_begin,
    pg_lock,
    "scope_kind, scope_key, version, body, created_at, active::int::int8 AS active_int",
    "true",
    "false",
    "$"
);

// ---- the public API ----------------------------------------------------------------------------

impl crate::Store {
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
        let put = match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::put(s.pool(), scope, body, at).await,
            crate::Backend::Postgres(p) => postgres::put(p.pool(), scope, body, at).await,
        };
        put.map_err(|e| match scope {
            GuardrailScope::Profile(_) => e,
            GuardrailScope::Tenant(t) => e.missing_as(|| format!("tenant {t} not found")),
        })
    }

    /// Every version of `scope`'s profile, newest first.
    pub async fn list_guardrail_profiles(
        &self,
        scope: &GuardrailScope,
    ) -> Result<Vec<GuardrailRecord>, StoreError> {
        match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::list(s.pool(), scope).await,
            crate::Backend::Postgres(p) => postgres::list(p.pool(), scope).await,
        }
    }

    /// The active version of every scope: what the guardrails load.
    pub async fn list_active_guardrail_profiles(&self) -> Result<Vec<GuardrailRecord>, StoreError> {
        match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::list_active(s.pool()).await,
            crate::Backend::Postgres(p) => postgres::list_active(p.pool()).await,
        }
    }

    /// Makes `version` the active version of `scope` (a rollback or roll forward); `None`,
    /// changing nothing, if there is no such version.
    pub async fn activate_guardrail_profile(
        &self,
        scope: &GuardrailScope,
        version: i64,
    ) -> Result<Option<GuardrailRecord>, StoreError> {
        match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::activate(s.pool(), scope, version).await,
            crate::Backend::Postgres(p) => postgres::activate(p.pool(), scope, version).await,
        }
    }
}
