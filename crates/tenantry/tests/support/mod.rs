//! What the `tenantry` crate's integration tests share: where the binary, the example agents
//! and the test agents are, and the check that skips a sandbox test, visibly, on a host that
//! cannot run sandboxes.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use serde_json::Value;
use tenantry_testkit::{RequestBody, Response, TestServer};

/// The `tenantry` binary under test (also the sandbox helper: `tenantry sandbox-helper`).
pub const BIN: &str = env!("CARGO_BIN_EXE_tenantry");

/// A directory of the repository, given relative to this crate, as an absolute path.
pub fn dir(relative: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(relative)
        .canonicalize()
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
        .display()
        .to_string()
}

/// The test agents (hostile, broken, tool and model callers).
pub fn test_agents_dir() -> String {
    dir("tests/agents")
}

/// Whether this host can run sandboxes; if not, prints a SKIP line naming the test and what is
/// missing.
pub fn sandboxes_available(test: &str) -> bool {
    let report = tenantry_runtime::probe();
    if !report.sandbox_supported() {
        eprintln!(
            "SKIP {test}: this host cannot run sandboxes: {}",
            report.missing().join("; ")
        );
    }
    report.sandbox_supported()
}

/// The Python example agent.
pub fn python_agent_dir() -> String {
    dir("../../examples/agents/python")
}

/// A test server that runs sandboxes through this binary's helper; `divisor` shortens the
/// lifecycle's durations.
pub async fn server(divisor: u32) -> TestServer {
    TestServer::builder()
        .sandbox_helper(BIN, &["sandbox-helper"])
        .configure(move |c| {
            c.runtime.ready_timeout_seconds = 5;
            c.runtime.time_divisor = divisor;
        })
        .start()
        .await
}

pub fn session_id(tag: &str) -> String {
    format!("{tag}-{}", uuid_like())
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:032x}-{}", N.fetch_add(1, Ordering::Relaxed))
}

pub async fn invoke(
    s: &TestServer,
    runtime: &str,
    token: &str,
    session: &str,
    body: Value,
    extra: &[(&str, &str)],
) -> Response {
    let mut headers = vec![("X-Tenantry-Session-Id", session)];
    headers.extend_from_slice(extra);
    s.request(
        "POST",
        &format!("/v1/runtimes/{runtime}/invocations"),
        Some(token),
        &headers,
        Some(RequestBody::Json(body)),
    )
    .await
}

pub async fn create_runtime(s: &TestServer, body: Value) {
    s.admin("POST", "/v1/admin/runtimes", Some(body)).await;
}
