//! The limiter's contract, written once against `&Limiter` and run on both backends: in memory
//! always, Redis when `TENANTRY_TEST_REDIS_URL` is set. Every test uses fresh random tenants,
//! so test processes running in parallel against one Redis never share a key.
//!
//! Timing: nothing asserts how fast anything is. Waits for expiry poll with a generous cap, and
//! the few checks that need "still within the TTL" measure the time and skip themselves when
//! the machine was too slow to make them meaningful.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tenantry_core::{ErrorCode, Money, TenantId, UserId};
use tenantry_limits::{
    BudgetKey, ConcurrencyKey, Dimension, LimitError, Limiter, LimiterConfig, ManualClock, Rate,
    RateKey, Subject, Tokens,
};

// ---- fixtures ---------------------------------------------------------------------------------

const REDIS_URL_VAR: &str = "TENANTRY_TEST_REDIS_URL";

fn redis_url_or_skip() -> Option<String> {
    match std::env::var(REDIS_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        Ok(_) | Err(_) => {
            eprintln!("SKIP: {REDIS_URL_VAR} unset; Redis limiter tests not run");
            None
        }
    }
}

/// Where a suite's limiters live: `memory://` (each limiter its own state) or a Redis URL.
struct Backend {
    url: String,
}

impl Backend {
    async fn limiter(&self) -> Limiter {
        self.limiter_with(LimiterConfig::default()).await
    }

    async fn limiter_with(&self, config: LimiterConfig) -> Limiter {
        let limiter = Limiter::connect_with(&self.url, config).await.unwrap();
        limiter.ping().await.unwrap();
        limiter
    }
}

/// Runs each suite function (`async fn(&Backend)`) as two tests, `NAME::memory` and
/// `NAME::redis`, on a multi-threaded runtime so concurrent tasks really race.
macro_rules! on_both_backends {
    ($($suite:ident),* $(,)?) => {$(
        mod $suite {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn memory() {
                let backend = super::Backend { url: "memory://".into() };
                assert_eq!(backend.limiter().await.backend(), "memory");
                super::$suite(&backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis() {
                let Some(url) = super::redis_url_or_skip() else { return };
                let backend = super::Backend { url };
                assert_eq!(backend.limiter().await.backend(), "redis");
                super::$suite(&backend).await;
            }
        }
    )*};
}

on_both_backends!(
    exactly_ten_of_200_concurrent_reservations_fit,
    actual_above_the_estimate_is_recorded_and_refuses_the_next,
    tokens_per_minute_renew_with_the_minute,
    an_unsettled_reservation_expires_and_a_late_settle_counts_once,
    gcra_allows_the_burst_then_refuses_with_retry_after,
    gcra_refills_over_time,
    concurrency_caps_hold_under_a_race_and_free_on_drop,
    zero_limits_admit_nothing,
    forgetting_a_tenant_clears_its_rates_and_budgets_only,
);

/// A tenant no other test (or test process) uses.
fn tenant() -> TenantId {
    TenantId::new(format!("t{}", uuid::Uuid::new_v4().simple())).unwrap()
}

fn money(micros: i64) -> Money {
    Money::from_micros(micros)
}

/// A clock in the middle of a minute, so per-minute windows do not roll mid-test.
fn mid_minute_clock() -> Arc<ManualClock> {
    // 2025-03-14T15:09:30Z
    Arc::new(ManualClock::at_unix_micros(1_741_964_970_000_000))
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within 10 s");
}

// ---- budgets ----------------------------------------------------------------------------------

/// 200 tasks race for a money budget that fits exactly 10 estimates; exactly 10 win. Settled
/// with odd actual amounts, the budget's `used` is their exact sum. Another tenant racing at the
/// same time keeps its whole budget.
async fn exactly_ten_of_200_concurrent_reservations_fit(backend: &Backend) {
    let limiter = backend.limiter().await;
    race_for_ten(std::slice::from_ref(&limiter), &limiter).await;
}

async fn race_for_ten(replicas: &[Limiter], reader: &Limiter) {
    let estimate = money(250_000); // $0.25
    let limit = money(2_500_000); // exactly 10 estimates
    let (busy, quiet) = (tenant(), tenant());
    let busy_key = BudgetKey::money(Subject::tenant(busy));
    let quiet_key = BudgetKey::money(Subject::tenant(quiet));

    let mut tasks = Vec::new();
    for i in 0..200usize {
        let limiter = replicas[i % replicas.len()].clone();
        let key = busy_key.clone();
        tasks.push(tokio::spawn(async move {
            limiter.reserve(&key, estimate, limit).await
        }));
    }
    let mut quiet_tasks = Vec::new();
    for i in 0..10usize {
        let limiter = replicas[i % replicas.len()].clone();
        let key = quiet_key.clone();
        quiet_tasks.push(tokio::spawn(async move {
            limiter.reserve(&key, estimate, limit).await
        }));
    }

    let mut won = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(reservation) => won.push(reservation),
            Err(LimitError::BudgetExceeded { retry_after }) => {
                // Money renews with the calendar month.
                assert!(retry_after > Duration::ZERO);
                assert!(retry_after <= Duration::from_secs(31 * 86_400));
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(won.len(), 10, "exactly 10 reservations of 200 fit");
    let mid = reader.usage(&busy_key).await.unwrap();
    assert_eq!(mid.used, Money::ZERO);
    assert_eq!(mid.reserved, limit);

    // Settle with actual amounts that differ from the estimate (some above it), alternating
    // replicas: the sum must be exact to the micro-dollar.
    let mut expected = 0i64;
    for (i, reservation) in won.into_iter().enumerate() {
        let actual = money(123_457 + 37_003 * i as i64);
        expected += actual.micros();
        replicas[i % replicas.len()]
            .settle(reservation, actual)
            .await
            .unwrap();
        if i == 4 {
            // Half settled: exactly the other half is still reserved.
            let half = reader.usage(&busy_key).await.unwrap();
            assert_eq!(half.reserved, money(5 * estimate.micros()));
            assert_eq!(half.used, money(expected));
        }
    }
    let after = reader.usage(&busy_key).await.unwrap();
    assert_eq!(after.used, money(expected));
    assert_eq!(after.reserved, Money::ZERO);

    for task in quiet_tasks {
        let reservation = task.await.unwrap().expect("the quiet tenant is unaffected");
        reader.settle(reservation, estimate).await.unwrap();
    }
    let quiet_usage = reader.usage(&quiet_key).await.unwrap();
    assert_eq!(quiet_usage.used, limit);
}

async fn actual_above_the_estimate_is_recorded_and_refuses_the_next(backend: &Backend) {
    let limiter = backend.limiter().await;
    let key = BudgetKey::money(Subject::tenant(tenant()));
    let limit = money(10_000_000);
    let r = limiter
        .reserve(&key, money(5_000_000), limit)
        .await
        .unwrap();
    limiter.settle(r, money(12_000_000)).await.unwrap();
    let usage = limiter.usage(&key).await.unwrap();
    assert_eq!(usage.used, money(12_000_000));
    assert_eq!(usage.reserved, Money::ZERO);
    let next = limiter.reserve(&key, money(1), limit).await;
    assert!(
        matches!(next, Err(LimitError::BudgetExceeded { .. })),
        "{next:?}"
    );
    // `record` adds usage without a reservation, in the same window.
    limiter.record(&key, money(1)).await.unwrap();
    assert_eq!(limiter.usage(&key).await.unwrap().used, money(12_000_001));
}

/// Tokens are budgeted per calendar minute: refused until the minute ends (`retry_after` says
/// when), admitted again in the next.
async fn tokens_per_minute_renew_with_the_minute(backend: &Backend) {
    let clock = mid_minute_clock();
    let limiter = backend
        .limiter_with(LimiterConfig {
            clock: clock.clone(),
            ..LimiterConfig::default()
        })
        .await;
    let user = Subject::user(tenant(), UserId::new("alice@example.com").unwrap());
    let key = BudgetKey::tokens(user.clone());
    let limit = Tokens(1000);
    let r = limiter.reserve(&key, Tokens(800), limit).await.unwrap();
    assert_eq!(r.amount(), Tokens(800));
    match limiter.reserve(&key, Tokens(201), limit).await {
        Err(e @ LimitError::BudgetExceeded { .. }) => {
            assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
            assert_eq!(e.code(), ErrorCode::BudgetExceeded);
        }
        other => panic!("expected BudgetExceeded, got {other:?}"),
    }
    // Exactly up to the limit fits.
    let r2 = limiter.reserve(&key, Tokens(200), limit).await.unwrap();
    limiter.settle(r, Tokens(700)).await.unwrap();
    limiter.settle(r2, Tokens(300)).await.unwrap();
    let usage = limiter.usage(&key).await.unwrap();
    assert_eq!((usage.used, usage.reserved), (Tokens(1000), Tokens(0)));
    assert_eq!(usage.resets_in, Duration::from_secs(30));

    // The tenant-wide budget of the same tenant is a different budget.
    let tenant_key = BudgetKey::tokens(Subject::tenant(user.tenant_id().clone()));
    assert_eq!(limiter.usage(&tenant_key).await.unwrap().used, Tokens(0));

    // Next minute: a fresh window.
    clock.set_unix_micros(1_741_964_970_000_000 + 31_000_000);
    assert_eq!(limiter.usage(&key).await.unwrap().used, Tokens(0));
    let r3 = limiter.reserve(&key, Tokens(1000), limit).await.unwrap();
    limiter.settle(r3, Tokens(10)).await.unwrap();
}

/// A reservation that is never settled is released after the TTL. Settling it afterwards
/// records the actual amount once and does not release its amount a second time.
async fn an_unsettled_reservation_expires_and_a_late_settle_counts_once(backend: &Backend) {
    let ttl = Duration::from_millis(1500);
    let limiter = backend
        .limiter_with(LimiterConfig {
            reservation_ttl: ttl,
            clock: mid_minute_clock(),
            ..LimiterConfig::default()
        })
        .await;
    let key = BudgetKey::tokens(Subject::tenant(tenant()));
    let limit = Tokens(10);

    let first = limiter.reserve(&key, Tokens(6), limit).await.unwrap();
    assert!(matches!(
        limiter.reserve(&key, Tokens(6), limit).await,
        Err(LimitError::BudgetExceeded { .. })
    ));
    eventually("the unsettled reservation expires", async || {
        limiter.usage(&key).await.unwrap().reserved == Tokens(0)
    })
    .await;

    let second = limiter.reserve(&key, Tokens(6), limit).await.unwrap();
    let second_at = Instant::now();
    limiter.settle(first, Tokens(3)).await.unwrap();
    let usage = limiter.usage(&key).await.unwrap();
    assert_eq!(
        usage.used,
        Tokens(3),
        "a late settle records its actual amount once"
    );
    if second_at.elapsed() < ttl / 2 {
        // The second reservation is certainly still live: the late settle of the first must
        // not have released the second's amount (a double release would leave 0).
        assert_eq!(usage.reserved, Tokens(6));
        assert!(matches!(
            limiter.reserve(&key, Tokens(2), limit).await,
            Err(LimitError::BudgetExceeded { .. })
        ));
    } else {
        eprintln!("note: machine too slow to check the live reservation within its TTL");
    }
    limiter.settle(second, Tokens(4)).await.unwrap();
    let usage = limiter.usage(&key).await.unwrap();
    assert_eq!((usage.used, usage.reserved), (Tokens(7), Tokens(0)));
}

// ---- rates ------------------------------------------------------------------------------------

async fn gcra_allows_the_burst_then_refuses_with_retry_after(backend: &Backend) {
    let limiter = backend.limiter().await;
    let key = RateKey::new(Subject::tenant(tenant()), Dimension::Requests);
    // One request per 10 s sustained, bursts of 5: the test cannot outlast an interval.
    let rate = Rate::per_minute(6);
    for expected_remaining in (0..5).rev() {
        let d = limiter.check_rate(&key, rate, 5).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.limit, 5);
        assert_eq!(d.remaining, expected_remaining);
        assert_eq!(d.retry_after, None);
    }
    let refused = limiter.check_rate(&key, rate, 5).await.unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.remaining, 0);
    let retry = refused.retry_after.unwrap();
    assert!(
        retry > Duration::from_secs(5) && retry <= Duration::from_secs(10),
        "{retry:?}"
    );
    assert!(refused.reset_after >= retry && refused.reset_after <= Duration::from_secs(50));
    let headers = refused.headers();
    assert!(headers.contains(&("RateLimit-Limit", "5".to_owned())));
    assert!(headers.contains(&("RateLimit-Remaining", "0".to_owned())));
    assert!(headers.iter().any(|(name, _)| *name == "Retry-After"));
    let err = refused.into_result().unwrap_err();
    assert_eq!(err.code(), ErrorCode::RateLimited);
    assert!(matches!(err.retry_after_secs(), Some(6..=10)));

    // Another tenant, and another user of the same tenant, have limits of their own.
    let other = RateKey::new(Subject::tenant(tenant()), Dimension::Requests);
    assert!(limiter.check_rate(&other, rate, 5).await.unwrap().allowed);
    let user = RateKey::new(
        Subject::user(key.subject.tenant_id().clone(), UserId::new("bob").unwrap()),
        Dimension::Requests,
    );
    assert!(limiter.check_rate(&user, rate, 5).await.unwrap().allowed);
    // Another dimension of the same tenant too.
    let models = RateKey::new(key.subject.clone(), Dimension::ModelRequests);
    assert!(limiter.check_rate(&models, rate, 5).await.unwrap().allowed);
}

async fn gcra_refills_over_time(backend: &Backend) {
    let limiter = backend.limiter().await;
    let key = RateKey::new(Subject::tenant(tenant()), Dimension::ToolCalls);
    let rate = Rate::per_second(20); // one per 50 ms
    // Exhaust the burst; a slow machine may refill in between, so loop until refused.
    let mut refused = None;
    for _ in 0..200 {
        let d = limiter.check_rate(&key, rate, 2).await.unwrap();
        if !d.allowed {
            refused = Some(d);
            break;
        }
    }
    let refused = refused.expect("a burst of 2 at 20/s is exhausted by 200 rapid requests");
    let retry = refused.retry_after.unwrap();
    assert!(retry <= Duration::from_millis(50), "{retry:?}");
    // Refused requests consume nothing: after the retry delay one is admitted...
    tokio::time::sleep(retry + Duration::from_millis(5)).await;
    assert!(limiter.check_rate(&key, rate, 2).await.unwrap().allowed);
    // ...and after a long pause the whole burst is back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = limiter.check_rate(&key, rate, 2).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 1);
}

// ---- concurrency ------------------------------------------------------------------------------

async fn concurrency_caps_hold_under_a_race_and_free_on_drop(backend: &Backend) {
    let limiter = backend.limiter().await;
    let key = ConcurrencyKey::new(Subject::tenant(tenant()), Dimension::Invocations);

    // 100 racing acquires of 5 slots: exactly 5 win.
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (limiter, key) = (limiter.clone(), key.clone());
        tasks.push(tokio::spawn(async move { limiter.acquire(&key, 5).await }));
    }
    let mut held = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(permit) => held.push(permit),
            Err(e @ LimitError::ConcurrencyExceeded { max: 5 }) => {
                assert_eq!(e.code(), ErrorCode::RateLimited);
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(held.len(), 5);

    // Another tenant is unaffected.
    let other = ConcurrencyKey::new(Subject::tenant(tenant()), Dimension::Invocations);
    let other_permit = limiter.acquire(&other, 1).await.unwrap();

    // An explicit release frees the slot before it returns.
    held.pop().unwrap().release().await.unwrap();
    held.push(limiter.acquire(&key, 5).await.unwrap());
    assert!(limiter.acquire(&key, 5).await.is_err());

    // Dropping frees the slot (at once in memory, by a background task in Redis).
    drop(held.pop());
    eventually("a dropped permit frees its slot", async || {
        match limiter.acquire(&key, 5).await {
            Ok(permit) => {
                held.push(permit);
                true
            }
            Err(_) => false,
        }
    })
    .await;
    assert_eq!(held.len(), 5);
    drop(held);
    eventually("all dropped permits free their slots", async || {
        let mut permits = Vec::new();
        for _ in 0..5 {
            match limiter.acquire(&key, 5).await {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let all = permits.len() == 5;
        for p in permits {
            p.release().await.unwrap();
        }
        all
    })
    .await;
    other_permit.release().await.unwrap();
}

async fn zero_limits_admit_nothing(backend: &Backend) {
    let limiter = backend.limiter().await;
    let subject = Subject::tenant(tenant());
    let rate_key = RateKey::new(subject.clone(), Dimension::Requests);
    assert!(
        !limiter
            .check_rate(&rate_key, Rate::per_second(0), 5)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !limiter
            .check_rate(&rate_key, Rate::per_second(5), 0)
            .await
            .unwrap()
            .allowed
    );
    let conc = ConcurrencyKey::new(subject.clone(), Dimension::Sessions);
    assert!(matches!(
        limiter.acquire(&conc, 0).await,
        Err(LimitError::ConcurrencyExceeded { max: 0 })
    ));
    let budget = BudgetKey::money(subject);
    assert!(matches!(
        limiter.reserve(&budget, money(1), Money::ZERO).await,
        Err(LimitError::BudgetExceeded { .. })
    ));
    // A reservation of nothing fits even an exhausted budget, and settles to its actual.
    let r = limiter
        .reserve(&budget, Money::ZERO, Money::ZERO)
        .await
        .unwrap();
    limiter.settle(r, Money::ZERO).await.unwrap();
}

// ---- Redis only: replicas, leases, failure ------------------------------------------------------

/// Two limiters on one Redis are two replicas: racing through both, still exactly 10 fit, and
/// a reservation made on one settles on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_racing_still_fit_exactly_ten() {
    let Some(url) = redis_url_or_skip() else {
        return;
    };
    let backend = Backend { url };
    let a = backend.limiter().await;
    let b = backend.limiter().await;
    race_for_ten(&[a.clone(), b], &a).await;
}

/// A replica that dies holding a permit does not hold the slot for ever: the lease lapses.
/// A live holder's lease is refreshed, so it outlives `lease_ttl`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_leases_are_refreshed_while_held_and_lapse_after_a_crash() {
    let Some(url) = redis_url_or_skip() else {
        return;
    };
    let backend = Backend { url };
    let lease_ttl = Duration::from_millis(300);
    let limiter = backend
        .limiter_with(LimiterConfig {
            lease_ttl,
            ..LimiterConfig::default()
        })
        .await;
    let key = ConcurrencyKey::new(Subject::tenant(tenant()), Dimension::Sessions);

    let held = limiter.acquire(&key, 1).await.unwrap();
    tokio::time::sleep(lease_ttl * 4).await;
    assert!(
        matches!(
            limiter.acquire(&key, 1).await,
            Err(LimitError::ConcurrencyExceeded { max: 1 })
        ),
        "a held lease is refreshed past its TTL"
    );

    held.abandon();
    assert!(limiter.acquire(&key, 1).await.is_err());
    eventually("an abandoned lease lapses", async || {
        match limiter.acquire(&key, 1).await {
            Ok(permit) => {
                permit.release().await.unwrap();
                true
            }
            Err(_) => false,
        }
    })
    .await;
}

/// Fail closed: with Redis unreachable every call is `Unavailable`, never allowed.
#[tokio::test]
async fn redis_down_means_unavailable_for_every_call() {
    // Port 1 on loopback: nothing listens, connections are refused at once.
    let limiter = Limiter::connect("redis://127.0.0.1:1/0").await.unwrap();
    assert_unavailable_everywhere(&limiter).await;
}

/// A Redis that accepts connections and never answers: the timeout turns it into
/// `Unavailable` quickly instead of a hang.
#[tokio::test]
async fn a_silent_redis_times_out_as_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket); // read nothing, answer nothing
        }
    });
    let limiter = Limiter::connect(&format!("redis://{addr}/0"))
        .await
        .unwrap();
    let started = Instant::now();
    assert_unavailable_everywhere(&limiter).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "each call gives up after the short timeout"
    );
    silent.abort();
}

async fn assert_unavailable_everywhere(limiter: &Limiter) {
    let subject = Subject::tenant(tenant());
    let unavailable = |r: Result<(), LimitError>, what: &str| match r {
        Err(e @ LimitError::Unavailable(_)) => assert_eq!(e.code(), ErrorCode::Unavailable),
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    };
    unavailable(limiter.ping().await, "ping");
    // Twice each: the second call goes through the reconnect path.
    for _ in 0..2 {
        let rate = limiter
            .check_rate(
                &RateKey::new(subject.clone(), Dimension::Requests),
                Rate::per_second(1000),
                1000,
            )
            .await;
        unavailable(rate.map(|_| ()), "check_rate");
        let permit = limiter
            .acquire(
                &ConcurrencyKey::new(subject.clone(), Dimension::Invocations),
                1000,
            )
            .await;
        unavailable(permit.map(|_| ()), "acquire");
        let key = BudgetKey::money(subject.clone());
        let reservation = limiter.reserve(&key, money(1), money(1_000_000)).await;
        unavailable(reservation.map(|_| ()), "reserve");
        unavailable(limiter.record(&key, money(1)).await, "record");
        unavailable(limiter.usage(&key).await.map(|_| ()), "usage");
    }
    // Settling needs a reservation, which only a live Redis hands out.
    if let Ok(url) = std::env::var(REDIS_URL_VAR) {
        let live = Limiter::connect(&url).await.unwrap();
        let key = BudgetKey::money(subject);
        let r = live.reserve(&key, money(1), money(10)).await.unwrap();
        unavailable(limiter.settle(r, money(1)).await, "settle");
    }
}

#[tokio::test]
async fn urls_choose_the_backend_or_say_what_is_wrong() {
    assert_eq!(
        Limiter::connect("memory://").await.unwrap().backend(),
        "memory"
    );
    for bad in ["rediss://127.0.0.1:6379", "postgres://x", "nonsense"] {
        match Limiter::connect(bad).await {
            Err(e @ LimitError::InvalidConfig(_)) => assert_eq!(e.code(), ErrorCode::Internal),
            other => panic!("{bad}: expected InvalidConfig, got {other:?}"),
        }
    }
    let zero_ttl = LimiterConfig {
        reservation_ttl: Duration::ZERO,
        ..LimiterConfig::default()
    };
    assert!(matches!(
        Limiter::connect_with("memory://", zero_ttl).await,
        Err(LimitError::InvalidConfig(_))
    ));
}

// ---- deleted tenants ----------------------------------------------------------------------------

/// A deleted tenant's spent budgets and rate debt are forgotten (a tenant created again under
/// its id starts afresh); another tenant's are untouched.
async fn forgetting_a_tenant_clears_its_rates_and_budgets_only(backend: &Backend) {
    let limiter = backend.limiter().await;
    let (gone, kept) = (tenant(), tenant());
    let limit = money(1_000_000);
    let rate = Rate::per_minute(6);
    for t in [&gone, &kept] {
        for subject in [
            Subject::tenant(t.clone()),
            Subject::user(t.clone(), UserId::new("alice").unwrap()),
        ] {
            let key = BudgetKey::money(subject.clone());
            let r = limiter.reserve(&key, limit, limit).await.unwrap();
            limiter.settle(r, limit).await.unwrap();
            let rate_key = RateKey::new(subject, Dimension::Requests);
            assert!(
                limiter
                    .check_rate(&rate_key, rate, 1)
                    .await
                    .unwrap()
                    .allowed
            );
            assert!(
                !limiter
                    .check_rate(&rate_key, rate, 1)
                    .await
                    .unwrap()
                    .allowed
            );
        }
    }
    limiter.forget_tenant(&gone).await.unwrap();
    for (t, forgotten) in [(&gone, true), (&kept, false)] {
        for subject in [
            Subject::tenant(t.clone()),
            Subject::user(t.clone(), UserId::new("alice").unwrap()),
        ] {
            let usage = limiter
                .usage(&BudgetKey::money(subject.clone()))
                .await
                .unwrap();
            let expected = if forgotten { Money::ZERO } else { limit };
            assert_eq!(usage.used, expected, "{subject:?}");
            let rate_key = RateKey::new(subject, Dimension::Requests);
            let allowed = limiter
                .check_rate(&rate_key, rate, 1)
                .await
                .unwrap()
                .allowed;
            assert_eq!(allowed, forgotten, "{rate_key:?}");
        }
    }
}
