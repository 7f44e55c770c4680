//! Long-term records: retrieval, listing, reading, deleting, and direct batch writes.
//!
//! A caller limited to one actor reads only that actor's records (the store filters by the
//! record's actor), and writes records only for that actor: a namespace that a strategy's
//! template makes for another actor is refused.

use tenantry_core::unix_now;
use tenantry_memory::extract::normalize;
use tenantry_memory::namespace::{check_namespace, match_template, query_prefix};
use tenantry_memory::retrieve::{
    Candidate, check_filters, check_record_metadata, query_terms, rank, record_passes,
};
use tenantry_memory::types::{
    BatchOutcome, ListRecords, MAX_BATCH, MAX_RECORD_TEXT, Memory, NewRecord, Page, Record,
    RecordOutcome, RecordStatus, RecordUpdate, RetrieveRecords, ScoredRecord, TextContent,
};
use tenantry_memory::{ActorId, MemoryError, MemoryId, RecordId, paging};
use tenantry_store::RecordQuery;

use super::{MemoryCaller, MemoryResult, MemoryService, MemoryServiceError, resources};

/// The strategy id of a record written directly without one.
pub const DIRECT_STRATEGY: &str = "direct";
const DEFAULT_TOP_K: u32 = 10;

fn check_strategy_ref(s: &str) -> Result<(), MemoryError> {
    let b = s.as_bytes();
    let ok = (1..=100).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_".contains(c));
    if ok {
        Ok(())
    } else {
        Err(MemoryError::invalid("invalid memoryStrategyId"))
    }
}

pub(super) async fn retrieve(
    svc: &MemoryService,
    caller: &MemoryCaller,
    memory: &MemoryId,
    r: RetrieveRecords,
) -> MemoryResult<Vec<ScoredRecord>> {
    let prefix = query_prefix(r.namespace.as_deref())?;
    if r.search_query.is_empty() || r.search_query.len() > 10_000 {
        return Err(MemoryError::invalid("searchQuery: 1 to 10000 bytes").into());
    }
    let top_k = r.top_k.unwrap_or(DEFAULT_TOP_K);
    if !(1..=100).contains(&top_k) {
        return Err(MemoryError::invalid("topK must be 1 to 100").into());
    }
    if let Some(s) = &r.memory_strategy_id {
        check_strategy_ref(s)?;
    }
    check_filters(&r.metadata_filters, false)?;
    resources::get(svc, caller, memory).await?;
    let q = RecordQuery {
        memory,
        prefix: &prefix,
        strategy: r.memory_strategy_id.as_deref(),
        actor: caller.reach().actor(),
    };
    let found = svc
        .store()
        .search_memory_records(caller.scope(), &q, &query_terms(&r.search_query))
        .await?;
    let candidates = found
        .into_iter()
        .filter(|(rec, _)| record_passes(&rec.metadata, &r.metadata_filters))
        .map(|(record, score)| Candidate {
            record: ScoredRecord { record, score },
            embedding: None,
        })
        .collect();
    Ok(rank(candidates, None, top_k as usize))
}

pub(super) async fn list(
    svc: &MemoryService,
    caller: &MemoryCaller,
    memory: &MemoryId,
    r: ListRecords,
) -> MemoryResult<Page<Record>> {
    let prefix = query_prefix(r.namespace.as_deref())?;
    let size = paging::page_size(r.max_results)?;
    let start = paging::offset("records", r.next_token.as_deref())?;
    if let Some(s) = &r.memory_strategy_id {
        check_strategy_ref(s)?;
    }
    check_filters(&r.metadata_filters, false)?;
    resources::get(svc, caller, memory).await?;
    let q = RecordQuery {
        memory,
        prefix: &prefix,
        strategy: r.memory_strategy_id.as_deref(),
        actor: caller.reach().actor(),
    };
    let all: Vec<Record> = svc
        .store()
        .list_memory_records(caller.scope(), &q)
        .await?
        .into_iter()
        .filter(|rec| record_passes(&rec.metadata, &r.metadata_filters))
        .collect();
    Ok(paging::cut("records", all, start, size))
}

pub(super) async fn get(
    svc: &MemoryService,
    caller: &MemoryCaller,
    memory: &MemoryId,
    id: &RecordId,
) -> MemoryResult<Record> {
    resources::get(svc, caller, memory).await?;
    svc.store()
        .get_memory_record(caller.scope(), memory, id, caller.reach().actor())
        .await?
        .ok_or_else(|| MemoryServiceError::not_found("memory record"))
}

pub(super) async fn delete(
    svc: &MemoryService,
    caller: &MemoryCaller,
    memory: &MemoryId,
    id: &RecordId,
) -> MemoryResult<()> {
    resources::get(svc, caller, memory).await?;
    if svc
        .store()
        .delete_memory_record(caller.scope(), memory, id, caller.reach().actor())
        .await?
    {
        Ok(())
    } else {
        Err(MemoryServiceError::not_found("memory record"))
    }
}

/// The strategy and actor a namespace was made for, if one of the memory's templates makes it.
fn made_for(m: &Memory, strategy: Option<&str>, ns: &str) -> (Option<String>, Option<ActorId>) {
    for s in &m.strategies {
        if strategy.is_some_and(|id| id != s.strategy_id.as_str()) {
            continue;
        }
        for t in &s.namespaces {
            if let Some((actor, _)) = match_template(t, &s.strategy_id, ns) {
                return (Some(s.strategy_id.to_string()), actor);
            }
        }
    }
    (None, None)
}

/// The one namespace of a write, checked.
fn one_namespace(namespaces: &[String]) -> Result<&str, MemoryError> {
    match namespaces {
        [ns] => {
            check_namespace(ns)?;
            Ok(ns)
        }
        _ => Err(MemoryError::invalid("a record has exactly one namespace")),
    }
}

fn check_text(t: &TextContent) -> Result<(), MemoryError> {
    if t.text.trim().is_empty() || t.text.len() > MAX_RECORD_TEXT {
        return Err(MemoryError::invalid("record text: 1 to 16000 bytes"));
    }
    Ok(())
}

/// The actor a write is for: the caller's own when it is limited to one (another named or
/// implied actor is refused), else the one named, else the one the namespace implies.
fn actor_for(
    caller: &MemoryCaller,
    named: Option<ActorId>,
    implied: Option<ActorId>,
) -> Result<Option<ActorId>, MemoryError> {
    if let Some(a) = &named {
        caller.reach().check_actor(a)?;
    }
    if let Some(a) = &implied {
        caller.reach().check_actor(a)?;
    }
    Ok(caller.reach().actor().cloned().or(named).or(implied))
}

fn failed(id: String, request: Option<String>, e: &MemoryServiceError) -> RecordOutcome {
    RecordOutcome {
        memory_record_id: id,
        status: RecordStatus::Failed,
        request_identifier: request,
        error_code: Some(e.code().http_status()),
        error_message: Some(e.to_string()),
    }
}

fn succeeded(id: &RecordId, request: Option<String>) -> RecordOutcome {
    RecordOutcome {
        memory_record_id: id.to_string(),
        status: RecordStatus::Succeeded,
        request_identifier: request,
        error_code: None,
        error_message: None,
    }
}

fn check_batch(n: usize) -> Result<(), MemoryError> {
    if n == 0 || n > MAX_BATCH {
        return Err(MemoryError::invalid("a batch has 1 to 100 records"));
    }
    Ok(())
}

async fn create_one(
    svc: &MemoryService,
    caller: &MemoryCaller,
    m: &Memory,
    r: NewRecord,
) -> MemoryResult<RecordId> {
    let ns = one_namespace(&r.namespaces)?.to_string();
    check_text(&r.content)?;
    check_record_metadata(&r.metadata)?;
    if let Some(s) = &r.memory_strategy_id {
        check_strategy_ref(s)?;
    }
    let (strategy, implied) = made_for(m, r.memory_strategy_id.as_deref(), &ns);
    let actor = actor_for(caller, r.actor_id, implied)?;
    let now = unix_now().saturating_mul(1000);
    let record = Record {
        memory_record_id: RecordId::generate(),
        memory_strategy_id: r
            .memory_strategy_id
            .or(strategy)
            .unwrap_or_else(|| DIRECT_STRATEGY.to_string()),
        namespaces: vec![ns],
        actor_id: actor,
        session_id: None,
        created_at: r.timestamp,
        updated_at: now.max(r.timestamp),
        metadata: r.metadata,
        content: r.content,
    };
    svc.store()
        .insert_memory_record(
            caller.scope(),
            &m.id,
            &record,
            &normalize(&record.content.text),
        )
        .await?;
    Ok(record.memory_record_id)
}

pub(super) async fn batch_create(
    svc: &MemoryService,
    caller: &MemoryCaller,
    memory: &MemoryId,
    records: Vec<NewRecord>,
) -> MemoryResult<BatchOutcome> {
    check_batch(records.len())?;
    let m = resources::get(svc, caller, memory).await?;
    let mut out = BatchOutcome::default();
    for r in records {
        let request = Some(r.request_identifier.clone());
        match create_one(svc, caller, &m, r).await {
            Ok(id) => out.successful_records.push(succeeded(&id, request)),
            Err(e) => out.failed_records.push(failed(String::new(), request, &e)),
        }
    }
    Ok(out)
}

async fn update_one(
    svc: &MemoryService,
    caller: &MemoryCaller,
    m: &Memory,
    u: RecordUpdate,
) -> MemoryResult<()> {
    let mut record = svc
        .store()
        .get_memory_record(
            caller.scope(),
            &m.id,
            &u.memory_record_id,
            caller.reach().actor(),
        )
        .await?
        .ok_or_else(|| MemoryServiceError::not_found("memory record"))?;
    if let Some(c) = u.content {
        check_text(&c)?;
        record.content = c;
    }
    if let Some(s) = u.memory_strategy_id {
        check_strategy_ref(&s)?;
        record.memory_strategy_id = s;
    }
    if let Some(ns) = u.namespaces {
        let ns = one_namespace(&ns)?.to_string();
        let (_, implied) = made_for(m, Some(&record.memory_strategy_id), &ns);
        if let (Some(implied), Some(own)) = (&implied, &record.actor_id)
            && implied != own
        {
            return Err(MemoryError::invalid(
                "the namespace belongs to another actor than the record's",
            )
            .into());
        }
        actor_for(caller, None, implied)?;
        record.namespaces = vec![ns];
    }
    if let Some(md) = u.metadata {
        check_record_metadata(&md)?;
        record.metadata = md;
    }
    record.updated_at = u.timestamp;
    if svc
        .store()
        .update_memory_record(
            caller.scope(),
            &m.id,
            &record,
            &normalize(&record.content.text),
        )
        .await?
    {
        Ok(())
    } else {
        Err(MemoryServiceError::not_found("memory record"))
    }
}

pub(super) async fn batch_update(
    svc: &MemoryService,
    caller: &MemoryCaller,
    memory: &MemoryId,
    updates: Vec<RecordUpdate>,
) -> MemoryResult<BatchOutcome> {
    check_batch(updates.len())?;
    let m = resources::get(svc, caller, memory).await?;
    let mut out = BatchOutcome::default();
    for u in updates {
        let id = u.memory_record_id.clone();
        match update_one(svc, caller, &m, u).await {
            Ok(()) => out.successful_records.push(succeeded(&id, None)),
            Err(e) => out.failed_records.push(failed(id.to_string(), None, &e)),
        }
    }
    Ok(out)
}

pub(super) async fn batch_delete(
    svc: &MemoryService,
    caller: &MemoryCaller,
    memory: &MemoryId,
    ids: Vec<RecordId>,
) -> MemoryResult<BatchOutcome> {
    check_batch(ids.len())?;
    resources::get(svc, caller, memory).await?;
    let mut out = BatchOutcome::default();
    for id in ids {
        match delete(svc, caller, memory, &id).await {
            Ok(()) => out.successful_records.push(succeeded(&id, None)),
            Err(e) => out.failed_records.push(failed(id.to_string(), None, &e)),
        }
    }
    Ok(out)
}
