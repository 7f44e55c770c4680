//! Interoperability: the official Python MCP SDK (`pip install mcp`), a client of another
//! implementation, connects to `/mcp`, lists and calls tools of a local upstream MCP server and
//! a local OpenAPI service, and gets Tenantry's errors as MCP errors.
//!
//! Needs `python3` with `mcp` (`python3 -m pip install mcp`; `TENANTRY_TEST_PYTHON` picks
//! another interpreter). Without it the test prints a SKIP line, unless
//! `TENANTRY_REQUIRE_MCP_CLIENT=1` (for CI) makes it fail. The script runs the SDK's 2.x
//! `Client` (which probes `server/discover` first, then falls back to `initialize`) or, with a
//! 1.x SDK, `ClientSession`; both have been run against this test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{FnPolicy, Harness, MapVault, mcp_target, openapi_target};
use serde_json::{Value, json};
use tenantry_tools::ToolDecision;
use tenantry_tools::testing::{MockMcpServer, MockOpenApi};

use tenantry_tools::testing::python_client::{available_or_skip, python, run as run_client};

#[tokio::test]
async fn the_python_sdk_connects_lists_and_calls() {
    if !available_or_skip("the_python_sdk_connects_lists_and_calls").await {
        return;
    }
    let mcp = MockMcpServer::start().await;
    let api = MockOpenApi::start().await;
    let policy = Arc::new(FnPolicy(Box::new(|_, tool, input| {
        if tool == "pets___listPets"
            && input.is_some_and(|i| {
                i.get("limit")
                    .and_then(Value::as_u64)
                    .is_none_or(|l| l >= 10)
            })
        {
            return ToolDecision::Deny {
                reason: "listPets needs a limit under 10".into(),
            };
        }
        ToolDecision::Allow
    })));
    let h = Harness::start(
        vec![
            mcp_target(
                "kit",
                &mcp.url(),
                json!({"credential": {"placement": "bearer"}, "timeout_ms": 1000}),
            ),
            openapi_target(
                "pets",
                &api.spec(),
                &api.base_url(),
                json!({"credential": {"placement": "header", "name": "X-Api-Key"}}),
            ),
        ],
        policy,
        MapVault::with(&[("acme", "acme-key"), ("bolt", "bolt-key")]),
    )
    .await;

    let acme = run_client(&h.url, "acme:ann:basic").await;
    let supported = tenantry_tools::protocol::SUPPORTED_PROTOCOL_VERSIONS;
    assert!(
        supported.contains(&acme["protocol_version"].as_str().unwrap()),
        "{acme}"
    );
    let tools: Vec<&str> = acme["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in [
        "kit___echo",
        "kit___add",
        "pets___getPet",
        "pets___listPets",
        "pets___get_echo_value",
    ] {
        assert!(tools.contains(&t), "{t} missing from {tools:?}");
    }
    assert_eq!(
        acme["schemas"]["pets___getPet"]["required"],
        json!(["petId"])
    );

    let echo: Value = serde_json::from_str(acme["echo"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(echo["arguments"], json!({"message": "from python"}));
    assert_eq!(echo["authorization"], json!("Bearer acme-key"));
    assert_eq!(acme["add"], json!({"text": "42", "is_error": false}));
    assert_eq!(
        acme["tool_error"],
        json!({"text": "the tool failed", "is_error": true})
    );
    assert!(
        acme["pet"]["text"].as_str().unwrap().contains("\"Tom\""),
        "{acme}"
    );
    let api_echo: Value = serde_json::from_str(acme["echo_api"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(api_echo["path"], json!("/echo/a%20b%2Fc"));
    assert_eq!(api_echo["x_api_key"], json!("acme-key"));

    let errors = &acme["errors"];
    assert_eq!(errors["kit___nope"]["code"], json!(-32602), "{errors}");
    assert_eq!(errors["pets___listPets"]["code"], json!(-32010), "{errors}");
    assert!(
        errors["pets___listPets"]["message"]
            .as_str()
            .unwrap()
            .contains("limit under 10")
    );
    assert_eq!(errors["kit___slow"]["code"], json!(-32011), "{errors}");
    assert!(
        errors["kit___slow"]["message"]
            .as_str()
            .unwrap()
            .contains("within 1000ms")
    );

    // A second tenant through the same shared targets: its own credential, never acme's.
    let bolt = run_client(&h.url, "bolt:bob:basic").await;
    let echo: Value = serde_json::from_str(bolt["echo"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(echo["authorization"], json!("Bearer bolt-key"));
    let api_echo: Value = serde_json::from_str(bolt["echo_api"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(api_echo["x_api_key"], json!("bolt-key"));
    let calls: Vec<String> = mcp
        .calls()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(
        calls.iter().filter(|a| *a == "Bearer acme-key").count(),
        4,
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|a| *a == "Bearer bolt-key").count(),
        4,
        "{calls:?}"
    );
}

/// The Python SDK's server as an upstream: Tenantry's MCP client initializes, lists and calls
/// through it, over event streams (the SDK's default) and over JSON answers.
#[tokio::test]
async fn a_python_sdk_server_works_as_an_upstream() {
    if !available_or_skip("a_python_sdk_server_works_as_an_upstream").await {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mcp_server.py");
    let mut servers = Vec::new();
    let mut specs = Vec::new();
    for (name, mode) in [("pysse", "sse"), ("pyjson", "json")] {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new(python())
            .args([script, &port.to_string(), mode])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        servers.push(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Python MCP server did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        specs.push(mcp_target(
            name,
            &format!("http://127.0.0.1:{port}/mcp"),
            json!({"credential": {"placement": "bearer"}, "timeout_ms": 20000}),
        ));
    }
    let h = Harness::start(
        specs,
        Arc::new(FnPolicy(Box::new(|_, _, _| ToolDecision::Allow))),
        MapVault::with(&[("acme", "acme-key"), ("bolt", "bolt-key")]),
    )
    .await;
    for (caller, key) in [
        ("acme:ann:basic", "Bearer acme-key"),
        ("bolt:bob:basic", "Bearer bolt-key"),
    ] {
        let mut c = h.client(caller);
        c.initialize("2025-06-18").await;
        let tools = c.tool_names().await;
        for t in [
            "pysse___add",
            "pysse___whoami",
            "pyjson___add",
            "pyjson___whoami",
        ] {
            assert!(tools.contains(&t.to_owned()), "{t} missing from {tools:?}");
        }
        for target in ["pysse", "pyjson"] {
            let sum = c
                .call(&format!("{target}___add"), json!({"a": 19, "b": 23}))
                .await;
            assert_eq!(common::text(&sum), "42", "{sum:?}");
            let who = c.call(&format!("{target}___whoami"), json!({})).await;
            assert_eq!(common::text(&who), key, "{who:?}");
            let bad = c.call(&format!("{target}___add"), json!({"a": "x"})).await;
            // The SDK reports invalid arguments as a tool error (or, in older versions, as a
            // JSON-RPC error); either way it is not a success.
            assert!(
                bad.body["result"]["isError"] == json!(true) || bad.body["error"].is_object(),
                "{bad:?}"
            );
        }
    }
    drop(servers);
}
