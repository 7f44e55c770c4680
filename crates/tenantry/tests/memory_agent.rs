//! An agent's workload token and memory: inside its sandbox an agent reaches its tenant's
//! memory as its session's user only — another user's events and records of the same tenant
//! are refused or absent — unless its runtime is configured for tenant-wide memory; it
//! creates memories only when its runtime manages them.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use tenantry_testkit::{RequestBody, TestServer};

mod support;

use support::{BIN, sandboxes_available, test_agents_dir};

/// Asks the agent of `runtime`, in alice's session, to call the memory API.
async fn through_agent(
    s: &TestServer,
    runtime: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (u64, Value) {
    let alice = s.token("acme", "alice", &[]);
    let session = format!("memory-session-{runtime}-{:032x}", std::process::id());
    let r = s
        .request(
            "POST",
            &format!("/v1/runtimes/{runtime}/invocations"),
            Some(&alice),
            &[("X-Tenantry-Session-Id", &session)],
            Some(RequestBody::Json(
                json!({"method": method, "path": path, "body": body}),
            )),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    (
        r.body["status"].as_u64().unwrap_or(0),
        r.body["body"].clone(),
    )
}

fn turn(actor: &str, text: &str) -> Value {
    json!({"actorId": actor, "sessionId": "s1", "eventTimestamp": 1_760_000_000,
           "payload": [{"conversational": {"content": {"text": text}, "role": "USER"}}]})
}

#[tokio::test]
async fn a_workload_token_reaches_only_its_users_memory_unless_tenant_wide() {
    if !sandboxes_available("a_workload_token_reaches_only_its_users_memory_unless_tenant_wide") {
        return;
    }
    let s = TestServer::builder()
        .sandbox_helper(BIN, &["sandbox-helper"])
        .configure(|c| c.runtime.ready_timeout_seconds = 5)
        .start()
        .await;
    s.admin(
        "PUT",
        "/v1/admin/tiers/open",
        Some(
            json!({"limits": {"requests_per_second": 1000, "burst": 1000,
                               "concurrent_invocations": 10, "concurrent_sessions": 10},
                    "allowed_models": ["*"]}),
        ),
    )
    .await;
    s.create_tenant("acme", "open").await;
    let key = s.create_api_key("acme", &["tenant-admin"]).await.1;
    for (name, wide) in [("personal", false), ("team", true)] {
        s.admin(
            "POST",
            "/v1/admin/runtimes",
            Some(
                json!({"name": name, "command": ["python3", "memory_caller.py"],
                        "workdir": test_agents_dir(), "memory": {"tenant_wide": wide, "manage_memories": wide}}),
            ),
        )
        .await;
    }
    let r = s
        .send_json(
            "POST",
            "/v1/memory/memories",
            &key,
            json!({"name": "chat", "strategies": [{"name": "facts", "type": "SEMANTIC"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mem = r.body["memory"]["id"].as_str().unwrap().to_string();
    let strategy = r.body["memory"]["strategies"][0]["strategyId"]
        .as_str()
        .unwrap()
        .to_string();
    // Bob's memory, written by the tenant's backend.
    let r = s
        .send_json(
            "POST",
            &format!("/v1/memory/memories/{mem}/events"),
            &key,
            turn("bob", "bob's secret"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bob_ns = format!("/strategies/{strategy}/actors/bob");
    let r = s
        .send_json(
            "POST",
            &format!("/v1/memory/memories/{mem}/records/batch-create"),
            &key,
            json!({"records": [{"requestIdentifier": "b", "namespaces": [bob_ns],
                    "content": {"text": "bob secret fact"}, "timestamp": 1}]}),
        )
        .await;
    assert_eq!(r.body["failedRecords"], json!([]), "{}", r.text);

    // The personal agent: its own user's memory works...
    let events = format!("/v1/memory/memories/{mem}/events");
    let (status, body) =
        through_agent(&s, "personal", "POST", &events, turn("alice", "alice here")).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = through_agent(
        &s,
        "personal",
        "GET",
        &format!("/v1/memory/memories/{mem}/actors/alice/sessions/s1/events"),
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, body["events"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{body}"
    );
    // ...another user's is refused, whatever the path or body names...
    let (status, _) = through_agent(
        &s,
        "personal",
        "POST",
        &events,
        turn("bob", "impersonating"),
    )
    .await;
    assert_eq!(status, 403);
    for path in [
        format!("/v1/memory/memories/{mem}/actors/bob/sessions/s1/events"),
        format!("/v1/memory/memories/{mem}/actors/bob/sessions"),
    ] {
        let (status, body) = through_agent(&s, "personal", "GET", &path, Value::Null).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (status, _) = through_agent(
        &s,
        "personal",
        "DELETE",
        "/v1/memory/users/bob",
        Value::Null,
    )
    .await;
    assert_eq!(status, 403);
    // ...and another user's records are absent, with bob's namespace or the widest prefix.
    for ns in [bob_ns.as_str(), "/"] {
        let (status, body) = through_agent(
            &s,
            "personal",
            "POST",
            &format!("/v1/memory/memories/{mem}/records/retrieve"),
            json!({"searchQuery": "bob secret fact", "namespace": ns}),
        )
        .await;
        assert_eq!(
            (status, body["memoryRecordSummaries"].clone()),
            (200, json!([])),
            "{ns}"
        );
    }
    let (_, body) = through_agent(
        &s,
        "personal",
        "GET",
        &format!("/v1/memory/memories/{mem}/actors"),
        Value::Null,
    )
    .await;
    assert_eq!(body["actorSummaries"], json!([{"actorId": "alice"}]));
    // It cannot write a record into bob's namespace either.
    let (_, body) = through_agent(
        &s,
        "personal",
        "POST",
        &format!("/v1/memory/memories/{mem}/records/batch-create"),
        json!({"records": [{"requestIdentifier": "x", "namespaces": [bob_ns],
                "content": {"text": "planted"}, "timestamp": 1}]}),
    )
    .await;
    assert_eq!(body["failedRecords"][0]["errorCode"], 403, "{body}");

    // Only an agent whose runtime manages memories creates one.
    let create = json!({"name": "agent_made"});
    let (status, _) = through_agent(
        &s,
        "personal",
        "POST",
        "/v1/memory/memories",
        create.clone(),
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = through_agent(&s, "team", "POST", "/v1/memory/memories", create).await;
    assert_eq!(status, 201, "{body}");

    // The tenant-wide agent reaches bob's memory.
    let (status, body) = through_agent(
        &s,
        "team",
        "GET",
        &format!("/v1/memory/memories/{mem}/actors/bob/sessions/s1/events"),
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, body["events"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{body}"
    );
    let (_, body) = through_agent(
        &s,
        "team",
        "POST",
        &format!("/v1/memory/memories/{mem}/records/retrieve"),
        json!({"searchQuery": "bob secret fact"}),
    )
    .await;
    assert_eq!(
        body["memoryRecordSummaries"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    s.stop().await;
}
