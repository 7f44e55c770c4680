//! The in-process backend: exact limits for one process (`tenantry serve` on one machine).
//!
//! State lives in maps split into shards, each behind its own mutex, so requests of different
//! tenants rarely wait on one another; a check is a hash, a lock and a few integer operations.
//! Every read-check-write of one key happens under one lock, which is what makes it atomic.
//!
//! It must never hold a lock across an `.await` (there is none in this module) and never
//! share state between processes: several replicas need the Redis backend.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::LimitError;
use crate::clock::Window;
use crate::key::{BudgetKind, ConcurrencyKey, RateKey, Subject};
use crate::rate::{Decision, gcra};

const SHARDS: usize = 32;
/// Every this many operations a shard drops entries that no longer hold state.
const SWEEP_EVERY: u32 = 4096;

#[derive(Debug)]
struct Shard<K, V> {
    map: HashMap<K, V>,
    ops: u32,
}

/// A map split into independently locked shards.
#[derive(Debug)]
struct Sharded<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    hasher: RandomState,
}

impl<K: Hash + Eq, V> Sharded<K, V> {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::new(),
                        ops: 0,
                    })
                })
                .collect(),
            hasher: RandomState::new(),
        }
    }

    /// Drops every entry `gone` names, in every shard.
    fn remove_where(&self, gone: impl Fn(&K) -> bool) {
        for shard in self.shards.iter() {
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .map
                .retain(|k, _| !gone(k));
        }
    }

    fn lock(&self, key: &K) -> MutexGuard<'_, Shard<K, V>> {
        let index = (self.hasher.hash_one(key) as usize) % self.shards.len();
        // A panic while holding a shard cannot leave it half-written (every update is a few
        // plain assignments), so a poisoned lock is still safe to use.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K, V> Shard<K, V> {
    /// Counts an operation and, every `SWEEP_EVERY`, keeps only the entries `live` accepts.
    fn tick(&mut self, live: impl FnMut(&K, &mut V) -> bool) {
        self.ops += 1;
        if self.ops >= SWEEP_EVERY {
            self.ops = 0;
            self.map.retain(live);
        }
    }
}

/// One budget of one subject: only the current window is kept, since older windows no longer
/// decide anything.
#[derive(Debug)]
struct BudgetState {
    window: i64,
    window_ends_at_us: i64,
    used: i64,
    reserved: i64,
    /// Live reservations: id -> (amount, expiry).
    live: HashMap<u128, (i64, Instant)>,
    /// The earliest expiry in `live`, so most operations skip the sweep.
    next_expiry: Option<Instant>,
}

impl BudgetState {
    fn new(window: Window) -> Self {
        Self {
            window: window.id,
            window_ends_at_us: window.ends_at_us,
            used: 0,
            reserved: 0,
            live: HashMap::new(),
            next_expiry: None,
        }
    }

    /// Moves to `window` if it is newer (a wall clock that steps back never revives an old
    /// window).
    fn roll(&mut self, window: Window) {
        if window.id > self.window {
            *self = BudgetState::new(window);
        }
    }

    /// Releases the reservations whose TTL has passed.
    fn expire(&mut self, now: Instant) {
        if self.next_expiry.is_none_or(|t| t > now) {
            return;
        }
        let mut released = 0i64;
        let mut next = None::<Instant>;
        self.live.retain(|_, (amount, expires)| {
            if *expires <= now {
                released = released.saturating_add(*amount);
                false
            } else {
                next = Some(next.map_or(*expires, |n| n.min(*expires)));
                true
            }
        });
        self.reserved = self.reserved.saturating_sub(released).max(0);
        self.next_expiry = next;
    }
}

/// Both budget kinds of one subject, so a lookup by `&Subject` needs no allocation.
#[derive(Debug, Default)]
struct SubjectBudgets {
    tokens: Option<BudgetState>,
    money: Option<BudgetState>,
}

impl SubjectBudgets {
    fn slot(&mut self, kind: BudgetKind) -> &mut Option<BudgetState> {
        match kind {
            BudgetKind::TokensPerMinute => &mut self.tokens,
            BudgetKind::MoneyPerMonth => &mut self.money,
        }
    }
}

/// `(used, reserved)` of a budget.
pub(crate) type Counts = (i64, i64);

#[derive(Debug)]
pub(crate) struct MemoryBackend {
    /// The zero of the monotonic microsecond clock used for GCRA.
    epoch: Instant,
    reservation_ttl: Duration,
    rates: Sharded<RateKey, i64>,
    concurrency: Sharded<ConcurrencyKey, u32>,
    budgets: Sharded<Subject, SubjectBudgets>,
    next_id: AtomicU64,
}

impl MemoryBackend {
    pub fn new(reservation_ttl: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            reservation_ttl,
            rates: Sharded::new(),
            concurrency: Sharded::new(),
            budgets: Sharded::new(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Forgets the rate and budget state of one tenant and its users (the tenant was deleted).
    /// Concurrency counts are left to the permits that hold them.
    pub fn forget_tenant(&self, tenant: &tenantry_core::TenantId) {
        self.rates.remove_where(|k| k.subject.tenant_id() == tenant);
        self.budgets.remove_where(|s| s.tenant_id() == tenant);
    }

    fn now_us(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    pub fn check_rate(&self, key: &RateKey, interval_us: i64, burst: u32) -> Decision {
        let now = self.now_us();
        let mut shard = self.rates.lock(key);
        // A TAT in the past is the same as no entry, so the sweep drops those.
        shard.tick(|_, tat| *tat > now);
        let (decision, new_tat) = gcra(shard.map.get(key).copied(), now, interval_us, burst);
        if let Some(tat) = new_tat {
            match shard.map.get_mut(key) {
                Some(slot) => *slot = tat,
                None => {
                    shard.map.insert(key.clone(), tat);
                }
            }
        }
        decision
    }

    pub fn acquire(&self, key: &ConcurrencyKey, max: u32) -> Result<(), LimitError> {
        let mut shard = self.concurrency.lock(key);
        match shard.map.get_mut(key) {
            Some(n) if *n >= max => Err(LimitError::ConcurrencyExceeded { max }),
            Some(n) => {
                *n += 1;
                Ok(())
            }
            None if max == 0 => Err(LimitError::ConcurrencyExceeded { max }),
            None => {
                shard.map.insert(key.clone(), 1);
                Ok(())
            }
        }
    }

    pub fn release(&self, key: &ConcurrencyKey) {
        let mut shard = self.concurrency.lock(key);
        let now_empty = match shard.map.get_mut(key) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        if now_empty {
            shard.map.remove(key);
        }
    }

    /// Runs `f` on the budget state of `subject`/`kind` in `window`, creating or rolling it as
    /// needed, after releasing expired reservations. `now_wall_us` is the calendar time.
    fn with_budget<R>(
        &self,
        subject: &Subject,
        kind: BudgetKind,
        window: Window,
        now_wall_us: i64,
        f: impl FnOnce(&mut BudgetState, Instant) -> R,
    ) -> R {
        let now = Instant::now();
        let mut shard = self.budgets.lock(subject);
        shard.tick(|_, b| {
            // A window that has ended no longer decides anything, reservations or not.
            let current = |s: &Option<BudgetState>| {
                s.as_ref()
                    .is_some_and(|s| s.window_ends_at_us > now_wall_us)
            };
            current(&b.tokens) || current(&b.money)
        });
        let budgets = match shard.map.get_mut(subject) {
            Some(b) => b,
            None => shard.map.entry(subject.clone()).or_default(),
        };
        let state = budgets
            .slot(kind)
            .get_or_insert_with(|| BudgetState::new(window));
        state.roll(window);
        state.expire(now);
        f(state, now)
    }

    /// Reserves `amount` if `used + reserved + amount <= limit`; returns the reservation id,
    /// or the counts that made it not fit.
    pub fn reserve(
        &self,
        subject: &Subject,
        kind: BudgetKind,
        window: Window,
        now_wall_us: i64,
        amount: i64,
        limit: i64,
    ) -> Result<u128, Counts> {
        let ttl = self.reservation_ttl;
        let id = u128::from(self.next_id.fetch_add(1, Ordering::Relaxed));
        self.with_budget(subject, kind, window, now_wall_us, |state, now| {
            let total = state.used.saturating_add(state.reserved);
            if total.saturating_add(amount) > limit {
                return Err((state.used, state.reserved));
            }
            let expires = now + ttl;
            state.reserved = state.reserved.saturating_add(amount);
            state.live.insert(id, (amount, expires));
            state.next_expiry = Some(state.next_expiry.map_or(expires, |t| t.min(expires)));
            Ok(id)
        })
    }

    /// Replaces reservation `id` (if still live) by `actual` used. A reservation of an older
    /// window than the current one changes nothing: that window no longer decides anything.
    pub fn settle(
        &self,
        subject: &Subject,
        kind: BudgetKind,
        window: Window,
        now_wall_us: i64,
        id: Option<u128>,
        actual: i64,
    ) -> Counts {
        self.with_budget(subject, kind, window, now_wall_us, |state, _| {
            if state.window == window.id {
                if let Some((amount, _)) = id.and_then(|id| state.live.remove(&id)) {
                    state.reserved = state.reserved.saturating_sub(amount).max(0);
                }
                state.used = state.used.saturating_add(actual);
            }
            (state.used, state.reserved)
        })
    }

    pub fn usage(
        &self,
        subject: &Subject,
        kind: BudgetKind,
        window: Window,
        now_wall_us: i64,
    ) -> Counts {
        self.with_budget(subject, kind, window, now_wall_us, |state, _| {
            (state.used, state.reserved)
        })
    }
}
