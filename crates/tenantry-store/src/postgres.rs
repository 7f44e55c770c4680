//! The PostgreSQL backend's plumbing (the scale-out store shared by several replicas):
//! connecting, the migration lock, verifying that row-level security holds, and the two kinds
//! of transaction tenant data is touched in. The statements of each table live with the table's
//! other dialect (`tiers`, `sessions`...), and run through `Store`'s accessors (`db`).
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
//! connecting user itself sees no tenant rows unless it is a superuser. No statement of the
//! store may query a tenant table outside these two kinds of transaction.
//!
//! At connect (`Store::connect`) it verifies, after migrating, that the guarantees hold in the actual database
//! (neither role can bypass row-level security or owns a tenant table, `tenantry_app` is no
//! member of `tenantry_operator`, which cannot write tenant data; every tenant table has RLS
//! enabled and forced), and refuses to start otherwise.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};
use tenantry_core::TenantId;

use crate::StoreError;
use crate::migrate;
use crate::tenants::TENANT_TABLES;

/// The role of tenant-scoped transactions (created by migration 0001).
const APP_ROLE: &str = "tenantry_app";

/// The role of the operator's cross-tenant reads (created by migration 0003).
const OPERATOR_ROLE: &str = "tenantry_operator";

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
        Ok(Self { pool })
    }

    /// Begins a transaction of the connecting user that holds the migration lock.
    pub(crate) async fn locked(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(migrate::PG_ADVISORY_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Refuses to run if row-level security would not actually isolate tenants here.
    pub(crate) async fn verify_isolation(&self) -> Result<(), StoreError> {
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
    pub(crate) async fn operator(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::raw_sql("SET TRANSACTION READ ONLY; SET LOCAL ROLE tenantry_operator")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Switches the current transaction to `tenantry_app` and sets `app.tenant_id`.
pub(crate) async fn enter_scope(
    conn: &mut PgConnection,
    tenant: &TenantId,
) -> Result<(), StoreError> {
    sqlx::raw_sql("SET LOCAL ROLE tenantry_app")
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Switches the current transaction back to the connecting user (`app.tenant_id` stays set
/// until the transaction ends, but only `tenantry_app`'s policies read it).
pub(crate) async fn leave_scope(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::raw_sql("SET LOCAL ROLE NONE")
        .execute(&mut *conn)
        .await?;
    Ok(())
}
