//! Law 4 at the model gateway: when the limiter cannot decide (its Redis goes away), a model
//! call is refused with 503 `unavailable`, never let through, and reaches no upstream; when its
//! usage cannot be written to the ledger, its answer is withheld (503). Start-up
//! refuses a `[models]` section that does not hold together, naming the key.
//!
//! The first test needs Redis (`TENANTRY_TEST_REDIS_URL`, set by CI) and prints SKIP without it.

#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::time::Duration;

use gateway_support::*;
use serde_json::json;
use tenantry_models::MockConfig;
use tenantry_models::testing::MockUpstream;
use tenantry_testkit::TestServer;
use tokio::net::{TcpListener, TcpStream};

/// A TCP forwarder to `target` that can be cut: the limiter's path to Redis.
async fn cuttable_proxy(target: String) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let target = target.clone();
            conns.spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr.to_string(), task)
}

#[tokio::test]
async fn a_limiter_that_cannot_decide_refuses_model_calls() {
    let Ok(redis) = std::env::var("TENANTRY_TEST_REDIS_URL") else {
        eprintln!(
            "SKIP a_limiter_that_cannot_decide_refuses_model_calls: TENANTRY_TEST_REDIS_URL is unset"
        );
        return;
    };
    let host = redis
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let (proxy, cut) = cuttable_proxy(host).await;
    let up = MockUpstream::openai_compatible(MockConfig::default()).await;
    let extra: tenantry_models::ModelsConfig =
        toml::from_str(&upstream_models(&up.url(), &["guarded"])).unwrap();
    let s = TestServer::builder()
        .configure(move |c| {
            c.limits.url = format!("redis://{proxy}/0");
            c.models.providers.extend(extra.providers);
            c.models.catalog.extend(extra.catalog);
        })
        .start()
        .await;
    // No ingress rate, so the gateway's own checks are the ones that meet the dead limiter.
    s.admin(
        "PUT",
        "/v1/admin/tiers/guarded",
        Some(json!({"allowed_models": ["*"], "limits": {
            "model_requests_per_minute": 1000, "tokens_per_minute": 1000000,
            "budget_per_month": "100"}})),
    )
    .await;
    s.admin(
        "PUT",
        "/v1/admin/models/tiers/guarded",
        Some(json!({"default": "guarded"})),
    )
    .await;
    let tenant = format!("t{:x}", std::process::id());
    s.create_tenant(&tenant, "guarded").await;
    let token = s.token(&tenant, "alice", &[]);
    let r = s
        .send_json(
            "POST",
            "/v1/chat/completions",
            &token,
            chat("default", "hi"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(up.requests().len(), 1);

    cut.abort();
    let _ = cut.await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            s.send_json(
                "POST",
                "/v1/chat/completions",
                &token,
                chat("default", "hi"),
            ),
        )
        .await
        .expect("a dead limiter must not hang the call");
        assert_eq!(r.status, 503, "{}", r.text);
        assert_eq!(r.code(), "unavailable");
    }
    assert_eq!(
        up.requests().len(),
        1,
        "a refused call reached the upstream"
    );
    s.stop().await;
}

#[tokio::test]
async fn start_up_refuses_models_that_do_not_hold_together() {
    let dir = tempfile::tempdir().unwrap();
    tenantry_server::statedir::init(dir.path(), "127.0.0.1:0", false).unwrap();
    let path = dir.path().join("tenantry.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[models.catalog.orphan]\nprovider = \"nowhere\"\n");
    std::fs::write(&path, text).unwrap();
    let config = tenantry_server::Config::load(&path, &|_| None).unwrap();
    let err = tenantry_server::Server::start(config, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("models.catalog.orphan.provider"), "{err}");

    // A credential named by an environment variable that is not set, also by its key.
    let mut config = tenantry_server::Config::load(&path, &|_| None).unwrap();
    config.models.catalog.remove("orphan");
    let extra: tenantry_models::ModelsConfig = toml::from_str(
        "[providers.claude]\nkind = \"anthropic\"\napi_key_env = \"TENANTRY_TEST_NO_SUCH_KEY\"\n",
    )
    .unwrap();
    config.models.providers.extend(extra.providers);
    let err = tenantry_server::Server::start(config, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("models.providers.claude.api_key_env"), "{err}");
    assert!(err.contains("TENANTRY_TEST_NO_SUCH_KEY"), "{err}");
}

/// A call whose usage cannot be written to the ledger is not given away: a whole answer is
/// withheld (503 `unavailable`, retryable), a stream ends with an error event instead of
/// `[DONE]`. Another tenant's calls go on, and the first recovers with its database.
#[tokio::test]
async fn a_call_whose_usage_cannot_be_recorded_is_refused() {
    let s = TestServer::start().await;
    s.create_tenant("broke", "standard").await;
    s.create_tenant("fine", "standard").await;
    let (broke, fine) = (s.token("broke", "ann", &[]), s.token("fine", "bob", &[]));
    let store = &s.server().state.store;
    store
        .execute_unscoped_for_tests(
            "CREATE TRIGGER refuse_usage BEFORE INSERT ON usage_records \
             WHEN NEW.tenant_id = 'broke' BEGIN SELECT RAISE(ABORT, 'disk full'); END",
        )
        .await
        .unwrap();

    let r = s
        .send_json(
            "POST",
            "/v1/chat/completions",
            &broke,
            chat("default", "hello"),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.code(), "unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.body["choices"].is_null(), "no answer: {}", r.text);

    let mut body = chat("default", "hello");
    body["stream"] = json!(true);
    let r = s
        .send_json("POST", "/v1/chat/completions", &broke, body.clone())
        .await;
    assert_eq!(r.status, 200);
    assert!(!r.text.contains("[DONE]"), "{}", r.text);
    assert!(r.text.contains("\"code\":\"unavailable\""), "{}", r.text);

    let r = s
        .send_json(
            "POST",
            "/v1/chat/completions",
            &fine,
            chat("default", "hello"),
        )
        .await;
    assert_eq!(r.status, 200, "another tenant is unaffected: {}", r.text);

    store
        .execute_unscoped_for_tests("DROP TRIGGER refuse_usage")
        .await
        .unwrap();
    let r = s
        .send_json("POST", "/v1/chat/completions", &broke, body)
        .await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("data: [DONE]"), "{}", r.text);
    let r = s
        .send_json(
            "POST",
            "/v1/chat/completions",
            &broke,
            chat("default", "hello"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}
