//! Memory for tenants and their agents (DESIGN section 9): memory resources, events
//! (short-term), records (long-term) extracted by strategies through the model gateway, and
//! retrieval. The domain rules are `tenantry_memory`'s; this module applies them to a verified
//! caller and the store.
//!
//! `MemoryService` is the one entry point of every memory operation, used by our REST API
//! (`routes/tenant/memory.rs`, `routes/admin/memories.rs`) and the AgentCore-compatible API
//! alike. Each operation takes a `MemoryCaller`, made only from a verified `TenantContext`
//! (`MemoryCaller::of_tenant`) or the operator's grant (`MemoryCaller::operator`): the tenant
//! always comes from there, every row read or written is keyed by it, and a caller limited to
//! one actor (`Reach::Actor`) names only that actor. Another tenant's memory, event or record
//! is `NotFound`, exactly like a missing one.
//!
//! Submodules: `caller` (who is calling and what it reaches), `error` (`MemoryServiceError`),
//! `resources` (memory resources), `events`, `records`, `extraction` (the background
//! extraction worker), `expiry` (the job deleting expired events), `erasure`.
//!
//! This module must never take a tenant or actor from a request body, query or header, and
//! never return a row outside the caller's tenant and reach.

mod caller;
mod error;
mod events;
pub mod expiry;
pub mod extraction;
mod records;
mod resources;

pub use caller::MemoryCaller;
pub use error::MemoryServiceError;
pub use tenantry_memory::namespace::Reach;
pub use tenantry_memory::types::*;
pub use tenantry_memory::{ActorId, EventId, MemoryId, MemorySessionId, RecordId, StrategyId};

use tenantry_store::Store;

/// The result of a memory operation.
pub type MemoryResult<T> = Result<T, MemoryServiceError>;

/// Every memory operation, for every API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MemoryService {
    store: Store,
    extraction: extraction::Queue,
}

impl MemoryService {
    /// The service over `store`; extraction jobs go to `extraction`, whose worker
    /// (`extraction::spawn`) runs them through the model gateway.
    pub fn new(store: Store, extraction: extraction::Queue) -> Self {
        Self { store, extraction }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    // ----- memory resources (AgentCore control plane: CreateMemory ... DeleteMemory) -----

    /// CreateMemory: a memory of the caller's tenant. Needs the `tenant-admin` role (or the
    /// operator). The event expiry defaults to the tier's `memory_event_expiry_days`.
    pub async fn create_memory(
        &self,
        caller: &MemoryCaller,
        input: CreateMemory,
    ) -> MemoryResult<Memory> {
        resources::create(self, caller, input).await
    }

    /// GetMemory: one of the caller's tenant's memories, or a shared one.
    pub async fn get_memory(&self, caller: &MemoryCaller, id: &MemoryId) -> MemoryResult<Memory> {
        resources::get(self, caller, id).await
    }

    /// ListMemories: the tenant's memories and the shared ones, by id.
    pub async fn list_memories(
        &self,
        caller: &MemoryCaller,
        page: PageRequest,
    ) -> MemoryResult<Page<Memory>> {
        resources::list(self, caller, page).await
    }

    /// UpdateMemory: description, expiry and strategies (add, modify, delete). Needs
    /// `tenant-admin`; a shared memory is the operator's (`update_shared_memory`).
    pub async fn update_memory(
        &self,
        caller: &MemoryCaller,
        id: &MemoryId,
        change: UpdateMemory,
    ) -> MemoryResult<Memory> {
        resources::update(self, caller, id, change).await
    }

    /// DeleteMemory: the memory with all its events and records. Needs `tenant-admin`.
    pub async fn delete_memory(
        &self,
        caller: &MemoryCaller,
        id: &MemoryId,
    ) -> MemoryResult<Memory> {
        resources::delete(self, caller, id).await
    }

    /// The operator's memories shared by every tenant (pool), e.g. to attach to a runtime.
    pub async fn create_shared_memory(
        &self,
        grant: tenantry_core::OperatorGrant,
        input: CreateMemory,
    ) -> MemoryResult<Memory> {
        resources::create_shared(self, grant, input).await
    }

    pub async fn list_shared_memories(
        &self,
        grant: tenantry_core::OperatorGrant,
    ) -> MemoryResult<Vec<Memory>> {
        resources::list_shared(self, grant).await
    }

    pub async fn delete_shared_memory(
        &self,
        grant: tenantry_core::OperatorGrant,
        id: &MemoryId,
    ) -> MemoryResult<Memory> {
        resources::delete_shared(self, grant, id).await
    }

    // ----- events (CreateEvent, GetEvent, DeleteEvent, ListEvents, ListActors, ListSessions) -----

    /// CreateEvent. The same `clientToken` on the same memory answers the event it created
    /// first. New conversational events are queued for the memory's strategies.
    pub async fn create_event(
        &self,
        caller: &MemoryCaller,
        memory: &MemoryId,
        event: NewEvent,
    ) -> MemoryResult<Event> {
        events::create(self, caller, memory, event).await
    }

    pub async fn get_event(
        &self,
        caller: &MemoryCaller,
        memory: &MemoryId,
        actor: &ActorId,
        session: &MemorySessionId,
        event: &EventId,
    ) -> MemoryResult<Event> {
        events::get(self, caller, memory, actor, session, event).await
    }

    pub async fn delete_event(
        &self,
        caller: &MemoryCaller,
        memory: &MemoryId,
        actor: &ActorId,
        session: &MemorySessionId,
        event: &EventId,
    ) -> MemoryResult<()> {
        events::delete(self, caller, memory, actor, session, event).await
    }

    /// ListEvents of one session, newest or oldest first, paged.
    pub async fn list_events(
        &self,
        caller: &MemoryCaller,
        memory: &MemoryId,
        actor: &ActorId,
        session: &MemorySessionId,
        request: ListEvents,
    ) -> MemoryResult<Page<Event>> {
        events::list(self, caller, memory, actor, session, request).await
    }

    /// ListActors with events in the memory (only the caller's own for a limited caller).
    pub async fn list_actors(
        &self,
        caller: &MemoryCaller,
        memory: &MemoryId,
        page: PageRequest,
    ) -> MemoryResult<Page<ActorSummary>> {
        events::actors(self, caller, memory, page).await
    }

    /// ListSessions of an actor, newest first.
    pub async fn list_sessions(
        &self,
        caller: &MemoryCaller,
        memory: &MemoryId,
        actor: &ActorId,
        page: PageRequest,
    ) -> MemoryResult<Page<SessionSummary>> {
        events::sessions(self, caller, memory, actor, page).await
    }

    // ----- records (Retrieve/List/Get/Delete MemoryRecord(s), BatchCreate/Update/Delete) -----

    /// RetrieveMemoryRecords: full-text search within a namespace prefix, with metadata
    /// filters, best `topK` first with scores.
    pub async fn retrieve_records(
        &self,
        caller: &MemoryCaller,
        memory: &MemoryId,
        request: RetrieveRecords,
    ) -> MemoryResult<Vec<ScoredRecord>> {
        records::retrieve(self, caller, memory, request).await
    }

    /// ListMemoryRecords, newest first, paged.
    pub async fn list_records(
        &self,
        caller: &MemoryCaller,
        memory: &MemoryId,
        request: ListRecords,
    ) -> MemoryResult<Page<Record>> {
        records::list(self, caller, memory, request).await
    }

    pub async fn get_record(
        &self,
        caller: &MemoryCaller,
        memory: &MemoryId,
        id: &RecordId,
    ) -> MemoryResult<Record> {
        records::get(self, caller, memory, id).await
    }

    pub async fn delete_record(
        &self,
        caller: &MemoryCaller,
        memory: &MemoryId,
        id: &RecordId,
    ) -> MemoryResult<()> {
        records::delete(self, caller, memory, id).await
    }

    /// BatchCreateMemoryRecords: each record succeeds or fails on its own.
    pub async fn batch_create_records(
        &self,
        caller: &MemoryCaller,
        memory: &MemoryId,
        records: Vec<NewRecord>,
    ) -> MemoryResult<BatchOutcome> {
        records::batch_create(self, caller, memory, records).await
    }

    pub async fn batch_update_records(
        &self,
        caller: &MemoryCaller,
        memory: &MemoryId,
        updates: Vec<RecordUpdate>,
    ) -> MemoryResult<BatchOutcome> {
        records::batch_update(self, caller, memory, updates).await
    }

    pub async fn batch_delete_records(
        &self,
        caller: &MemoryCaller,
        memory: &MemoryId,
        ids: Vec<RecordId>,
    ) -> MemoryResult<BatchOutcome> {
        records::batch_delete(self, caller, memory, ids).await
    }

    // ----- erasure -----

    /// Deletes every event and record of `actor` in every memory of the caller's tenant
    /// (shared ones included). Needs `tenant-admin` (or the operator, or an agent whose
    /// runtime manages memories, for its own user only).
    pub async fn erase_actor(
        &self,
        caller: &MemoryCaller,
        actor: &ActorId,
    ) -> MemoryResult<Erasure> {
        if !caller.is_admin() {
            return Err(MemoryServiceError::admin_only());
        }
        caller.reach().check_actor(actor)?;
        let (events, records) = self.store.erase_memory_actor(caller.scope(), actor).await?;
        Ok(Erasure { events, records })
    }

    /// Waits until every extraction queued so far has run (tests, shutdown).
    pub async fn flush_extraction(&self) {
        self.extraction.flush().await;
    }
}
