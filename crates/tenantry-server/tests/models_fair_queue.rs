//! Fair queuing in front of a model provider (`[models.queues.PROVIDER]`): when its slots are
//! all taken, waiting calls are served tenant by tenant in proportion to their tiers'
//! `fair_share_weight`, so a tenant flooding the provider waits behind its own calls, not in
//! front of another tenant's; a call that cannot get a slot in time is refused with 503 and
//! `Retry-After`, and a tenant cannot queue without bound (429). Shares are asserted on the
//! order of completions, not on wall-clock time.

#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use gateway_support::*;
use serde_json::json;
use tenantry_testkit::TestServer;

/// Providers `slow` (one slot, 25 ms a call, long waits allowed) and `tight` (one slot, 400 ms
/// a call, waits of at most 100 ms, one waiting call per tenant).
const QUEUES: &str = r#"
[providers.slow]
kind = "mock"
latency_ms = 25
[providers.tight]
kind = "mock"
latency_ms = 400
[catalog.slow-model]
provider = "slow"
[catalog.tight-model]
provider = "tight"
[queues.slow]
max_concurrency = 1
max_waiting_per_tenant = 100
max_wait_ms = 30000
[queues.tight]
max_concurrency = 1
max_waiting_per_tenant = 1
max_wait_ms = 100
"#;

async fn setup() -> TestServer {
    let s = server_with(QUEUES).await;
    let routes = json!({"default": "slow-model"});
    tier(&s, "std", open_limits(json!({})), routes.clone()).await;
    tier(
        &s,
        "gold",
        open_limits(json!({"fair_share_weight": 3})),
        routes,
    )
    .await;
    s.create_tenant("aggressor", "std").await;
    s.create_tenant("victim", "std").await;
    s.create_tenant("bigco", "gold").await;
    s
}

/// `n` calls of `tenant` to `model`, each noting `tenant` in `done` when answered 200.
async fn calls(
    s: &TestServer,
    tenant: &'static str,
    model: &str,
    n: usize,
    done: &Arc<Mutex<Vec<&'static str>>>,
) -> Vec<u16> {
    let token = s.token(tenant, "u", &[]);
    join_all((0..n).map(|i| {
        let (token, done) = (token.clone(), done.clone());
        async move {
            let r = s
                .send_json(
                    "POST",
                    "/v1/chat/completions",
                    &token,
                    chat(model, &format!("{i}")),
                )
                .await;
            if r.status == 200 {
                done.lock().unwrap().push(tenant);
            }
            r.status
        }
    }))
    .await
}

#[tokio::test]
async fn a_flooding_tenant_waits_behind_its_own_calls_not_in_front_of_others() {
    let s = setup().await;
    let done = Arc::new(Mutex::new(Vec::new()));
    let started = std::time::Instant::now();
    let flood = calls(&s, "aggressor", "slow-model", 24, &done);
    let victim = async {
        // Join once the flood fills the queue.
        tokio::time::sleep(Duration::from_millis(60)).await;
        calls(&s, "victim", "slow-model", 4, &done).await
    };
    let (flood, victim) = tokio::join!(flood, victim);
    assert!(
        flood.iter().chain(&victim).all(|s| *s == 200),
        "{flood:?} {victim:?}"
    );
    // One slot: the 28 calls of 25 ms went one at a time (a lower bound, not a timing).
    assert!(started.elapsed() >= Duration::from_millis(28 * 25));
    let order = done.lock().unwrap().clone();
    let last_victim = order.iter().rposition(|t| *t == "victim").unwrap();
    // Served in turn with the aggressor's queue: its 4 calls are done within about 8
    // completions of its arrival (a first-come queue would put them after all 24).
    assert!(
        last_victim < 16,
        "the victim waited behind the flood: {order:?}"
    );
}

#[tokio::test]
async fn weights_set_each_tiers_share_of_a_saturated_provider() {
    let s = setup().await;
    let done = Arc::new(Mutex::new(Vec::new()));
    let (gold, std) = tokio::join!(
        calls(&s, "bigco", "slow-model", 20, &done),
        calls(&s, "aggressor", "slow-model", 20, &done)
    );
    assert!(gold.iter().chain(&std).all(|s| *s == 200));
    let order = done.lock().unwrap().clone();
    let gold_first = order[..16].iter().filter(|t| **t == "bigco").count();
    // Weight 3 to 1: about 12 of the first 16.
    assert!(
        (10..=14).contains(&gold_first),
        "{gold_first} of 16: {order:?}"
    );
}

#[tokio::test]
async fn a_call_that_cannot_get_a_slot_is_refused_with_retry_after() {
    let s = setup().await;
    let done = Arc::new(Mutex::new(Vec::new()));
    // One call takes the slot for 400 ms, one waits 100 ms and is refused with 503, the
    // third finds the tenant's one waiting place taken: 429 at once.
    let statuses = calls(&s, "victim", "tight-model", 3, &done).await;
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [200, 429, 503], "{statuses:?}");

    let token = s.token("aggressor", "u", &[]);
    let (held, refused) = tokio::join!(
        s.send_json(
            "POST",
            "/v1/chat/completions",
            &token,
            chat("tight-model", "a")
        ),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            s.send_json(
                "POST",
                "/v1/chat/completions",
                &token,
                chat("tight-model", "b"),
            )
            .await
        }
    );
    assert_eq!(held.status, 200, "{}", held.text);
    assert_eq!(
        (refused.status, refused.code()),
        (503, "unavailable"),
        "{}",
        refused.text
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.text.contains("busy"), "{}", refused.text);
}
