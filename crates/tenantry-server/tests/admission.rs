//! Admission at ingress: a tenant over its tier's request rate is refused with 429 and the
//! headers that say when to retry; another tenant is unaffected; an unreachable limiter stops
//! the server from starting instead of letting requests through.

#![allow(clippy::unwrap_used)]

use tenantry_testkit::TestServer;

#[tokio::test]
async fn request_rate_is_enforced_per_tenant() {
    let s = TestServer::start().await;
    // basic: 5 requests/s, burst 10.
    s.create_tenant("acme", "basic").await;
    s.create_tenant("globex", "basic").await;
    let acme = s.token("acme", "alice", &[]);
    let globex = s.token("globex", "bob", &[]);

    let first = s.get("/v1/me", &acme).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("ratelimit-limit"), Some("10"));
    assert!(first.header("ratelimit-remaining").is_some());

    let mut refused = None;
    for _ in 0..30 {
        let r = s.get("/v1/me", &acme).await;
        if r.status == 429 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("a burst of 30 requests must exceed basic's burst of 10");
    assert_eq!(r.code(), "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));

    // Another tenant on the same tier still has its whole burst.
    for _ in 0..10 {
        assert_eq!(s.get("/v1/me", &globex).await.status, 200);
    }
    s.stop().await;
}

#[tokio::test]
async fn an_unreachable_limiter_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    tenantry_server::statedir::init(dir.path(), "127.0.0.1:0", false).unwrap();
    let path = dir.path().join("tenantry.toml");
    let env = |k: &str| (k == "TENANTRY_LIMITS_URL").then(|| "redis://127.0.0.1:1/0".to_string());
    let config = tenantry_server::Config::load(&path, &env).unwrap();
    let err = tenantry_server::Server::start(config, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("limiter"), "{err}");
}
