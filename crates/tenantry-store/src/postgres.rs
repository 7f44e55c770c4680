//! The PostgreSQL backend: the scale-out store shared by several replicas.
//!
//! Registry data (tiers, tenants) is read and written as the connecting user. Tenant data is
//! only ever touched inside a transaction opened by `PgStore::scoped`, which first runs
//! `SET LOCAL ROLE tenantry_app` and sets the transaction-local `app.tenant_id`: the forced
//! row-level-security policy on every tenant table then hides and refuses every other
//! tenant's rows, and each query filters by `tenant_id` as well (defence in depth). Both
//! settings end with the transaction, so a pooled connection never carries a tenant over to
//! its next user. This module must never query a tenant table outside such a transaction.
//!
//! At connect it verifies, after migrating, that the guarantees hold in the actual database
//! (the role cannot bypass row-level security and owns no tenant table; every tenant table
//! has RLS enabled and forced), and refuses to start otherwise.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};
use tenantry_core::{Tenant, TenantId, Tier, TierName, unix_now};

use crate::StoreError;
use crate::migrate::{self, Migration};
use crate::record::{ApiKeyRecord, api_key_from_row, tenant_from_row, tier_from_row, to_json};

/// The role of tenant-scoped transactions (created by migration 0001).
const APP_ROLE: &str = "tenantry_app";

/// Every tenant-data table with the delete that `delete_tenant` runs on it (in a scoped
/// transaction). A new tenant table must be added here; the foreign key to `tenants` makes a
/// forgotten one fail the deletion, and the connect-time check verifies RLS on each.
const TENANT_TABLES: &[(&str, &str)] = &[("api_keys", "DELETE FROM api_keys WHERE tenant_id = $1")];

macro_rules! tenant_cols {
    () => {
        "id, name, tier, status, region, isolation::text AS isolation, features::text AS features,
         entitlements::text AS entitlements, created_at, updated_at"
    };
}

macro_rules! key_cols {
    () => {
        "tenant_id, id, name, user_id, roles::text AS roles, prefix, secret_hash, created_at,
         revoked_at, expires_at"
    };
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
        for (table, _) in TENANT_TABLES {
            let row = sqlx::query(
                "SELECT c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner) AS owner
                 FROM pg_class c
                 WHERE c.oid = to_regclass($1)",
            )
            .bind(*table)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::Migration(format!("tenant table {table} is missing")))?;
            let enabled: bool = row.try_get("relrowsecurity")?;
            let forced: bool = row.try_get("relforcerowsecurity")?;
            let owner: String = row.try_get("owner")?;
            if !enabled || !forced || owner == APP_ROLE {
                return Err(StoreError::Migration(format!(
                    "tenant table {table} must have row-level security enabled and forced and must not be \
                     owned by {APP_ROLE} (enabled: {enabled}, forced: {forced}, owner: {owner})"
                )));
            }
        }
        Ok(())
    }

    /// Begins a transaction in which only `tenant`'s rows of tenant tables are visible or
    /// writable: the role is `tenantry_app` and `app.tenant_id` is `tenant`, both until the
    /// transaction ends.
    async fn scoped(
        &self,
        tenant: &TenantId,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        enter_scope(&mut tx, tenant).await?;
        Ok(tx)
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
                                  created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb, $9, $10)",
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
    /// `tenantry_app`), then the registry row as the connecting user, in one transaction.
    pub(crate) async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError> {
        let mut tx = self.scoped(id).await?;
        for (_, delete) in TENANT_TABLES {
            sqlx::query(*delete)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::raw_sql("SET LOCAL ROLE NONE")
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
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
