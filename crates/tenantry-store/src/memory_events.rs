//! Memory events (tenant data): immutable conversation turns per (tenant, memory, actor,
//! session). Every statement filters by the scope's tenant and, on PostgreSQL, runs in the
//! scoped transaction, so row-level security refuses other tenants' rows too. Erasure of an
//! actor (its events and records) lives here as well.

use std::collections::BTreeMap;

use tenantry_core::TenantScope;
use tenantry_memory::types::{Branch, Event, EventMetadataValue, PayloadItem};
use tenantry_memory::{ActorId, EventId, MemoryId, MemorySessionId};

use crate::db::sql;
use crate::row::{Row, json_col, to_json};
use crate::{Store, StoreError, missing_tenant};

/// The most events one listing reads.
pub const MAX_LISTED_EVENTS: i64 = 10_000;

macro_rules! event_cols {
    ($dialect:ident) => {
        concat!(
            "memory_id, id, actor_id, session_id, event_at, ",
            json_col!($dialect, "payload"),
            ", ",
            json_col!($dialect, "metadata"),
            ", branch_name, branch_root"
        )
    };
}

fn event_from_row(row: &Row) -> Result<Event, StoreError> {
    let branch = match row.opt_text("branch_name")? {
        Some(name) => Some(Branch {
            name,
            root_event_id: row.opt_parsed("branch_root", EventId::new)?,
        }),
        None => None,
    };
    let payload: Vec<PayloadItem> = row.json("event", "payload")?;
    let metadata: BTreeMap<String, EventMetadataValue> = row.json("event", "metadata")?;
    Ok(Event {
        memory_id: row.parsed("memory_id", MemoryId::new)?,
        event_id: row.parsed("id", EventId::new)?,
        actor_id: row.parsed("actor_id", ActorId::new)?,
        session_id: row.parsed("session_id", MemorySessionId::new)?,
        event_timestamp: row.int("event_at")?,
        payload,
        branch,
        metadata,
    })
}

impl Store {
    /// Stores an event; with a client token the same token on the same memory answers the
    /// event stored first. The answer says whether this call stored it.
    pub async fn insert_memory_event(
        &self,
        scope: &TenantScope,
        event: &Event,
        client_token: Option<&str>,
        created_at: i64,
    ) -> Result<(Event, bool), StoreError> {
        let tenant = scope.tenant();
        let inserted = sql!(self.tenant_data(tenant) => execute(
            sqlite: "INSERT INTO memory_events (tenant_id, memory_id, id, actor_id, session_id,
                        event_at, payload, metadata, branch_name, branch_root, client_token,
                        created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            postgres: "INSERT INTO memory_events (tenant_id, memory_id, id, actor_id, session_id,
                        event_at, payload, metadata, branch_name, branch_root, client_token,
                        created_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11, $12)",
            tenant.as_str(),
            event.memory_id.as_str(),
            event.event_id.as_str(),
            event.actor_id.as_str(),
            event.session_id.as_str(),
            event.event_timestamp,
            to_json(&event.payload)?,
            to_json(&event.metadata)?,
            event.branch.as_ref().map(|b| b.name.as_str()),
            event.branch.as_ref().and_then(|b| b.root_event_id.as_ref()).map(EventId::as_str),
            client_token,
            created_at,
        ));
        match inserted {
            Ok(_) => Ok((event.clone(), true)),
            Err(StoreError::Conflict(msg)) => {
                let Some(token) = client_token else {
                    return Err(StoreError::Conflict(msg));
                };
                let row = sql!(self.tenant_data(tenant) => fetch_optional(
                    sqlite: concat!("SELECT ", event_cols!(sqlite), " FROM memory_events
                                     WHERE tenant_id = ?1 AND memory_id = ?2 AND client_token = ?3"),
                    postgres: concat!("SELECT ", event_cols!(postgres), " FROM memory_events
                                       WHERE tenant_id = $1 AND memory_id = $2 AND client_token = $3"),
                    tenant.as_str(),
                    event.memory_id.as_str(),
                    token,
                ))?;
                match row {
                    Some(row) => Ok((event_from_row(&row)?, false)),
                    None => Err(StoreError::Conflict(msg)),
                }
            }
            Err(e) => Err(missing_tenant(e, tenant)
                .missing_as(|| format!("memory {} not found", event.memory_id))),
        }
    }

    /// One event of a session.
    pub async fn get_memory_event(
        &self,
        scope: &TenantScope,
        memory: &MemoryId,
        actor: &ActorId,
        session: &MemorySessionId,
        id: &EventId,
    ) -> Result<Option<Event>, StoreError> {
        let tenant = scope.tenant();
        let row = sql!(self.tenant_data(tenant) => fetch_optional(
            sqlite: concat!("SELECT ", event_cols!(sqlite), " FROM memory_events
                             WHERE tenant_id = ?1 AND memory_id = ?2 AND id = ?3
                               AND actor_id = ?4 AND session_id = ?5"),
            postgres: concat!("SELECT ", event_cols!(postgres), " FROM memory_events
                               WHERE tenant_id = $1 AND memory_id = $2 AND id = $3
                                 AND actor_id = $4 AND session_id = $5"),
            tenant.as_str(),
            memory.as_str(),
            id.as_str(),
            actor.as_str(),
            session.as_str(),
        ))?;
        row.as_ref().map(event_from_row).transpose()
    }

    /// Deletes one event of a session; `false` if there was none.
    pub async fn delete_memory_event(
        &self,
        scope: &TenantScope,
        memory: &MemoryId,
        actor: &ActorId,
        session: &MemorySessionId,
        id: &EventId,
    ) -> Result<bool, StoreError> {
        let tenant = scope.tenant();
        let n = sql!(self.tenant_data(tenant) => execute(
            sqlite: "DELETE FROM memory_events WHERE tenant_id = ?1 AND memory_id = ?2 AND id = ?3
                       AND actor_id = ?4 AND session_id = ?5",
            postgres: "DELETE FROM memory_events WHERE tenant_id = $1 AND memory_id = $2 AND id = $3
                         AND actor_id = $4 AND session_id = $5",
            tenant.as_str(),
            memory.as_str(),
            id.as_str(),
            actor.as_str(),
            session.as_str(),
        ))?;
        Ok(n == 1)
    }

    /// A session's events (at most `MAX_LISTED_EVENTS`), newest or oldest first.
    pub async fn list_memory_events(
        &self,
        scope: &TenantScope,
        memory: &MemoryId,
        actor: &ActorId,
        session: &MemorySessionId,
        newest_first: bool,
    ) -> Result<Vec<Event>, StoreError> {
        let tenant = scope.tenant();
        let rows = if newest_first {
            sql!(self.tenant_data(tenant) => fetch_all(
                sqlite: concat!("SELECT ", event_cols!(sqlite), " FROM memory_events
                                 WHERE tenant_id = ?1 AND memory_id = ?2 AND actor_id = ?3
                                   AND session_id = ?4
                                 ORDER BY event_at DESC, id DESC LIMIT ?5"),
                postgres: concat!("SELECT ", event_cols!(postgres), r#" FROM memory_events
                                   WHERE tenant_id = $1 AND memory_id = $2 AND actor_id = $3
                                     AND session_id = $4
                                   ORDER BY event_at DESC, id COLLATE "C" DESC LIMIT $5"#),
                tenant.as_str(), memory.as_str(), actor.as_str(), session.as_str(),
                MAX_LISTED_EVENTS,
            ))?
        } else {
            sql!(self.tenant_data(tenant) => fetch_all(
                sqlite: concat!("SELECT ", event_cols!(sqlite), " FROM memory_events
                                 WHERE tenant_id = ?1 AND memory_id = ?2 AND actor_id = ?3
                                   AND session_id = ?4
                                 ORDER BY event_at, id LIMIT ?5"),
                postgres: concat!("SELECT ", event_cols!(postgres), r#" FROM memory_events
                                   WHERE tenant_id = $1 AND memory_id = $2 AND actor_id = $3
                                     AND session_id = $4
                                   ORDER BY event_at, id COLLATE "C" LIMIT $5"#),
                tenant.as_str(), memory.as_str(), actor.as_str(), session.as_str(),
                MAX_LISTED_EVENTS,
            ))?
        };
        rows.iter().map(event_from_row).collect()
    }

    /// The actors with events in a memory, by id.
    pub async fn list_memory_actors(
        &self,
        scope: &TenantScope,
        memory: &MemoryId,
    ) -> Result<Vec<ActorId>, StoreError> {
        let tenant = scope.tenant();
        let rows = sql!(self.tenant_data(tenant) => fetch_all(
            sqlite: "SELECT DISTINCT actor_id FROM memory_events
                     WHERE tenant_id = ?1 AND memory_id = ?2 ORDER BY actor_id LIMIT 10000",
            postgres: r#"SELECT DISTINCT actor_id COLLATE "C" AS actor_id FROM memory_events
                       WHERE tenant_id = $1 AND memory_id = $2 ORDER BY 1 LIMIT 10000"#,
            tenant.as_str(),
            memory.as_str(),
        ))?;
        rows.iter()
            .map(|r| r.parsed("actor_id", ActorId::new))
            .collect()
    }

    /// An actor's sessions in a memory with their first event's time, newest first.
    pub async fn list_memory_sessions(
        &self,
        scope: &TenantScope,
        memory: &MemoryId,
        actor: &ActorId,
    ) -> Result<Vec<(MemorySessionId, i64)>, StoreError> {
        let tenant = scope.tenant();
        let rows = sql!(self.tenant_data(tenant) => fetch_all(
            sqlite: "SELECT session_id, min(event_at) AS first_at FROM memory_events
                     WHERE tenant_id = ?1 AND memory_id = ?2 AND actor_id = ?3
                     GROUP BY session_id ORDER BY first_at DESC, session_id LIMIT 10000",
            postgres: r#"SELECT session_id, min(event_at) AS first_at FROM memory_events
                       WHERE tenant_id = $1 AND memory_id = $2 AND actor_id = $3
                       GROUP BY session_id ORDER BY first_at DESC, session_id COLLATE "C"
                       LIMIT 10000"#,
            tenant.as_str(),
            memory.as_str(),
            actor.as_str(),
        ))?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.parsed("session_id", MemorySessionId::new)?,
                    r.int("first_at")?,
                ))
            })
            .collect()
    }

    /// Deletes the scope's events of a memory stored before `before_ms` (the expiry job).
    pub async fn delete_expired_memory_events(
        &self,
        scope: &TenantScope,
        memory: &MemoryId,
        before_ms: i64,
    ) -> Result<u64, StoreError> {
        let tenant = scope.tenant();
        sql!(self.tenant_data(tenant) => execute(
            sqlite: "DELETE FROM memory_events
                     WHERE tenant_id = ?1 AND memory_id = ?2 AND created_at < ?3",
            postgres: "DELETE FROM memory_events
                       WHERE tenant_id = $1 AND memory_id = $2 AND created_at < $3",
            tenant.as_str(),
            memory.as_str(),
            before_ms,
        ))
    }

    /// Erasure: deletes every event and record of `actor` in every memory of the scope's
    /// tenant (shared memories included), in one transaction; (events, records) removed.
    pub async fn erase_memory_actor(
        &self,
        scope: &TenantScope,
        actor: &ActorId,
    ) -> Result<(u64, u64), StoreError> {
        let tenant = scope.tenant();
        let mut db = self.tenant_data_tx(tenant).await?;
        let events = sql!(db.execute(
            sqlite: "DELETE FROM memory_events WHERE tenant_id = ?1 AND actor_id = ?2",
            postgres: "DELETE FROM memory_events WHERE tenant_id = $1 AND actor_id = $2",
            tenant.as_str(),
            actor.as_str(),
        ))?;
        let records = sql!(db.execute(
            sqlite: "DELETE FROM memory_records WHERE tenant_id = ?1 AND actor_id = ?2",
            postgres: "DELETE FROM memory_records WHERE tenant_id = $1 AND actor_id = $2",
            tenant.as_str(),
            actor.as_str(),
        ))?;
        db.commit().await?;
        Ok((events, records))
    }
}
