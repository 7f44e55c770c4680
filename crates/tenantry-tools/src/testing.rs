//! Test doubles of the upstreams we do not own (feature `test-util`): an upstream MCP server
//! ([`MockMcpServer`], streamable HTTP) and an HTTP API with its OpenAPI document
//! ([`MockOpenApi`]), each on `127.0.0.1:0`.
//!
//! The MCP server is written independently of this crate's endpoint and client (a few lines of
//! plain JSON handling), so a bug shared by both sides of our implementation cannot hide.
//! Both record every request (through `tenantry_core::testing`), so tests can check exactly
//! what reached the upstream (which credential, which path). They are for tests and benchmarks only and must never be started
//! by the server.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};
pub use tenantry_core::testing::Recorded;
use tenantry_core::testing::{RecordingServer, json_response, response};

/// How the mock MCP server answers.
#[derive(Debug, Clone)]
pub struct MockMcpOptions {
    /// Answer requests as `text/event-stream` (a log notification, then the response) instead
    /// of `application/json`.
    pub sse: bool,
    /// How long the `slow` tool sleeps when its input does not say (`ms`).
    pub slow_default: Duration,
}

impl Default for MockMcpOptions {
    fn default() -> Self {
        Self {
            sse: false,
            slow_default: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default)]
struct McpState {
    sessions: Mutex<HashSet<String>>,
    next: AtomicU64,
}

/// An upstream MCP server (streamable HTTP at `/mcp`) with four tools:
///
/// * `echo`: answers, as JSON text, its `arguments` and the `Authorization`, `X-Api-Key`
///   headers and query string it received (so tests see which credential arrived);
/// * `add`: the sum of `a` and `b`;
/// * `slow`: sleeps `ms` milliseconds (default from the options), then answers `done`;
/// * `fail`: a tool error (`isError: true`).
///
/// Stops when dropped.
#[derive(Debug)]
pub struct MockMcpServer {
    pub addr: SocketAddr,
    server: RecordingServer,
    state: Arc<McpState>,
}

fn mock_tools() -> Value {
    json!([
        {"name": "echo", "description": "Echoes its input and the credentials it received.",
         "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}}},
        {"name": "add", "description": "Adds two numbers.",
         "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                         "required": ["a", "b"]}},
        {"name": "slow", "description": "Sleeps, then answers.",
         "inputSchema": {"type": "object", "properties": {"ms": {"type": "integer"}}}},
        {"name": "fail", "description": "Always fails as a tool.",
         "inputSchema": {"type": "object", "properties": {}}}
    ])
}

impl MockMcpServer {
    pub async fn start() -> Self {
        Self::start_with(MockMcpOptions::default()).await
    }

    pub async fn start_with(options: MockMcpOptions) -> Self {
        let state = Arc::new(McpState::default());
        let st = state.clone();
        let server = RecordingServer::start(move |r, uri| {
            let (st, options) = (st.clone(), options.clone());
            async move { mcp_answer(&st, &options, &r, &uri).await }
        })
        .await;
        Self {
            addr: server.addr,
            server,
            state,
        }
    }

    /// `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// The `tools/call` requests received so far.
    pub fn calls(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.rpc_method().as_deref() == Some("tools/call"))
            .collect()
    }

    /// Forgets every session, as a restarted server would: the next request with an old
    /// session id gets 404.
    pub fn forget_sessions(&self) {
        if let Ok(mut s) = self.state.sessions.lock() {
            s.clear();
        }
    }
}

async fn mcp_answer(
    state: &McpState,
    options: &MockMcpOptions,
    request: &Recorded,
    uri: &Uri,
) -> Response {
    let (method, headers, body) = (request.method.as_str(), &request.headers, &request.body);
    if uri.path() != "/mcp" {
        return response(StatusCode::NOT_FOUND, "text/plain", "no such path");
    }
    let session = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let known = |s: &str| {
        state
            .sessions
            .lock()
            .map(|v| v.contains(s))
            .unwrap_or(false)
    };
    if method == "DELETE" {
        if let (Some(s), Ok(mut v)) = (&session, state.sessions.lock()) {
            v.remove(s);
        }
        return response(StatusCode::OK, "text/plain", "");
    }
    if method != "POST" {
        return response(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "");
    }
    let Ok(msg) = serde_json::from_slice::<Value>(body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "parse error"}}),
        );
    };
    let rpc_method = msg
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let id = msg.get("id").cloned();
    if rpc_method == "initialize" {
        let sid = format!("mock-{}", state.next.fetch_add(1, Ordering::SeqCst));
        if let Ok(mut v) = state.sessions.lock() {
            v.insert(sid.clone());
        }
        let requested = msg
            .pointer("/params/protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("2025-06-18");
        let result = json!({
            "protocolVersion": requested,
            "capabilities": {"tools": {"listChanged": false}},
            "serverInfo": {"name": "mock-mcp", "version": "1.0.0"}
        });
        let mut r = answer(options, &id, Ok(result));
        if let Ok(v) = HeaderValue::from_str(&sid) {
            r.headers_mut().insert("mcp-session-id", v);
        }
        return r;
    }
    match &session {
        None => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32600, "message": "missing session"}}),
            );
        }
        Some(s) if !known(s) => {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32600, "message": "unknown session"}}),
            );
        }
        Some(_) => {}
    }
    if id.is_none() {
        return response(StatusCode::ACCEPTED, "text/plain", "");
    }
    let result = match rpc_method.as_str() {
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({"tools": mock_tools()})),
        "tools/call" => {
            let name = msg
                .pointer("/params/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let args = msg
                .pointer("/params/arguments")
                .cloned()
                .unwrap_or(json!({}));
            let header = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            match name {
                "echo" => {
                    // A BTreeMap, so the text's keys are sorted whatever serde_json's features.
                    let seen: std::collections::BTreeMap<&str, Value> = [
                        ("arguments", args),
                        ("authorization", json!(header("authorization"))),
                        ("x_api_key", json!(header("x-api-key"))),
                        ("query", json!(uri.query())),
                    ]
                    .into_iter()
                    .collect();
                    let text = serde_json::to_string(&seen).unwrap_or_default();
                    Ok(json!({"content": [{"type": "text", "text": text}],
                              "structuredContent": seen, "isError": false}))
                }
                "add" => {
                    let n = |k: &str| args.get(k).and_then(Value::as_f64);
                    match (n("a"), n("b")) {
                        (Some(a), Some(b)) => {
                            Ok(json!({"content": [{"type": "text", "text": (a + b).to_string()}]}))
                        }
                        _ => Err((-32602, "a and b must be numbers".to_owned())),
                    }
                }
                "slow" => {
                    let ms = args
                        .get("ms")
                        .and_then(Value::as_u64)
                        .unwrap_or(options.slow_default.as_millis() as u64);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(json!({"content": [{"type": "text", "text": "done"}]}))
                }
                "fail" => Ok(
                    json!({"content": [{"type": "text", "text": "the tool failed"}], "isError": true}),
                ),
                other => Err((-32602, format!("unknown tool {other}"))),
            }
        }
        other => Err((-32601, format!("method {other} not found"))),
    };
    answer(options, &id, result)
}

fn answer(
    options: &MockMcpOptions,
    id: &Option<Value>,
    result: Result<Value, (i64, String)>,
) -> Response {
    let msg = match result {
        Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
        Err((code, message)) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        }
    };
    if options.sse {
        let log = json!({"jsonrpc": "2.0", "method": "notifications/message",
                         "params": {"level": "info", "data": "working"}});
        let text = format!(
            ": mock stream\n\nid: 1\nevent: message\ndata: {log}\n\nid: 2\nevent: message\ndata: {msg}\n\n"
        );
        response(StatusCode::OK, "text/event-stream", text)
    } else {
        json_response(StatusCode::OK, &msg)
    }
}

/// An HTTP API with an OpenAPI 3 document (at `/openapi.json`):
///
/// * `GET /pets` (`listPets`, query `limit`, repeated `tag`), `GET /pets/{petId}` (`getPet`,
///   404 for an unknown id), `POST /pets` (`createPet`, JSON body, answers 201);
/// * `GET /echo/{value}` (no operationId: `get_echo_value`; header parameter `X-Trace`):
///   answers the raw path, query, the `Authorization` and `X-Api-Key` headers it received;
/// * `GET /slow` (`slow`, query `ms`): sleeps, then answers.
///
/// Stops when dropped.
#[derive(Debug)]
pub struct MockOpenApi {
    pub addr: SocketAddr,
    server: RecordingServer,
}

/// The document the mock API serves.
pub fn openapi_document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Mock pets", "version": "1.0.0"},
        "components": {
            "schemas": {
                "NewPet": {"type": "object", "properties": {"name": {"type": "string"}, "tag": {"type": "string"}},
                           "required": ["name"]},
            }
        },
        "paths": {
            "/pets": {
                "get": {"operationId": "listPets", "summary": "List pets",
                        "parameters": [
                            {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                            {"name": "tag", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}}
                        ]},
                "post": {"operationId": "createPet", "summary": "Create a pet",
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewPet"}}}}}
            },
            "/pets/{petId}": {
                "get": {"operationId": "getPet", "summary": "One pet",
                        "parameters": [{"name": "petId", "in": "path", "required": true, "schema": {"type": "integer"}}]}
            },
            "/echo/{value}": {
                "get": {"summary": "Echo the request",
                        "parameters": [
                            {"name": "value", "in": "path", "required": true, "schema": {"type": "string"}},
                            {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                            {"name": "api_key", "in": "query", "schema": {"type": "string"}}
                        ]}
            },
            "/slow": {
                "get": {"operationId": "slow", "parameters": [{"name": "ms", "in": "query", "schema": {"type": "integer"}}]}
            }
        }
    })
}

impl MockOpenApi {
    pub async fn start() -> Self {
        let server =
            RecordingServer::start(|r, uri| async move { openapi_answer(&r, &uri).await }).await;
        Self {
            addr: server.addr,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`: the API's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the document is served.
    pub fn spec_url(&self) -> String {
        format!("http://{}/openapi.json", self.addr)
    }

    /// The document's text.
    pub fn spec(&self) -> String {
        openapi_document().to_string()
    }

    /// Every request received so far (the document's fetches included).
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }
}

async fn openapi_answer(request: &Recorded, uri: &Uri) -> Response {
    let (method, headers, body) = (request.method.as_str(), &request.headers, &request.body);
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let pets = [
        json!({"id": 1, "name": "Rex", "tag": "dog"}),
        json!({"id": 2, "name": "Tom", "tag": "cat"}),
    ];
    match (method, segments.as_slice()) {
        ("GET", ["openapi.json"]) => json_response(StatusCode::OK, &openapi_document()),
        ("GET", ["pets"]) => {
            let limit = q("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(usize::MAX);
            let tags: Vec<String> = query
                .iter()
                .filter(|(k, _)| k == "tag")
                .map(|(_, v)| v.clone())
                .collect();
            let list: Vec<Value> = pets
                .iter()
                .filter(|p| tags.is_empty() || tags.iter().any(|t| p["tag"] == json!(t)))
                .take(limit)
                .cloned()
                .collect();
            json_response(StatusCode::OK, &Value::Array(list))
        }
        ("POST", ["pets"]) => match serde_json::from_slice::<Value>(body) {
            Ok(mut pet) if pet.get("name").is_some_and(Value::is_string) => {
                if let Some(o) = pet.as_object_mut() {
                    o.insert("id".into(), json!(3));
                }
                json_response(StatusCode::CREATED, &pet)
            }
            Ok(_) | Err(_) => json_response(
                StatusCode::BAD_REQUEST,
                &json!({"message": "a pet needs a name"}),
            ),
        },
        ("GET", ["pets", id]) => match pets
            .iter()
            .find(|p| id.parse::<u64>().ok() == p["id"].as_u64())
        {
            Some(p) => json_response(StatusCode::OK, p),
            None => json_response(
                StatusCode::NOT_FOUND,
                &json!({"message": format!("no pet {id}")}),
            ),
        },
        ("GET", ["echo", _]) => json_response(
            StatusCode::OK,
            &json!({
                "path": uri.path(),
                "query": uri.query(),
                "authorization": header("authorization"),
                "x_api_key": header("x-api-key"),
                "x_trace": header("x-trace"),
            }),
        ),
        ("GET", ["slow"]) => {
            let ms = q("ms")
                .and_then(|m| m.parse::<u64>().ok())
                .unwrap_or(30_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            response(StatusCode::OK, "text/plain", "done")
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({"message": "no such operation"}),
        ),
    }
}

/// The official Python MCP SDK as a client of another implementation, for interoperability
/// tests of this crate and of the server: `tests/python/mcp_client.py` run with `python3`
/// (`TENANTRY_TEST_PYTHON` picks another interpreter).
pub mod python_client {
    use std::time::Duration;

    use serde_json::Value;

    pub fn python() -> String {
        std::env::var("TENANTRY_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
    }

    /// Whether the interpreter can `import mcp`.
    pub async fn has_mcp() -> bool {
        tokio::process::Command::new(python())
            .args(["-c", "import mcp"])
            .output()
            .await
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Whether the Python SDK can be used by `test`: `true` if it can; otherwise a SKIP line
    /// naming the test, or a panic when `TENANTRY_REQUIRE_MCP_CLIENT=1` (CI) says it must run.
    pub async fn available_or_skip(test: &str) -> bool {
        if has_mcp().await {
            return true;
        }
        if std::env::var("TENANTRY_REQUIRE_MCP_CLIENT").as_deref() == Ok("1") {
            panic!(
                "{} with the mcp package is required here (python3 -m pip install mcp)",
                python()
            );
        }
        eprintln!(
            "SKIP {test}: `{} -c \"import mcp\"` failed; install it with `python3 -m pip \
             install mcp`",
            python()
        );
        false
    }

    /// Runs the client script against `url` with the bearer `token` and returns the JSON of
    /// its `SUMMARY` line. Panics (these are tests) when the client fails or says nothing.
    pub async fn run(url: &str, token: &str) -> Value {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mcp_client.py");
        let run = tokio::process::Command::new(python())
            .args([script, url, token])
            .kill_on_drop(true)
            .output();
        let out = match tokio::time::timeout(Duration::from_secs(120), run).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => panic!("cannot run {}: {e}", python()),
            Err(_) => panic!("the Python MCP client did not finish within 120 s"),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "the Python client failed:\n{stdout}\n{stderr}"
        );
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("SUMMARY "))
            .unwrap_or_else(|| panic!("no summary from the Python client:\n{stdout}\n{stderr}"));
        match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => panic!("the client's summary is not JSON ({e}): {line}"),
        }
    }
}
