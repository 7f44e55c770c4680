//! The model gateway's writer of the usage ledger: entries are handed to one background task
//! that appends them to the store in order, so a model call never waits on a database commit
//! to answer its caller.
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
            while let Some(msg) = rx.recv().await {
                match msg {
                    Msg::Record(scope, record) => {
                        if let Err(e) = store.record_usage(&scope, &record).await {
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
                    }
                    Msg::Flush(done) => {
                        let _ = done.send(());
                    }
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
