//! Weighted fair queuing of tenants in front of a shared capacity (DESIGN section 10): when
//! every slot is taken, waiting requests are served tenant by tenant in turn, each tenant
//! getting up to its weight in slots per round, so one tenant's flood cannot starve another.
//!
//! It is an async semaphore per process (per replica), not shared through Redis: it orders
//! this process's access to an upstream, while the `Limiter` enforces tenant quotas. It must
//! never lose a slot: a waiter that gives up (its future is dropped) hands any slot it was
//! just granted back, and a permit frees its slot when dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tenantry_core::TenantId;
use tokio::sync::oneshot;

use crate::LimitError;

/// A semaphore of `capacity` slots served round-robin by tenant weight. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FairQueue {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    capacity: usize,
    available: usize,
    max_waiting_per_tenant: usize,
    /// Tenants with waiters; a tenant is here exactly when it is in `ring`.
    queues: HashMap<TenantId, TenantQueue>,
    /// The round: the front tenant is served next.
    ring: VecDeque<TenantId>,
}

#[derive(Debug)]
struct TenantQueue {
    waiters: VecDeque<oneshot::Sender<()>>,
    weight: u32,
    /// Slots the tenant may still take in this turn.
    credit: u32,
}

impl State {
    /// The next live waiter in weighted round-robin order, taking one credit of its tenant.
    fn next_waiter(&mut self) -> Option<oneshot::Sender<()>> {
        loop {
            let tenant = self.ring.front()?;
            let Some(queue) = self.queues.get_mut(tenant) else {
                // Unreachable by the invariant; repair rather than spin.
                self.ring.pop_front();
                continue;
            };
            let waiter = queue.waiters.pop_front();
            let live = waiter.as_ref().is_some_and(|w| !w.is_closed());
            if live {
                queue.credit = queue.credit.saturating_sub(1);
            }
            let exhausted = queue.credit == 0 || queue.waiters.is_empty();
            if exhausted {
                // End of this tenant's turn: to the back of the round, or out if done.
                if let Some(tenant) = self.ring.pop_front() {
                    if queue.waiters.is_empty() {
                        self.queues.remove(&tenant);
                    } else {
                        queue.credit = queue.weight;
                        self.ring.push_back(tenant);
                    }
                }
            }
            match waiter {
                Some(w) if live => return Some(w),
                // A waiter that gave up, or an empty queue: try the next.
                Some(_) | None => {}
            }
        }
    }

    /// Hands free slots to waiters until either runs out.
    fn dispatch(&mut self) {
        while self.available > 0 {
            let Some(waiter) = self.next_waiter() else {
                return;
            };
            // A waiter can give up between `is_closed` and here; then the slot stays free.
            if waiter.send(()).is_ok() {
                self.available -= 1;
            }
        }
    }
}

impl FairQueue {
    /// `capacity` slots; at most `max_waiting_per_tenant` requests of one tenant wait at once
    /// (more are refused with `ConcurrencyExceeded`, so a flood cannot grow the queue without
    /// bound).
    pub fn new(capacity: usize, max_waiting_per_tenant: usize) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                capacity,
                available: capacity,
                max_waiting_per_tenant,
                queues: HashMap::new(),
                ring: VecDeque::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Waits for a slot for `tenant`, whose share is `weight` slots per round (at least 1).
    /// Cancellation-safe: dropping the future gives up the place in the queue. Bound the
    /// wait with `tokio::time::timeout`.
    pub async fn acquire(&self, tenant: &TenantId, weight: u32) -> Result<FairPermit, LimitError> {
        let receiver = {
            let mut state = self.lock();
            if state.available > 0 && state.ring.is_empty() {
                state.available -= 1;
                return Ok(FairPermit {
                    state: self.state.clone(),
                });
            }
            let max_waiting = state.max_waiting_per_tenant;
            let capacity = state.capacity;
            let weight = weight.max(1);
            let (sender, receiver) = oneshot::channel();
            match state.queues.get_mut(tenant) {
                Some(queue) => {
                    queue.waiters.retain(|w| !w.is_closed());
                    if queue.waiters.len() >= max_waiting {
                        return Err(LimitError::ConcurrencyExceeded {
                            max: u32::try_from(capacity).unwrap_or(u32::MAX),
                        });
                    }
                    queue.weight = weight;
                    queue.waiters.push_back(sender);
                }
                None => {
                    if max_waiting == 0 {
                        return Err(LimitError::ConcurrencyExceeded {
                            max: u32::try_from(capacity).unwrap_or(u32::MAX),
                        });
                    }
                    state.queues.insert(
                        tenant.clone(),
                        TenantQueue {
                            waiters: VecDeque::from([sender]),
                            weight,
                            credit: weight,
                        },
                    );
                    state.ring.push_back(tenant.clone());
                }
            }
            // Slots may be free while only given-up waiters were queued.
            state.dispatch();
            receiver
        };
        let mut waiting = Waiting {
            receiver: Some(receiver),
            state: &self.state,
        };
        let granted = match waiting.receiver.as_mut() {
            Some(receiver) => receiver.await.is_ok(),
            None => false,
        };
        waiting.receiver = None;
        if granted {
            Ok(FairPermit {
                state: self.state.clone(),
            })
        } else {
            // Senders are only dropped unsent when their waiter gave up, so this is a bug.
            Err(LimitError::Unavailable(
                "fair queue dropped a waiter without an answer".into(),
            ))
        }
    }

    /// Free slots right now.
    pub fn available(&self) -> usize {
        self.lock().available
    }

    /// Requests of `tenant` waiting right now.
    pub fn waiting(&self, tenant: &TenantId) -> usize {
        self.lock()
            .queues
            .get(tenant)
            .map_or(0, |q| q.waiters.iter().filter(|w| !w.is_closed()).count())
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Updates under this lock are a few assignments that cannot panic half-way.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn release(state: &Mutex<State>) {
    let mut state = lock(state);
    state.available += 1;
    state.dispatch();
}

/// A place in the queue; if dropped while it holds a receiver (the waiter gave up), a slot
/// granted in the meantime is handed back.
struct Waiting<'a> {
    receiver: Option<oneshot::Receiver<()>>,
    state: &'a Mutex<State>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut receiver) = self.receiver.take() {
            receiver.close();
            if receiver.try_recv().is_ok() {
                release(self.state);
            }
        }
    }
}

/// One slot of a `FairQueue`, freed when dropped.
#[must_use = "a fair-queue permit frees its slot as soon as it is dropped"]
#[derive(Debug)]
pub struct FairPermit {
    state: Arc<Mutex<State>>,
}

impl Drop for FairPermit {
    fn drop(&mut self) {
        release(&self.state);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    fn t(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    /// Queues `n` waiters of `tenant`; each reports `(tenant, permit)` on `tx` when served.
    fn flood(
        queue: &FairQueue,
        tenant: &str,
        weight: u32,
        n: usize,
        tx: &tokio::sync::mpsc::UnboundedSender<(String, FairPermit)>,
    ) {
        for _ in 0..n {
            let (queue, tx, tenant) = (queue.clone(), tx.clone(), t(tenant));
            tokio::spawn(async move {
                let permit = queue.acquire(&tenant, weight).await.unwrap();
                let _ = tx.send((tenant.to_string(), permit));
            });
        }
    }

    async fn until(mut cond: impl FnMut() -> bool) {
        for _ in 0..10_000 {
            if cond() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("condition not reached");
    }

    /// Serves `n` grants one at a time (each permit dropped before the next is granted) and
    /// returns the tenants in grant order.
    async fn serve(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, FairPermit)>,
        n: usize,
    ) -> Vec<String> {
        let mut order = Vec::new();
        for _ in 0..n {
            let (tenant, permit) = rx.recv().await.unwrap();
            order.push(tenant);
            drop(permit);
        }
        order
    }

    #[tokio::test]
    async fn a_flood_does_not_starve_a_quiet_tenant() {
        let queue = FairQueue::new(1, 1000);
        let held = queue.acquire(&t("noisy"), 1).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        flood(&queue, "noisy", 1, 40, &tx);
        until(|| queue.waiting(&t("noisy")) == 40).await;
        flood(&queue, "quiet", 1, 5, &tx);
        until(|| queue.waiting(&t("quiet")) == 5).await;
        drop(held);
        let order = serve(&mut rx, 45).await;
        let last_quiet = order.iter().rposition(|t| t == "quiet").unwrap();
        // First-come-first-served would put all of "quiet" after the 40 "noisy" requests.
        assert!(last_quiet < 10, "quiet served late: {order:?}");
        assert_eq!(queue.available(), 1);
    }

    #[tokio::test]
    async fn weights_set_the_share() {
        let queue = FairQueue::new(1, 1000);
        let held = queue.acquire(&t("heavy"), 3).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        flood(&queue, "heavy", 3, 20, &tx);
        flood(&queue, "light", 1, 20, &tx);
        until(|| queue.waiting(&t("heavy")) == 20 && queue.waiting(&t("light")) == 20).await;
        drop(held);
        let order = serve(&mut rx, 16).await;
        let heavy = order.iter().filter(|t| *t == "heavy").count();
        assert_eq!(heavy, 12, "3:1 weights give 12 of 16 slots: {order:?}");
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_loses_no_slot() {
        let queue = FairQueue::new(1, 10);
        let held = queue.acquire(&t("acme"), 1).await.unwrap();
        let gave_up =
            tokio::time::timeout(Duration::from_millis(20), queue.acquire(&t("acme"), 1)).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(queue.available(), 1);
        let again = queue.acquire(&t("acme"), 1).await.unwrap();
        assert_eq!(queue.available(), 0);
        drop(again);
    }

    #[tokio::test]
    async fn a_tenant_cannot_queue_without_bound() {
        let queue = FairQueue::new(1, 2);
        let _held = queue.acquire(&t("acme"), 1).await.unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        flood(&queue, "acme", 1, 2, &tx);
        until(|| queue.waiting(&t("acme")) == 2).await;
        let refused =
            tokio::time::timeout(Duration::from_secs(5), queue.acquire(&t("acme"), 1)).await;
        assert!(matches!(
            refused,
            Ok(Err(LimitError::ConcurrencyExceeded { .. }))
        ));
        // Another tenant still gets a place.
        assert_eq!(queue.waiting(&t("other")), 0);
    }
}
