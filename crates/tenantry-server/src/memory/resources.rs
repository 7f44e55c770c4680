//! Memory resources: create, read, list, change and delete, for a tenant (tenant-admin or the
//! operator) or shared by the operator.

use tenantry_core::{OperatorGrant, unix_now};
use tenantry_memory::ids::is_valid_name;
use tenantry_memory::namespace::{check_template, default_templates};
use tenantry_memory::paging;
use tenantry_memory::types::{
    CreateMemory, Memory, MemoryOwner, Page, PageRequest, Strategy, StrategyInput, UpdateMemory,
};
use tenantry_memory::{MemoryError, MemoryId, StrategyId};
use tenantry_store::MemoryWriter;

use super::{MemoryCaller, MemoryResult, MemoryService, MemoryServiceError};

/// The most strategies of one memory.
const MAX_STRATEGIES: usize = 6;
const MAX_PROMPT: usize = 30_000;
const MAX_DESCRIPTION: usize = 4_096;

fn now_ms() -> i64 {
    unix_now().saturating_mul(1000)
}

fn check_expiry(days: u32) -> Result<u32, MemoryError> {
    if (1..=365).contains(&days) {
        Ok(days)
    } else {
        Err(MemoryError::invalid("eventExpiryDays must be 1 to 365"))
    }
}

fn check_description(d: &str) -> Result<(), MemoryError> {
    if d.len() > MAX_DESCRIPTION {
        return Err(MemoryError::invalid("description: at most 4096 bytes"));
    }
    Ok(())
}

fn check_templates(ts: &[String]) -> Result<(), MemoryError> {
    if ts.is_empty() || ts.len() > 1 {
        return Err(MemoryError::invalid(
            "a strategy has exactly one namespace template",
        ));
    }
    ts.iter().try_for_each(|t| check_template(t))
}

fn check_prompt(p: Option<&String>) -> Result<(), MemoryError> {
    if p.is_some_and(|p| p.len() > MAX_PROMPT) {
        return Err(MemoryError::invalid("prompt: at most 30000 bytes"));
    }
    Ok(())
}

fn strategy_of(input: StrategyInput) -> Result<Strategy, MemoryError> {
    if !is_valid_name(&input.name) {
        return Err(MemoryError::Invalid(format!(
            "invalid strategy name {:?}: a letter, then up to 47 letters, digits or _",
            input.name
        )));
    }
    check_description(&input.description)?;
    let namespaces = input
        .namespaces
        .unwrap_or_else(|| default_templates(input.kind));
    check_templates(&namespaces)?;
    check_prompt(input.prompt.as_ref())?;
    Ok(Strategy {
        strategy_id: StrategyId::generate(&input.name),
        name: input.name,
        description: input.description,
        kind: input.kind,
        namespaces,
        prompt: input.prompt,
    })
}

fn check_strategy_names(strategies: &[Strategy]) -> Result<(), MemoryError> {
    if strategies.len() > MAX_STRATEGIES {
        return Err(MemoryError::invalid("a memory has at most 6 strategies"));
    }
    let mut names: Vec<&str> = strategies.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(MemoryError::invalid("strategy names must differ"));
    }
    Ok(())
}

fn new_memory(owner: MemoryOwner, input: CreateMemory, default_days: u32) -> MemoryResult<Memory> {
    if !is_valid_name(&input.name) {
        return Err(MemoryError::Invalid(format!(
            "invalid memory name {:?}: a letter, then up to 47 letters, digits or _",
            input.name
        ))
        .into());
    }
    check_description(&input.description)?;
    let days = check_expiry(input.event_expiry_days.unwrap_or(default_days))?;
    let strategies = input
        .strategies
        .into_iter()
        .map(strategy_of)
        .collect::<Result<Vec<_>, _>>()?;
    check_strategy_names(&strategies)?;
    let now = now_ms();
    Ok(Memory {
        id: MemoryId::generate(&input.name),
        name: input.name,
        description: input.description,
        shared: owner == MemoryOwner::Shared,
        owner,
        event_expiry_days: days,
        strategies,
        status: "ACTIVE",
        created_at: now,
        updated_at: now,
    })
}

fn apply(mut m: Memory, change: UpdateMemory) -> MemoryResult<Memory> {
    if let Some(d) = change.description {
        check_description(&d)?;
        m.description = d;
    }
    if let Some(days) = change.event_expiry_days {
        m.event_expiry_days = check_expiry(days)?;
    }
    for id in &change.delete_strategies {
        let before = m.strategies.len();
        m.strategies.retain(|s| &s.strategy_id != id);
        if m.strategies.len() == before {
            return Err(MemoryServiceError::not_found("memory strategy"));
        }
    }
    for c in change.modify_strategies {
        let s = m
            .strategies
            .iter_mut()
            .find(|s| s.strategy_id == c.memory_strategy_id)
            .ok_or_else(|| MemoryServiceError::not_found("memory strategy"))?;
        if let Some(d) = c.description {
            check_description(&d)?;
            s.description = d;
        }
        if let Some(ns) = c.namespaces {
            check_templates(&ns)?;
            s.namespaces = ns;
        }
        if let Some(p) = c.prompt {
            check_prompt(Some(&p))?;
            s.prompt = Some(p);
        }
    }
    for input in change.add_strategies {
        m.strategies.push(strategy_of(input)?);
    }
    check_strategy_names(&m.strategies)?;
    m.updated_at = now_ms();
    Ok(m)
}

pub(super) async fn create(
    svc: &MemoryService,
    caller: &MemoryCaller,
    input: CreateMemory,
) -> MemoryResult<Memory> {
    if !caller.is_admin() {
        return Err(MemoryServiceError::admin_only());
    }
    let m = new_memory(
        MemoryOwner::Tenant(caller.tenant().clone()),
        input,
        caller.default_expiry_days(),
    )?;
    svc.store()
        .insert_memory(MemoryWriter::Tenant(caller.scope()), &m)
        .await?;
    Ok(m)
}

/// The memory `id` as the caller sees it: its tenant's own or a shared one.
pub(super) async fn get(
    svc: &MemoryService,
    caller: &MemoryCaller,
    id: &MemoryId,
) -> MemoryResult<Memory> {
    svc.store()
        .get_memory(caller.scope(), id)
        .await?
        .ok_or_else(|| MemoryServiceError::not_found("memory"))
}

pub(super) async fn list(
    svc: &MemoryService,
    caller: &MemoryCaller,
    page: PageRequest,
) -> MemoryResult<Page<Memory>> {
    let size = paging::page_size(page.max_results)?;
    let start = paging::offset("memories", page.next_token.as_deref())?;
    let all = svc.store().list_memories(caller.scope()).await?;
    Ok(paging::cut("memories", all, start, size))
}

/// The caller's own memory `id` (a tenant cannot change a shared one: it is not found among
/// its own, and `Forbidden` says why).
async fn own(svc: &MemoryService, caller: &MemoryCaller, id: &MemoryId) -> MemoryResult<Memory> {
    if !caller.is_admin() {
        return Err(MemoryServiceError::admin_only());
    }
    let m = get(svc, caller, id).await?;
    match m.owner {
        MemoryOwner::Tenant(_) => Ok(m),
        MemoryOwner::Shared => Err(MemoryError::Forbidden(
            "a shared memory is the operator's; tenants use it but cannot change it".into(),
        )
        .into()),
    }
}

pub(super) async fn update(
    svc: &MemoryService,
    caller: &MemoryCaller,
    id: &MemoryId,
    change: UpdateMemory,
) -> MemoryResult<Memory> {
    let m = apply(own(svc, caller, id).await?, change)?;
    if !svc
        .store()
        .update_memory(MemoryWriter::Tenant(caller.scope()), &m)
        .await?
    {
        return Err(MemoryServiceError::not_found("memory"));
    }
    Ok(m)
}

pub(super) async fn delete(
    svc: &MemoryService,
    caller: &MemoryCaller,
    id: &MemoryId,
) -> MemoryResult<Memory> {
    let m = own(svc, caller, id).await?;
    if !svc
        .store()
        .delete_memory(MemoryWriter::Tenant(caller.scope()), id)
        .await?
    {
        return Err(MemoryServiceError::not_found("memory"));
    }
    Ok(m)
}

pub(super) async fn create_shared(
    svc: &MemoryService,
    grant: OperatorGrant,
    input: CreateMemory,
) -> MemoryResult<Memory> {
    let m = new_memory(
        MemoryOwner::Shared,
        input,
        super::caller::DEFAULT_EVENT_EXPIRY_DAYS,
    )?;
    svc.store()
        .insert_memory(MemoryWriter::Operator(&grant), &m)
        .await?;
    Ok(m)
}

pub(super) async fn list_shared(
    svc: &MemoryService,
    grant: OperatorGrant,
) -> MemoryResult<Vec<Memory>> {
    let all = svc.store().list_all_memories(&grant).await?;
    Ok(all.into_iter().filter(|m| m.shared).collect())
}

pub(super) async fn delete_shared(
    svc: &MemoryService,
    grant: OperatorGrant,
    id: &MemoryId,
) -> MemoryResult<Memory> {
    let m = list_shared(svc, grant)
        .await?
        .into_iter()
        .find(|m| &m.id == id)
        .ok_or_else(|| MemoryServiceError::not_found("memory"))?;
    if !svc
        .store()
        .delete_memory(MemoryWriter::Operator(&grant), id)
        .await?
    {
        return Err(MemoryServiceError::not_found("memory"));
    }
    Ok(m)
}
