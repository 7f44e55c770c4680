//! The PostgreSQL backend: the scale-out store shared by several replicas.
//!
//! Registry data (tiers, tenants, runtimes) is read and written as the connecting user. Tenant
//! data is only ever touched inside a transaction opened by `PgStore::scoped`, which first runs
//! `SET LOCAL ROLE tenantry_app` and sets the transaction-local `app.tenant_id`: the forced
//! row-level-security policy on every tenant table then hides and refuses every other
//! tenant's rows, and each query filters by `tenant_id` as well (defence in depth). Both
//! settings end with the transaction, so a pooled connection never carries a tenant over to
//! its next user.
//!
//! The one exception is the operator's cross-tenant reads (the session storage sweep, the
//! usage report): they run in a read-only transaction opened by `PgStore::operator`, which has
//! switched to `tenantry_operator`, the one role with a policy that shows every tenant's rows
//! (of `sessions` and `usage_records`, for SELECT only). Because the policies are forced, the
//! connecting user itself sees no tenant rows unless it is a superuser. This module must never
//! query a tenant table outside these two kinds of transaction.
//!
//! At connect it verifies, after migrating, that the guarantees hold in the actual database
//! (neither role can bypass row-level security or owns a tenant table, `tenantry_app` is no
//! member of `tenantry_operator`, which cannot write tenant data; every tenant table has RLS
//! enabled and forced), and refuses to start otherwise.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};
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

/// The role of tenant-scoped transactions (created by migration 0001).
const APP_ROLE: &str = "tenantry_app";

/// The role of the operator's cross-tenant reads (created by migration 0003).
const OPERATOR_ROLE: &str = "tenantry_operator";

/// Every tenant-data table with the delete that `delete_tenant` runs on it (in a scoped
/// transaction). A new tenant table must be added here; the foreign key to `tenants` makes a
/// forgotten one fail the deletion, and the connect-time check verifies RLS on each.
/// The usage ledger has no foreign key: it is kept for billing unless purged.
const TENANT_TABLES: &[(&str, &str)] = &[
    ("api_keys", "DELETE FROM api_keys WHERE tenant_id = $1"),
    ("sessions", "DELETE FROM sessions WHERE tenant_id = $1"),
    (
        "usage_records",
        "DELETE FROM usage_records WHERE tenant_id = $1",
    ),
    (
        "vault_credentials",
        "DELETE FROM vault_credentials WHERE tenant_id = $1",
    ),
    (
        "vault_data_keys",
        "DELETE FROM vault_data_keys WHERE tenant_id = $1",
    ),
];

/// The operator data of a tenant, deleted with it (as the connecting user, after its tenant
/// data).
const TENANT_OWNED: &[(&str, &str)] = &[
    (
        "runtimes",
        "DELETE FROM runtimes WHERE dedicated_tenant = $1",
    ),
    (
        "tenant_settings",
        "DELETE FROM tenant_settings WHERE tenant_id = $1",
    ),
    (
        "policy_sets",
        "DELETE FROM policy_sets WHERE tenant_id = $1",
    ),
    (
        "tool_targets",
        "DELETE FROM tool_targets WHERE tenant_id = $1",
    ),
    (
        "guardrail_profiles",
        "DELETE FROM guardrail_profiles WHERE tenant_id = $1",
    ),
];

macro_rules! tenant_cols {
    () => {
        "id, uid, name, tier, status, region, isolation::text AS isolation,
         features::text AS features, entitlements::text AS entitlements, created_at, updated_at"
    };
}

macro_rules! key_cols {
    () => {
        "tenant_id, id, name, user_id, roles::text AS roles, prefix, secret_hash, created_at,
         revoked_at, expires_at"
    };
}

macro_rules! runtime_cols {
    () => {
        "name, dedicated_tenant, body::text AS body, created_at, updated_at"
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
/// `usage_records`). Sums of BIGINT are NUMERIC in PostgreSQL, exact; the cast back to BIGINT
/// fails loudly rather than wrap if a sum ever overflowed. `$1` is the tenant or NULL for all.
macro_rules! usage_report_sql {
    ($grp:expr) => {
        concat!(
            "SELECT grp, tenant_id, sum(calls)::bigint AS calls,
                    sum(input_tokens)::bigint AS input_tokens,
                    sum(output_tokens)::bigint AS output_tokens, sum(cpu_ms)::bigint AS cpu_ms,
                    sum(memory_mb_ms)::bigint AS memory_mb_ms,
                    sum(cost_micros)::bigint AS cost_micros, count(*) AS records
             FROM (SELECT ",
            $grp,
            " AS grp, tenant_id, calls, input_tokens, output_tokens, cpu_ms, memory_mb_ms,
                          cost_micros
                   FROM usage_records
                   WHERE ($1::text IS NULL OR tenant_id = $1) AND at >= $2 AND at < $3) AS u
             GROUP BY tenant_id, grp
             ORDER BY tenant_id COLLATE \"C\", grp COLLATE \"C\""
        )
    };
}

/// The report query of each grouping. The day is computed from `at` with integer-exact date
/// arithmetic in UTC (no time zone setting involved).
fn usage_report_sql(group: UsageGroup) -> &'static str {
    match group {
        UsageGroup::Tenant => usage_report_sql!("tenant_id"),
        UsageGroup::User => usage_report_sql!("COALESCE(user_id, '')"),
        UsageGroup::Model => {
            usage_report_sql!("CASE WHEN kind = 'model' THEN COALESCE(resource, '') ELSE '' END")
        }
        UsageGroup::Runtime => usage_report_sql!("COALESCE(runtime, '')"),
        UsageGroup::Day => usage_report_sql!(
            "to_char((DATE '1970-01-01' + floor(at / 86400.0)::integer)::timestamp, 'YYYY-MM-DD')"
        ),
        UsageGroup::Kind => usage_report_sql!("kind"),
    }
}

#[derive(Clone, Debug)]
pub(crate) struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(format!("postgres url: {e}")))?
            .application_name("tenantry");
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        let store = Self { pool };
        store.migrate().await?;
        store.verify_isolation().await?;
        Ok(store)
    }

    /// Begins a transaction of the connecting user that holds the migration lock.
    async fn locked(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(migrate::PG_ADVISORY_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        const CREATE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    BIGINT NOT NULL PRIMARY KEY,
                name       TEXT   NOT NULL,
                applied_at BIGINT NOT NULL
            )";
        let mut tx = self.locked().await?;
        sqlx::raw_sql(CREATE).execute(&mut *tx).await?;
        let applied = applied(&mut tx).await?;
        tx.commit().await?;

        for Migration { version, name, sql } in migrate::pending(migrate::POSTGRES, &applied)? {
            let mut tx = self.locked().await?;
            // Another replica may have applied it while we waited for the lock.
            if applied_now(&mut tx, version).await? {
                continue;
            }
            sqlx::raw_sql(sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::Migration(format!("{name}: {e}")))?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
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

    /// Refuses to run if row-level security would not actually isolate tenants here.
    async fn verify_isolation(&self) -> Result<(), StoreError> {
        let role = sqlx::query(
            "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = $1",
        )
        .bind(APP_ROLE)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::Migration(format!("role {APP_ROLE} does not exist")))?;
        let unsafe_role = role.try_get::<bool, _>("rolsuper")?
            || role.try_get::<bool, _>("rolbypassrls")?
            || role.try_get::<bool, _>("rolcanlogin")?;
        if unsafe_role {
            return Err(StoreError::Migration(format!(
                "role {APP_ROLE} has SUPERUSER, BYPASSRLS or LOGIN, so row-level security would \
                 not hold; run ALTER ROLE {APP_ROLE} NOSUPERUSER NOBYPASSRLS NOLOGIN"
            )));
        }
        let operator = sqlx::query(
            "SELECT rolsuper, rolbypassrls, rolcanlogin,
                    pg_has_role($2, rolname, 'MEMBER') AS app_is_member
             FROM pg_roles WHERE rolname = $1",
        )
        .bind(OPERATOR_ROLE)
        .bind(APP_ROLE)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::Migration(format!("role {OPERATOR_ROLE} does not exist")))?;
        if operator.try_get::<bool, _>("rolsuper")?
            || operator.try_get::<bool, _>("rolbypassrls")?
            || operator.try_get::<bool, _>("rolcanlogin")?
        {
            return Err(StoreError::Migration(format!(
                "role {OPERATOR_ROLE} has SUPERUSER, BYPASSRLS or LOGIN; run ALTER ROLE \
                 {OPERATOR_ROLE} NOSUPERUSER NOBYPASSRLS NOLOGIN"
            )));
        }
        if operator.try_get::<bool, _>("app_is_member")? {
            return Err(StoreError::Migration(format!(
                "role {APP_ROLE} is a member of {OPERATOR_ROLE}, so a tenant-scoped transaction \
                 could read every tenant's rows; run REVOKE {OPERATOR_ROLE} FROM {APP_ROLE}"
            )));
        }
        for (table, _) in TENANT_TABLES {
            let row = sqlx::query(
                "SELECT c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner) AS owner,
                        has_table_privilege($2, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
                            AS operator_writes
                 FROM pg_class c
                 WHERE c.oid = to_regclass($1)",
            )
            .bind(*table)
            .bind(OPERATOR_ROLE)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::Migration(format!("tenant table {table} is missing")))?;
            let enabled: bool = row.try_get("relrowsecurity")?;
            let forced: bool = row.try_get("relforcerowsecurity")?;
            let owner: String = row.try_get("owner")?;
            if !enabled || !forced || owner == APP_ROLE || owner == OPERATOR_ROLE {
                return Err(StoreError::Migration(format!(
                    "tenant table {table} must have row-level security enabled and forced and must not be \
                     owned by {APP_ROLE} or {OPERATOR_ROLE} (enabled: {enabled}, forced: {forced}, owner: {owner})"
                )));
            }
            if row.try_get::<bool, _>("operator_writes")? {
                return Err(StoreError::Migration(format!(
                    "role {OPERATOR_ROLE} may write tenant table {table}; it must only read: run \
                     REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {table} FROM {OPERATOR_ROLE}"
                )));
            }
        }
        Ok(())
    }

    /// Begins a transaction in which only `tenant`'s rows of tenant tables are visible or
    /// writable: the role is `tenantry_app` and `app.tenant_id` is `tenant`, both until the
    /// transaction ends.
    pub(crate) async fn scoped(
        &self,
        tenant: &TenantId,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        enter_scope(&mut tx, tenant).await?;
        Ok(tx)
    }

    /// Begins a read-only transaction as `tenantry_operator`, which sees every tenant's rows of
    /// the tenant tables that have an `operator_read` policy. Only the operator's cross-tenant
    /// reports use it.
    async fn operator(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::raw_sql("SET TRANSACTION READ ONLY; SET LOCAL ROLE tenantry_operator")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    // ---- tiers ----------------------------------------------------------------------------

    pub(crate) async fn list_tiers(&self) -> Result<Vec<Tier>, StoreError> {
        let rows =
            sqlx::query(r#"SELECT name, body::text AS body FROM tiers ORDER BY name COLLATE "C""#)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(tier_from_row).collect()
    }

    pub(crate) async fn get_tier(&self, name: &TierName) -> Result<Option<Tier>, StoreError> {
        let row = sqlx::query("SELECT name, body::text AS body FROM tiers WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tier_from_row).transpose()
    }

    pub(crate) async fn put_tier(&self, tier: &Tier) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tiers (name, body, updated_at) VALUES ($1, $2::jsonb, $3)
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
            "INSERT INTO tiers (name, body, updated_at) VALUES ($1, $2::jsonb, $3)
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
        sqlx::query(
            "INSERT INTO tenants (id, name, tier, status, region, isolation, features, entitlements,
                                  created_at, updated_at, uid)
             VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb, $9, $10, $11)",
        )
        .bind(t.id.as_str())
        .bind(&t.name)
        .bind(t.tier.as_str())
        .bind(t.status.as_str())
        .bind(&t.region)
        .bind(to_json(&t.isolation)?)
        .bind(to_json(&t.features)?)
        .bind(to_json(&t.entitlements)?)
        .bind(t.created_at)
        .bind(t.updated_at)
        .bind(t.uid.as_str())
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
            r#" FROM tenants ORDER BY id COLLATE "C""#
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    pub(crate) async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            tenant_cols!(),
            " FROM tenants WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    pub(crate) async fn update_tenant(&self, t: &Tenant) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tenants SET name = $2, tier = $3, status = $4, region = $5, isolation = $6::jsonb,
                    features = $7::jsonb, entitlements = $8::jsonb, updated_at = $9
             WHERE id = $1",
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

    /// Deletes the tenant's data through row-level security (scoped to the tenant, as
    /// `tenantry_app`), then, as the connecting user, its operator data (runtimes dedicated to
    /// it, settings, policy sets, tool targets) and the registry row, in one transaction. The
    /// usage ledger is kept unless `purge_usage`.
    pub(crate) async fn delete_tenant(
        &self,
        id: &TenantId,
        purge_usage: bool,
    ) -> Result<Option<TenantDeletion>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The tenant's row is locked first. A write of the tenant's data takes a key-share
        // lock on it (its foreign-key check), so a write under way finishes before the
        // deletion starts (and its rows are deleted below) and a later one waits and then
        // finds the tenant gone. Without it, a write committed between the deletes below and
        // the registry row's makes the deletion fail on its foreign key, or deadlock.
        let locked: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if locked.is_none() {
            tx.rollback().await?;
            return Ok(None);
        }
        enter_scope(&mut tx, id).await?;
        let mut removed = TenantDeletion::default();
        for (table, delete) in TENANT_TABLES {
            if *table == "usage_records" && !purge_usage {
                continue;
            }
            let done = sqlx::query(*delete)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            removed.rows.insert(table, done.rows_affected());
        }
        sqlx::raw_sql("SET LOCAL ROLE NONE")
            .execute(&mut *tx)
            .await?;
        for (table, delete) in TENANT_OWNED {
            let done = sqlx::query(*delete)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            removed.rows.insert(table, done.rows_affected());
        }
        let done = sqlx::query("DELETE FROM tenants WHERE id = $1")
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

    // ---- api keys (tenant data: scoped transaction and tenant_id filter) ------------------

    pub(crate) async fn insert_api_key(
        &self,
        tenant: &TenantId,
        key: &ApiKeyRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.scoped(tenant).await?;
        sqlx::query(
            "INSERT INTO api_keys (tenant_id, id, name, user_id, roles, prefix, secret_hash, created_at,
                                   revoked_at, expires_at)
             VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10)",
        )
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
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::from(e).conflict_as(|| format!("API key {} already exists", key.id))
        })?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn list_api_keys(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut tx = self.scoped(tenant).await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            key_cols!(),
            r#" FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id COLLATE "C""#
        ))
        .bind(tenant.as_str())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(api_key_from_row).collect()
    }

    pub(crate) async fn get_api_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let mut tx = self.scoped(tenant).await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            key_cols!(),
            " FROM api_keys WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.as_str())
        .bind(key_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    pub(crate) async fn revoke_api_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        at: i64,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let mut tx = self.scoped(tenant).await?;
        let row = sqlx::query(concat!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3)
             WHERE tenant_id = $1 AND id = $2
             RETURNING ",
            key_cols!()
        ))
        .bind(tenant.as_str())
        .bind(key_id)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    // ---- tier and tenant settings (operator data) -----------------------------------------

    pub(crate) async fn list_tier_settings(
        &self,
        kind: SettingKind,
    ) -> Result<Vec<SettingRecord<TierName>>, StoreError> {
        let rows = sqlx::query(
            r#"SELECT tier, kind, body::text AS body, updated_at FROM tier_settings
               WHERE kind = $1 ORDER BY tier COLLATE "C""#,
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
            "INSERT INTO tier_settings (tier, kind, body, updated_at) VALUES ($1, $2, $3::jsonb, $4)
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
        let done = sqlx::query("DELETE FROM tier_settings WHERE tier = $1 AND kind = $2")
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
            "SELECT tenant_id, kind, body::text AS body, updated_at FROM tenant_settings
             WHERE tenant_id = $1 AND kind = $2",
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
            "INSERT INTO tenant_settings (tenant_id, kind, body, updated_at)
             VALUES ($1, $2, $3::jsonb, $4)
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
        let done = sqlx::query("DELETE FROM tenant_settings WHERE tenant_id = $1 AND kind = $2")
            .bind(tenant.as_str())
            .bind(kind.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- runtimes (operator data) ---------------------------------------------------------

    pub(crate) async fn create_runtime(&self, r: &RuntimeRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO runtimes (name, dedicated_tenant, body, created_at, updated_at)
             VALUES ($1, $2, $3::jsonb, $4, $5)",
        )
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
            " FROM runtimes WHERE name = $1"
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
            r#" FROM runtimes ORDER BY name COLLATE "C""#
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(runtime_from_row).collect()
    }

    pub(crate) async fn update_runtime(&self, r: &RuntimeRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE runtimes SET dedicated_tenant = $2, body = $3::jsonb, updated_at = $4
             WHERE name = $1",
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
        let done = sqlx::query("DELETE FROM runtimes WHERE name = $1")
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- sessions (tenant data: scoped transaction and tenant_id filter) ------------------

    pub(crate) async fn insert_session(
        &self,
        tenant: &TenantId,
        s: &SessionRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.scoped(tenant).await?;
        sqlx::query(concat!(
            "INSERT INTO sessions (",
            session_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
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
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::from(e).conflict_as(|| format!("session {} already exists", s.id))
        })?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn get_session(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut tx = self.scoped(tenant).await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            session_cols!(),
            " FROM sessions WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(session_from_row).transpose()
    }

    pub(crate) async fn list_sessions(
        &self,
        tenant: &TenantId,
        user: Option<&UserId>,
        runtime: Option<&RuntimeName>,
        limit: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let mut tx = self.scoped(tenant).await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            session_cols!(),
            r#" FROM sessions
               WHERE tenant_id = $1 AND ($2::text IS NULL OR user_id = $2)
                 AND ($3::text IS NULL OR runtime = $3)
               ORDER BY created_at DESC, id COLLATE "C" DESC
               LIMIT $4"#
        ))
        .bind(tenant.as_str())
        .bind(user.map(UserId::as_str))
        .bind(runtime.map(RuntimeName::as_str))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
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
        let mut tx = self.scoped(tenant).await?;
        let row = sqlx::query(concat!(
            "UPDATE sessions SET
                 stopped_at = CASE WHEN $3 = 'active' THEN NULL
                                   WHEN status = 'active' THEN $5
                                   ELSE stopped_at END,
                 stop_reason = CASE WHEN $3 = 'active' THEN NULL
                                    WHEN status = 'active' THEN $4
                                    ELSE COALESCE($4, stop_reason) END,
                 last_active_at = CASE WHEN $3 = 'active' THEN GREATEST(last_active_at, $5)
                                       ELSE last_active_at END,
                 status = $3
             WHERE tenant_id = $1 AND id = $2
             RETURNING ",
            session_cols!()
        ))
        .bind(tenant.as_str())
        .bind(id)
        .bind(status.as_str())
        .bind(reason)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(session_from_row).transpose()
    }

    pub(crate) async fn touch_session(
        &self,
        tenant: &TenantId,
        id: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.scoped(tenant).await?;
        let done = sqlx::query(
            "UPDATE sessions SET last_active_at = GREATEST(last_active_at, $3)
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn count_active_sessions(
        &self,
        tenant: &TenantId,
        runtime: Option<&RuntimeName>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.scoped(tenant).await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sessions
             WHERE tenant_id = $1 AND status = 'active' AND ($2::text IS NULL OR runtime = $2)",
        )
        .bind(tenant.as_str())
        .bind(runtime.map(RuntimeName::as_str))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    pub(crate) async fn delete_session(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.scoped(tenant).await?;
        let done = sqlx::query("DELETE FROM sessions WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn resume_session(
        &self,
        tenant: &TenantId,
        id: &str,
        node: &str,
        at: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut tx = self.scoped(tenant).await?;
        let row = sqlx::query(concat!(
            "UPDATE sessions SET status = 'active', stopped_at = NULL, stop_reason = NULL,
                 last_active_at = GREATEST(last_active_at, $4), node = $3
             WHERE tenant_id = $1 AND id = $2
             RETURNING ",
            session_cols!()
        ))
        .bind(tenant.as_str())
        .bind(id)
        .bind(node)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Cross-tenant, as the read-only operator role.
    pub(crate) async fn sessions_active_on(
        &self,
        node: &str,
        limit: i64,
    ) -> Result<Vec<(TenantId, String)>, StoreError> {
        let mut tx = self.operator().await?;
        let rows = sqlx::query(
            r#"SELECT tenant_id, id FROM sessions WHERE node = $1 AND status = 'active'
               ORDER BY tenant_id COLLATE "C", id COLLATE "C" LIMIT $2"#,
        )
        .bind(node)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(active_session_from_row).collect()
    }

    /// Cross-tenant, as the read-only operator role.
    pub(crate) async fn sessions_idle_before(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(TenantId, String, RuntimeName)>, StoreError> {
        let mut tx = self.operator().await?;
        let rows = sqlx::query(
            r#"SELECT tenant_id, id, runtime FROM sessions
               WHERE status IN ('stopped', 'expired') AND last_active_at < $1
               ORDER BY last_active_at, tenant_id COLLATE "C", id COLLATE "C"
               LIMIT $2"#,
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
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

    /// All of `usages` in one scoped transaction, or none of them.
    pub(crate) async fn record_usages(
        &self,
        tenant: &TenantId,
        usages: &[UsageRecord],
    ) -> Result<(), StoreError> {
        let mut tx = self.scoped(tenant).await?;
        for chunk in usages.chunks(ROWS_PER_INSERT) {
            usage_insert!(sqlx::Postgres, tenant, chunk)
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
        let mut tx = self.scoped(tenant).await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            usage_cols!(),
            r#" FROM usage_records
               WHERE tenant_id = $1 AND at >= $2 AND at < $3
               ORDER BY at DESC, id COLLATE "C" DESC
               LIMIT $4"#
        ))
        .bind(tenant.as_str())
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(usage_from_row).collect()
    }

    /// Cross-tenant, as the read-only operator role.
    pub(crate) async fn usage_report(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
        let mut tx = self.operator().await?;
        let rows = sqlx::query(usage_report_sql(q.group_by))
            .bind(q.tenant.as_ref().map(TenantId::as_str))
            .bind(q.from)
            .bind(q.to)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(usage_row_from_row).collect()
    }
}

/// Switches the current transaction to `tenantry_app` and sets `app.tenant_id`.
async fn enter_scope(conn: &mut PgConnection, tenant: &TenantId) -> Result<(), StoreError> {
    sqlx::raw_sql("SET LOCAL ROLE tenantry_app")
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn applied(conn: &mut PgConnection) -> Result<BTreeMap<i64, String>, StoreError> {
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT version, name FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().collect())
}

async fn applied_now(conn: &mut PgConnection, version: i64) -> Result<bool, StoreError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(found.is_some())
}
