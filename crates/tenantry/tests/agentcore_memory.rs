//! An agent written with the AgentCore Python SDK, unchanged, has memory inside its sandbox with
//! no credential of its own: the platform points boto3 at the sandbox's bridge with a dummy key
//! pair whose secret is the sandbox's, and the bridge turns a valid signature into the
//! session's workload identity. The agent writes its conversation, lists it, and retrieves the
//! fact a scripted mock model extracted; it cannot name another user, and another tenant's
//! session finds the memory missing.
//!
//! Needs sandboxes, `python3` with `boto3`, and the SDK vendored at
//! `examples/agents/agentcore/vendor`; otherwise a SKIP line, unless
//! `TENANTRY_REQUIRE_AGENTCORE_SDK=1` (set by CI) makes it fail.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use support::*;
use tenantry_testkit::{RequestBody, TestServer};

fn vendor() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/agents/agentcore/vendor")
        .canonicalize()
        .unwrap_or_default()
}

fn sdk_or_skip(test: &str) -> bool {
    let ok = vendor().join("bedrock_agentcore").exists()
        && Command::new("python3")
            .args(["-c", "import boto3"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
    if ok {
        return true;
    }
    if std::env::var("TENANTRY_REQUIRE_AGENTCORE_SDK").as_deref() == Ok("1") {
        panic!("{test}: boto3 and the vendored AgentCore SDK are required (.ci/run installs them)");
    }
    eprintln!(
        "SKIP {test}: needs python3 with boto3 and the AgentCore SDK vendored in \
         examples/agents/agentcore/vendor (.ci/run installs both)"
    );
    false
}

/// A sandbox server whose tier `mem` routes model calls to a mock that extracts one fact.
async fn memory_server() -> TestServer {
    let s = TestServer::builder()
        .sandbox_helper(BIN, &["sandbox-helper"])
        .configure(|c| c.runtime.ready_timeout_seconds = 10)
        .toml(
            r#"
[models.providers.scripted]
kind = "mock"
[[models.providers.scripted.script]]
content = "{\"records\":[{\"text\":\"The favourite colour of the user is green\"}]}"
[models.catalog.extractor]
provider = "scripted"
upstream_model = "extractor"
"#,
        )
        .start()
        .await;
    s.admin(
        "PUT",
        "/v1/admin/tiers/mem",
        Some(
            json!({"limits": {"requests_per_second": 100000, "burst": 100000},
                    "allowed_models": ["*"]}),
        ),
    )
    .await;
    s.admin(
        "PUT",
        "/v1/admin/models/tiers/mem",
        Some(json!({"default": "extractor"})),
    )
    .await;
    s
}

/// Creates a memory of `tenant` with a semantic strategy into `/facts/{actorId}`, from outside,
/// with boto3 and a tenant-admin access key; its id.
fn create_memory(url: &str, key: &Value) -> String {
    let script = r#"
import os, boto3
c = boto3.client("bedrock-agentcore-control", region_name="us-east-1",
                 endpoint_url=os.environ["URL"] + "/aws/bedrock-agentcore-control",
                 aws_access_key_id=os.environ["KEY"], aws_secret_access_key=os.environ["SECRET"])
m = c.create_memory(name="AgentFacts", eventExpiryDuration=30, memoryStrategies=[
    {"semanticMemoryStrategy": {"name": "facts", "namespaces": ["/facts/{actorId}"]}}])
print(m["memory"]["id"])
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("URL", url)
        .env("KEY", key["access_key_id"].as_str().unwrap())
        .env("SECRET", key["secret_access_key"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn ask(s: &TestServer, token: &str, session: &str, payload: Value) -> Value {
    let r = s
        .request(
            "POST",
            "/v1/runtimes/memagent/invocations",
            Some(token),
            &[("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id", session)],
            Some(RequestBody::Json(payload)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

#[tokio::test]
async fn an_unchanged_sdk_agent_has_memory_without_credentials_of_its_own() {
    let test = "an_unchanged_sdk_agent_has_memory_without_credentials_of_its_own";
    if !sandboxes_available(test) || !sdk_or_skip(test) {
        return;
    }
    let s = memory_server().await;
    s.create_tenant("acme", "mem").await;
    s.create_tenant("globex", "mem").await;
    let admin_key = s
        .admin(
            "POST",
            "/v1/admin/tenants/acme/access-keys",
            Some(json!({"name": "ops", "user": "ops", "roles": ["tenant-admin"]})),
        )
        .await;
    let url = s.url.clone();
    let memory = tokio::task::spawn_blocking(move || create_memory(&url, &admin_key))
        .await
        .unwrap();
    // A sandbox sees only its program's directory: the agent with its SDK vendored beside it
    // (hard links of the vendored tree, so nothing is copied).
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let workdir = work.path().canonicalize().unwrap();
    std::fs::copy(
        PathBuf::from(test_agents_dir()).join("memory_agent.py"),
        workdir.join("memory_agent.py"),
    )
    .unwrap();
    let linked = Command::new("cp")
        .arg("-al")
        .arg(vendor())
        .arg(workdir.join("vendor"))
        .status()
        .is_ok_and(|s| s.success());
    if !linked {
        let copied = Command::new("cp")
            .arg("-a")
            .arg(vendor())
            .arg(workdir.join("vendor"))
            .status()
            .unwrap();
        assert!(copied.success());
    }
    create_runtime(
        &s,
        json!({"name": "memagent", "command": ["python3", "memory_agent.py"],
               "workdir": workdir, "env": {"PYTHONPATH": workdir.join("vendor")}}),
    )
    .await;

    let alice = s.token("acme", "alice", &[]);
    let session = session_id("mem");
    let answer = ask(
        &s,
        &alice,
        &session,
        json!({"memory_id": memory, "actor_id": "alice",
               "prompt": "My favourite colour is green."}),
    )
    .await;
    assert_eq!(answer.get("error"), None, "{answer}");
    assert_eq!(
        answer["events"],
        json!([["My favourite colour is green.", "Noted."]]),
        "{answer}"
    );
    let records = answer["records"].to_string();
    assert!(records.contains("green"), "{answer}");
    let seen = answer["credentials_seen"].to_string();
    assert!(
        seen.contains("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE"),
        "{seen}"
    );

    // The agent acts as its session's user: another user of the tenant is not its to name.
    let answer = ask(
        &s,
        &alice,
        &session,
        json!({"memory_id": memory, "actor_id": "bob", "prompt": "hi",
               "wait_for_records": false}),
    )
    .await;
    let status = answer["error"]["status"].as_i64();
    assert!(matches!(status, Some(403 | 404)), "{answer}");
    assert_eq!(answer.get("events"), None, "{answer}");

    // Another tenant's session finds acme's memory missing.
    let bob = s.token("globex", "bob", &[]);
    let answer = ask(
        &s,
        &bob,
        &session_id("mem"),
        json!({"memory_id": memory, "actor_id": "bob", "prompt": "hi",
               "wait_for_records": false}),
    )
    .await;
    assert_eq!(
        answer["error"],
        json!({"status": 404, "code": "ResourceNotFoundException"}),
        "{answer}"
    );
    s.stop().await;
}
