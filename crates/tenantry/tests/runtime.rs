//! The agent runtime driven from the outside: real sandboxes started through the `tenantry`
//! binary's helper, the example agents, and hostile or broken ones.
//!
//! These tests need user namespaces and cgroups; where the host lacks them they print a SKIP
//! line saying what is missing.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use tenantry_testkit::{RequestBody, TestServer};

mod support;

use support::{
    BIN, acme_and_globex_with_runtime, acme_with_runtime, assert_refused_over_quota,
    create_runtime, invoke, invoke_ok, measured_server, python_agent_dir, sandboxes_available,
    server, session_id, small_disk_tier, test_agents_dir, typed,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `acme_with_runtime` with the Python example agent as runtime `py`, its idle timeout and
/// maximum lifetime in seconds, every lifecycle duration divided by `divisor`.
async fn py_with_lifecycle(
    test: &str,
    divisor: u32,
    idle_timeout_seconds: u64,
    max_lifetime_seconds: u64,
) -> Option<(TestServer, String)> {
    let lifecycle = json!({"idle_timeout_seconds": idle_timeout_seconds,
                           "max_lifetime_seconds": max_lifetime_seconds});
    let runtime = json!({"name": "py", "command": ["python3", "agent.py"],
                         "workdir": python_agent_dir(), "lifecycle": lifecycle});
    acme_with_runtime(test, divisor, "standard", runtime).await
}

#[tokio::test]
async fn sessions_carry_context_persist_storage_and_belong_to_their_owner() {
    let test = "sessions_carry_context_persist_storage_and_belong_to_their_owner";
    let runtime = json!({"name": "py", "command": ["python3", "agent.py"],
                         "workdir": python_agent_dir(), "allowed_headers": ["X-Tenantry-Custom-Plan"]});
    let Some(s) = acme_and_globex_with_runtime(test, runtime).await else {
        return;
    };
    let alice = s.token("acme", "alice", &[]);
    let session = session_id("ctx");

    let r = invoke(
        &s,
        "py",
        &alice,
        &session,
        json!({"prompt": "hi", "call_platform": true}),
        &[
            ("X-Tenantry-Custom-Plan", "gold"),
            ("X-Tenantry-Custom-Secret", "not allowlisted"),
            ("X-Tenantry-Tenant-Id", "globex"),
            ("X-Tenantry-Tier", "premium"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ctx = &r.body["context"];
    assert_eq!(ctx["X-Tenantry-Tenant-Id"], "acme");
    assert_eq!(ctx["X-Tenantry-Tier"], "standard");
    assert_eq!(ctx["X-Tenantry-User-Id"], "alice");
    assert_eq!(ctx["X-Tenantry-Session-Id"], session.as_str());
    assert_eq!(
        ctx["X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"],
        session.as_str()
    );
    assert_eq!(
        r.body["custom_headers"],
        json!({"x-tenantry-custom-plan": "gold"})
    );
    assert_eq!(r.body["invocations_in_session"], 1);
    assert_eq!(r.header("x-tenantry-session-id"), Some(session.as_str()));
    // The agent reached the platform with its OPENAI_API_KEY-style secret, as the session.
    let platform = &r.body["platform"]["body"];
    assert_eq!(platform["tenant"]["tenant_id"], "acme", "{}", r.text);
    assert_eq!(platform["principal"]["credential"]["kind"], "workload");

    // Same session again: the counter in session storage goes on.
    let r = invoke(&s, "py", &alice, &session, json!({}), &[]).await;
    assert_eq!(r.body["invocations_in_session"], 2);

    // Another user of the same tenant cannot use, see or stop it.
    let carol = s.token("acme", "carol", &[]);
    let r = invoke(&s, "py", &carol, &session, json!({}), &[]).await;
    assert_eq!((r.status, r.code()), (404, "not_found"), "{}", r.text);
    // Another tenant cannot see or stop it; to globex the id names nothing, so using it
    // creates globex's own session, which shares nothing with acme's.
    let bob = s.token("globex", "bob", &[]);
    for token in [&bob, &carol] {
        let r = s.delete(&format!("/v1/sessions/{session}"), token).await;
        assert_eq!(r.status, 404);
        let r = s.get(&format!("/v1/sessions/{session}"), token).await;
        assert_eq!(r.status, 404);
    }
    let r = invoke(&s, "py", &bob, &session, json!({}), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["context"]["X-Tenantry-Tenant-Id"], "globex");
    assert_eq!(
        r.body["invocations_in_session"], 1,
        "globex must not see acme's storage"
    );
    s.delete(&format!("/v1/sessions/{session}"), &bob).await;

    // Stop, then resume: the storage is still there.
    let r = s.delete(&format!("/v1/sessions/{session}"), &alice).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["was_running"], true);
    assert_eq!(r.body["status"], "stopped");
    let listed = s.get("/v1/sessions", &alice).await;
    assert_eq!(listed.body["sessions"][0]["running"], false);
    let r = invoke(&s, "py", &alice, &session, json!({}), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["invocations_in_session"], 3);

    // Compute is metered per session when it stops (through the ledger's writer).
    s.delete(&format!("/v1/sessions/{session}"), &alice).await;
    assert!(s.server().state.ledger.flush(Duration::from_secs(5)).await);
    let scope = tenantry_core::TenantScope::for_operator(
        tenantry_core::OperatorGrant::for_tests(),
        tenantry_core::TenantId::new("acme").unwrap(),
    );
    let usage = s
        .server()
        .state
        .store
        .list_usage(&scope, 0, i64::MAX, 100)
        .await
        .unwrap();
    let compute: Vec<_> = usage
        .iter()
        .filter(|u| {
            u.kind == tenantry_store::UsageKind::Compute
                && u.session_id.as_deref() == Some(session.as_str())
        })
        .collect();
    assert_eq!(
        compute.len(),
        2,
        "one compute record per sandbox: {usage:?}"
    );
    assert!(
        compute.iter().all(|u| u.cpu_ms > 0 && u.memory_mb_ms > 0),
        "{compute:?}"
    );
    assert!(
        compute
            .iter()
            .all(|u| u.runtime.as_ref().map(|r| r.as_str()) == Some("py"))
    );
    s.stop().await;
}

#[tokio::test]
async fn storage_expires_and_workload_tokens_die_with_their_session() {
    let test = "storage_expires_and_workload_tokens_die_with_their_session";
    let runtime = json!({"name": "py", "command": ["python3", "leaky.py"],
                         "workdir": test_agents_dir(), "storage": {"idle_expiry_seconds": 1}});
    let Some((s, alice)) = acme_with_runtime(test, 1, "standard", runtime).await else {
        return;
    };
    let session = session_id("exp");
    let r = invoke(&s, "py", &alice, &session, json!({}), &[]).await;
    assert_eq!(r.body["invocations_in_session"], 1, "{}", r.text);
    let workload = r.body["workload_token"].as_str().unwrap().to_string();
    assert_eq!(s.get("/v1/me", &workload).await.status, 200);
    s.delete(&format!("/v1/sessions/{session}"), &alice).await;
    let r = s.get("/v1/me", &workload).await;
    assert_eq!(
        (r.status, r.code()),
        (401, "invalid_token"),
        "a stopped session's token is dead"
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    s.server().state.sessions.sweep_now().await;
    let r = s.get(&format!("/v1/sessions/{session}"), &alice).await;
    assert_eq!(r.status, 404, "the expired session is gone");
    let r = invoke(&s, "py", &alice, &session, json!({}), &[]).await;
    assert_eq!(
        r.body["invocations_in_session"], 1,
        "storage was deleted: {}",
        r.text
    );
    s.stop().await;
}

#[tokio::test]
async fn broken_agents_give_clear_errors_not_hangs() {
    if !sandboxes_available("broken_agents_give_clear_errors_not_hangs") {
        return;
    }
    let s = server(1).await;
    s.create_tenant("acme", "standard").await;
    let dir = test_agents_dir();
    for (name, script) in [
        ("crash", "crash.py"),
        ("silent", "silent.py"),
        ("garbage", "garbage.py"),
    ] {
        create_runtime(
            &s,
            json!({"name": name, "command": ["python3", script], "workdir": dir}),
        )
        .await;
    }
    let alice = s.token("acme", "alice", &[]);
    for (runtime, code) in [
        ("crash", "agent_unavailable"),
        ("silent", "agent_unavailable"),
        ("garbage", "agent_error"),
    ] {
        let started = Instant::now();
        let r = invoke(&s, runtime, &alice, &session_id(runtime), json!({}), &[]).await;
        assert_eq!((r.status, r.code()), (502, code), "{runtime}: {}", r.text);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{runtime} took {:?}",
            started.elapsed()
        );
    }
    let r = invoke(&s, "crash", &alice, &session_id("crash"), json!({}), &[]).await;
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("code 3"),
        "{}",
        r.text
    );
    s.stop().await;
}

#[tokio::test]
async fn memory_limit_kills_the_agent_with_sandbox_oom() {
    // basic: 256 MiB per sandbox.
    let test = "memory_limit_kills_the_agent_with_sandbox_oom";
    let runtime =
        json!({"name": "hog", "command": ["python3", "hog.py"], "workdir": test_agents_dir()});
    let Some((s, alice)) = acme_with_runtime(test, 1, "basic", runtime).await else {
        return;
    };
    let session = session_id("oom");
    invoke_ok(&s, "hog", &alice, &session, json!({"allocate_mb": 16})).await;
    let r = invoke(
        &s,
        "hog",
        &alice,
        &session,
        json!({"allocate_mb": 1024}),
        &[],
    )
    .await;
    assert_eq!((r.status, r.code()), (502, "sandbox_oom"), "{}", r.text);
    // The platform is fine, and the session starts afresh on the next call.
    assert_eq!(s.get("/v1/me", &alice).await.status, 200);
    invoke_ok(&s, "hog", &alice, &session, json!({"allocate_mb": 1})).await;
    s.stop().await;
}

#[tokio::test]
async fn dedicated_runtimes_exist_only_for_their_tenant() {
    let test = "dedicated_runtimes_exist_only_for_their_tenant";
    let runtime = json!({"name": "acme-only", "command": ["python3", "agent.py"],
                         "workdir": python_agent_dir(), "tenancy": {"dedicated": "acme"}});
    let Some(s) = acme_and_globex_with_runtime(test, runtime).await else {
        return;
    };
    let acme = s.token("acme", "alice", &[]);
    let globex = s.token("globex", "bob", &[]);
    let r = invoke(
        &s,
        "acme-only",
        &globex,
        &session_id("silo"),
        json!({}),
        &[],
    )
    .await;
    let missing = invoke(
        &s,
        "no-such-runtime",
        &globex,
        &session_id("silo"),
        json!({}),
        &[],
    )
    .await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    assert_eq!(r.body["error"]["message"], missing.body["error"]["message"]);
    let r = invoke(&s, "acme-only", &acme, &session_id("silo"), json!({}), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn idle_timeout_stops_sessions_unless_busy() {
    // Lifecycle durations divided by 30: the 60 s idle timeout acts after 2 s.
    let test = "idle_timeout_stops_sessions_unless_busy";
    let Some((s, alice)) = py_with_lifecycle(test, 30, 60, 600).await else {
        return;
    };
    let idle = session_id("idle");
    let busy = session_id("busy");
    invoke_ok(&s, "py", &alice, &idle, json!({})).await;
    // This one reports HealthyBusy on /ping for 6 s (three idle timeouts).
    invoke_ok(&s, "py", &alice, &busy, json!({"busy_seconds": 6})).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let state = &s.server().state;
    let acme = s.tenant_uid("acme").await;
    assert!(
        !state.sessions.is_running(&acme, &typed(&idle)),
        "idle session must be stopped"
    );
    assert!(
        state.sessions.is_running(&acme, &typed(&busy)),
        "HealthyBusy must keep the session"
    );
    let r = s.get(&format!("/v1/sessions/{idle}"), &alice).await;
    assert_eq!(r.body["stop_reason"], "idle_timeout", "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn max_lifetime_stops_even_busy_sessions() {
    // Divided by 60: the 60 s maximum lifetime acts after 1 s.
    let test = "max_lifetime_stops_even_busy_sessions";
    let Some((s, alice)) = py_with_lifecycle(test, 60, 600, 60).await else {
        return;
    };
    let session = session_id("life");
    invoke_ok(&s, "py", &alice, &session, json!({"busy_seconds": 60})).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = s.get(&format!("/v1/sessions/{session}"), &alice).await;
    assert_eq!(r.body["stop_reason"], "max_lifetime", "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn warm_pool_serves_new_sessions_once_each() {
    let test = "warm_pool_serves_new_sessions_once_each";
    let runtime = json!({"name": "py", "command": ["python3", "agent.py"],
                         "workdir": python_agent_dir(), "warm_pool": 2});
    let Some((s, alice)) = acme_with_runtime(test, 1, "standard", runtime).await else {
        return;
    };
    // The first session fills the pool for this tenant.
    invoke_ok(&s, "py", &alice, &session_id("w0"), json!({})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut counters = Vec::new();
    for i in 0..3 {
        let session = session_id(&format!("w{}", i + 1));
        let r = invoke_ok(&s, "py", &alice, &session, json!({})).await;
        counters.push(r.body["invocations_in_session"].clone());
    }
    // Every new session starts with empty storage: a warm sandbox is never reused.
    assert_eq!(counters, [json!(1), json!(1), json!(1)]);
    s.stop().await;
}

#[tokio::test]
async fn a_dedicated_runtime_fills_its_warm_pool_before_its_first_session() {
    if !sandboxes_available("a_dedicated_runtime_fills_its_warm_pool_before_its_first_session") {
        return;
    }
    let s = server(1).await;
    s.create_tenant("acme", "standard").await;
    let acme = s.tenant_uid("acme").await;
    let pool = |s: &TestServer| {
        s.server()
            .state
            .sessions
            .warm_sandboxes(&tenantry_core::RuntimeName::new("py-acme").unwrap(), &acme)
    };
    let wait_for = |want: usize| {
        let s = &s;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while pool(s) != want {
                assert!(Instant::now() < deadline, "pool at {} of {want}", pool(s));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    create_runtime(
        &s,
        json!({"name": "py-acme", "command": ["python3", "agent.py"], "workdir": python_agent_dir(),
               "warm_pool": 2, "tenancy": {"dedicated": "acme"}}),
    )
    .await;
    // Filled at creation: the tenant's very first session takes a warm sandbox.
    wait_for(2).await;
    let alice = s.token("acme", "alice", &[]);
    let r = invoke(&s, "py-acme", &alice, &session_id("d1"), json!({}), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["invocations_in_session"], json!(1));
    wait_for(2).await;
    // A change discards the pool (its sandboxes run the old spec) and fills it again.
    s.admin(
        "PATCH",
        "/v1/admin/runtimes/py-acme",
        Some(json!({"env": {"GREETING": "changed"}})),
    )
    .await;
    wait_for(2).await;
    s.stop().await;
}

#[tokio::test]
async fn a_hostile_agent_cannot_reach_other_sessions_the_host_or_the_network() {
    let test = "a_hostile_agent_cannot_reach_other_sessions_the_host_or_the_network";
    let runtime =
        json!({"name": "py", "command": ["python3", "agent.py"], "workdir": python_agent_dir()});
    let Some(s) = acme_and_globex_with_runtime(test, runtime).await else {
        return;
    };
    create_runtime(&s, json!({"name": "hostile", "command": ["python3", "hostile.py"], "workdir": test_agents_dir()})).await;

    // A victim session of another tenant, with data in its storage.
    let victim = session_id("victim");
    let globex = s.token("globex", "bob", &[]);
    invoke_ok(&s, "py", &globex, &victim, json!({})).await;
    let sessions = &s.server().state.sessions;
    // Where the host sees its files (inside its sandbox when its storage is an image).
    let victim_dir = sessions.storage_view(&s.tenant_uid("globex").await, &typed(&victim));
    let victim_file = victim_dir.join("counter");
    assert!(victim_file.exists());
    let admin_key = s.config_path.parent().unwrap().join("admin.key");
    let host_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = host_listener.local_addr().unwrap().port();
    let server_port = s.server().addr.port();
    let me = std::process::id() as i64;

    let acme = s.token("acme", "alice", &[]);
    let attack = json!({
        "read": [victim_file, admin_key, "/root/.bash_history", "/etc/shadow", "/proc/1/environ"],
        "write": [victim_dir.join("planted"), "/etc/planted", "/usr/planted", "/planted", "/tmp/ok", "/mnt/session/ok"],
        "signal": [me, 1],
        "connect": [["127.0.0.1", host_port], ["127.0.0.1", server_port], ["10.0.0.1", 80], ["1.1.1.1", 443]],
    });
    let r = invoke(&s, "hostile", &acme, &session_id("hostile"), attack, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let escaped = r.body["escaped"].as_object().unwrap();
    let mut broke_out = Vec::new();
    for (what, worked) in escaped {
        let expected = what == "write:/tmp/ok" || what == "write:/mnt/session/ok"
            // PID 1 inside is the sandbox's own init; signalling it is not an escape.
            || what == "signal:1";
        if worked.as_bool() != Some(expected) {
            broke_out.push(what.clone());
        }
    }
    assert!(
        broke_out.is_empty(),
        "sandbox escapes: {broke_out:?} in {}",
        r.text
    );
    // Only its own process tree is visible: the sandbox's init, the agent, nothing of the host.
    let pids: Vec<i64> = r.body["visible_pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect();
    assert!(pids.len() <= 4, "sees other processes: {pids:?}");
    assert!(!pids.contains(&me));
    assert!(!victim_dir.join("planted").exists());
    assert_eq!(std::fs::read_to_string(&victim_file).unwrap(), "1");
    drop(host_listener);
    s.stop().await;
}

/// An agent written with the AgentCore Python SDK (`bedrock-agentcore`), unchanged. Its
/// dependencies are vendored next to it by `.ci/run`.
#[tokio::test]
async fn an_agentcore_sdk_agent_runs_unchanged() {
    if !sandboxes_available("an_agentcore_sdk_agent_runs_unchanged") {
        return;
    }
    let dir = repo()
        .join("examples/agents/agentcore")
        .canonicalize()
        .unwrap();
    let vendor = dir.join("vendor");
    if !vendor.join("bedrock_agentcore").exists() {
        eprintln!(
            "SKIP an_agentcore_sdk_agent_runs_unchanged: the AgentCore SDK is not vendored; run \
             `/usr/bin/python3 -m pip install --target examples/agents/agentcore/vendor bedrock-agentcore` (.ci/run does)"
        );
        return;
    }
    let s = server(1).await;
    s.create_tenant("acme", "standard").await;
    create_runtime(
        &s,
        json!({"name": "agentcore", "command": ["python3", "agent.py"], "workdir": dir,
               "env": {"PYTHONPATH": vendor},
               "allowed_headers": ["X-Amzn-Bedrock-AgentCore-Runtime-Custom-Plan"]}),
    )
    .await;
    let alice = s.token("acme", "alice", &[]);
    let session = session_id("agentcore");
    let r = s
        .request(
            "POST",
            "/v1/runtimes/agentcore/invocations",
            Some(&alice),
            &[
                (
                    "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id",
                    session.as_str(),
                ),
                ("X-Amzn-Bedrock-AgentCore-Runtime-Custom-Plan", "gold"),
                ("X-Amzn-Bedrock-AgentCore-Runtime-Custom-Other", "dropped"),
            ],
            Some(RequestBody::Json(json!({"prompt": "hello"}))),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["prompt"], "hello");
    assert_eq!(r.body["session_id"], session.as_str());
    assert_eq!(r.body["has_workload_token"], true);
    let custom = r.body["custom_headers"].as_object().unwrap();
    assert_eq!(custom.len(), 1, "{}", r.text);
    assert_eq!(custom.values().next().unwrap(), "gold");
    assert_eq!(r.header("x-tenantry-session-id"), Some(session.as_str()));
    s.stop().await;
}

#[tokio::test]
async fn concurrent_sessions_are_capped_by_the_tier() {
    if !sandboxes_available("concurrent_sessions_are_capped_by_the_tier") {
        return;
    }
    let s = server(1).await;
    let tier =
        json!({"limits": {"requests_per_second": 100, "burst": 100, "concurrent_sessions": 2}});
    s.admin("PUT", "/v1/admin/tiers/tiny", Some(tier)).await;
    s.create_tenant("acme", "tiny").await;
    s.create_tenant("globex", "tiny").await;
    create_runtime(
        &s,
        json!({"name": "py", "command": ["python3", "agent.py"], "workdir": python_agent_dir()}),
    )
    .await;
    let alice = s.token("acme", "alice", &[]);
    let first = session_id("cap");
    invoke_ok(&s, "py", &alice, &first, json!({})).await;
    invoke_ok(&s, "py", &alice, &session_id("cap"), json!({})).await;
    let r = invoke(&s, "py", &alice, &session_id("cap"), json!({}), &[]).await;
    assert_eq!((r.status, r.code()), (429, "rate_limited"), "{}", r.text);
    // A running session keeps working, and another tenant has its own allowance.
    invoke_ok(&s, "py", &alice, &first, json!({})).await;
    let bob = s.token("globex", "bob", &[]);
    invoke_ok(&s, "py", &bob, &session_id("cap"), json!({})).await;
    // Stopping one frees a place.
    s.delete(&format!("/v1/sessions/{first}"), &alice).await;
    invoke_ok(&s, "py", &alice, &session_id("cap"), json!({})).await;
    s.stop().await;
}

/// The Rust example agent: the same contract, streamed answers, storage and platform calls.
#[tokio::test]
async fn the_rust_example_agent_serves_the_contract() {
    if !sandboxes_available("the_rust_example_agent_serves_the_contract") {
        return;
    }
    let bin_dir = PathBuf::from(BIN).parent().unwrap().to_path_buf();
    let agent = bin_dir.join("example-agent");
    if !agent.exists() {
        eprintln!(
            "SKIP the_rust_example_agent_serves_the_contract: {} is not built; `cargo nextest run --workspace` builds it",
            agent.display()
        );
        return;
    }
    // The agent's directory holds only the program, as a deployment would.
    let workdir = tempfile::tempdir().unwrap();
    std::fs::copy(&agent, workdir.path().join("example-agent")).unwrap();
    let program = workdir.path().join("example-agent").canonicalize().unwrap();
    let s = server(1).await;
    s.create_tenant("acme", "standard").await;
    create_runtime(
        &s,
        json!({"name": "rust", "command": [program], "workdir": workdir.path().canonicalize().unwrap(),
               "allowed_headers": ["X-Amzn-Bedrock-AgentCore-Runtime-Custom-Plan"]}),
    )
    .await;
    let alice = s.token("acme", "alice", &[]);
    let session = session_id("rust");
    let r = invoke(
        &s,
        "rust",
        &alice,
        &session,
        json!({"prompt": "hi", "call_platform": true}),
        &[("X-Amzn-Bedrock-AgentCore-Runtime-Custom-Plan", "gold")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["agent"], "rust-example");
    assert_eq!(r.body["context"]["x-tenantry-tenant-id"], "acme");
    assert_eq!(
        r.body["custom_headers"]["x-amzn-bedrock-agentcore-runtime-custom-plan"],
        "gold"
    );
    assert_eq!(r.body["invocations_in_session"], 1);
    assert_eq!(
        r.body["platform"]["body"]["tenant"]["tenant_id"], "acme",
        "{}",
        r.text
    );
    let r = invoke(
        &s,
        "rust",
        &alice,
        &session,
        json!({"prompt": "one two three", "stream": true}),
        &[],
    )
    .await;
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events: Vec<&str> = r
        .text
        .split("\n\n")
        .filter(|e| e.starts_with("data: "))
        .collect();
    assert_eq!(events.len(), 4, "{}", r.text);
    assert!(
        events[3].contains("\"invocations_in_session\":2"),
        "{}",
        r.text
    );
    s.stop().await;
}

#[tokio::test]
async fn session_storage_is_limited_by_the_tier() {
    if !sandboxes_available("session_storage_is_limited_by_the_tier") {
        return;
    }
    // The soft limit (storage measured after each invocation); the hard one, on an image, is
    // tested in `storage_quota.rs`.
    let s = measured_server().await;
    small_disk_tier(&s, 4).await;
    s.create_tenant("acme", "small-disk").await;
    create_runtime(&s, json!({"name": "filler", "command": ["python3", "filler.py"], "workdir": test_agents_dir()})).await;
    let alice = s.token("acme", "alice", &[]);
    let session = session_id("disk");
    invoke_ok(&s, "filler", &alice, &session, json!({"write_mb": 2})).await;
    invoke_ok(&s, "filler", &alice, &session, json!({"write_mb": 3})).await;
    // Now 5 MiB against a 4 MiB limit: the next invocation is refused once measured, and so
    // is resuming the over-full session.
    assert_refused_over_quota(&s, "filler", &alice, &session).await;
    s.stop().await;
}

#[tokio::test]
async fn invocation_bodies_pass_up_to_the_runtime_limit() {
    let test = "invocation_bodies_pass_up_to_the_runtime_limit";
    let runtime = json!({"name": "py", "command": ["python3", "agent.py"],
                         "workdir": python_agent_dir(), "max_body_bytes": 4 * 1024 * 1024});
    let Some((s, alice)) = acme_with_runtime(test, 1, "standard", runtime).await else {
        return;
    };
    let session = session_id("body");
    // 3 MiB: larger than the control plane's 1 MiB limit, within the runtime's 4 MiB.
    let prompt = "x".repeat(3 * 1024 * 1024);
    let r = invoke(&s, "py", &alice, &session, json!({"prompt": prompt}), &[]).await;
    assert_eq!(r.status, 200, "{}", &r.text[..r.text.len().min(300)]);
    assert_eq!(r.body["echo"].as_str().unwrap().len(), 3 * 1024 * 1024);
    let too_big = "x".repeat(5 * 1024 * 1024);
    let r = invoke(&s, "py", &alice, &session, json!({"prompt": too_big}), &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (413, "payload_too_large"),
        "{}",
        &r.text[..r.text.len().min(300)]
    );
    s.stop().await;
}

#[tokio::test]
async fn invocations_of_a_session_reuse_the_agent_connection() {
    let test = "invocations_of_a_session_reuse_the_agent_connection";
    let runtime = json!({"name": "keepalive", "command": ["python3", "keepalive.py"],
                         "workdir": test_agents_dir()});
    let Some((s, alice)) = acme_with_runtime(test, 1, "standard", runtime).await else {
        return;
    };
    let session = session_id("keepalive");
    let mut ports = Vec::new();
    for _ in 0..4 {
        let r = invoke_ok(&s, "keepalive", &alice, &session, json!({"n": 1})).await;
        ports.push(r.body["port"].as_u64().unwrap());
    }
    // The first invocation may come on a new connection; the ones after it come on the one
    // it left in the session's pool (a response with a Content-Length ends without a last
    // empty read, which must still count as read to its end).
    assert!(
        ports[1..].iter().all(|p| *p == ports[1]),
        "each invocation came on a new connection: client ports {ports:?}"
    );
    s.stop().await;
}
