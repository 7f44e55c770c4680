//! Sessions (tenant data): one row per session of a (tenant, user) on a runtime, keyed by
//! `(tenant_id, id)`, with where it is in its life and the node that runs it.
//!
//! Every statement of a tenant's sessions filters by the scope's tenant, and on PostgreSQL runs
//! in the tenant's scoped transaction. The two reads across tenants (the storage sweep's and a
//! starting node's) take a `CrossTenantGrant` (the operator's or the platform's own) and, on
//! PostgreSQL, run read-only as `tenantry_operator`. This module must never write a session outside its tenant's scope, nor
//! decide which status transitions make sense (the runtime layer does).

use serde::{Deserialize, Serialize};
use tenantry_core::{CrossTenantGrant, RuntimeName, SessionId, TenantId, TenantScope, UserId};

use crate::db::{scalar, sql};
use crate::row::Row;
use crate::{Store, StoreError, missing_tenant};

/// The most sessions `Store::list_sessions` returns.
pub const LIST_SESSIONS_LIMIT: u32 = 1000;

/// Where a session is in its life. The runtime layer decides the transitions; the store only
/// records them (`Store::set_session_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// In use: invocations go to its sandbox.
    Active,
    /// Stopped by its user, the idle timeout or the maximum lifetime; invoking its id again
    /// resumes it with its session storage, until that storage expires.
    Stopped,
    /// Ended for good (e.g. its storage expired); the row waits for the sweeper.
    Expired,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "active",
            SessionStatus::Stopped => "stopped",
            SessionStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "stopped" => Some(Self::Stopped),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// A session of one (tenant, user) on one runtime. Its id is chosen by the caller and unique
/// only within the tenant: the key is `(tenant_id, id)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: SessionId,
    pub tenant_id: TenantId,
    /// The user that created the session; nobody else may use it.
    pub user_id: UserId,
    pub runtime: RuntimeName,
    pub status: SessionStatus,
    pub created_at: i64,
    pub last_active_at: i64,
    /// When the session last went from active to stopped or expired; `None` while active.
    pub stopped_at: Option<i64>,
    /// Why it stopped (e.g. `"user"`, `"idle_timeout"`); `None` while active.
    pub stop_reason: Option<String>,
    /// The server process (node) that runs the session, or ran it last (`""` if unknown).
    pub node: String,
}

/// The columns of `sessions`, the same in both dialects.
macro_rules! session_cols {
    () => {
        "tenant_id, id, user_id, runtime, status, created_at, last_active_at, stopped_at,
         stop_reason, node"
    };
}

fn session_from_row(row: &Row) -> Result<SessionRecord, StoreError> {
    let id = row.parsed("id", SessionId::new)?;
    let status_text = row.text("status")?;
    let status = SessionStatus::parse(&status_text).ok_or_else(|| {
        StoreError::corrupt(format!("session {id}: unknown status {status_text:?}"))
    })?;
    Ok(SessionRecord {
        tenant_id: row.parsed("tenant_id", TenantId::new)?,
        user_id: row.parsed("user_id", UserId::new)?,
        runtime: row.parsed("runtime", RuntimeName::new)?,
        status,
        created_at: row.int("created_at")?,
        last_active_at: row.int("last_active_at")?,
        stopped_at: row.opt_int("stopped_at")?,
        stop_reason: row.opt_text("stop_reason")?,
        node: row.text("node")?,
        id,
    })
}

impl Store {
    /// Stores a new session. Its `tenant_id` must be the scope's tenant and its id must be valid
    /// (`tenantry_core::SessionId`); anything else is refused as a bug. `StoreError::Conflict` if the
    /// tenant already has a session with that id (another tenant's session of the same id is
    /// another session, and does not conflict).
    pub async fn insert_session(
        &self,
        scope: &TenantScope,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        let tenant = scope.tenant();
        if &session.tenant_id != tenant {
            return Err(StoreError::Database(format!(
                "refusing to store a session of tenant {} in the scope of tenant {tenant}",
                session.tenant_id
            )));
        }
        let s = session;
        sql!(self.tenant_data(tenant) => execute(
            sqlite: concat!("INSERT INTO sessions (", session_cols!(), ")
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            postgres: concat!("INSERT INTO sessions (", session_cols!(), ")
                               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
            tenant.as_str(),
            s.id.as_str(),
            s.user_id.as_str(),
            s.runtime.as_str(),
            s.status.as_str(),
            s.created_at,
            s.last_active_at,
            s.stopped_at,
            s.stop_reason.as_deref(),
            &s.node,
        ))
        .map_err(|e| e.conflict_as(|| format!("session {} already exists", s.id)))
        .map_err(|e| missing_tenant(e, tenant))?;
        Ok(())
    }

    /// The scope's session `id`; `None` if the scope's tenant has no such session. Whether the
    /// caller's user may use it is the caller's check (`user_id`).
    pub async fn get_session(
        &self,
        scope: &TenantScope,
        id: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let tenant = scope.tenant();
        let row = sql!(self.tenant_data(tenant) => fetch_optional(
            sqlite: concat!("SELECT ", session_cols!(), " FROM sessions
                             WHERE tenant_id = ?1 AND id = ?2"),
            postgres: concat!("SELECT ", session_cols!(), " FROM sessions
                               WHERE tenant_id = $1 AND id = $2"),
            tenant.as_str(),
            id,
        ))?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// The scope's sessions, of one user and one runtime when given, newest first (by
    /// `created_at`, then id), at most `LIST_SESSIONS_LIMIT`.
    pub async fn list_sessions(
        &self,
        scope: &TenantScope,
        user: Option<&UserId>,
        runtime: Option<&RuntimeName>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let tenant = scope.tenant();
        let rows = sql!(self.tenant_data(tenant) => fetch_all(
            sqlite: concat!("SELECT ", session_cols!(), " FROM sessions
                WHERE tenant_id = ?1 AND (?2 IS NULL OR user_id = ?2)
                  AND (?3 IS NULL OR runtime = ?3)
                ORDER BY created_at DESC, id DESC
                LIMIT ?4"),
            postgres: concat!("SELECT ", session_cols!(), r#" FROM sessions
                WHERE tenant_id = $1 AND ($2::text IS NULL OR user_id = $2)
                  AND ($3::text IS NULL OR runtime = $3)
                ORDER BY created_at DESC, id COLLATE "C" DESC
                LIMIT $4"#),
            tenant.as_str(),
            user.map(UserId::as_str),
            runtime.map(RuntimeName::as_str),
            i64::from(LIST_SESSIONS_LIMIT),
        ))?;
        rows.iter().map(session_from_row).collect()
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
        let tenant = scope.tenant();
        let row = sql!(self.tenant_data(tenant) => fetch_optional(
            sqlite: concat!("UPDATE sessions SET
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
                 RETURNING ", session_cols!()),
            postgres: concat!("UPDATE sessions SET
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
                 RETURNING ", session_cols!()),
            tenant.as_str(),
            id,
            status.as_str(),
            reason,
            at,
        ))?;
        row.as_ref().map(session_from_row).transpose()
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
        let tenant = scope.tenant();
        let row = sql!(self.tenant_data(tenant) => fetch_optional(
            sqlite: concat!("UPDATE sessions SET status = 'active', stopped_at = NULL,
                     stop_reason = NULL, last_active_at = MAX(last_active_at, ?4), node = ?3
                 WHERE tenant_id = ?1 AND id = ?2
                 RETURNING ", session_cols!()),
            postgres: concat!("UPDATE sessions SET status = 'active', stopped_at = NULL,
                     stop_reason = NULL, last_active_at = GREATEST(last_active_at, $4), node = $3
                 WHERE tenant_id = $1 AND id = $2
                 RETURNING ", session_cols!()),
            tenant.as_str(),
            id,
            node,
            at,
        ))?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Moves the session's `last_active_at` forward to `at` (never back); `false` if the
    /// scope's tenant has no such session.
    pub async fn touch_session(
        &self,
        scope: &TenantScope,
        id: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        let tenant = scope.tenant();
        let touched = sql!(self.tenant_data(tenant) => execute(
            sqlite: "UPDATE sessions SET last_active_at = MAX(last_active_at, ?3)
                     WHERE tenant_id = ?1 AND id = ?2",
            postgres: "UPDATE sessions SET last_active_at = GREATEST(last_active_at, $3)
                       WHERE tenant_id = $1 AND id = $2",
            tenant.as_str(),
            id,
            at,
        ))?;
        Ok(touched == 1)
    }

    /// How many of the scope's sessions are `Active`, on one runtime when given.
    pub async fn count_active_sessions(
        &self,
        scope: &TenantScope,
        runtime: Option<&RuntimeName>,
    ) -> Result<u64, StoreError> {
        let tenant = scope.tenant();
        let n: i64 = scalar!(self.tenant_data(tenant) => fetch_one(
            sqlite: "SELECT count(*) FROM sessions
                     WHERE tenant_id = ?1 AND status = 'active' AND (?2 IS NULL OR runtime = ?2)",
            postgres: "SELECT count(*) FROM sessions
                       WHERE tenant_id = $1 AND status = 'active'
                         AND ($2::text IS NULL OR runtime = $2)",
            tenant.as_str(),
            runtime.map(RuntimeName::as_str),
        ))?;
        u64::try_from(n).map_err(|_| StoreError::corrupt(format!("session count {n}")))
    }

    /// Deletes the scope's session row; `false` if the scope's tenant has no such session. The
    /// storage sweeper calls it with `TenantScope::for_operator` for each tenant that
    /// `sessions_idle_before` named.
    pub async fn delete_session(&self, scope: &TenantScope, id: &str) -> Result<bool, StoreError> {
        let tenant = scope.tenant();
        let deleted = sql!(self.tenant_data(tenant) => execute(
            sqlite: "DELETE FROM sessions WHERE tenant_id = ?1 AND id = ?2",
            postgres: "DELETE FROM sessions WHERE tenant_id = $1 AND id = $2",
            tenant.as_str(),
            id,
        ))?;
        Ok(deleted == 1)
    }

    /// Operator, across tenants: the stopped or expired sessions whose `last_active_at` is
    /// before `before` (exclusive), least recently active first, at most `limit`, as
    /// `(tenant, session id, runtime)`. Active sessions are never returned, however old. For
    /// the storage-expiry sweeper, which deletes each one's storage and then its row through
    /// `delete_session` in that tenant's scope.
    pub async fn sessions_idle_before(
        &self,
        grant: impl CrossTenantGrant,
        before: i64,
        limit: u32,
    ) -> Result<Vec<(TenantId, SessionId, RuntimeName)>, StoreError> {
        let rows = sql!(self.all_tenants(&grant) => fetch_all(
            sqlite: "SELECT tenant_id, id, runtime FROM sessions
                     WHERE status IN ('stopped', 'expired') AND last_active_at < ?1
                     ORDER BY last_active_at, tenant_id, id
                     LIMIT ?2",
            postgres: r#"SELECT tenant_id, id, runtime FROM sessions
                         WHERE status IN ('stopped', 'expired') AND last_active_at < $1
                         ORDER BY last_active_at, tenant_id COLLATE "C", id COLLATE "C"
                         LIMIT $2"#,
            before,
            i64::from(limit),
        ))?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.parsed("tenant_id", TenantId::new)?,
                    row.parsed("id", SessionId::new)?,
                    row.parsed("runtime", RuntimeName::new)?,
                ))
            })
            .collect()
    }

    /// Operator, across tenants: the sessions recorded `Active` on `node`, at most `limit`, as
    /// `(tenant, session id)`. A node starting up asks for its own: any it finds were left by
    /// a process of that node that died without stopping them.
    pub async fn sessions_active_on(
        &self,
        grant: impl CrossTenantGrant,
        node: &str,
        limit: u32,
    ) -> Result<Vec<(TenantId, SessionId)>, StoreError> {
        let rows = sql!(self.all_tenants(&grant) => fetch_all(
            sqlite: "SELECT tenant_id, id FROM sessions WHERE node = ?1 AND status = 'active'
                     ORDER BY tenant_id, id LIMIT ?2",
            postgres: r#"SELECT tenant_id, id FROM sessions WHERE node = $1 AND status = 'active'
                         ORDER BY tenant_id COLLATE "C", id COLLATE "C" LIMIT $2"#,
            node,
            i64::from(limit),
        ))?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.parsed("tenant_id", TenantId::new)?,
                    row.parsed("id", SessionId::new)?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored text of each status is its serde name, and parses back.
    #[test]
    fn stored_statuses_match_serde_names() {
        for status in [
            SessionStatus::Active,
            SessionStatus::Stopped,
            SessionStatus::Expired,
        ] {
            let json = serde_json::to_value(status).ok();
            assert_eq!(json, Some(serde_json::json!(status.as_str())));
            assert_eq!(SessionStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(SessionStatus::parse("Active"), None);
    }
}
