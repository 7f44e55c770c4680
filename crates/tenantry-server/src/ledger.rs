//! The usage ledger's writer, shared by the model gateway, the tool gateway and the session
//! manager: entries go to one background task that appends them to the store by **group
//! commit**, and a caller that must not answer before its entry is durable waits for the
//! commit that carries it (`record`).
//!
//! The writer takes every entry that is waiting when it is free, writes them in one transaction
//! per tenant (in arrival order), and then tells each waiting caller how its entries fared.
//! While one batch commits, the next one gathers, so one commit serves every request that
//! arrived meanwhile: at low load each call pays about one commit of latency, at high load the
//! commits per second stay roughly constant while the entries per commit grow. Nothing
//! lingers on purpose.
//!
//! Two ways in:
//!
//! * `record` / `record_all` wait for the commit and return its result. The model and tool
//!   gateways use them before a response completes, so an answer the caller received is in the
//!   ledger (DESIGN section 12: nothing acknowledged is lost). A failure is returned, never
//!   swallowed: the caller decides (the gateways fail closed, see `docs/ARCHITECTURE.md`).
//! * `submit` queues without waiting: for entries nobody is answered with (compute samples, a
//!   stream the caller abandoned). They are written with the next batch; `drain` at shutdown
//!   waits for them.
//!
//! The queue is bounded: when the store falls behind, callers wait for room (backpressure)
//! rather than entries being dropped. A run of entries whose transaction fails is retried
//! entry by entry, so one bad entry does not fail the others; an entry whose retry meets a
//! conflict on its id was written by the first try (ids are unique per tenant) and counts as
//! written. A failed write is logged with its tenant and the entry's numbers (never a
//! credential).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tenantry_core::{ErrorCode, TenantScope};
use tenantry_store::{Store, StoreError, UsageKind, UsageRecord};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;

/// Entries waiting to be written before new ones wait for room.
const QUEUE: usize = 16_384;
/// Most entries written in one batch.
const BATCH: usize = 1024;

/// Why an entry is not in the ledger.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// The writer has stopped (the server is shutting down past its drain).
    #[error("the usage ledger writer has stopped")]
    Stopped,
    /// The store refused or could not take the write.
    #[error("the usage ledger cannot be written: {0}")]
    Store(String),
}

impl From<LedgerError> for ApiError {
    /// A call whose usage cannot be recorded is refused as unavailable (503, retryable): its
    /// answer is withheld rather than given away unbilled (law 4, fail closed).
    fn from(e: LedgerError) -> Self {
        tracing::error!(error = %e, "withholding an answer whose usage cannot be recorded");
        let mut error = ApiError::new(
            ErrorCode::Unavailable,
            "the usage of this call cannot be recorded right now, so its answer is withheld; \
             retry shortly",
        );
        error.retry_after = Some(1);
        error
    }
}

type Done = oneshot::Sender<Result<(), LedgerError>>;

#[derive(Debug)]
enum Msg {
    Record {
        scope: TenantScope,
        records: Vec<UsageRecord>,
        done: Option<Done>,
    },
    Flush(oneshot::Sender<()>),
}

/// A handle on the ledger writer. Cheap to clone; the writer stops once every handle is gone
/// and the queue is drained.
#[derive(Debug, Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Msg>,
    /// The metrics that committed entries are counted in, once the server has them.
    metrics: Arc<OnceLock<Arc<tenantry_telemetry::Metrics>>>,
}

/// Entries of one request in a batch, with whom to tell.
struct Pending {
    scope: TenantScope,
    records: Vec<UsageRecord>,
    done: Option<Done>,
    result: Result<(), LedgerError>,
}

impl Ledger {
    /// Starts the writer on the current Tokio runtime.
    pub fn start(store: Store) -> Self {
        let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
        let metrics: Arc<OnceLock<Arc<tenantry_telemetry::Metrics>>> = Arc::default();
        let counted = metrics.clone();
        tokio::spawn(async move {
            let mut batch: Vec<Pending> = Vec::new();
            let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                let mut entries = 0;
                while let Some(msg) = next.take() {
                    match msg {
                        Msg::Record {
                            scope,
                            records,
                            done,
                        } => {
                            entries += records.len();
                            batch.push(Pending {
                                scope,
                                records,
                                done,
                                result: Ok(()),
                            });
                        }
                        Msg::Flush(done) => flushes.push(done),
                    }
                    if entries < BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                write(&store, &mut batch).await;
                if let Some(m) = counted.get() {
                    for p in batch.iter().filter(|p| p.result.is_ok()) {
                        p.records.iter().for_each(|r| observe(m, r));
                    }
                }
                for p in batch.drain(..) {
                    if let Some(done) = p.done {
                        // The caller may have gone away; its entries are written all the same.
                        let _ = done.send(p.result);
                    }
                }
                for done in flushes.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        Self { tx, metrics }
    }

    /// Counts committed entries in these metrics from now on (model calls, tokens and cost,
    /// tool calls, sandbox compute, per tenant).
    pub fn set_metrics(&self, metrics: Arc<tenantry_telemetry::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Appends an entry and waits until it is committed.
    pub async fn record(&self, scope: TenantScope, record: UsageRecord) -> Result<(), LedgerError> {
        self.record_all(scope, vec![record]).await
    }

    /// Appends entries of one tenant and waits until they are committed (in one transaction
    /// when the store can).
    pub async fn record_all(
        &self,
        scope: TenantScope,
        records: Vec<UsageRecord>,
    ) -> Result<(), LedgerError> {
        if records.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        let msg = Msg::Record {
            scope,
            records,
            done: Some(done),
        };
        if let Err(mpsc::error::SendError(msg)) = self.tx.send(msg).await {
            log_stopped(&msg);
            return Err(LedgerError::Stopped);
        }
        wait.await.unwrap_or(Err(LedgerError::Stopped))
    }

    /// Queues an entry without waiting for its commit (waits only when the queue is full):
    /// for entries that no answer depends on. `flush` and `drain` wait for it.
    pub async fn submit(&self, scope: TenantScope, record: UsageRecord) {
        let msg = Msg::Record {
            scope,
            records: vec![record],
            done: None,
        };
        if let Err(mpsc::error::SendError(msg)) = self.tx.send(msg).await {
            log_stopped(&msg);
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

    /// At shutdown, once no request is in flight any more: waits (at most `limit`) for every
    /// queued entry to be written, and logs how it went.
    pub async fn drain(&self, limit: Duration) {
        if self.flush(limit).await {
            tracing::info!("usage ledger drained");
        } else {
            tracing::error!(
                limit_ms = limit.as_millis() as u64,
                "the usage ledger did not drain in time; entries still queued are lost"
            );
        }
    }
}

fn log_stopped(msg: &Msg) {
    if let Msg::Record { records, .. } = msg {
        for r in records {
            log_lost(r, &LedgerError::Stopped);
        }
    }
}

/// Writes the batch in arrival order, one transaction per run of consecutive requests of the
/// same tenant, and sets each request's result.
async fn write(store: &Store, batch: &mut [Pending]) {
    let mut i = 0;
    while i < batch.len() {
        let run = batch[i..]
            .iter()
            .take_while(|p| p.scope == batch[i].scope)
            .count();
        let group = &mut batch[i..i + run];
        let records: Vec<UsageRecord> = group
            .iter()
            .flat_map(|p| p.records.iter().cloned())
            .collect();
        if store
            .record_usages(&group[0].scope, &records)
            .await
            .is_err()
        {
            for p in group.iter_mut() {
                p.result = write_one_by_one(store, &p.scope, &p.records).await;
            }
        }
        i += run;
    }
}

/// The retry of a failed run, entry by entry: a conflict means the first try did write it.
async fn write_one_by_one(
    store: &Store,
    scope: &TenantScope,
    records: &[UsageRecord],
) -> Result<(), LedgerError> {
    let mut result = Ok(());
    for record in records {
        match store.record_usage(scope, record).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => {
                let e = LedgerError::Store(e.to_string());
                log_lost(record, &e);
                result = Err(e);
            }
        }
    }
    result
}

/// One committed entry in the metrics.
fn observe(m: &tenantry_telemetry::Metrics, r: &UsageRecord) {
    let tenant = r.tenant_id.as_str();
    let resource = r.resource.as_deref().unwrap_or("");
    let outcome = r.status.strip_prefix("error:").unwrap_or(&r.status);
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    match r.kind {
        UsageKind::Model => m.model_call(
            tenant,
            resource,
            outcome,
            count(r.input_tokens),
            count(r.output_tokens),
            r.cost.micros() as f64 / 1e6,
        ),
        UsageKind::Tool => m.tool_call(tenant, resource, outcome),
        UsageKind::Compute => m.sandbox_compute(
            tenant,
            Duration::from_millis(count(r.cpu_ms)),
            // megabyte-milliseconds to gigabyte-seconds
            r.memory_mb_ms as f64 / 1_024_000.0,
        ),
        UsageKind::Storage => {}
    }
}

fn log_lost(record: &UsageRecord, e: &LedgerError) {
    tracing::error!(
        tenant.id = %record.tenant_id,
        usage.id = %record.id,
        kind = record.kind.as_str(),
        resource = record.resource.as_deref().unwrap_or(""),
        input_tokens = record.input_tokens,
        output_tokens = record.output_tokens,
        cost = %record.cost,
        status = %record.status,
        error = %e,
        "cannot write a usage ledger entry"
    );
}
