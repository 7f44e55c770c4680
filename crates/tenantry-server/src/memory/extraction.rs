//! Extraction of long-term records from new events, in the background.
//!
//! `create_event` queues a `Job` for each new event of a memory with strategies; one worker
//! task per server runs them in order. For each strategy the worker builds the namespace from
//! the strategy's template, asks the model gateway (`crate::models::call`, exactly as a chat
//! call of the caller that wrote the event: its tenant's routing, entitlement, rate, budget
//! reservation and ledger entry) with the namespace's existing records as candidates, and
//! consolidates the answer (`tenantry_memory::extract`). A summarization strategy is given the
//! whole session; the others the new event.
//!
//! Extraction is best-effort and in memory: a job that fails (budget exceeded, model down) is
//! logged and dropped, the event stays; jobs queued when a server stops are lost. This module
//! must never write a record outside the job's tenant, or for another actor than the event's.

use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tenantry_core::{TenantContext, unix_now};
use tenantry_memory::RecordId;
use tenantry_memory::extract::{self, Action};
use tenantry_memory::namespace::expand;
use tenantry_memory::types::{Event, Memory, PayloadItem, Record, Role, Strategy, StrategyKind};
use tenantry_models::wire::ChatRequest;
use tokio::sync::{Notify, mpsc};

use super::MemoryCaller;
use crate::state::Inner;

/// One new event to extract from.
#[derive(Debug)]
pub struct Job {
    pub memory: Memory,
    pub caller: MemoryCaller,
    pub event: Event,
}

/// The sending side of the extraction worker's queue, with a count of jobs not yet done.
#[derive(Debug, Clone)]
pub struct Queue {
    tx: mpsc::Sender<Job>,
    pending: Arc<(AtomicUsize, Notify)>,
}

/// The receiving side, handed to `spawn`.
#[derive(Debug)]
pub struct Receiver {
    rx: mpsc::Receiver<Job>,
    pending: Arc<(AtomicUsize, Notify)>,
}

impl Queue {
    /// A queue holding at most `capacity` waiting jobs.
    pub fn new(capacity: usize) -> (Queue, Receiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let pending = Arc::new((AtomicUsize::new(0), Notify::new()));
        (
            Queue {
                tx,
                pending: pending.clone(),
            },
            Receiver { rx, pending },
        )
    }

    /// Queues a job; a full queue drops it with a warning (the event is stored regardless).
    pub fn submit(&self, job: Job) {
        self.pending.0.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = self.tx.try_send(job) {
            let job = match e {
                mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
            };
            tracing::warn!(
                tenant.id = %job.caller.tenant(),
                memory = %job.memory.id,
                "the extraction queue is full or closed; this event is not extracted"
            );
            done(&self.pending);
        }
    }

    /// Waits (at most 30 s) until every job queued so far is done.
    pub async fn flush(&self) {
        let wait = async {
            loop {
                let notified = self.pending.1.notified();
                if self.pending.0.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .is_err()
        {
            tracing::warn!("memory extraction still running after 30 s");
        }
    }
}

fn done(pending: &(AtomicUsize, Notify)) {
    pending.0.fetch_sub(1, Ordering::SeqCst);
    pending.1.notify_waiters();
}

/// Starts the worker; it ends when the server's state is dropped.
pub fn spawn(state: Weak<Inner>, mut receiver: Receiver) {
    tokio::spawn(async move {
        while let Some(job) = receiver.rx.recv().await {
            let Some(inner) = state.upgrade() else {
                done(&receiver.pending);
                break;
            };
            for strategy in &job.memory.strategies {
                if let Err(why) = run(&inner, &job, strategy).await {
                    tracing::warn!(
                        tenant.id = %job.caller.tenant(),
                        memory = %job.memory.id,
                        strategy = %strategy.strategy_id,
                        error = %why,
                        "memory extraction failed; the event is kept without records"
                    );
                }
            }
            drop(inner);
            done(&receiver.pending);
        }
    });
}

fn conversation(events: &[Event]) -> Vec<(Role, String)> {
    events
        .iter()
        .flat_map(|e| e.payload.iter())
        .filter_map(|p| match p {
            PayloadItem::Conversational(c) => Some((c.role, c.content.text.clone())),
            PayloadItem::Blob(_) => None,
        })
        .collect()
}

/// Asks the model gateway as `ctx` (metered and budgeted like its own calls).
async fn ask(
    inner: &Inner,
    ctx: &TenantContext,
    system: String,
    user: String,
) -> Result<String, String> {
    let tier = inner
        .registry
        .tier(&inner.store, &ctx.tier)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("tier {} does not exist", ctx.tier))?;
    let request: ChatRequest = serde_json::from_value(json!({
        "model": inner.config.memory.extraction_model,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ],
        "temperature": 0,
    }))
    .map_err(|e| e.to_string())?;
    let routed =
        crate::models::call::route(&inner.models, &inner.limiter, ctx, &tier, &request.model)
            .await
            .map_err(|r| r.error.message)?;
    let answer = crate::models::call::chat(&inner.models, &inner.limiter, ctx, routed, request)
        .await
        .map_err(|r| r.error.message)?;
    Ok(answer
        .choices
        .first()
        .map(|c| c.message.text())
        .unwrap_or_default())
}

async fn run(inner: &Inner, job: &Job, strategy: &Strategy) -> Result<(), String> {
    let Some(ctx) = job.caller.context() else {
        return Ok(());
    };
    let scope = job.caller.scope();
    let store = &inner.store;
    let e = &job.event;
    let template = strategy
        .namespaces
        .first()
        .ok_or("the strategy has no namespace template")?;
    let ns = expand(template, &strategy.strategy_id, &e.actor_id, &e.session_id)
        .map_err(|x| x.to_string())?;
    let events = if strategy.kind == StrategyKind::Summarization {
        store
            .list_memory_events(scope, &job.memory.id, &e.actor_id, &e.session_id, false)
            .await
            .map_err(|x| x.to_string())?
    } else {
        vec![e.clone()]
    };
    let talk = conversation(&events);
    if talk.is_empty() {
        return Ok(());
    }
    let existing: Vec<Record> = store
        .memory_records_in_namespace(
            scope,
            &job.memory.id,
            &ns,
            strategy.strategy_id.as_str(),
            extract::MAX_CANDIDATES as i64,
        )
        .await
        .map_err(|x| x.to_string())?;
    let candidates: Vec<(RecordId, String)> = existing
        .iter()
        .map(|r| (r.memory_record_id.clone(), r.content.text.clone()))
        .collect();
    let (system, user) = extract::prompt(
        strategy.kind,
        strategy.prompt.as_deref(),
        &talk,
        &candidates,
    );
    let answer = ask(inner, ctx, system, user).await?;
    let extracted = extract::parse_answer(strategy.kind, &answer);
    let now = unix_now().saturating_mul(1000);
    for action in extract::consolidate(strategy.kind, &candidates, extracted) {
        match action {
            Action::Create(text) => {
                let r = Record {
                    memory_record_id: RecordId::generate(),
                    content: tenantry_memory::types::TextContent { text },
                    memory_strategy_id: strategy.strategy_id.to_string(),
                    namespaces: vec![ns.clone()],
                    actor_id: Some(e.actor_id.clone()),
                    session_id: Some(e.session_id.clone()),
                    created_at: now,
                    updated_at: now,
                    metadata: Default::default(),
                };
                store
                    .insert_memory_record(
                        scope,
                        &job.memory.id,
                        &r,
                        &extract::normalize(&r.content.text),
                    )
                    .await
                    .map_err(|x| x.to_string())?;
            }
            Action::Update(id, text) => {
                let Some(mut r) = existing.iter().find(|r| r.memory_record_id == id).cloned()
                else {
                    continue;
                };
                r.content.text = text;
                r.updated_at = now;
                store
                    .update_memory_record(
                        scope,
                        &job.memory.id,
                        &r,
                        &extract::normalize(&r.content.text),
                    )
                    .await
                    .map_err(|x| x.to_string())?;
            }
        }
    }
    Ok(())
}
