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

#![forbid(unsafe_code)]

mod audit;
mod error;
mod guardrail;
mod migrate;
mod policy;
mod postgres;
mod record;
mod spend;
mod sqlite;
#[cfg(feature = "test-util")]
pub mod testing;
mod tool_target;
mod usage_insert;
mod vault;

use tenantry_core::{
    OperatorGrant, RuntimeName, Tenant, TenantId, TenantScope, Tier, TierName, UserId,
};

pub use audit::{AuditEvent, AuditQuery};
pub use error::StoreError;
pub use guardrail::{GuardrailRecord, GuardrailScope, MAX_GUARDRAIL_BYTES, is_valid_profile_name};
pub use policy::{MAX_POLICY_TEXT_BYTES, PolicyMode, PolicyScope, PolicySetRecord};
pub use record::{
    ApiKeyRecord, RuntimeRecord, SESSION_ID_CHARS, SessionRecord, SessionStatus, SettingKind,
    SettingRecord, TenantDeletion, UsageGroup, UsageKind, UsageQuery, UsageRecord, UsageRow,
    is_valid_session_id,
};
pub use spend::ModelSpend;
pub use tool_target::ToolTargetRecord;
pub use vault::{CredentialRecord, NewCredential, VaultKeyRecord, is_valid_credential_name};

/// A foreign-key refusal of a write of `tenant`'s rows: the tenant does not exist (any more).
fn missing_tenant(e: StoreError, tenant: &TenantId) -> StoreError {
    e.missing_as(|| format!("tenant {tenant} not found"))
}

/// A foreign-key refusal of a runtime dedicated to a tenant: that tenant does not exist.
fn missing_dedicated(e: StoreError, r: &RuntimeRecord) -> StoreError {
    match &r.dedicated_tenant {
        Some(tenant) => missing_tenant(e, tenant),
        None => e,
    }
}

/// The most sessions `Store::list_sessions` returns.
pub const LIST_SESSIONS_LIMIT: u32 = 1000;

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

    /// Deletes the tenant, all its data rows (API keys, sessions, vault; the usage ledger only
    /// if `purge_usage`, otherwise it is kept for billing), its settings, policy sets and tool
    /// targets, and the runtimes dedicated to it, in one transaction; what it removed, or
    /// `None` if there was no such tenant. It only deletes rows: stopping the tenant's
    /// sandboxes and removing their session storage is the runtime layer's job.
    pub async fn delete_tenant(
        &self,
        id: &TenantId,
        purge_usage: bool,
    ) -> Result<Option<TenantDeletion>, StoreError> {
        dispatch!(self.delete_tenant(id, purge_usage))
    }

    // ---- operator data: runtimes ----------------------------------------------------------

    /// Registers a runtime; `StoreError::Conflict` if the name is taken. A runtime dedicated to
    /// a tenant that does not exist (or was deleted meanwhile) is `StoreError::Missing`.
    pub async fn create_runtime(&self, r: &RuntimeRecord) -> Result<(), StoreError> {
        dispatch!(self.create_runtime(r)).map_err(|e| missing_dedicated(e, r))
    }

    pub async fn get_runtime(
        &self,
        name: &RuntimeName,
    ) -> Result<Option<RuntimeRecord>, StoreError> {
        dispatch!(self.get_runtime(name))
    }

    /// All runtimes, ordered by name (byte order on both backends).
    pub async fn list_runtimes(&self) -> Result<Vec<RuntimeRecord>, StoreError> {
        dispatch!(self.list_runtimes())
    }

    /// Replaces `dedicated_tenant`, `body` and `updated_at` (not `name` nor `created_at`);
    /// `false` if absent.
    pub async fn update_runtime(&self, r: &RuntimeRecord) -> Result<bool, StoreError> {
        dispatch!(self.update_runtime(r)).map_err(|e| missing_dedicated(e, r))
    }

    /// Deletes the runtime; `false` if absent. Its sessions' rows stay (they are the tenants'
    /// data, resolved by the runtime name) until they are stopped and swept.
    pub async fn delete_runtime(&self, name: &RuntimeName) -> Result<bool, StoreError> {
        dispatch!(self.delete_runtime(name))
    }

    // ---- operator data: settings of tiers and tenants --------------------------------------

    /// The tiers' settings of one kind, ordered by tier (byte order on both backends).
    pub async fn list_tier_settings(
        &self,
        kind: SettingKind,
    ) -> Result<Vec<SettingRecord<TierName>>, StoreError> {
        dispatch!(self.list_tier_settings(kind))
    }

    /// Creates or replaces the tier's setting of `s.kind`. A setting of a tier that does not
    /// exist (or was deleted meanwhile) is `StoreError::Missing`.
    pub async fn put_tier_setting(&self, s: &SettingRecord<TierName>) -> Result<(), StoreError> {
        dispatch!(self.put_tier_setting(s))
            .map_err(|e| e.missing_as(|| format!("tier {} not found", s.owner)))
    }

    /// Deletes the tier's setting of `kind`; `false` if it had none.
    pub async fn delete_tier_setting(
        &self,
        tier: &TierName,
        kind: SettingKind,
    ) -> Result<bool, StoreError> {
        dispatch!(self.delete_tier_setting(tier, kind))
    }

    pub async fn get_tenant_setting(
        &self,
        tenant: &TenantId,
        kind: SettingKind,
    ) -> Result<Option<SettingRecord<TenantId>>, StoreError> {
        dispatch!(self.get_tenant_setting(tenant, kind))
    }

    /// Creates or replaces the tenant's setting of `s.kind`. A setting of a tenant that does
    /// not exist (or was deleted meanwhile) is `StoreError::Missing`. The tenant's settings
    /// are deleted with it.
    pub async fn put_tenant_setting(&self, s: &SettingRecord<TenantId>) -> Result<(), StoreError> {
        dispatch!(self.put_tenant_setting(s)).map_err(|e| missing_tenant(e, &s.owner))
    }

    /// Deletes the tenant's setting of `kind`; `false` if it had none.
    pub async fn delete_tenant_setting(
        &self,
        tenant: &TenantId,
        kind: SettingKind,
    ) -> Result<bool, StoreError> {
        dispatch!(self.delete_tenant_setting(tenant, kind))
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
            .map_err(|e| missing_tenant(e, scope.tenant()))
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

    // ---- tenant data: sessions -------------------------------------------------------------

    /// Stores a new session. Its `tenant_id` must be the scope's tenant and its id must be valid
    /// (`is_valid_session_id`); anything else is refused as a bug. `StoreError::Conflict` if the
    /// tenant already has a session with that id (another tenant's session of the same id is
    /// another session, and does not conflict).
    pub async fn insert_session(
        &self,
        scope: &TenantScope,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        if &session.tenant_id != scope.tenant() {
            return Err(StoreError::Database(format!(
                "refusing to store a session of tenant {} in the scope of tenant {}",
                session.tenant_id,
                scope.tenant()
            )));
        }
        if !is_valid_session_id(&session.id) {
            return Err(StoreError::Database(format!(
                "refusing to store a session id of {} characters: session ids have {} to {} \
                 characters and no control characters",
                session.id.chars().count(),
                SESSION_ID_CHARS.start(),
                SESSION_ID_CHARS.end()
            )));
        }
        dispatch!(self.insert_session(scope.tenant(), session))
            .map_err(|e| missing_tenant(e, scope.tenant()))
    }

    /// The scope's session `id`; `None` if the scope's tenant has no such session. Whether the
    /// caller's user may use it is the caller's check (`user_id`).
    pub async fn get_session(
        &self,
        scope: &TenantScope,
        id: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        dispatch!(self.get_session(scope.tenant(), id))
    }

    /// The scope's sessions, of one user and one runtime when given, newest first (by
    /// `created_at`, then id), at most `LIST_SESSIONS_LIMIT`.
    pub async fn list_sessions(
        &self,
        scope: &TenantScope,
        user: Option<&UserId>,
        runtime: Option<&RuntimeName>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let limit = i64::from(LIST_SESSIONS_LIMIT);
        dispatch!(self.list_sessions(scope.tenant(), user, runtime, limit))
    }

    /// Sets the session's status at `at` (unix seconds) and returns it; `None` if the scope's
    /// tenant has no such session. Any transition is allowed (the runtime layer decides which
    /// make sense):
    ///
    /// * to `Active` (start or resume): clears `stopped_at` and `stop_reason` and moves
    ///   `last_active_at` forward to `at`;
    /// * from `Active` to `Stopped` or `Expired`: records `stopped_at = at` and `reason`;
    /// * between `Stopped` and `Expired`: keeps the first `stopped_at`, and the first reason
    ///   unless a new one is given.
    pub async fn set_session_status(
        &self,
        scope: &TenantScope,
        id: &str,
        status: SessionStatus,
        reason: Option<&str>,
        at: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        dispatch!(self.set_session_status(scope.tenant(), id, status, reason, at))
    }

    /// Makes the session `Active` on `node` (start or resume: clears `stopped_at` and
    /// `stop_reason`, moves `last_active_at` forward to `at`) and returns it; `None` if the
    /// scope's tenant has no such session.
    pub async fn resume_session(
        &self,
        scope: &TenantScope,
        id: &str,
        node: &str,
        at: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        dispatch!(self.resume_session(scope.tenant(), id, node, at))
    }

    /// Moves the session's `last_active_at` forward to `at` (never back); `false` if the
    /// scope's tenant has no such session.
    pub async fn touch_session(
        &self,
        scope: &TenantScope,
        id: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        dispatch!(self.touch_session(scope.tenant(), id, at))
    }

    /// How many of the scope's sessions are `Active`, on one runtime when given.
    pub async fn count_active_sessions(
        &self,
        scope: &TenantScope,
        runtime: Option<&RuntimeName>,
    ) -> Result<u64, StoreError> {
        let n = dispatch!(self.count_active_sessions(scope.tenant(), runtime))?;
        u64::try_from(n).map_err(|_| StoreError::corrupt(format!("session count {n}")))
    }

    /// Deletes the scope's session row; `false` if the scope's tenant has no such session. The
    /// storage sweeper calls it with `TenantScope::for_operator` for each tenant that
    /// `sessions_idle_before` named.
    pub async fn delete_session(&self, scope: &TenantScope, id: &str) -> Result<bool, StoreError> {
        dispatch!(self.delete_session(scope.tenant(), id))
    }

    /// Operator, across tenants: the stopped or expired sessions whose `last_active_at` is
    /// before `before` (exclusive), least recently active first, at most `limit`, as
    /// `(tenant, session id, runtime)`. Active sessions are never returned, however old. For
    /// the storage-expiry sweeper, which deletes each one's storage and then its row through
    /// `delete_session` in that tenant's scope.
    pub async fn sessions_idle_before(
        &self,
        _grant: OperatorGrant,
        before: i64,
        limit: u32,
    ) -> Result<Vec<(TenantId, String, RuntimeName)>, StoreError> {
        dispatch!(self.sessions_idle_before(before, i64::from(limit)))
    }

    /// Operator, across tenants: the sessions recorded `Active` on `node`, at most `limit`, as
    /// `(tenant, session id)`. A node starting up asks for its own: any it finds were left by
    /// a process of that node that died without stopping them.
    pub async fn sessions_active_on(
        &self,
        _grant: OperatorGrant,
        node: &str,
        limit: u32,
    ) -> Result<Vec<(TenantId, String)>, StoreError> {
        dispatch!(self.sessions_active_on(node, i64::from(limit)))
    }

    // ---- tenant data: the usage ledger ----------------------------------------------------

    /// Appends an entry to the scope's ledger. Its `tenant_id` must be the scope's tenant
    /// (anything else is refused as a bug); `StoreError::Conflict` if the tenant already has an
    /// entry with that id, so a retried write never counts twice. Entries are never updated.
    pub async fn record_usage(
        &self,
        scope: &TenantScope,
        usage: &UsageRecord,
    ) -> Result<(), StoreError> {
        if &usage.tenant_id != scope.tenant() {
            return Err(StoreError::Database(format!(
                "refusing to record usage of tenant {} in the scope of tenant {}",
                usage.tenant_id,
                scope.tenant()
            )));
        }
        dispatch!(self.record_usage(scope.tenant(), usage))
            .map_err(|e| missing_tenant(e, scope.tenant()))
    }

    /// Appends several entries to the scope's ledger in one transaction: all of them, or none
    /// (and the error of the first that failed). Every entry's `tenant_id` must be the scope's
    /// tenant. Cheaper than one `record_usage` each when entries arrive in bursts.
    pub async fn record_usages(
        &self,
        scope: &TenantScope,
        usages: &[UsageRecord],
    ) -> Result<(), StoreError> {
        if let Some(u) = usages.iter().find(|u| &u.tenant_id != scope.tenant()) {
            return Err(StoreError::Database(format!(
                "refusing to record usage of tenant {} in the scope of tenant {}",
                u.tenant_id,
                scope.tenant()
            )));
        }
        if usages.is_empty() {
            return Ok(());
        }
        dispatch!(self.record_usages(scope.tenant(), usages))
            .map_err(|e| missing_tenant(e, scope.tenant()))
    }

    /// The scope's model spend since `since` (unix seconds, inclusive), per user: what the
    /// limiter's token and money budgets count, for seeding an in-process limiter at start-up.
    pub async fn model_spend_since(
        &self,
        scope: &TenantScope,
        since: i64,
    ) -> Result<Vec<ModelSpend>, StoreError> {
        dispatch!(self.model_spend_since(scope.tenant(), since))
    }

    /// The scope's ledger entries with `from <= at < to` (unix seconds), newest first (by `at`,
    /// then id), at most `limit`.
    pub async fn list_usage(
        &self,
        scope: &TenantScope,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        dispatch!(self.list_usage(scope.tenant(), from, to, i64::from(limit)))
    }

    /// Operator, across tenants (or of `query.tenant` only): exact sums of the ledger entries
    /// with `query.from <= at < query.to`, one row per tenant and group, ordered by tenant,
    /// then group key (byte order on both backends). Tenants without entries in the window have
    /// no row.
    pub async fn usage_report(
        &self,
        _grant: OperatorGrant,
        query: &UsageQuery,
    ) -> Result<Vec<UsageRow>, StoreError> {
        dispatch!(self.usage_report(query))
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
