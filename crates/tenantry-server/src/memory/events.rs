//! Events: create (idempotent by client token), get, delete, list with filters, actors and
//! sessions. Every operation first finds the memory in the caller's scope (its tenant's own or
//! a shared one) and checks the actor against the caller's reach.

use tenantry_core::unix_now;
use tenantry_memory::paging;
use tenantry_memory::retrieve::{check_event_metadata, check_filters, event_passes};
use tenantry_memory::types::{
    ActorSummary, Event, EventFilter, ListEvents, MAX_EVENT_TEXT, MAX_PAYLOAD_ITEMS, NewEvent,
    Order, Page, PageRequest, PayloadItem, SessionSummary,
};
use tenantry_memory::{ActorId, EventId, MemoryError, MemoryId, MemorySessionId};

use super::{MemoryCaller, MemoryResult, MemoryService, MemoryServiceError, resources};

/// The largest blob of one payload item, as JSON text.
const MAX_BLOB_BYTES: usize = 100 * 1024;
const MAX_CLIENT_TOKEN: usize = 256;
/// The branch every event without one is on.
const MAIN_BRANCH: &str = "main";

fn check_branch_name(name: &str) -> Result<(), MemoryError> {
    let b = name.as_bytes();
    let ok = (1..=100).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_".contains(c));
    if ok {
        Ok(())
    } else {
        Err(MemoryError::Invalid(format!(
            "invalid branch name {:?}",
            name.chars().take(100).collect::<String>()
        )))
    }
}

fn check_new_event(e: &NewEvent) -> Result<(), MemoryError> {
    if e.payload.is_empty() || e.payload.len() > MAX_PAYLOAD_ITEMS {
        return Err(MemoryError::invalid("payload: 1 to 100 items"));
    }
    for item in &e.payload {
        match item {
            PayloadItem::Conversational(c) => {
                if c.content.text.is_empty() || c.content.text.len() > MAX_EVENT_TEXT {
                    return Err(MemoryError::invalid(
                        "conversational text: 1 to 100000 bytes",
                    ));
                }
            }
            PayloadItem::Blob(v) => {
                if serde_json::to_string(v).map_or(true, |s| s.len() > MAX_BLOB_BYTES) {
                    return Err(MemoryError::invalid("blob: at most 100 KiB of JSON"));
                }
            }
        }
    }
    if let Some(b) = &e.branch {
        check_branch_name(&b.name)?;
    }
    if let Some(t) = &e.client_token
        && (t.is_empty() || t.len() > MAX_CLIENT_TOKEN)
    {
        return Err(MemoryError::invalid("clientToken: 1 to 256 bytes"));
    }
    check_event_metadata(&e.metadata)
}

pub(super) async fn create(
    svc: &MemoryService,
    caller: &MemoryCaller,
    memory: &MemoryId,
    e: NewEvent,
) -> MemoryResult<Event> {
    caller.reach().check_actor(&e.actor_id)?;
    check_new_event(&e)?;
    let m = resources::get(svc, caller, memory).await?;
    let session = match e.session_id {
        Some(s) => s,
        None => MemorySessionId::new("default")?,
    };
    let event = Event {
        memory_id: m.id.clone(),
        actor_id: e.actor_id,
        session_id: session,
        event_id: EventId::generate(e.event_timestamp),
        event_timestamp: e.event_timestamp,
        payload: e.payload,
        branch: e.branch,
        metadata: e.metadata,
    };
    let now = unix_now().saturating_mul(1000);
    let (stored, created) = svc
        .store()
        .insert_memory_event(caller.scope(), &event, e.client_token.as_deref(), now)
        .await?;
    if stored.actor_id != event.actor_id || stored.session_id != event.session_id {
        // A client token reused for another actor or session names another event.
        caller.reach().check_actor(&stored.actor_id)?;
        return Err(MemoryError::Conflict(
            "clientToken was used for another actor or session of this memory".into(),
        )
        .into());
    }
    if created && !m.strategies.is_empty() {
        svc.extraction.submit(super::extraction::Job {
            memory: m,
            caller: caller.clone(),
            event: stored.clone(),
        });
    }
    Ok(stored)
}

pub(super) async fn get(
    svc: &MemoryService,
    caller: &MemoryCaller,
    memory: &MemoryId,
    actor: &ActorId,
    session: &MemorySessionId,
    id: &EventId,
) -> MemoryResult<Event> {
    caller.reach().check_actor(actor)?;
    resources::get(svc, caller, memory).await?;
    svc.store()
        .get_memory_event(caller.scope(), memory, actor, session, id)
        .await?
        .ok_or_else(|| MemoryServiceError::not_found("event"))
}

pub(super) async fn delete(
    svc: &MemoryService,
    caller: &MemoryCaller,
    memory: &MemoryId,
    actor: &ActorId,
    session: &MemorySessionId,
    id: &EventId,
) -> MemoryResult<()> {
    caller.reach().check_actor(actor)?;
    resources::get(svc, caller, memory).await?;
    if svc
        .store()
        .delete_memory_event(caller.scope(), memory, actor, session, id)
        .await?
    {
        Ok(())
    } else {
        Err(MemoryServiceError::not_found("event"))
    }
}

/// The milliseconds an event id starts with.
fn id_millis(id: &EventId) -> i64 {
    id.as_str()
        .split('#')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(i64::MAX)
}

/// Keeps the events a filter selects (branch, then metadata).
fn filtered(events: Vec<Event>, filter: &EventFilter) -> Vec<Event> {
    let by_branch: Vec<Event> = match &filter.branch {
        None => events,
        Some(b) if b.name == MAIN_BRANCH => events
            .into_iter()
            .filter(|e| e.branch.as_ref().is_none_or(|x| x.name == MAIN_BRANCH))
            .collect(),
        Some(b) => {
            let fork = events
                .iter()
                .filter_map(|e| e.branch.as_ref())
                .filter(|x| x.name == b.name)
                .find_map(|x| x.root_event_id.as_ref())
                .map(id_millis);
            events
                .into_iter()
                .filter(|e| match &e.branch {
                    Some(x) => x.name == b.name,
                    None => {
                        b.include_parent_branches && fork.is_some_and(|at| e.event_timestamp <= at)
                    }
                })
                .collect()
        }
    };
    by_branch
        .into_iter()
        .filter(|e| event_passes(&e.metadata, &filter.event_metadata))
        .collect()
}

pub(super) async fn list(
    svc: &MemoryService,
    caller: &MemoryCaller,
    memory: &MemoryId,
    actor: &ActorId,
    session: &MemorySessionId,
    request: ListEvents,
) -> MemoryResult<Page<Event>> {
    caller.reach().check_actor(actor)?;
    let size = paging::page_size(request.max_results)?;
    let filter = request.filter.unwrap_or_default();
    check_filters(&filter.event_metadata, true)?;
    if let Some(b) = &filter.branch {
        check_branch_name(&b.name)?;
    }
    let tag = match request.order {
        Order::NewestFirst => "events-newest",
        Order::OldestFirst => "events-oldest",
    };
    let start = paging::offset(tag, request.next_token.as_deref())?;
    resources::get(svc, caller, memory).await?;
    let all = svc
        .store()
        .list_memory_events(
            caller.scope(),
            memory,
            actor,
            session,
            request.order == Order::NewestFirst,
        )
        .await?;
    let mut page = paging::cut(tag, filtered(all, &filter), start, size);
    if request.include_payloads == Some(false) {
        for e in &mut page.items {
            e.payload.clear();
        }
    }
    Ok(page)
}

pub(super) async fn actors(
    svc: &MemoryService,
    caller: &MemoryCaller,
    memory: &MemoryId,
    page: PageRequest,
) -> MemoryResult<Page<ActorSummary>> {
    let size = paging::page_size(page.max_results)?;
    let start = paging::offset("actors", page.next_token.as_deref())?;
    resources::get(svc, caller, memory).await?;
    let mut all = svc
        .store()
        .list_memory_actors(caller.scope(), memory)
        .await?;
    if let Some(own) = caller.reach().actor() {
        all.retain(|a| a == own);
    }
    let all = all
        .into_iter()
        .map(|actor_id| ActorSummary { actor_id })
        .collect();
    Ok(paging::cut("actors", all, start, size))
}

pub(super) async fn sessions(
    svc: &MemoryService,
    caller: &MemoryCaller,
    memory: &MemoryId,
    actor: &ActorId,
    page: PageRequest,
) -> MemoryResult<Page<SessionSummary>> {
    caller.reach().check_actor(actor)?;
    let size = paging::page_size(page.max_results)?;
    let start = paging::offset("sessions", page.next_token.as_deref())?;
    resources::get(svc, caller, memory).await?;
    let all = svc
        .store()
        .list_memory_sessions(caller.scope(), memory, actor)
        .await?
        .into_iter()
        .map(|(session_id, created_at)| SessionSummary {
            session_id,
            actor_id: actor.clone(),
            created_at,
        })
        .collect();
    Ok(paging::cut("sessions", all, start, size))
}
