//! The audit log: who changed what in the control plane, and every policy decision, with the
//! tenant it concerns (none for a platform-wide change), when, and the request it came from.
//!
//! Events are appended in batches and never updated; they are deleted only by retention
//! (`delete_audit_events_before`). A tenant's events outlive the tenant: the table has no
//! foreign key, and deleting a tenant leaves its trail. A tenant's events are read only
//! through its `TenantScope`; reading across tenants takes the `OperatorGrant`. The table has
//! no row-level security on PostgreSQL, so the filter of each read is its only guard. This
//! module must never update an event, nor read a tenant's events without its scope or the
//! grant.

use serde::{Deserialize, Serialize};
use tenantry_core::{OperatorGrant, TenantId, TenantScope};

use crate::db::sql;
use crate::row::{Row, json_col, to_json};
use crate::{Store, StoreError};

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

/// The columns of `audit_events`: `names` for an insert, or a select list of `sqlite` or
/// `postgres`.
macro_rules! event_cols {
    ($dialect:ident) => {
        concat!(
            "id, tenant_id, at, actor, action, target, outcome, request_id, ",
            json_col!($dialect, "detail")
        )
    };
}

fn event_from_row(row: &Row) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        id: row.text("id")?,
        tenant: row.opt_parsed("tenant_id", TenantId::new)?,
        at: row.int("at")?,
        actor: row.text("actor")?,
        action: row.text("action")?,
        target: row.opt_text("target")?,
        outcome: row.text("outcome")?,
        request_id: row.opt_text("request_id")?,
        detail: row.json("audit event", "detail")?,
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

impl Store {
    /// Appends events, all or none.
    pub async fn insert_audit_events(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut db = self.operator_data_tx().await?;
        for e in events {
            sql!(db.execute(
                sqlite: concat!("INSERT INTO audit_events (", event_cols!(names), ")
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                postgres: concat!("INSERT INTO audit_events (", event_cols!(names), ")
                                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)"),
                &e.id,
                e.tenant.as_ref().map(TenantId::as_str),
                e.at,
                &e.actor,
                &e.action,
                e.target.as_deref(),
                &e.outcome,
                e.request_id.as_deref(),
                to_json(&e.detail)?,
            ))?;
        }
        db.commit().await
    }

    /// One tenant's events, newest first.
    pub async fn list_audit_events(
        &self,
        scope: &TenantScope,
        q: &AuditQuery,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.audit_events(Whose::Tenant(scope.tenant()), q).await
    }

    /// Every tenant's events and the platform's, newest first: the operator's view.
    pub async fn list_all_audit_events(
        &self,
        _grant: &OperatorGrant,
        q: &AuditQuery,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.audit_events(Whose::Everyone, q).await
    }

    async fn audit_events(
        &self,
        whose: Whose<'_>,
        q: &AuditQuery,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let (all, tenant) = whose.bind();
        let rows = sql!(self.operator_data() => fetch_all(
            sqlite: concat!("SELECT ", event_cols!(sqlite), " FROM audit_events
                 WHERE (?1 OR tenant_id = ?2)
                   AND (?3 IS NULL OR at >= ?3)
                   AND (?4 IS NULL OR action LIKE ?4 ESCAPE '\\')
                   AND (?5 IS NULL OR id < ?5)
                 ORDER BY id DESC LIMIT ?6"),
            postgres: concat!("SELECT ", event_cols!(postgres), r#" FROM audit_events
                 WHERE ($1 OR tenant_id = $2)
                   AND ($3::bigint IS NULL OR at >= $3)
                   AND ($4::text IS NULL OR action LIKE $4 ESCAPE '\')
                   AND ($5::text IS NULL OR id < $5 COLLATE "C")
                 ORDER BY id COLLATE "C" DESC LIMIT $6"#),
            all,
            tenant,
            q.since,
            q.action_like(),
            q.before.as_deref(),
            q.limit(),
        ))?;
        rows.iter().map(event_from_row).collect()
    }

    /// Retention: deletes events older than `at` (unix seconds); how many went.
    pub async fn delete_audit_events_before(&self, at: i64) -> Result<u64, StoreError> {
        sql!(self.operator_data() => execute(
            sqlite: "DELETE FROM audit_events WHERE at < ?1",
            postgres: "DELETE FROM audit_events WHERE at < $1",
            at,
        ))
    }
}
