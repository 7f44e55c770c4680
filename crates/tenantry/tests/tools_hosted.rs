//! MCP servers hosted as Tenantry runtimes, behind the tool gateway, driven from the outside:
//! the example server (`examples/mcp/python/server.py`) registered as a runtime of protocol
//! `mcp` and as a tool target of kind `runtime`, called through `/mcp` by users, API keys and
//! an agent in its own sandbox.
//!
//! What must hold: each tenant session gets its own sandbox of the server (its storage is that
//! session's alone), the server sees the caller's tenant context, an agent's calls follow its
//! own session, the runtime sessions belong to their caller (404 for anyone else) and are
//! metered, ending the MCP session stops them, policy applies to hosted tools as to any other,
//! a broken server gives a clear error in time, and the control plane refuses targets and
//! runtime changes that could not work.
//!
//! These tests need user namespaces and cgroups; where the host lacks them they print a SKIP
//! line saying what is missing.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenantry_testkit::mcp::Mcp;
use tenantry_testkit::{RequestBody, TestServer};

mod support;

use support::{BIN, dir, sandboxes_available};

async fn server() -> TestServer {
    TestServer::builder()
        .sandbox_helper(BIN, &["sandbox-helper"])
        .configure(|c| c.runtime.ready_timeout_seconds = 5)
        .start()
        .await
}

/// The example server as runtime `notes-mcp` and the shared target `notes`.
async fn register_notes(s: &TestServer) {
    s.admin(
        "POST",
        "/v1/admin/runtimes",
        Some(json!({"name": "notes-mcp", "protocol": "mcp",
                    "command": ["python3", "server.py"],
                    "workdir": dir("../../examples/mcp/python")})),
    )
    .await;
    add_hosted_target(s, "notes", "notes-mcp", 10_000).await;
}

async fn add_hosted_target(s: &TestServer, name: &str, runtime: &str, timeout_ms: u64) {
    s.admin(
        "POST",
        "/v1/admin/tool-targets",
        Some(
            json!({"name": name, "kind": {"type": "runtime", "runtime": runtime},
                    "timeout_ms": timeout_ms}),
        ),
    )
    .await;
}

/// Sessions of the caller's, by id, as `GET /v1/sessions` shows them.
async fn sessions_of(s: &TestServer, token: &str) -> Vec<Value> {
    let r = s.get("/v1/sessions?runtime=notes-mcp", token).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["sessions"].as_array().unwrap().clone()
}

fn is_running(sessions: &[Value], id: &str) -> Option<bool> {
    sessions
        .iter()
        .find(|v| v["id"] == id)
        .map(|v| v["running"].as_bool().unwrap())
}

#[tokio::test]
async fn hosted_mcp_servers_run_in_one_sandbox_per_tenant_session() {
    if !sandboxes_available("hosted_mcp_servers_run_in_one_sandbox_per_tenant_session") {
        return;
    }
    let s = server().await;
    s.create_tenant("acme", "standard").await;
    s.create_tenant("globex", "standard").await;
    register_notes(&s).await;
    let alice = s.token("acme", "alice", &[]);
    let bob = s.token("globex", "bob", &[]);

    // A user's MCP session: the tools appear, and the server sees the caller's context.
    let a1 = Mcp::connect(&s.url, &alice).await;
    let tools = a1.tools().await;
    for t in ["notes___recall", "notes___remember", "notes___whoami"] {
        assert!(tools.contains(&t.to_string()), "{t} missing from {tools:?}");
    }
    let who = a1.call("notes___whoami", json!({})).await;
    assert_eq!(who.status, 200, "{:?}", who.body);
    let who = who.json();
    assert_eq!(who["tenant"], "acme", "{who}");
    assert_eq!(who["user"], "alice", "{who}");
    assert_eq!(who["tier"], "standard", "{who}");
    assert_eq!(who["has_workload_token"], true, "{who}");
    let a1_runtime_session = who["session"].as_str().unwrap().to_owned();
    assert!(
        a1_runtime_session.starts_with("mcp-notes-"),
        "{a1_runtime_session}"
    );

    // Its storage persists across calls of that session...
    for text in ["first", "second"] {
        let r = a1.call("notes___remember", json!({"text": text})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["result"]["isError"], false, "{:?}", r.body);
    }
    let recalled = a1.call("notes___recall", json!({})).await.json();
    assert_eq!(recalled["notes"], json!(["first", "second"]));
    // ...and is that session's alone: another MCP session of the same user, and another
    // tenant's, each get a fresh sandbox.
    let a2 = Mcp::connect(&s.url, &alice).await;
    assert_eq!(
        a2.call("notes___recall", json!({})).await.json()["notes"],
        json!([])
    );
    let a2_runtime_session = a2.call("notes___whoami", json!({})).await.json()["session"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(a2_runtime_session, a1_runtime_session);
    let b1 = Mcp::connect(&s.url, &bob).await;
    let bob_who = b1.call("notes___whoami", json!({})).await.json();
    assert_eq!(bob_who["tenant"], "globex", "{bob_who}");
    assert_eq!(
        b1.call("notes___recall", json!({})).await.json()["notes"],
        json!([])
    );
    // A call the server refuses comes back as its tool error, not a transport failure.
    let bad = a1.call("notes___remember", json!({"text": ""})).await;
    assert_eq!(bad.body["result"]["isError"], true, "{:?}", bad.body);

    // The runtime sessions are the caller's sessions: listed for alice, absent for bob.
    let listed = sessions_of(&s, &alice).await;
    assert_eq!(is_running(&listed, &a1_runtime_session), Some(true));
    assert_eq!(is_running(&listed, &a2_runtime_session), Some(true));
    assert!(
        sessions_of(&s, &bob)
            .await
            .iter()
            .all(|v| v["id"] != a1_runtime_session)
    );
    let peek = s
        .get(&format!("/v1/sessions/{a1_runtime_session}"), &bob)
        .await;
    assert_eq!(peek.status, 404, "{}", peek.text);
    let carol = s.token("acme", "carol", &[]);
    let peek = s
        .get(&format!("/v1/sessions/{a1_runtime_session}"), &carol)
        .await;
    assert_eq!(peek.status, 404, "{}", peek.text);

    // Ending the MCP session stops its sandbox (the other one keeps running); the compute
    // it used is in the ledger under alice's tenant, user, runtime and session.
    assert_eq!(a1.close().await, 204);
    let listed = sessions_of(&s, &alice).await;
    assert_eq!(is_running(&listed, &a1_runtime_session), Some(false));
    assert_eq!(is_running(&listed, &a2_runtime_session), Some(true));
    let scope = tenantry_core::TenantScope::for_operator(
        tenantry_core::OperatorGrant::for_tests(),
        tenantry_core::TenantId::new("acme").unwrap(),
    );
    let mut compute = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while compute.is_none() && Instant::now() < deadline {
        compute = s
            .server()
            .state
            .store
            .list_usage(&scope, 0, i64::MAX, 1000)
            .await
            .unwrap()
            .into_iter()
            .find(|e| {
                e.kind == tenantry_store::UsageKind::Compute
                    && e.session_id.as_deref() == Some(a1_runtime_session.as_str())
            });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let compute = compute.expect("a compute entry for the hosted session");
    assert_eq!(compute.runtime.as_ref().unwrap().as_str(), "notes-mcp");
    assert_eq!(compute.user_id.as_ref().unwrap().as_str(), "alice");
    // The tool calls themselves are metered too, with the MCP session.
    let tool_calls = s
        .server()
        .state
        .store
        .list_usage(&scope, 0, i64::MAX, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == tenantry_store::UsageKind::Tool)
        .filter(|e| e.resource.as_deref() == Some("notes___remember"))
        .count();
    assert!(tool_calls >= 3, "{tool_calls}");

    // An agent's calls run in a session of their own for the agent's session: two invocations
    // (each a new MCP session of the agent's) see the same storage.
    s.admin(
        "POST",
        "/v1/admin/runtimes",
        Some(
            json!({"name": "support-bot", "command": ["python3", "tool_caller.py"],
                    "workdir": dir("tests/agents")}),
        ),
    )
    .await;
    let agent_session = format!("agent-session-{:024x}-{}", std::process::id(), 7);
    let mut seen = Vec::new();
    for (tool, arguments) in [
        ("notes___remember", json!({"text": "from the agent"})),
        ("notes___recall", json!({})),
        ("notes___whoami", json!({})),
    ] {
        let r = s
            .request(
                "POST",
                "/v1/runtimes/support-bot/invocations",
                Some(&alice),
                &[("X-Tenantry-Session-Id", &agent_session)],
                Some(RequestBody::Json(
                    json!({"tool": tool, "arguments": arguments}),
                )),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let text = r.body["answer"]["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{}", r.text))
            .to_owned();
        seen.push(serde_json::from_str::<Value>(&text).unwrap());
    }
    assert_eq!(seen[1]["notes"], json!(["from the agent"]), "{seen:?}");
    assert_eq!(seen[2]["tenant"], "acme");
    assert_eq!(seen[2]["user"], "alice");
    let agent_hosted = seen[2]["session"].as_str().unwrap();
    assert!(agent_hosted.starts_with("mcp-notes-"), "{agent_hosted}");
    assert_ne!(agent_hosted, a2_runtime_session);
    assert_ne!(agent_hosted, agent_session);

    // An API key's MCP session works the same way.
    let (_, key) = s.create_api_key("globex", &[]).await;
    let k = Mcp::connect(&s.url, &key).await;
    let who = k.call("notes___whoami", json!({})).await.json();
    assert_eq!(who["tenant"], "globex", "{who}");
    s.stop().await;
}

#[tokio::test]
async fn hosted_targets_are_checked_refused_and_fail_clearly() {
    if !sandboxes_available("hosted_targets_are_checked_refused_and_fail_clearly") {
        return;
    }
    let s = server().await;
    s.create_tenant("acme", "standard").await;
    s.create_tenant("globex", "basic").await;
    register_notes(&s).await;
    let post_target = |body: Value| {
        let s = &s;
        async move {
            s.request(
                "POST",
                "/v1/admin/tool-targets",
                Some(&s.admin_key),
                &[],
                Some(RequestBody::Json(body)),
            )
            .await
        }
    };

    // The control plane refuses what could not work, saying why.
    let r =
        post_target(json!({"name": "ghost", "kind": {"type": "runtime", "runtime": "nope"}})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("unknown runtime"), "{}", r.text);
    s.admin(
        "POST",
        "/v1/admin/runtimes",
        Some(
            json!({"name": "plain-agent", "command": ["python3", "agent.py"],
                    "workdir": dir("../../examples/agents/python")}),
        ),
    )
    .await;
    let r = post_target(
        json!({"name": "plain", "kind": {"type": "runtime", "runtime": "plain-agent"}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("not an MCP server"), "{}", r.text);
    s.admin(
        "POST",
        "/v1/admin/runtimes",
        Some(
            json!({"name": "acme-notes", "protocol": "mcp", "tenancy": {"dedicated": "acme"},
                    "command": ["python3", "server.py"],
                    "workdir": dir("../../examples/mcp/python")}),
        ),
    )
    .await;
    let r = post_target(
        json!({"name": "acme-shared", "kind": {"type": "runtime", "runtime": "acme-notes"}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("dedicated to tenant acme"), "{}", r.text);
    let r = post_target(json!({"name": "globex-notes", "tenant": "globex",
                               "kind": {"type": "runtime", "runtime": "acme-notes"}}))
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = post_target(json!({"name": "acme-own", "tenant": "acme",
                               "kind": {"type": "runtime", "runtime": "acme-notes"}}))
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // A runtime that serves a target cannot be deleted or stop being an MCP server.
    let r = s
        .request(
            "DELETE",
            "/v1/admin/runtimes/acme-notes",
            Some(&s.admin_key),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("acme-own"), "{}", r.text);
    let r = s
        .request(
            "PATCH",
            "/v1/admin/runtimes/acme-notes",
            Some(&s.admin_key),
            &[],
            Some(RequestBody::Json(
                json!({"tenancy": {"dedicated": "globex"}}),
            )),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);

    // A tenant's own hosted target is its alone.
    let alice = s.token("acme", "alice", &[]);
    let gina = s.token("globex", "gina", &[]);
    let acme = Mcp::connect(&s.url, &alice).await;
    let globex = Mcp::connect(&s.url, &gina).await;
    assert!(
        acme.tools()
            .await
            .contains(&"acme-own___whoami".to_string())
    );
    assert!(
        !globex
            .tools()
            .await
            .iter()
            .any(|t| t.starts_with("acme-own___"))
    );
    let r = globex.call("acme-own___whoami", json!({})).await;
    assert_eq!(r.error_code(), Some(-32602), "{:?}", r.body);

    // Policy applies to hosted tools like any other: the upload learns their tools (the
    // server is started in a one-off session for that and stopped again).
    let r = s
        .request(
            "POST",
            "/v1/admin/policies",
            Some(&s.admin_key),
            &[],
            Some(RequestBody::Json(json!({"tier": "basic", "text":
                "@id(\"no-notes\")\nforbid (principal, action == Tenantry::Action::\"notes___remember\", resource);\n"}))),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let tools = globex.tools().await;
    assert!(tools.contains(&"notes___recall".to_string()), "{tools:?}");
    assert!(
        !tools.contains(&"notes___remember".to_string()),
        "{tools:?}"
    );
    let denied = globex.call("notes___remember", json!({"text": "x"})).await;
    assert_eq!(denied.error_code(), Some(-32010), "{:?}", denied.body);
    // ...on every path: the runtime cannot be invoked directly to get around the policy, the
    // tool-call rate and metering (a user's token here; an agent's goes through the same
    // route).
    let bob = s.token("globex", "bob", &[]);
    let bypass = s
        .request(
            "POST",
            "/v1/runtimes/notes-mcp/invocations",
            Some(&bob),
            &[("accept", "application/json, text/event-stream")],
            Some(RequestBody::Json(
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "remember", "arguments": {"text": "x"}}}),
            )),
        )
        .await;
    assert_eq!(
        (bypass.status, bypass.code()),
        (400, "invalid_request"),
        "{}",
        bypass.text
    );
    assert!(bypass.text.contains("/mcp"), "{}", bypass.text);
    assert!(acme.tools().await.contains(&"notes___remember".to_string()));

    // A hosted server that dies before it listens: hidden from the list, and a call gets a
    // clear error within the target's timeout, not a hang.
    s.admin(
        "POST",
        "/v1/admin/runtimes",
        Some(
            json!({"name": "crashing", "protocol": "mcp", "command": ["python3", "crash.py"],
                    "workdir": dir("tests/agents")}),
        ),
    )
    .await;
    add_hosted_target(&s, "broken", "crashing", 8_000).await;
    let started = Instant::now();
    let tools = acme.tools().await;
    assert!(
        !tools.iter().any(|t| t.starts_with("broken___")),
        "{tools:?}"
    );
    let r = acme.call("broken___anything", json!({})).await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(r.error_code().is_some(), "{:?}", r.body);
    assert_eq!(
        r.body["error"]["data"]["code"], "agent_unavailable",
        "{:?}",
        r.body
    );
    assert!(
        r.error_message().contains("exited with code 3"),
        "{:?}",
        r.body
    );
    s.stop().await;
}
