//! Golden JSON-RPC exchanges with `/mcp`: the handshake, listing, calls and every kind of
//! caller mistake, pinned as snapshots (`tests/snapshots/`). Each mistake must be a 4xx or a
//! JSON-RPC error, never a 500.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Harness, MapVault, allow_all, mcp_target, openapi_target, text};
use serde_json::{Value, json};
use tenantry_tools::testing::{MockMcpServer, MockOpenApi};

async fn harness() -> (Harness, MockMcpServer, MockOpenApi) {
    let mcp = MockMcpServer::start().await;
    let api = MockOpenApi::start().await;
    let h = Harness::start(
        vec![
            mcp_target(
                "kit",
                &mcp.url(),
                json!({"credential": {"placement": "bearer"}}),
            ),
            openapi_target("pets", &api.spec(), &api.base_url(), json!({})),
        ],
        allow_all(),
        MapVault::with(&[("acme", "acme-secret")]),
    )
    .await;
    (h, mcp, api)
}

/// The exchange as a snapshot: status, the headers that matter, body.
fn exchange(a: &common::Answer) -> Value {
    sorted(&json!({
        "status": a.status,
        "content_type": a.headers.get("content-type").map(|v| v.to_str().unwrap()),
        "session_header": a.headers.contains_key("mcp-session-id"),
        "body": a.body,
    }))
}

/// `v` with every object's keys in sorted order: the snapshots do not depend on whether
/// serde_json keeps insertion order (its `preserve_order` feature, which other crates of the
/// workspace turn on when they are built together).
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => v.clone(),
    }
}

#[tokio::test]
async fn handshake_list_and_calls() {
    let (h, _mcp, _api) = harness().await;
    let mut c = h.client("acme:ann:basic");
    let init = c.initialize("2025-06-18").await;
    insta::assert_json_snapshot!("initialize", exchange(&init));

    let ping = c.request("ping", json!({})).await;
    insta::assert_json_snapshot!("ping", exchange(&ping));

    let list = c.request("tools/list", json!({})).await;
    insta::assert_json_snapshot!("tools_list", exchange(&list));

    let echo = c.call("kit___echo", json!({"message": "hi"})).await;
    insta::assert_json_snapshot!("call_mcp_echo", exchange(&echo));

    let fail = c.call("kit___fail", json!({})).await;
    insta::assert_json_snapshot!("call_mcp_tool_error", exchange(&fail));

    let pet = c.call("pets___getPet", json!({"petId": 1})).await;
    insta::assert_json_snapshot!("call_openapi_get", exchange(&pet));

    let missing = c.call("pets___getPet", json!({"petId": 9})).await;
    insta::assert_json_snapshot!("call_openapi_404_is_tool_error", exchange(&missing));

    let created = c
        .call(
            "pets___createPet",
            json!({"body": {"name": "Kit", "tag": "cat"}}),
        )
        .await;
    assert_eq!(created.body["result"]["isError"], json!(false));
    assert!(
        text(&created).contains("\"name\": \"Kit\""),
        "{}",
        text(&created)
    );

    let listed = c
        .call(
            "pets___listPets",
            json!({"limit": 1, "tag": ["cat", "dog"]}),
        )
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&text(&listed))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn caller_mistakes_are_errors_not_500s() {
    let (h, _mcp, _api) = harness().await;
    let mut c = h.client("acme:ann:basic");
    let mut cases = serde_json::Map::new();

    // Before a session exists.
    let mut no_auth = h.client("acme:ann:basic");
    no_auth.token = None;
    cases.insert(
        "no_identity".into(),
        exchange(&no_auth.request("ping", json!({})).await),
    );
    cases.insert(
        "no_session".into(),
        exchange(&c.request("tools/list", json!({})).await),
    );
    cases.insert(
        "discover_probe_without_session".into(),
        exchange(&c.request("server/discover", json!({})).await),
    );
    cases.insert(
        "initialize_without_version".into(),
        exchange(&c.request("initialize", json!({"capabilities": {}})).await),
    );

    c.initialize("2025-06-18").await;
    cases.insert(
        "parse_error".into(),
        exchange(
            &c.raw(
                reqwest::Method::POST,
                Some("{\"jsonrpc\":".into()),
                "application/json",
            )
            .await,
        ),
    );
    cases.insert(
        "wrong_content_type".into(),
        exchange(
            &c.raw(reqwest::Method::POST, Some("{}".into()), "text/plain")
                .await,
        ),
    );
    cases.insert(
        "not_jsonrpc_2".into(),
        exchange(
            &c.post(&json!({"jsonrpc": "1.0", "id": 1, "method": "ping"}))
                .await,
        ),
    );
    cases.insert(
        "null_id".into(),
        exchange(
            &c.post(&json!({"jsonrpc": "2.0", "id": null, "method": "ping"}))
                .await,
        ),
    );
    cases.insert("empty_batch".into(), exchange(&c.post(&json!([])).await));
    cases.insert(
        "method_not_found".into(),
        exchange(&c.request("resources/list", json!({})).await),
    );
    cases.insert(
        "call_without_name".into(),
        exchange(&c.request("tools/call", json!({"arguments": {}})).await),
    );
    cases.insert(
        "unknown_tool".into(),
        exchange(&c.call("kit___nope", json!({})).await),
    );
    cases.insert(
        "unknown_target".into(),
        exchange(&c.call("nope___echo", json!({})).await),
    );
    cases.insert(
        "no_separator".into(),
        exchange(&c.call("echo", json!({})).await),
    );
    cases.insert(
        "arguments_not_object".into(),
        exchange(&c.call("kit___echo", json!([1, 2])).await),
    );
    cases.insert(
        "missing_path_parameter".into(),
        exchange(&c.call("pets___getPet", json!({})).await),
    );
    cases.insert(
        "upstream_invalid_params".into(),
        exchange(&c.call("kit___add", json!({"a": "x"})).await),
    );
    cases.insert(
        "unknown_cursor".into(),
        exchange(&c.request("tools/list", json!({"cursor": "abc"})).await),
    );
    cases.insert(
        "initialize_again_in_batch".into(),
        exchange(&c.post(&json!([{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-03-26"}}])).await),
    );
    cases.insert(
        "get_stream_not_offered".into(),
        exchange(&c.raw(reqwest::Method::GET, None, "application/json").await),
    );
    let mut bad_version = h.client("acme:ann:basic");
    bad_version.session = c.session.clone();
    bad_version.version = Some("1999-01-01".into());
    cases.insert(
        "unsupported_version_header".into(),
        exchange(&bad_version.request("ping", json!({})).await),
    );
    let mut unknown = h.client("acme:ann:basic");
    unknown.session = Some("0123456789abcdef0123456789abcdef".into());
    cases.insert(
        "unknown_session".into(),
        exchange(&unknown.request("ping", json!({})).await),
    );

    for (name, case) in &cases {
        let status = case["status"].as_u64().unwrap();
        assert!(status < 500, "{name} answered {status}");
    }
    insta::assert_json_snapshot!("caller_mistakes", sorted(&Value::Object(cases)));
}

#[tokio::test]
async fn notifications_batches_and_session_end() {
    let (h, _mcp, _api) = harness().await;
    let mut c = h.client("acme:ann:basic");
    c.initialize("2025-03-26").await;

    let note = c.post(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}})).await;
    assert_eq!((note.status, note.body.clone()), (202, Value::Null));
    let response = c
        .post(&json!({"jsonrpc": "2.0", "id": 5, "result": {}}))
        .await;
    assert_eq!(response.status, 202);

    let batch = c
        .post(&json!([
            {"jsonrpc": "2.0", "id": "a", "method": "ping"},
            {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}},
            {"jsonrpc": "2.0", "id": "b", "method": "tools/call", "params": {"name": "kit___add", "arguments": {"a": 2, "b": 3}}},
            {"jsonrpc": "2.0", "id": "c", "method": "nope"},
            {"bad": true}
        ]))
        .await;
    insta::assert_json_snapshot!("batch", exchange(&batch));

    let end = c
        .raw(reqwest::Method::DELETE, None, "application/json")
        .await;
    assert_eq!(end.status, 204);
    let after = c.request("ping", json!({})).await;
    assert_eq!(after.status, 404);
    let again = c
        .raw(reqwest::Method::DELETE, None, "application/json")
        .await;
    assert_eq!(again.status, 404);
}

#[tokio::test]
async fn version_negotiation_and_invalid_arguments() {
    let (h, _mcp, _api) = harness().await;
    for (asked, answered) in [
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2024-11-05", "2025-11-25"),
    ] {
        let mut c = h.client("acme:ann:basic");
        let a = c.initialize(asked).await;
        assert_eq!(
            a.body["result"]["protocolVersion"],
            json!(answered),
            "asked {asked}"
        );
    }
    // Invalid arguments: a JSON-RPC error up to 2025-06-18, a tool error the model can read
    // from 2025-11-25 on.
    let mut old = h.client("acme:ann:basic");
    old.initialize("2025-06-18").await;
    let a = old.call("pets___getPet", json!({})).await;
    assert_eq!(a.body["error"]["code"], json!(-32602), "{a:?}");
    let mut new = h.client("acme:ann:basic");
    new.initialize("2025-11-25").await;
    let a = new.call("pets___getPet", json!({})).await;
    assert_eq!(a.body["result"]["isError"], json!(true), "{a:?}");
    assert!(
        text(&a).contains("`petId` (path parameter) is required"),
        "{}",
        text(&a)
    );
}

#[tokio::test]
async fn answers_as_an_event_stream_to_a_client_that_accepts_only_that() {
    let (h, _mcp, _api) = harness().await;
    let mut c = h.client("acme:ann:basic");
    c.initialize("2025-06-18").await;
    let resp = c
        .http
        .post(&c.url)
        .header("authorization", "Bearer acme:ann:basic")
        .header("mcp-session-id", c.session.clone().unwrap())
        .header("accept", "text/event-stream")
        .header("content-type", "application/json")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let data = text
        .strip_prefix("event: message\ndata: ")
        .and_then(|t| t.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("not one message event: {text:?}"));
    assert_eq!(
        serde_json::from_str::<Value>(data).unwrap(),
        json!({"id": 1, "jsonrpc": "2.0", "result": {}})
    );
    let refused = c
        .http
        .post(&c.url)
        .header("authorization", "Bearer acme:ann:basic")
        .header("accept", "text/html")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 406);
}
