//! What an operator sees per tenant: the Prometheus exposition at `/metrics`, checked by
//! Prometheus's own `promtool`, with a bounded tenant label and no user or session ids.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use tenantry_testkit::TestServer;

/// Runs `promtool check metrics` on `text`; skips (visibly) when promtool is not installed,
/// unless `TENANTRY_REQUIRE_PROMTOOL` says it must be there (CI installs it).
fn promtool_accepts(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("TENANTRY_REQUIRE_PROMTOOL").is_none(),
                "promtool is required but cannot run: {e}"
            );
            eprintln!(
                "SKIPPED promtool check: promtool is not installed ({e}); apt install prometheus"
            );
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejects the exposition: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn metrics_are_per_tenant_bounded_private_and_valid_prometheus() {
    let s = TestServer::builder()
        .configure(|c| {
            c.telemetry.metrics_tenant_cap = 2;
            c.telemetry.metrics_listen = Some("127.0.0.1:0".into());
        })
        .start()
        .await;
    for t in ["acme", "globex", "initech"] {
        s.create_tenant(t, "standard").await;
    }
    let user = "alice-a1b2c3";
    let session = "sess-0123456789-0123456789-0123456789-xyz";
    for t in ["acme", "globex", "initech"] {
        let token = s.token(t, user, &[]);
        assert_eq!(s.get("/v1/me", &token).await.status, 200);
    }
    let acme = s.token("acme", user, &[]);
    let r = s.get(&format!("/v1/sessions/{session}"), &acme).await;
    assert_eq!(r.status, 404);
    let r = s.get("/v1/me", "not-a-credential").await;
    assert_eq!(r.status, 401);

    // Only the operator reads metrics on the main listener.
    let r = s.get("/metrics", &acme).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = s.request("GET", "/metrics", None, &[], None).await;
    assert_eq!(r.status, 401);
    let r = s.get("/metrics", &s.admin_key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text;

    promtool_accepts(&text);
    let has = |needle: &str| text.lines().any(|l| l.contains(needle));
    assert!(has(
        r#"tenantry_http_requests_total{method="GET",route="/v1/me",status="200",tenant="acme"} 1"#
    ));
    assert!(has(r#"route="/v1/me",status="200",tenant="globex"} 1"#));
    // The third tenant is past the cap: counted, but under `other`.
    assert!(has(r#"route="/v1/me",status="200",tenant="other"} 1"#));
    assert!(!text.contains("initech"));
    // Errors by code and tenant; unauthenticated requests under `none`.
    assert!(has(
        r#"tenantry_http_errors_total{code="not_found",tenant="acme"} 1"#
    ));
    assert!(has(
        r#"tenantry_http_errors_total{code="invalid_token",tenant="none"}"#
    ));
    // Route templates, never raw paths; never a user or a session id.
    assert!(has(r#"route="/v1/sessions/{id}""#), "{text}");
    assert!(!text.contains(user) && !text.contains(session));
    assert!(has("tenantry_http_request_duration_seconds_bucket{"));

    // The separate listener serves the same exposition without authentication.
    let at = s.server().metrics_addr.unwrap();
    let scraped = reqwest::get(format!("http://{at}/metrics")).await.unwrap();
    assert_eq!(scraped.status(), 200);
    let scraped = scraped.text().await.unwrap();
    assert!(scraped.contains(r#"tenant="acme""#));
    promtool_accepts(&scraped);
    s.stop().await;
}
