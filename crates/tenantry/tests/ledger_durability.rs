//! Nothing acknowledged is lost, and a restart forgets no budget (issue 10, item 10), against
//! the real `tenantry serve` on a fresh state directory (SQLite, in-process limiter):
//!
//! * 200 model calls, then SIGTERM: the ledger holds 200 answered calls;
//! * concurrent load, then `kill -9`, three times over: every call a client received a 2xx
//!   (or a stream's `[DONE]`) for is in the ledger (more may be: answered after the client
//!   gave up, or committed just before the kill);
//! * a monthly budget of 50 calls across a clean restart and a `kill -9` restart lets exactly
//!   50 through, on the in-process limiter (seeded from the ledger at start) and on Redis
//!   (when `TENANTRY_TEST_REDIS_URL` is set).

#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Serving, free_port, init_state, serve};
use tenantry_core::{OperatorGrant, TenantId, TenantScope};
use tenantry_store::{Store, UsageKind};

/// A state directory and the address its server listens on.
struct Node {
    dir: tempfile::TempDir,
    port: u16,
    config: PathBuf,
    admin: String,
    http: reqwest::Client,
}

impl Node {
    fn new() -> Self {
        Self::with_limiter("memory://")
    }

    /// A node whose limiter is at `limiter` (`memory://` or `redis://...`).
    fn with_limiter(limiter: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = init_state(dir.path(), port);
        let text = std::fs::read_to_string(&config).unwrap().replacen(
            "url = \"memory://\"",
            &format!("url = \"{limiter}\""),
            1,
        );
        std::fs::write(&config, text).unwrap();
        let admin = std::fs::read_to_string(dir.path().join("admin.key"))
            .unwrap()
            .trim()
            .to_owned();
        Self {
            dir,
            port,
            config,
            admin,
            http: reqwest::Client::new(),
        }
    }

    fn serve(&self) -> Serving {
        serve(&self.config, self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .request(method.parse().unwrap(), self.url(path))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A tenant on `tier` and an API key of it.
    async fn tenant(&self, id: &str, tier: &str) -> String {
        self.admin("POST", "/v1/admin/tenants", json!({"id": id, "tier": tier}))
            .await;
        let key = self
            .admin(
                "POST",
                &format!("/v1/admin/tenants/{id}/api-keys"),
                json!({"name": "load"}),
            )
            .await;
        key["key"].as_str().unwrap().to_owned()
    }

    /// Lifts the premium tier's limits far above any load of these tests.
    async fn open_premium(&self) {
        let big = json!({"model_requests_per_minute": 100_000_000, "tokens_per_minute": 1_000_000_000_000u64,
                         "budget_per_month": "1000000"});
        let mut limits = big.clone();
        limits["requests_per_second"] = json!(1_000_000);
        limits["burst"] = json!(1_000_000);
        limits["per_user"] = big;
        self.admin(
            "PUT",
            "/v1/admin/tiers/premium",
            json!({"limits": limits, "allowed_models": ["*"]}),
        )
        .await;
    }

    /// The model entries of `tenant` in the ledger, read from the database file.
    async fn ledger(&self, tenant: &str) -> Vec<tenantry_store::UsageRecord> {
        let db = self.dir.path().join("tenantry.db");
        let store = Store::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let scope =
            TenantScope::for_operator(OperatorGrant::for_tests(), TenantId::new(tenant).unwrap());
        store
            .list_usage(&scope, 0, i64::MAX, 1_000_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|u| u.kind == UsageKind::Model)
            .collect()
    }
}

/// One chat call; `Some(true)` when its answer came back whole (2xx, and a stream up to its
/// `[DONE]`), `Some(false)` when the server answered otherwise, `None` when the connection
/// failed.
async fn call(http: &reqwest::Client, url: &str, key: &str, stream: bool) -> Option<bool> {
    let body = json!({"model": "default", "stream": stream,
                      "messages": [{"role": "user", "content": "count the acknowledged calls"}]});
    let resp = http
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .ok()?;
    let ok = resp.status().is_success();
    let text = resp.text().await.ok()?;
    if !ok {
        return Some(false);
    }
    Some(if stream {
        text.contains("data: [DONE]")
    } else {
        serde_json::from_str::<Value>(&text).is_ok_and(|v| v["choices"].is_array())
    })
}

/// Sends SIGTERM and waits for the process to exit on its own.
fn terminate(mut server: Serving) {
    let pid = server.0.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let child: &mut Child = &mut server.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the server exited with {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `kill -9`.
fn kill(mut server: Serving) {
    server.0.kill().unwrap();
    server.0.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_calls_then_sigterm_leave_two_hundred_entries() {
    let node = Node::new();
    let server = node.serve();
    node.open_premium().await;
    let key = Arc::new(node.tenant("acme", "premium").await);
    let url = Arc::new(node.url("/v1/chat/completions"));

    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (http, url, key, next) = (node.http.clone(), url.clone(), key.clone(), next.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= 200 {
                    return;
                }
                assert_eq!(call(&http, &url, &key, i % 5 == 0).await, Some(true));
            }
        });
    }
    while let Some(w) = workers.join_next().await {
        w.unwrap();
    }
    // At once: the last answers have just been sent.
    terminate(server);

    let entries = node.ledger("acme").await;
    let ok = entries.iter().filter(|e| e.status == "ok").count();
    assert_eq!(ok, 200, "every answered call is in the ledger");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_no_acknowledged_call() {
    let node = Node::new();
    let server = node.serve();
    node.open_premium().await;
    let key = Arc::new(node.tenant("acme", "premium").await);
    let url = Arc::new(node.url("/v1/chat/completions"));
    let mut server = Some(server);
    let acknowledged = Arc::new(AtomicU64::new(0));
    for (round, load_ms) in [700u64, 1_300, 1_900].into_iter().enumerate() {
        let server_now = match server.take() {
            Some(s) => s,
            None => node.serve(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..16u64 {
            let (http, url, key) = (node.http.clone(), url.clone(), key.clone());
            let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
            workers.spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::SeqCst) {
                    match call(&http, &url, &key, i % 4 == 0).await {
                        Some(true) => {
                            acknowledged.fetch_add(1, Ordering::SeqCst);
                        }
                        Some(false) => {}
                        // The server is gone.
                        None => return,
                    }
                    i += 1;
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(load_ms)).await;
        kill(server_now);
        stop.store(true, Ordering::SeqCst);
        while let Some(w) = workers.join_next().await {
            w.unwrap();
        }
        let acked = acknowledged.load(Ordering::SeqCst);
        let ok = node
            .ledger("acme")
            .await
            .iter()
            .filter(|e| e.status == "ok")
            .count() as u64;
        eprintln!("after kill {round}: {acked} calls acknowledged, {ok} in the ledger");
        assert!(acked > 0, "the load reached the server");
        assert!(
            ok >= acked,
            "{} acknowledged calls are missing from the ledger after kill {round}",
            acked - ok
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monthly_budget_holds_across_clean_and_kill_9_restarts() {
    budget_across_restarts(&Node::new(), "thrifty").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monthly_budget_holds_across_restarts_on_redis() {
    let Ok(redis) = std::env::var("TENANTRY_TEST_REDIS_URL") else {
        eprintln!(
            "SKIP a_monthly_budget_holds_across_restarts_on_redis: TENANTRY_TEST_REDIS_URL is not set"
        );
        return;
    };
    // Redis outlives the test: a tenant id of its own.
    let tenant = format!(
        "thrifty-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    budget_across_restarts(&Node::with_limiter(&redis), &tenant).await;
}

/// Spends a budget of 50 calls over a clean restart and a `kill -9` restart.
async fn budget_across_restarts(node: &Node, tenant: &str) {
    let server = node.serve();
    let key = node.tenant(tenant, "premium").await;
    let url = node.url("/v1/chat/completions");
    // Calls with a fixed prompt and an output limit the mock's answer fills, so each one costs
    // what it reserves: the first one's cost, from the ledger, sets the budget to 50 calls.
    let chat = |http: reqwest::Client, url: String, key: String| async move {
        let body = json!({"model": "default", "max_tokens": 5,
                          "messages": [{"role": "user", "content": "spend a little"}]});
        let resp = http
            .post(&url)
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        (status, v)
    };
    let (status, v) = chat(node.http.clone(), url.clone(), key.clone()).await;
    assert_eq!(status, 200, "{v}");
    let first = node.ledger(tenant).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].output_tokens, 5, "the answer fills max_tokens");
    let budget = tenantry_core::Money::from_micros(first[0].cost.micros() * 50);
    node.admin(
        "PUT",
        &format!("/v1/admin/tenants/{tenant}/limits"),
        json!({"budget_per_month": budget.to_string()}),
    )
    .await;

    let mut ok = 1;
    let spend = |n: usize| {
        let (http, url, key) = (node.http.clone(), url.clone(), key.clone());
        async move {
            let mut passed = 0;
            for _ in 0..n {
                let (status, v) = chat(http.clone(), url.clone(), key.clone()).await;
                match status {
                    200 => passed += 1,
                    429 => {
                        assert_eq!(v["error"]["code"], "budget_exceeded", "{v}");
                        break;
                    }
                    other => panic!("{other}: {v}"),
                }
            }
            passed
        }
    };
    ok += spend(19).await;
    assert_eq!(ok, 20);
    terminate(server);

    let server = node.serve();
    ok += spend(20).await;
    assert_eq!(ok, 40, "after a clean restart, 20 more fit");
    kill(server);

    let server = node.serve();
    ok += spend(30).await;
    assert_eq!(ok, 50, "after a kill -9 restart, only what is left fits");
    terminate(server);

    let _server = node.serve();
    assert_eq!(spend(1).await, 0, "a spent budget stays spent");
    let spent: i64 = node
        .ledger(tenant)
        .await
        .iter()
        .map(|e| e.cost.micros())
        .sum();
    assert_eq!(spent, budget.micros());
}
