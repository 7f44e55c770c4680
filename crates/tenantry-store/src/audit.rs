//! The audit log: who changed what in the control plane, and every policy decision, with the
//! tenant it concerns (none for a platform-wide change), when, and the request it came from.
//!
//! Events are appended in batches and never updated; they are deleted only by retention
//! (`delete_audit_events_before`). A tenant's events outlive the tenant: the table has no
//! foreign key, and deleting a tenant leaves its trail. A tenant's events are read only
//! through its `TenantScope`; reading across tenants takes the `OperatorGrant`. Both dialects
//! live in this module.

use serde::{Deserialize, Serialize};
use tenantry_core::{OperatorGrant, TenantId, TenantScope};

use crate::StoreError;
use crate::record::{Columns, to_json};

/// One audit event as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// A UUIDv7 in text form: ids sort in time order.
    pub id: String,
    /// The tenant concerned; `None` for a platform-wide event.
    pub tenant: Option<TenantId>,
    /// Unix seconds.
    pub at: i64,
    /// Who acted: `operator`, `user:ID`, `key:ID`...
    pub actor: String,
    /// What was done: `tenant.update`, `api_key.revoke`, `tool.decision`...
    pub action: String,
    /// What it was done to (a tenant id, a key id, a tool name), if anything.
    pub target: Option<String>,
    /// `ok`, `allow`, `deny`, or an error code.
    pub outcome: String,
    pub request_id: Option<String>,
    /// Before/after, determining policies... (never a secret).
    pub detail: serde_json::Value,
}

/// Which events to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only events at or after this time (unix seconds).
    pub since: Option<i64>,
    /// Only events whose action starts with this.
    pub action_prefix: Option<String>,
    /// Only events older than this id (the previous page's last id).
    pub before: Option<String>,
    /// At most this many (1 to 1,000).
    pub limit: u32,
}

impl AuditQuery {
    fn limit(&self) -> i64 {
        i64::from(self.limit.clamp(1, 1000))
    }

    fn action_like(&self) -> Option<String> {
        self.action_prefix.as_ref().map(|p| {
            let escaped: String = p
                .chars()
                .flat_map(|c| match c {
                    '%' | '_' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            format!("{escaped}%")
        })
    }
}

fn event_from_row(row: &impl Columns) -> Result<AuditEvent, StoreError> {
    let detail = row.text("detail")?;
    Ok(AuditEvent {
        id: row.text("id")?,
        tenant: row
            .opt_text("tenant_id")?
            .map(TenantId::new)
            .transpose()
            .map_err(StoreError::corrupt)?,
        at: row.int("at")?,
        actor: row.text("actor")?,
        action: row.text("action")?,
        target: row.opt_text("target")?,
        outcome: row.text("outcome")?,
        request_id: row.opt_text("request_id")?,
        detail: serde_json::from_str(&detail)
            .map_err(|e| StoreError::corrupt(format!("audit event detail: {e}")))?,
    })
}

/// Whose events a read covers.
#[derive(Debug, Clone, Copy)]
enum Whose<'a> {
    Tenant(&'a TenantId),
    Everyone,
}

impl<'a> Whose<'a> {
    /// The two bind values of the `(all OR tenant_id = tenant)` filter both dialects use.
    fn bind(self) -> (bool, Option<&'a str>) {
        match self {
            Whose::Tenant(t) => (false, Some(t.as_str())),
            Whose::Everyone => (true, None),
        }
    }
}

// ---- SQLite ------------------------------------------------------------------------------------

pub(crate) mod sqlite {
    use sqlx::SqlitePool;

    use super::*;

    pub(crate) async fn insert(pool: &SqlitePool, events: &[AuditEvent]) -> Result<(), StoreError> {
        let mut tx = pool.begin().await?;
        for e in events {
            sqlx::query(
                "INSERT INTO audit_events (id, tenant_id, at, actor, action, target, outcome,
                     request_id, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .bind(&e.id)
            .bind(e.tenant.as_ref().map(TenantId::as_str))
            .bind(e.at)
            .bind(&e.actor)
            .bind(&e.action)
            .bind(e.target.as_deref())
            .bind(&e.outcome)
            .bind(e.request_id.as_deref())
            .bind(to_json(&e.detail)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn list(
        pool: &SqlitePool,
        whose: Whose<'_>,
        q: &AuditQuery,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let (all, tenant) = whose.bind();
        let rows = sqlx::query(
            "SELECT id, tenant_id, at, actor, action, target, outcome, request_id, detail
             FROM audit_events
             WHERE (?1 OR tenant_id = ?2)
               AND (?3 IS NULL OR at >= ?3)
               AND (?4 IS NULL OR action LIKE ?4 ESCAPE '\\')
               AND (?5 IS NULL OR id < ?5)
             ORDER BY id DESC LIMIT ?6",
        )
        .bind(all)
        .bind(tenant)
        .bind(q.since)
        .bind(q.action_like())
        .bind(q.before.as_deref())
        .bind(q.limit())
        .fetch_all(pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    pub(crate) async fn delete_before(pool: &SqlitePool, at: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM audit_events WHERE at < ?1")
            .bind(at)
            .execute(pool)
            .await?;
        Ok(done.rows_affected())
    }
}

// ---- PostgreSQL --------------------------------------------------------------------------------

pub(crate) mod postgres {
    use sqlx::PgPool;

    use super::*;

    pub(crate) async fn insert(pool: &PgPool, events: &[AuditEvent]) -> Result<(), StoreError> {
        let mut tx = pool.begin().await?;
        for e in events {
            sqlx::query(
                "INSERT INTO audit_events (id, tenant_id, at, actor, action, target, outcome,
                     request_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)",
            )
            .bind(&e.id)
            .bind(e.tenant.as_ref().map(TenantId::as_str))
            .bind(e.at)
            .bind(&e.actor)
            .bind(&e.action)
            .bind(e.target.as_deref())
            .bind(&e.outcome)
            .bind(e.request_id.as_deref())
            .bind(to_json(&e.detail)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn list(
        pool: &PgPool,
        whose: Whose<'_>,
        q: &AuditQuery,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let (all, tenant) = whose.bind();
        let rows = sqlx::query(
            r#"SELECT id, tenant_id, at, actor, action, target, outcome, request_id,
                      detail::text AS detail
               FROM audit_events
               WHERE ($1 OR tenant_id = $2)
                 AND ($3::bigint IS NULL OR at >= $3)
                 AND ($4::text IS NULL OR action LIKE $4 ESCAPE '\')
                 AND ($5::text IS NULL OR id < $5 COLLATE "C")
               ORDER BY id COLLATE "C" DESC LIMIT $6"#,
        )
        .bind(all)
        .bind(tenant)
        .bind(q.since)
        .bind(q.action_like())
        .bind(q.before.as_deref())
        .bind(q.limit())
        .fetch_all(pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    pub(crate) async fn delete_before(pool: &PgPool, at: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM audit_events WHERE at < $1")
            .bind(at)
            .execute(pool)
            .await?;
        Ok(done.rows_affected())
    }
}

// ---- the public API ----------------------------------------------------------------------------

impl crate::Store {
    /// Appends events, all or none.
    pub async fn insert_audit_events(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::insert(s.pool(), events).await,
            crate::Backend::Postgres(p) => postgres::insert(p.pool(), events).await,
        }
    }

    /// One tenant's events, newest first.
    pub async fn list_audit_events(
        &self,
        scope: &TenantScope,
        q: &AuditQuery,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let whose = Whose::Tenant(scope.tenant());
        match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::list(s.pool(), whose, q).await,
            crate::Backend::Postgres(p) => postgres::list(p.pool(), whose, q).await,
        }
    }

    /// Every tenant's events and the platform's, newest first: the operator's view.
    pub async fn list_all_audit_events(
        &self,
        _grant: &OperatorGrant,
        q: &AuditQuery,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::list(s.pool(), Whose::Everyone, q).await,
            crate::Backend::Postgres(p) => postgres::list(p.pool(), Whose::Everyone, q).await,
        }
    }

    /// Retention: deletes events older than `at` (unix seconds); how many went.
    pub async fn delete_audit_events_before(&self, at: i64) -> Result<u64, StoreError> {
        match &self.backend {
            crate::Backend::Sqlite(s) => sqlite::delete_before(s.pool(), at).await,
            crate::Backend::Postgres(p) => postgres::delete_before(p.pool(), at).await,
        }
    }
}
