//! Admission limits for Tenantry (DESIGN sections 10 and 12, tenancy laws 4 and 7).
//!
//! One cheap-to-clone `Limiter` answers three questions on the hot path of every request:
//!
//! * **rate** — may this tenant (or user) make another request now? GCRA, with the numbers for
//!   the `RateLimit-*` and `Retry-After` headers (`check_rate`);
//! * **concurrency** — is there a free slot? A `Permit` holds one until dropped (`acquire`);
//! * **budgets** — does the estimate fit what is left of the tokens-per-minute or the
//!   money-per-month budget? A `Reservation` holds the estimate until it is settled with the
//!   actual amount (`reserve`, `settle`), or until it expires.
//!
//! The backend is chosen by URL: `memory://` keeps state in this process (one replica),
//! `redis://host:port/db` shares it between replicas through atomic Lua scripts. Both give the
//! same answers; the test suite runs once per backend.
//!
//! `FairQueue` (weighted fair queuing of tenants in front of a shared capacity) is separate:
//! it is per process and needs no backend.
//!
//! This crate must never answer "allowed" when it cannot decide: every backend failure is
//! `LimitError::Unavailable`, and callers refuse the request (law 4). It must never let two
//! concurrent reservations both fit where only one does, on one replica or on many (law 7).
//! It is not the usage ledger: budgets here decide admission; billing reads the ledger.

#![forbid(unsafe_code)]

mod budget;
mod clock;
mod error;
mod fair;
mod key;
mod memory;
mod rate;
mod redis_backend;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use budget::{BudgetUnit, MAX_UNITS, Reservation, Tokens, Usage};
#[cfg(feature = "test-util")]
pub use clock::ManualClock;
pub use clock::{Clock, SystemClock};
pub use error::LimitError;
pub use fair::{FairPermit, FairQueue};
pub use key::{BudgetKey, BudgetKind, ConcurrencyKey, Dimension, RateKey, Subject};
pub use rate::{Decision, Rate};

use clock::Window;
use memory::MemoryBackend;
use redis_backend::RedisBackend;

/// Tunables of a `Limiter`. The defaults suit production.
#[derive(Debug, Clone)]
pub struct LimiterConfig {
    /// How long an unsettled reservation holds its amount before it is released, so a crashed
    /// request cannot hold budget forever. Longer than the slowest model call.
    pub reservation_ttl: Duration,
    /// How long a concurrency lease survives without a refresh (Redis). A holder refreshes it
    /// every third of this, so only a crashed replica's leases lapse.
    pub lease_ttl: Duration,
    /// The longest a Redis call may take before it counts as `Unavailable`.
    pub redis_timeout: Duration,
    /// The calendar clock that picks budget windows (minute, month).
    pub clock: Arc<dyn Clock>,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            reservation_ttl: Duration::from_secs(600),
            lease_ttl: Duration::from_secs(30),
            redis_timeout: Duration::from_millis(250),
            clock: Arc::new(SystemClock),
        }
    }
}

impl LimiterConfig {
    fn validate(&self) -> Result<(), LimitError> {
        if self.reservation_ttl < Duration::from_millis(10) {
            return Err(LimitError::InvalidConfig(
                "reservation_ttl must be at least 10 ms (the default is 10 minutes)".into(),
            ));
        }
        if self.lease_ttl < Duration::from_millis(30) {
            return Err(LimitError::InvalidConfig(
                "lease_ttl must be at least 30 ms (the default is 30 s)".into(),
            ));
        }
        if self.redis_timeout.is_zero() {
            return Err(LimitError::InvalidConfig(
                "redis_timeout must be positive (the default is 250 ms)".into(),
            ));
        }
        Ok(())
    }
}

/// The admission limiter. Cheap to clone: clones share state (and the Redis connection).
#[derive(Debug, Clone)]
pub struct Limiter {
    backend: Backend,
    config: Arc<LimiterConfig>,
}

#[derive(Debug, Clone)]
enum Backend {
    Memory(Arc<MemoryBackend>),
    Redis(RedisBackend),
}

impl Limiter {
    /// An in-process limiter with the default configuration.
    pub fn memory() -> Limiter {
        let config = LimiterConfig::default();
        Limiter {
            backend: Backend::Memory(Arc::new(MemoryBackend::new(config.reservation_ttl))),
            config: Arc::new(config),
        }
    }

    /// The limiter named by `url` with the default configuration; see `connect_with`.
    pub async fn connect(url: &str) -> Result<Limiter, LimitError> {
        Self::connect_with(url, LimiterConfig::default()).await
    }

    /// The limiter named by `url`:
    ///
    /// * `memory://` — state in this process;
    /// * `redis://HOST:PORT/DB` (optionally `redis://:PASSWORD@HOST...`) — state in Redis.
    ///
    /// Connecting to Redis is lazy: this fails only for a URL it cannot use, and while Redis is
    /// unreachable every call answers `Unavailable`. Call `ping` to check it at start-up.
    /// Must be called within a Tokio runtime.
    pub async fn connect_with(url: &str, config: LimiterConfig) -> Result<Limiter, LimitError> {
        config.validate()?;
        let backend = if url == "memory://" || url == "memory:" {
            Backend::Memory(Arc::new(MemoryBackend::new(config.reservation_ttl)))
        } else if url.starts_with("redis://") {
            Backend::Redis(RedisBackend::connect(url, config.redis_timeout)?)
        } else {
            let scheme = url.split(':').next().unwrap_or_default();
            return Err(LimitError::InvalidConfig(format!(
                "unsupported limiter url scheme {scheme:?}: use memory:// or redis://HOST:PORT/DB (TLS is not built in)"
            )));
        };
        Ok(Limiter {
            backend,
            config: Arc::new(config),
        })
    }

    /// `"memory"` or `"redis"`.
    pub fn backend(&self) -> &'static str {
        match &self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    /// Checks that the backend answers (for readiness probes and start-up).
    pub async fn ping(&self) -> Result<(), LimitError> {
        match &self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(r) => r.ping().await,
        }
    }

    /// Forgets the rate and budget state of one tenant and of its users: the tenant was
    /// deleted, and a tenant created again under the same id starts afresh. Concurrency counts
    /// are left to the permits that hold them.
    pub async fn forget_tenant(&self, tenant: &tenantry_core::TenantId) -> Result<(), LimitError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.forget_tenant(tenant);
                Ok(())
            }
            Backend::Redis(r) => r.forget_tenant(tenant).await,
        }
    }

    /// Counts one request against `key`, admitted at a sustained `rate` with bursts of up to
    /// `burst` (at least 1; a rate or burst of zero admits nothing). A refusal is an `Ok`
    /// decision with `allowed == false`, so its headers can still be sent; use
    /// `Decision::into_result` for a `RateLimited` error. Refused requests consume nothing.
    pub async fn check_rate(
        &self,
        key: &RateKey,
        rate: Rate,
        burst: u32,
    ) -> Result<Decision, LimitError> {
        let Some(interval) = rate.interval_us().filter(|_| burst > 0) else {
            return Ok(Decision::refuse_all(rate));
        };
        match &self.backend {
            Backend::Memory(m) => Ok(m.check_rate(key, interval, burst)),
            Backend::Redis(r) => r.check_rate(&key.redis_key(), interval, burst).await,
        }
    }

    /// Takes one of `max` slots of `key`, or fails with `ConcurrencyExceeded`. The slot is
    /// released when the `Permit` is dropped (or by `Permit::release`).
    pub async fn acquire(&self, key: &ConcurrencyKey, max: u32) -> Result<Permit, LimitError> {
        if max == 0 {
            return Err(LimitError::ConcurrencyExceeded { max });
        }
        match &self.backend {
            Backend::Memory(m) => {
                m.acquire(key, max)?;
                Ok(Permit {
                    inner: PermitInner::Memory {
                        backend: m.clone(),
                        key: key.clone(),
                    },
                })
            }
            Backend::Redis(r) => {
                let redis_key = key.redis_key();
                let id = uuid::Uuid::new_v4().simple().to_string();
                let lease = self.config.lease_ttl;
                if !r.acquire(&redis_key, max, lease, &id).await? {
                    return Err(LimitError::ConcurrencyExceeded { max });
                }
                Ok(Permit::redis_lease(r.clone(), redis_key, id, lease))
            }
        }
    }

    /// Reserves `amount` of `key`'s budget in the current window, atomically refusing with
    /// `BudgetExceeded` when `used + reserved + amount > limit`. Settle the reservation with
    /// the actual amount once known; unsettled, it is released after `reservation_ttl`.
    pub async fn reserve<U: BudgetUnit>(
        &self,
        key: &BudgetKey<U>,
        amount: U,
        limit: U,
    ) -> Result<Reservation<U>, LimitError> {
        let now = self.config.clock.now_unix_micros();
        let window = Window::at(U::KIND, now);
        let (amount, limit) = (amount.to_units(), limit.to_units());
        let refused = LimitError::BudgetExceeded {
            retry_after: window.remaining(now),
        };
        let id = match &self.backend {
            Backend::Memory(m) => m
                .reserve(&key.subject, U::KIND, window, now, amount, limit)
                .map_err(|_| refused)?,
            Backend::Redis(r) => {
                let id = uuid::Uuid::new_v4().as_u128();
                let (fits, _, _) = r
                    .reserve(
                        &key.redis_keys(window.id),
                        amount,
                        limit,
                        self.config.reservation_ttl,
                        &format!("{id:032x}"),
                        self.window_key_ttl(window, now),
                    )
                    .await?;
                if !fits {
                    return Err(refused);
                }
                id
            }
        };
        Ok(Reservation {
            key: key.clone(),
            window,
            id,
            amount,
            settled: false,
        })
    }

    /// Replaces the reservation's amount by `actual` in the window it was made in. `actual`
    /// may exceed the estimate: it is recorded all the same, and later reservations that no
    /// longer fit are refused. Settling after the reservation expired records `actual` once
    /// and releases nothing a second time. Not retried on failure (a retry could count
    /// `actual` twice); a reservation whose settle failed is released at its expiry.
    pub async fn settle<U: BudgetUnit>(
        &self,
        mut reservation: Reservation<U>,
        actual: U,
    ) -> Result<(), LimitError> {
        reservation.settled = true;
        self.add_used(
            &reservation.key,
            reservation.window,
            Some(reservation.id),
            actual.to_units(),
        )
        .await
    }

    /// Adds `amount` used in the current window without a reservation: usage that was never
    /// estimated, or seeding an in-process limiter from the ledger at start-up.
    pub async fn record<U: BudgetUnit>(
        &self,
        key: &BudgetKey<U>,
        amount: U,
    ) -> Result<(), LimitError> {
        let now = self.config.clock.now_unix_micros();
        let window = Window::at(U::KIND, now);
        self.add_used(key, window, None, amount.to_units()).await
    }

    /// When the current window of `U`'s budgets began, in unix seconds: the start of this
    /// calendar minute (tokens) or month (money), by the limiter's clock. Usage recorded since
    /// then is what `record` should seed.
    pub fn window_start<U: BudgetUnit>(&self) -> i64 {
        let now = self.config.clock.now_unix_micros();
        Window::at(U::KIND, now).starts_at_secs(U::KIND)
    }

    async fn add_used<U: BudgetUnit>(
        &self,
        key: &BudgetKey<U>,
        window: Window,
        id: Option<u128>,
        actual: i64,
    ) -> Result<(), LimitError> {
        let now = self.config.clock.now_unix_micros();
        match &self.backend {
            Backend::Memory(m) => {
                m.settle(&key.subject, U::KIND, window, now, id, actual);
                Ok(())
            }
            Backend::Redis(r) => {
                let id = id.map(|id| format!("{id:032x}")).unwrap_or_default();
                r.settle(
                    &key.redis_keys(window.id),
                    &id,
                    actual,
                    self.window_key_ttl(window, now),
                )
                .await
                .map(|_| ())
            }
        }
    }

    /// The budget's used and reserved amounts in the current window.
    pub async fn usage<U: BudgetUnit>(&self, key: &BudgetKey<U>) -> Result<Usage<U>, LimitError> {
        let now = self.config.clock.now_unix_micros();
        let window = Window::at(U::KIND, now);
        let (used, reserved) = match &self.backend {
            Backend::Memory(m) => m.usage(&key.subject, U::KIND, window, now),
            Backend::Redis(r) => r.usage(&key.redis_keys(window.id)).await?,
        };
        Ok(Usage {
            used: U::from_units(used),
            reserved: U::from_units(reserved),
            resets_in: window.remaining(now),
        })
    }

    /// How long Redis keeps a window's keys: past its end by the reservation TTL (late
    /// settles still land) and a minute of slack for clock skew between replicas.
    fn window_key_ttl(&self, window: Window, now_us: i64) -> Duration {
        window.remaining(now_us) + self.config.reservation_ttl + Duration::from_secs(60)
    }
}

/// One concurrency slot, held until dropped or released.
///
/// In memory, dropping frees the slot at once. In Redis the slot is a lease that a background
/// task refreshes while the permit lives; dropping the permit wakes that task, which removes
/// the lease (a network call, hence not done in `Drop`). `release().await` does the same and
/// waits for it, for callers that want the slot free before they go on. If the process dies,
/// the lease lapses after `lease_ttl`.
#[must_use = "a permit frees its slot as soon as it is dropped"]
#[derive(Debug)]
pub struct Permit {
    inner: PermitInner,
}

#[derive(Debug)]
enum PermitInner {
    Memory {
        backend: Arc<MemoryBackend>,
        key: ConcurrencyKey,
    },
    Redis {
        /// Dropping (or sending on) this tells the lease task to remove the lease and stop.
        stop: oneshot::Sender<()>,
        task: JoinHandle<Result<(), LimitError>>,
    },
    Released,
}

impl Permit {
    fn redis_lease(backend: RedisBackend, key: String, id: String, lease: Duration) -> Permit {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let every = lease / 3;
            let mut lost = false;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(every), if !lost => {
                        match backend.refresh(&key, lease, &id).await {
                            Ok(true) => {}
                            Ok(false) => {
                                // Redis was unreachable for longer than the lease: the slot
                                // may have gone to someone else, and we cannot take it back.
                                lost = true;
                                tracing::warn!(key, "concurrency lease lapsed while held");
                            }
                            Err(e) => tracing::warn!(key, error = %e, "refreshing a concurrency lease failed"),
                        }
                    }
                }
            }
            backend.release(&key, &id).await
        });
        Permit {
            inner: PermitInner::Redis { stop, task },
        }
    }

    /// Frees the slot now and waits until the backend has recorded it.
    pub async fn release(mut self) -> Result<(), LimitError> {
        match std::mem::replace(&mut self.inner, PermitInner::Released) {
            PermitInner::Memory { backend, key } => {
                backend.release(&key);
                Ok(())
            }
            PermitInner::Redis { stop, task } => {
                drop(stop);
                task.await.map_err(|e| {
                    LimitError::Unavailable(format!("releasing a concurrency lease: {e}"))
                })?
            }
            PermitInner::Released => Ok(()),
        }
    }

    /// Simulates a crash (feature `test-util`): the lease is neither refreshed nor released,
    /// so it lapses after `lease_ttl`. In memory, the slot is freed as on drop.
    #[cfg(feature = "test-util")]
    pub fn abandon(mut self) {
        match std::mem::replace(&mut self.inner, PermitInner::Released) {
            PermitInner::Memory { backend, key } => backend.release(&key),
            PermitInner::Redis { stop, task } => {
                task.abort();
                // Never signalled: the aborted task must not wake up to release the lease.
                std::mem::forget(stop);
            }
            PermitInner::Released => {}
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        match &self.inner {
            PermitInner::Memory { backend, key } => backend.release(key),
            // The `stop` sender is dropped with `self`, which wakes the lease task to release.
            PermitInner::Redis { .. } | PermitInner::Released => {}
        }
    }
}
