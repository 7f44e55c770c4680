//! The model gateway's writer of the usage ledger: entries are handed to one background task
//! that appends them to the store in order, so a model call never waits on a database commit
//! to answer its caller. The writer lingers a few milliseconds after the first entry of a batch
//! and writes what arrived meanwhile together, one transaction per tenant, so a busy gateway
//! commits a batch every few milliseconds rather than an entry per call.
//!
//! The queue is bounded: when the store falls behind, callers wait for room (backpressure)
//! rather than entries being dropped. `flush` waits until everything queued before it is
//! written, which the usage report uses so an operator reads their own writes on this replica.
//! A failed write is logged with its tenant and the entry's numbers (never a credential) and
//! not retried: a retry of a write that did land would be refused as a conflict anyway, and the
//! limiter, not the ledger, enforces budgets.

use std::time::Duration;

use tenantry_core::TenantScope;
use tenantry_store::{Store, UsageRecord};
use tokio::sync::{mpsc, oneshot};

/// Entries waiting to be written before new ones wait for room.
const QUEUE: usize = 16_384;
/// Most entries written in one batch.
const BATCH: usize = 512;
/// How long the writer waits for more entries after the first of a batch.
const LINGER: Duration = Duration::from_millis(10);

#[derive(Debug)]
enum Msg {
    Record(TenantScope, Box<UsageRecord>),
    Flush(oneshot::Sender<()>),
}

/// A handle on the ledger writer. Cheap to clone; the writer stops once every handle is gone
/// and the queue is drained.
#[derive(Debug, Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Msg>,
}

impl Ledger {
    /// Starts the writer on the current Tokio runtime.
    pub fn start(store: Store) -> Self {
        let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
        tokio::spawn(async move {
            let mut batch: Vec<(TenantScope, Box<UsageRecord>)> = Vec::new();
            let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
            while let Some(first) = rx.recv().await {
                if matches!(first, Msg::Record(..)) {
                    tokio::time::sleep(LINGER).await;
                }
                let mut next = Some(first);
                while let Some(msg) = next.take() {
                    match msg {
                        Msg::Record(scope, record) => batch.push((scope, record)),
                        Msg::Flush(done) => flushes.push(done),
                    }
                    if batch.len() < BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                write(&store, std::mem::take(&mut batch)).await;
                for done in flushes.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        Self { tx }
    }

    /// Queues an entry; waits only when the queue is full.
    pub async fn record(&self, scope: TenantScope, record: UsageRecord) {
        if let Err(mpsc::error::SendError(Msg::Record(_, r))) =
            self.tx.send(Msg::Record(scope, Box::new(record))).await
        {
            tracing::error!(
                tenant.id = %r.tenant_id,
                usage.id = %r.id,
                "the usage ledger writer has stopped; an entry is lost"
            );
        }
    }

    /// Waits (at most `limit`) until every entry queued before this call is written; `false` if
    /// that took longer.
    pub async fn flush(&self, limit: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_err() {
            return false;
        }
        matches!(tokio::time::timeout(limit, wait).await, Ok(Ok(())))
    }
}

/// Writes `batch` in order, one transaction per run of entries of the same tenant; a run that
/// fails is retried entry by entry, so one bad entry does not lose the others.
async fn write(store: &Store, batch: Vec<(TenantScope, Box<UsageRecord>)>) {
    let mut i = 0;
    while i < batch.len() {
        let scope = &batch[i].0;
        let run = batch[i..].iter().take_while(|(s, _)| s == scope).count();
        let records: Vec<UsageRecord> = batch[i..i + run]
            .iter()
            .map(|(_, r)| (**r).clone())
            .collect();
        if store.record_usages(scope, &records).await.is_err() {
            for record in &records {
                if let Err(e) = store.record_usage(scope, record).await {
                    log_lost(record, &e);
                }
            }
        }
        i += run;
    }
}

fn log_lost(record: &UsageRecord, e: &tenantry_store::StoreError) {
    tracing::error!(
        tenant.id = %record.tenant_id,
        usage.id = %record.id,
        model = record.resource.as_deref().unwrap_or(""),
        input_tokens = record.input_tokens,
        output_tokens = record.output_tokens,
        cost = %record.cost,
        status = %record.status,
        error = %e,
        "cannot write a usage ledger entry"
    );
}
