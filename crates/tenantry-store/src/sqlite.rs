//! The SQLite backend: the embedded default, one database file in WAL mode.
//!
//! SQLite has no roles and no row-level security, so the isolation of tenant data rests on
//! the `WHERE tenant_id = ?1` that every tenant query in this module carries; a query of a
//! tenant table without it must never be written here. The only exceptions are the operator's
//! two cross-tenant reads (`sessions_idle_before`, `usage_report`), which `Store` exposes only
//! to holders of an `OperatorGrant`. Write transactions that touch more than
//! one statement begin with `BEGIN IMMEDIATE` so they take the write lock up front and wait
//! (busy timeout) instead of failing when two writers meet.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tenantry_core::{RuntimeName, Tenant, TenantId, Tier, TierName, UserId, unix_now};

use crate::StoreError;
use crate::migrate::{self, Migration};
use crate::record::{
    ApiKeyRecord, RuntimeRecord, SessionRecord, SessionStatus, SettingKind, SettingRecord,
    TenantDeletion, UsageGroup, UsageQuery, UsageRecord, UsageRow, active_session_from_row,
    api_key_from_row, idle_session_from_row, runtime_from_row, session_from_row, tenant_from_row,
    tenant_setting_from_row, tier_from_row, tier_setting_from_row, to_json, usage_from_row,
    usage_row_from_row,
};
use crate::usage_insert::{ROWS_PER_INSERT, batch_conflict, usage_insert};

/// Every tenant-data table with the delete that `delete_tenant` runs on it. A new tenant table
/// must be added here; the foreign key to `tenants` makes a forgotten one fail the deletion.
/// The usage ledger has no foreign key (it is kept for billing unless purged).
const TENANT_TABLES: &[(&str, &str)] = &[
    ("api_keys", "DELETE FROM api_keys WHERE tenant_id = ?1"),
    ("sessions", "DELETE FROM sessions WHERE tenant_id = ?1"),
    (
        "usage_records",
        "DELETE FROM usage_records WHERE tenant_id = ?1",
    ),
    (
        "vault_credentials",
        "DELETE FROM vault_credentials WHERE tenant_id = ?1",
    ),
    (
        "vault_data_keys",
        "DELETE FROM vault_data_keys WHERE tenant_id = ?1",
    ),
];

/// The operator data of a tenant, deleted with it after its tenant data.
const TENANT_OWNED: &[(&str, &str)] = &[
    (
        "runtimes",
        "DELETE FROM runtimes WHERE dedicated_tenant = ?1",
    ),
    (
        "tenant_settings",
        "DELETE FROM tenant_settings WHERE tenant_id = ?1",
    ),
    (
        "policy_sets",
        "DELETE FROM policy_sets WHERE tenant_id = ?1",
    ),
    (
        "tool_targets",
        "DELETE FROM tool_targets WHERE tenant_id = ?1",
    ),
    (
        "guardrail_profiles",
        "DELETE FROM guardrail_profiles WHERE tenant_id = ?1",
    ),
];

macro_rules! tenant_cols {
    () => {
        "id, uid, name, tier, status, region, isolation, features, entitlements, created_at,
         updated_at"
    };
}

macro_rules! key_cols {
    () => {
        "tenant_id, id, name, user_id, roles, prefix, secret_hash, created_at, revoked_at, expires_at"
    };
}

macro_rules! runtime_cols {
    () => {
        "name, dedicated_tenant, body, created_at, updated_at"
    };
}

macro_rules! session_cols {
    () => {
        "tenant_id, id, user_id, runtime, status, created_at, last_active_at, stopped_at,
         stop_reason, node"
    };
}

macro_rules! usage_cols {
    () => {
        "tenant_id, id, user_id, runtime, session_id, kind, resource, provider, input_tokens,
         output_tokens, cpu_ms, memory_mb_ms, calls, cost_micros, latency_ms, ttft_ms, status, at"
    };
}

/// The usage report grouped by the SQL expression `$grp` (over the columns of
/// `usage_records`). SQLite sums integers exactly and raises "integer overflow" rather than
/// wrap or fall back to floating point. `?1` is the tenant, or NULL for all.
macro_rules! usage_report_sql {
    ($grp:expr) => {
        concat!(
            "SELECT ",
            $grp,
            " AS grp, tenant_id, sum(calls) AS calls, sum(input_tokens) AS input_tokens,
                    sum(output_tokens) AS output_tokens, sum(cpu_ms) AS cpu_ms,
                    sum(memory_mb_ms) AS memory_mb_ms, sum(cost_micros) AS cost_micros,
                    count(*) AS records
             FROM usage_records
             WHERE (?1 IS NULL OR tenant_id = ?1) AND at >= ?2 AND at < ?3
             GROUP BY tenant_id, grp
             ORDER BY tenant_id, grp"
        )
    };
}

/// The report query of each grouping. `date(at, 'unixepoch')` is the UTC day, `YYYY-MM-DD`.
fn usage_report_sql(group: UsageGroup) -> &'static str {
    match group {
        UsageGroup::Tenant => usage_report_sql!("tenant_id"),
        UsageGroup::User => usage_report_sql!("COALESCE(user_id, '')"),
        UsageGroup::Model => {
            usage_report_sql!("CASE WHEN kind = 'model' THEN COALESCE(resource, '') ELSE '' END")
        }
        UsageGroup::Runtime => usage_report_sql!("COALESCE(runtime, '')"),
        UsageGroup::Day => usage_report_sql!("COALESCE(date(at, 'unixepoch'), '')"),
        UsageGroup::Kind => usage_report_sql!("kind"),
    }
}

/// Makes the database file the owner's alone before SQLite opens it: creates it (and missing
/// directories, 0700) with mode 0600, and takes group and other access away from an existing
/// one and its `-wal` and `-shm` files. SQLite creates the WAL and shared-memory files with the
/// database file's mode, so they are private from then on.
fn make_private(file: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let failed = |what: &str, path: &std::path::Path, e: std::io::Error| -> StoreError {
        StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| failed("creating", dir, e))?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(file)
        .map_err(|e| failed("creating", file, e))?;
    let mut companions = file.as_os_str().to_owned();
    companions.push("-wal");
    let wal = std::path::PathBuf::from(&companions);
    companions = file.as_os_str().to_owned();
    companions.push("-shm");
    let shm = std::path::PathBuf::from(&companions);
    for path in [file, wal.as_path(), shm.as_path()] {
        let mode = match std::fs::metadata(path) {
            Ok(m) => m.permissions().mode(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(failed("inspecting", path, e)),
        };
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(|e| failed("making private", path, e))?;
        }
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub(crate) struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(format!("{url}: {e}")))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool_options = if in_memory {
            // Every connection to `:memory:` would be a database of its own, so keep exactly
            // one connection, forever.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            let file = options.get_filename().to_path_buf();
            tokio::task::spawn_blocking(move || make_private(&file))
                .await
                .map_err(|e| StoreError::Unavailable(format!("preparing the database: {e}")))??;
            options = options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            SqlitePoolOptions::new().max_connections(8)
        };
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        const CREATE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    INTEGER NOT NULL PRIMARY KEY,
                name       TEXT    NOT NULL,
                applied_at INTEGER NOT NULL
            ) STRICT";
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::raw_sql(CREATE).execute(&mut *tx).await?;
        let applied = self.applied(&mut tx).await?;
        tx.commit().await?;

        for Migration { version, name, sql } in migrate::pending(migrate::SQLITE, &applied)? {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            // Another process may have applied it since we looked.
            let now_applied = self.applied(&mut tx).await?;
            if now_applied.contains_key(&version) {
                continue;
            }
            sqlx::raw_sql(sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::Migration(format!("{name}: {e}")))?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            )
            .bind(version)
            .bind(name)
            .bind(unix_now())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    async fn applied(
        &self,
        conn: &mut sqlx::SqliteConnection,
    ) -> Result<BTreeMap<i64, String>, StoreError> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT version, name FROM schema_migrations")
                .fetch_all(&mut *conn)
                .await?;
        Ok(rows.into_iter().collect())
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    // ---- tiers ----------------------------------------------------------------------------

    pub(crate) async fn list_tiers(&self) -> Result<Vec<Tier>, StoreError> {
        let rows = sqlx::query("SELECT name, body FROM tiers ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(tier_from_row).collect()
    }

    pub(crate) async fn get_tier(&self, name: &TierName) -> Result<Option<Tier>, StoreError> {
        let row = sqlx::query("SELECT name, body FROM tiers WHERE name = ?1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tier_from_row).transpose()
    }

    pub(crate) async fn put_tier(&self, tier: &Tier) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tiers (name, body, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(tier.name.as_str())
        .bind(to_json(tier)?)
        .bind(unix_now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn seed_tier(&self, tier: &Tier) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO tiers (name, body, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(tier.name.as_str())
        .bind(to_json(tier)?)
        .bind(unix_now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- tenants --------------------------------------------------------------------------

    pub(crate) async fn create_tenant(&self, t: &Tenant) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO tenants (",
            tenant_cols!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ))
        .bind(t.id.as_str())
        .bind(t.uid.as_str())
        .bind(&t.name)
        .bind(t.tier.as_str())
        .bind(t.status.as_str())
        .bind(&t.region)
        .bind(to_json(&t.isolation)?)
        .bind(to_json(&t.features)?)
        .bind(to_json(&t.entitlements)?)
        .bind(t.created_at)
        .bind(t.updated_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            StoreError::from(e).conflict_as(|| format!("tenant {} already exists", t.id))
        })?;
        Ok(())
    }

    pub(crate) async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            tenant_cols!(),
            " FROM tenants ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    pub(crate) async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            tenant_cols!(),
            " FROM tenants WHERE id = ?1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    pub(crate) async fn update_tenant(&self, t: &Tenant) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tenants SET name = ?2, tier = ?3, status = ?4, region = ?5, isolation = ?6,
                    features = ?7, entitlements = ?8, updated_at = ?9
             WHERE id = ?1",
        )
        .bind(t.id.as_str())
        .bind(&t.name)
        .bind(t.tier.as_str())
        .bind(t.status.as_str())
        .bind(&t.region)
        .bind(to_json(&t.isolation)?)
        .bind(to_json(&t.features)?)
        .bind(to_json(&t.entitlements)?)
        .bind(t.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn delete_tenant(
        &self,
        id: &TenantId,
        purge_usage: bool,
    ) -> Result<Option<TenantDeletion>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut removed = TenantDeletion::default();
        for (table, delete) in TENANT_TABLES.iter().chain(TENANT_OWNED) {
            if *table == "usage_records" && !purge_usage {
                continue;
            }
            let done = sqlx::query(*delete)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            removed.rows.insert(table, done.rows_affected());
        }
        let done = sqlx::query("DELETE FROM tenants WHERE id = ?1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(removed))
    }

    // ---- api keys (tenant data: every query filters by tenant_id) -------------------------

    pub(crate) async fn insert_api_key(
        &self,
        tenant: &TenantId,
        key: &ApiKeyRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO api_keys (",
            key_cols!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))
        .bind(tenant.as_str())
        .bind(&key.id)
        .bind(&key.name)
        .bind(key.user_id.as_str())
        .bind(to_json(&key.roles)?)
        .bind(&key.prefix)
        .bind(&key.secret_hash)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .bind(key.expires_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            StoreError::from(e).conflict_as(|| format!("API key {} already exists", key.id))
        })?;
        Ok(())
    }

    pub(crate) async fn list_api_keys(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            key_cols!(),
            " FROM api_keys WHERE tenant_id = ?1 ORDER BY created_at, id"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(api_key_from_row).collect()
    }

    pub(crate) async fn get_api_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            key_cols!(),
            " FROM api_keys WHERE tenant_id = ?1 AND id = ?2"
        ))
        .bind(tenant.as_str())
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    pub(crate) async fn revoke_api_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        at: i64,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?3)
             WHERE tenant_id = ?1 AND id = ?2
             RETURNING ",
            key_cols!()
        ))
        .bind(tenant.as_str())
        .bind(key_id)
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    // ---- runtimes (operator data) ---------------------------------------------------------

    pub(crate) async fn create_runtime(&self, r: &RuntimeRecord) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO runtimes (",
            runtime_cols!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5)"
        ))
        .bind(r.name.as_str())
        .bind(r.dedicated_tenant.as_ref().map(TenantId::as_str))
        .bind(to_json(&r.body)?)
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            StoreError::from(e).conflict_as(|| format!("runtime {} already exists", r.name))
        })?;
        Ok(())
    }

    pub(crate) async fn get_runtime(
        &self,
        name: &RuntimeName,
    ) -> Result<Option<RuntimeRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            runtime_cols!(),
            " FROM runtimes WHERE name = ?1"
        ))
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(runtime_from_row).transpose()
    }

    pub(crate) async fn list_runtimes(&self) -> Result<Vec<RuntimeRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            runtime_cols!(),
            " FROM runtimes ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(runtime_from_row).collect()
    }

    pub(crate) async fn update_runtime(&self, r: &RuntimeRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE runtimes SET dedicated_tenant = ?2, body = ?3, updated_at = ?4 WHERE name = ?1",
        )
        .bind(r.name.as_str())
        .bind(r.dedicated_tenant.as_ref().map(TenantId::as_str))
        .bind(to_json(&r.body)?)
        .bind(r.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn delete_runtime(&self, name: &RuntimeName) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM runtimes WHERE name = ?1")
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- tier and tenant settings (operator data) -----------------------------------------

    pub(crate) async fn list_tier_settings(
        &self,
        kind: SettingKind,
    ) -> Result<Vec<SettingRecord<TierName>>, StoreError> {
        let rows = sqlx::query(
            "SELECT tier, kind, body, updated_at FROM tier_settings WHERE kind = ?1 ORDER BY tier",
        )
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(tier_setting_from_row).collect()
    }

    pub(crate) async fn put_tier_setting(
        &self,
        s: &SettingRecord<TierName>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tier_settings (tier, kind, body, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tier, kind) DO UPDATE SET body = excluded.body,
                                                   updated_at = excluded.updated_at",
        )
        .bind(s.owner.as_str())
        .bind(s.kind.as_str())
        .bind(to_json(&s.body)?)
        .bind(s.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn delete_tier_setting(
        &self,
        tier: &TierName,
        kind: SettingKind,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM tier_settings WHERE tier = ?1 AND kind = ?2")
            .bind(tier.as_str())
            .bind(kind.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn get_tenant_setting(
        &self,
        tenant: &TenantId,
        kind: SettingKind,
    ) -> Result<Option<SettingRecord<TenantId>>, StoreError> {
        let row = sqlx::query(
            "SELECT tenant_id, kind, body, updated_at FROM tenant_settings
             WHERE tenant_id = ?1 AND kind = ?2",
        )
        .bind(tenant.as_str())
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(tenant_setting_from_row).transpose()
    }

    pub(crate) async fn put_tenant_setting(
        &self,
        s: &SettingRecord<TenantId>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tenant_settings (tenant_id, kind, body, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant_id, kind) DO UPDATE SET body = excluded.body,
                                                        updated_at = excluded.updated_at",
        )
        .bind(s.owner.as_str())
        .bind(s.kind.as_str())
        .bind(to_json(&s.body)?)
        .bind(s.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn delete_tenant_setting(
        &self,
        tenant: &TenantId,
        kind: SettingKind,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM tenant_settings WHERE tenant_id = ?1 AND kind = ?2")
            .bind(tenant.as_str())
            .bind(kind.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- sessions (tenant data: every query filters by tenant_id) -------------------------

    pub(crate) async fn insert_session(
        &self,
        tenant: &TenantId,
        s: &SessionRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO sessions (",
            session_cols!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))
        .bind(tenant.as_str())
        .bind(&s.id)
        .bind(s.user_id.as_str())
        .bind(s.runtime.as_str())
        .bind(s.status.as_str())
        .bind(s.created_at)
        .bind(s.last_active_at)
        .bind(s.stopped_at)
        .bind(s.stop_reason.as_deref())
        .bind(&s.node)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            StoreError::from(e).conflict_as(|| format!("session {} already exists", s.id))
        })?;
        Ok(())
    }

    pub(crate) async fn get_session(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            session_cols!(),
            " FROM sessions WHERE tenant_id = ?1 AND id = ?2"
        ))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    pub(crate) async fn list_sessions(
        &self,
        tenant: &TenantId,
        user: Option<&UserId>,
        runtime: Option<&RuntimeName>,
        limit: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            session_cols!(),
            " FROM sessions
              WHERE tenant_id = ?1 AND (?2 IS NULL OR user_id = ?2) AND (?3 IS NULL OR runtime = ?3)
              ORDER BY created_at DESC, id DESC
              LIMIT ?4"
        ))
        .bind(tenant.as_str())
        .bind(user.map(UserId::as_str))
        .bind(runtime.map(RuntimeName::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    pub(crate) async fn set_session_status(
        &self,
        tenant: &TenantId,
        id: &str,
        status: SessionStatus,
        reason: Option<&str>,
        at: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE sessions SET
                 stopped_at = CASE WHEN ?3 = 'active' THEN NULL
                                   WHEN status = 'active' THEN ?5
                                   ELSE stopped_at END,
                 stop_reason = CASE WHEN ?3 = 'active' THEN NULL
                                    WHEN status = 'active' THEN ?4
                                    ELSE COALESCE(?4, stop_reason) END,
                 last_active_at = CASE WHEN ?3 = 'active' THEN MAX(last_active_at, ?5)
                                       ELSE last_active_at END,
                 status = ?3
             WHERE tenant_id = ?1 AND id = ?2
             RETURNING ",
            session_cols!()
        ))
        .bind(tenant.as_str())
        .bind(id)
        .bind(status.as_str())
        .bind(reason)
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    pub(crate) async fn touch_session(
        &self,
        tenant: &TenantId,
        id: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE sessions SET last_active_at = MAX(last_active_at, ?3)
             WHERE tenant_id = ?1 AND id = ?2",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn count_active_sessions(
        &self,
        tenant: &TenantId,
        runtime: Option<&RuntimeName>,
    ) -> Result<i64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sessions
             WHERE tenant_id = ?1 AND status = 'active' AND (?2 IS NULL OR runtime = ?2)",
        )
        .bind(tenant.as_str())
        .bind(runtime.map(RuntimeName::as_str))
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    pub(crate) async fn delete_session(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE tenant_id = ?1 AND id = ?2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Cross-tenant: the operator's storage-expiry sweep (the one unfiltered session query).
    pub(crate) async fn resume_session(
        &self,
        tenant: &TenantId,
        id: &str,
        node: &str,
        at: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE sessions SET status = 'active', stopped_at = NULL, stop_reason = NULL,
                 last_active_at = MAX(last_active_at, ?4), node = ?3
             WHERE tenant_id = ?1 AND id = ?2
             RETURNING ",
            session_cols!()
        ))
        .bind(tenant.as_str())
        .bind(id)
        .bind(node)
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    pub(crate) async fn sessions_active_on(
        &self,
        node: &str,
        limit: i64,
    ) -> Result<Vec<(TenantId, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, id FROM sessions WHERE node = ?1 AND status = 'active'
             ORDER BY tenant_id, id LIMIT ?2",
        )
        .bind(node)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(active_session_from_row).collect()
    }

    pub(crate) async fn sessions_idle_before(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(TenantId, String, RuntimeName)>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, id, runtime FROM sessions
             WHERE status IN ('stopped', 'expired') AND last_active_at < ?1
             ORDER BY last_active_at, tenant_id, id
             LIMIT ?2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(idle_session_from_row).collect()
    }

    // ---- usage ledger (tenant data, append-only) ------------------------------------------

    pub(crate) async fn record_usage(
        &self,
        tenant: &TenantId,
        u: &UsageRecord,
    ) -> Result<(), StoreError> {
        self.record_usages(tenant, std::slice::from_ref(u)).await
    }

    /// All of `usages` in one transaction, or none of them.
    pub(crate) async fn record_usages(
        &self,
        tenant: &TenantId,
        usages: &[UsageRecord],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for chunk in usages.chunks(ROWS_PER_INSERT) {
            usage_insert!(sqlx::Sqlite, tenant, chunk)
                .build()
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::from(e).conflict_as(|| batch_conflict(chunk.len())))?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn list_usage(
        &self,
        tenant: &TenantId,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            usage_cols!(),
            " FROM usage_records
              WHERE tenant_id = ?1 AND at >= ?2 AND at < ?3
              ORDER BY at DESC, id DESC
              LIMIT ?4"
        ))
        .bind(tenant.as_str())
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(usage_from_row).collect()
    }

    /// Cross-tenant: the operator's usage report (filtered by `q.tenant` when given).
    pub(crate) async fn usage_report(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
        let rows = sqlx::query(usage_report_sql(q.group_by))
            .bind(q.tenant.as_ref().map(TenantId::as_str))
            .bind(q.from)
            .bind(q.to)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(usage_row_from_row).collect()
    }
}
