//! Tenantry's persistence: the operator's registry (tiers, tenants, runtimes, the settings
//! the control plane keeps per tier and tenant, versioned Cedar policy sets, tool targets) and
//! tenant data (API keys, sessions, the usage ledger, the vault's encrypted credentials; memory and
//! the rest later), on SQLite (embedded) or PostgreSQL (scale-out).
//!
//! Tenancy law 2 lives here. Every method that reads or writes tenant data takes a
//! `TenantScope`, and every such query filters by the scope's tenant. On PostgreSQL each of
//! those queries additionally runs in a transaction that has switched to the `tenantry_app`
//! role and set `app.tenant_id`, so row-level security refuses other tenants' rows even if a
//! query forgot its filter. SQLite has no row-level security; there the filter in the SQL is
//! the only guard, which is why every tenant query of both dialects is written with it.
//!
//! The operator's cross-tenant reads (the session storage sweep and the usage report) are the
//! only unscoped access to tenant data; they demand an `OperatorGrant`, and on PostgreSQL run
//! read-only as `tenantry_operator`, the one role whose policy shows every tenant's rows.
//! Deleting tenant data always goes through a scope, the operator's included
//! (`TenantScope::for_operator`).
//!
//! This crate must never take a tenant id from anything but a `TenantScope` (or, for
//! `authenticate_api_key`, the tenant named by the credential being checked), must never
//! return another tenant's row to a scoped call, and must never expose a driver type in its
//! API.
//!
//! The code is laid out by aggregate: each table (or family of tables) has one module holding
//! its record types and both dialects of each of its statements side by side (`tiers`,
//! `tenants`, `settings`, `runtimes`, `api_keys`, `sessions`, `usage`, `spend`, `policy`,
//! `guardrail`, `tool_target`, `vault`, `audit`, `memory`, `memory_events`,
//! `memory_records`, `access_keys`, `knowledge`). `db` is how a statement runs on either
//! backend; `sqlite` and `postgres` only connect and open the transactions of their dialect,
//! and `migrate` applies the migrations of either.

#![forbid(unsafe_code)]

mod access_keys;
mod api_keys;
mod audit;
mod db;
mod error;
mod guardrail;
mod knowledge;
mod memory;
mod memory_events;
mod memory_records;
mod migrate;
mod policy;
mod postgres;
mod row;
mod runtimes;
mod sessions;
mod settings;
mod spend;
mod sqlite;
mod tenants;
#[cfg(feature = "test-util")]
pub mod testing;
mod tiers;
mod tool_target;
mod usage;
mod vault;
mod versions;

use tenantry_core::TenantId;

pub use access_keys::AccessKeyRecord;
pub use api_keys::ApiKeyRecord;
pub use audit::{AuditEvent, AuditQuery};
pub use error::StoreError;
pub use guardrail::{GuardrailRecord, GuardrailScope, MAX_GUARDRAIL_BYTES, is_valid_profile_name};
pub use knowledge::{ChunkRecord, DocumentRecord, KnowledgeBaseRecord, NewChunk};
pub use memory::MemoryWriter;
pub use memory_events::MAX_LISTED_EVENTS;
pub use memory_records::{MAX_LISTED_RECORDS, RecordQuery};
pub use policy::{MAX_POLICY_TEXT_BYTES, PolicyMode, PolicyScope, PolicySetRecord};
pub use runtimes::RuntimeRecord;
pub use sessions::{LIST_SESSIONS_LIMIT, SessionRecord, SessionStatus};
pub use settings::{SettingKind, SettingRecord};
pub use spend::ModelSpend;
pub use tenants::TenantDeletion;
pub use tool_target::ToolTargetRecord;
pub use usage::{UsageGroup, UsageKind, UsageQuery, UsageRecord, UsageRow};
pub use vault::{CredentialRecord, NewCredential, VaultKeyRecord, is_valid_credential_name};

use db::sql;
use postgres::PgStore;
use sqlite::SqliteStore;

/// A foreign-key refusal of a write of `tenant`'s rows: the tenant does not exist (any more).
fn missing_tenant(e: StoreError, tenant: &TenantId) -> StoreError {
    e.missing_as(|| format!("tenant {tenant} not found"))
}

/// A handle on the store. Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens the store at `url` and applies the pending migrations of its dialect.
    ///
    /// * `sqlite://PATH` (or `sqlite:PATH`): a database file, created if missing, in WAL mode
    ///   with foreign keys on and a 5 s busy timeout.
    /// * `sqlite::memory:`: a private in-memory database (one connection), for tests.
    /// * `postgres://...` or `postgresql://...`: a PostgreSQL database.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite(SqliteStore::connect(url).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(PgStore::connect(url).await?)
        } else {
            let scheme = url.split(':').next().unwrap_or_default();
            return Err(StoreError::InvalidUrl(format!(
                "unsupported scheme {scheme:?}: use sqlite://PATH, sqlite::memory: or postgres://USER@HOST/DB"
            )));
        };
        let store = Store { backend };
        store.migrate().await?;
        if let Backend::Postgres(p) = &store.backend {
            p.verify_isolation().await?;
        }
        Ok(store)
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Runs SQL as the store's own user, outside every scope (feature `test-util`): for tests
    /// that must break the database under a running server (a trigger that refuses writes).
    #[cfg(feature = "test-util")]
    pub async fn execute_unscoped_for_tests(&self, sql: &'static str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => sqlx::raw_sql(sql).execute(s.pool()).await.map(drop)?,
            Backend::Postgres(p) => sqlx::raw_sql(sql).execute(p.pool()).await.map(drop)?,
        }
        Ok(())
    }

    /// Checks that the database answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sql!(self.operator_data() => execute(sqlite: "SELECT 1", postgres: "SELECT 1"))?;
        Ok(())
    }
}
