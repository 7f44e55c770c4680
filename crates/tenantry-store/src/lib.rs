//! Tenantry's persistence: the operator's registry (tiers, tenants) and tenant data (API keys
//! now; sessions, memory and the rest later), on SQLite (embedded) or PostgreSQL (scale-out).
//!
//! Tenancy law 2 lives here. Every method that reads or writes tenant data takes a
//! `TenantScope`, and every such query filters by the scope's tenant. On PostgreSQL each of
//! those queries additionally runs in a transaction that has switched to the `tenantry_app`
//! role and set `app.tenant_id`, so row-level security refuses other tenants' rows even if a
//! query forgot its filter. SQLite has no row-level security; there the filter in the SQL is
//! the only guard, which is why every tenant query of both dialects is written with it.
//!
//! This crate must never take a tenant id from anything but a `TenantScope` (or, for
//! `authenticate_api_key`, the tenant named by the credential being checked), must never
//! return another tenant's row, and must never expose a driver type in its API.

#![forbid(unsafe_code)]

mod error;
mod migrate;
mod postgres;
mod record;
mod sqlite;
#[cfg(feature = "test-util")]
pub mod testing;

use tenantry_core::{Tenant, TenantId, TenantScope, Tier, TierName};

pub use error::StoreError;
pub use record::ApiKeyRecord;

use postgres::PgStore;
use sqlite::SqliteStore;

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

/// Calls the same method on whichever backend this store uses.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Sqlite(s) => s.$method($($arg),*).await,
            Backend::Postgres(p) => p.$method($($arg),*).await,
        }
    };
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
        Ok(Store { backend })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Checks that the database answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self.ping())
    }

    // ---- operator data: tiers -------------------------------------------------------------

    /// All tiers, ordered by name (byte order on both backends).
    pub async fn list_tiers(&self) -> Result<Vec<Tier>, StoreError> {
        dispatch!(self.list_tiers())
    }

    pub async fn get_tier(&self, name: &TierName) -> Result<Option<Tier>, StoreError> {
        dispatch!(self.get_tier(name))
    }

    /// Inserts or replaces the tier.
    pub async fn put_tier(&self, tier: &Tier) -> Result<(), StoreError> {
        dispatch!(self.put_tier(tier))
    }

    /// Inserts the tier only if no tier of that name exists; `true` if it was inserted. Used to
    /// seed tiers from config without overwriting the operator's later edits.
    pub async fn seed_tier(&self, tier: &Tier) -> Result<bool, StoreError> {
        dispatch!(self.seed_tier(tier))
    }

    // ---- operator data: the tenant registry -----------------------------------------------

    /// Registers a tenant; `StoreError::Conflict` if the id is taken.
    pub async fn create_tenant(&self, t: &Tenant) -> Result<(), StoreError> {
        dispatch!(self.create_tenant(t))
    }

    /// All tenants, ordered by id (byte order on both backends).
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        dispatch!(self.list_tenants())
    }

    pub async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        dispatch!(self.get_tenant(id))
    }

    /// Replaces every field of the tenant except `id` and `created_at`; `false` if absent.
    pub async fn update_tenant(&self, t: &Tenant) -> Result<bool, StoreError> {
        dispatch!(self.update_tenant(t))
    }

    /// Deletes the tenant and all its data rows in one transaction; `false` if absent.
    pub async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError> {
        dispatch!(self.delete_tenant(id))
    }

    // ---- tenant data: API keys ------------------------------------------------------------

    /// Stores a new key. Its `tenant_id` must be the scope's tenant (anything else is refused
    /// as a bug); `StoreError::Conflict` if the tenant already has a key with that id.
    pub async fn insert_api_key(
        &self,
        scope: &TenantScope,
        key: &ApiKeyRecord,
    ) -> Result<(), StoreError> {
        if &key.tenant_id != scope.tenant() {
            return Err(StoreError::Database(format!(
                "refusing to store an API key of tenant {} in the scope of tenant {}",
                key.tenant_id,
                scope.tenant()
            )));
        }
        dispatch!(self.insert_api_key(scope.tenant(), key))
    }

    /// The scope's keys (revoked ones included), ordered by `created_at`, then id.
    pub async fn list_api_keys(
        &self,
        scope: &TenantScope,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        dispatch!(self.list_api_keys(scope.tenant()))
    }

    /// The scope's key `key_id`; `None` if the scope's tenant has no such key.
    pub async fn get_api_key(
        &self,
        scope: &TenantScope,
        key_id: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        dispatch!(self.get_api_key(scope.tenant(), key_id))
    }

    /// Marks the key revoked at `at` (unix seconds) and returns it; `None` if the scope's
    /// tenant has no such key. Revoking again keeps the first `revoked_at`.
    pub async fn revoke_api_key(
        &self,
        scope: &TenantScope,
        key_id: &str,
        at: i64,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        dispatch!(self.revoke_api_key(scope.tenant(), key_id, at))
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
        let found = dispatch!(self.get_api_key(tenant, key_id))?;
        Ok(record::check_api_key(
            found,
            secret_hash,
            tenantry_core::unix_now(),
        ))
    }
}
