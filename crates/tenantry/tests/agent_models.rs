//! An agent in its sandbox calls the model gateway as OpenAI-compatible frameworks do, with the
//! `OPENAI_BASE_URL` and `OPENAI_API_KEY` the platform gives it: the call is authenticated as
//! its session's workload token, routed by its tenant's tier (it cannot escalate to another
//! model), and metered with the tenant, user, session and runtime.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use tenantry_testkit::{RequestBody, TestServer};

mod support;

use support::{BIN, sandboxes_available, test_agents_dir};

#[tokio::test]
async fn an_agent_calls_models_as_its_session_and_is_metered_with_it() {
    if !sandboxes_available("an_agent_calls_models_as_its_session_and_is_metered_with_it") {
        return;
    }
    let s = TestServer::builder()
        .sandbox_helper(BIN, &["sandbox-helper"])
        .configure(|c| c.runtime.ready_timeout_seconds = 5)
        .start()
        .await;
    s.create_tenant("acme", "basic").await;
    s.admin(
        "POST",
        "/v1/admin/runtimes",
        Some(
            json!({"name": "caller", "command": ["python3", "model_caller.py"],
                    "workdir": test_agents_dir()}),
        ),
    )
    .await;
    let alice = s.token("acme", "alice", &[]);
    let session = format!("llm-session-{:032x}", std::process::id());
    let invoke = |body: serde_json::Value| {
        let (s, alice, session) = (&s, alice.clone(), session.clone());
        async move {
            s.request(
                "POST",
                "/v1/runtimes/caller/invocations",
                Some(&alice),
                &[("X-Tenantry-Session-Id", &session)],
                Some(RequestBody::Json(body)),
            )
            .await
        }
    };

    let r = invoke(json!({"prompt": "hello from the sandbox"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], 200, "{}", r.text);
    let answer = &r.body["body"];
    assert_eq!(answer["model"], "mock-small");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "echo: hello from the sandbox"
    );
    // The agent gets its tenant's tier, whatever it asks for.
    let r = invoke(json!({"prompt": "hi", "model": "mock-large"})).await;
    assert_eq!(r.body["status"], 403, "{}", r.text);
    assert_eq!(r.body["body"]["error"]["code"], "model_not_entitled");

    // The ledger entry names the session and the runtime.
    let report = s
        .admin("GET", "/v1/admin/usage?tenant=acme&group_by=runtime", None)
        .await;
    let row = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "caller")
        .unwrap_or_else(|| panic!("no usage of runtime caller: {report}"));
    assert_eq!(row["calls"], 1);
    assert!(row["input_tokens"].as_i64().unwrap() > 0);
    let scope = tenantry_core::TenantScope::for_operator(
        tenantry_core::OperatorGrant::for_tests(),
        tenantry_core::TenantId::new("acme").unwrap(),
    );
    let entries = s
        .server()
        .state
        .store
        .list_usage(&scope, 0, i64::MAX, 100)
        .await
        .unwrap();
    let model_call = entries
        .iter()
        .find(|e| e.kind == tenantry_store::UsageKind::Model)
        .unwrap();
    assert_eq!(model_call.session_id.as_deref(), Some(session.as_str()));
    assert_eq!(
        model_call.runtime.as_ref().map(|r| r.as_str()),
        Some("caller")
    );
    assert_eq!(
        model_call.user_id.as_ref().map(|u| u.as_str()),
        Some("alice")
    );
    assert_eq!(model_call.resource.as_deref(), Some("mock-small"));
    s.stop().await;
}
