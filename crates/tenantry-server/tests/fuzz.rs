//! A bounded, seeded fuzz of the whole HTTP surface: every endpoint the route modules declare
//! (read from every file below `src/routes/` when the test runs, so a new route is fuzzed
//! without editing this file), with malformed bodies (truncated, deeply nested, huge, wrong types, unknown fields,
//! invalid UTF-8), odd ids in the path (empty, very long, unicode, `..`, percent-encoded
//! slashes and NULs), odd queries and headers (bad `Authorization` forms, huge and duplicate
//! headers, bad content types, spoofed context headers), while a control-plane task keeps
//! creating and deleting tenants, tiers, runtimes, tool targets and policies.
//!
//! It asserts that no answer is a 5xx and nothing panics, and that the server still answers
//! afterwards. The one 5xx that is not a fault: this server has no sandbox helper (a test
//! binary is not `tenantry`), so invoking a runtime answers 503 `unavailable` "this server
//! cannot start sandboxes". That is the environment's answer, true on any host without a
//! helper, and it is accepted only for that route and that message; it is counted and shown.
//!
//! Requests go over raw TCP (HTTP/1.1, one connection each) so that paths and headers reach
//! the server byte for byte, without a client normalising `..` or refusing odd values.
//! `TENANTRY_FUZZ_SEED` replays a run (the seed is printed); the count and the time are bounded
//! (`REQUESTS`, `TIME_BOUND`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenantry_testkit::TestServer;
use tenantry_tools::testing::MockMcpServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SEED_ENV: &str = "TENANTRY_FUZZ_SEED";
const REQUESTS: usize = 6000;
const WORKERS: usize = 6;
const TIME_BOUND: Duration = Duration::from_secs(40);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

// ---- a small seeded generator ------------------------------------------------------------------

/// SplitMix64: enough randomness for choosing inputs, reproducible from one number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn pick_copy<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

// ---- the endpoints, from the route modules -----------------------------------------------------

#[derive(Debug, Clone)]
struct Endpoint {
    path: String,
    methods: Vec<&'static str>,
}

/// The Rust files below `dir`, at any depth, in a stable order.
fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|x| x == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every `.route("PATH", ...)` below `src/routes/` with the methods its handler chain names.
fn endpoints() -> Vec<Endpoint> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
    let mut found = Vec::new();
    let files = rust_files(&dir);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let Some(open) = rest.find('"') else { break };
            let after = &rest[open + 1..];
            let close = after.find('"').unwrap();
            let path = after[..close].to_owned();
            let chain_end = [
                ".route(",
                ".route_layer(",
                ".fallback(",
                ".merge(",
                ".layer(",
            ]
            .iter()
            .filter_map(|m| after.find(m))
            .min()
            .unwrap_or(after.len());
            let chain = &after[close..chain_end];
            let mut methods = Vec::new();
            for (token, method) in [
                ("get(", "GET"),
                ("post(", "POST"),
                ("put(", "PUT"),
                ("patch(", "PATCH"),
                ("delete(", "DELETE"),
            ] {
                let named = chain.match_indices(token).any(|(i, _)| {
                    i == 0
                        || !chain.as_bytes()[i - 1].is_ascii_alphanumeric()
                            && chain.as_bytes()[i - 1] != b'_'
                });
                if named {
                    methods.push(method);
                }
            }
            if chain.contains("mcp_route(") {
                methods.extend(["GET", "POST", "DELETE"]);
            }
            assert!(
                !methods.is_empty(),
                "cannot tell the methods of route {path} in {}; teach the fuzz test",
                file.display()
            );
            found.push(Endpoint { path, methods });
        }
    }
    found
}

// ---- raw HTTP ----------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Request {
    method: String,
    target: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
}

impl Request {
    fn new(method: &str, target: impl Into<Vec<u8>>) -> Self {
        Self {
            method: method.to_owned(),
            target: target.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn json(self, v: &Value) -> Self {
        let mut r = self.header("content-type", "application/json");
        r.body = Some(v.to_string().into_bytes());
        r
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.extend_from_slice(b" HTTP/1.1\r\nhost: fuzz\r\nconnection: close\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        let body = self.body.as_deref().unwrap_or_default();
        if self.body.is_some() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out
    }

    /// What a failure report shows: never more than a few hundred bytes of anything.
    fn describe(&self) -> String {
        let cut = |b: &[u8], n: usize| {
            let s = String::from_utf8_lossy(&b[..b.len().min(n)]).into_owned();
            if b.len() > n {
                format!("{s}...({} bytes)", b.len())
            } else {
                s
            }
        };
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", cut(v, 60)))
            .collect();
        format!(
            "{} {} [{}] {}",
            self.method,
            cut(&self.target, 160),
            headers.join("; "),
            self.body
                .as_deref()
                .map(|b| cut(b, 160))
                .unwrap_or_default()
        )
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn code(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| {
                v.pointer("/error/code")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        body = &body[eol + 2..];
        if size == 0 || body.len() < size {
            out.extend_from_slice(&body[..size.min(body.len())]);
            break;
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
    out
}

/// Sends the request on a new connection and reads the whole answer. The request is written
/// while the answer is read, so an early answer (413 before the body is read) is seen.
async fn send(addr: SocketAddr, req: &Request) -> Result<Answer, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut rd, mut wr) = stream.into_split();
    let bytes = req.bytes();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        let _ = wr.flush().await;
        // Keep the write half open until the server closes: shutting it down early would
        // look like a client that went away.
        tokio::time::sleep(REQUEST_TIMEOUT).await;
        drop(wr);
    });
    let mut raw = Vec::new();
    let read = tokio::time::timeout(REQUEST_TIMEOUT, rd.read_to_end(&mut raw)).await;
    writer.abort();
    match read {
        Err(_) => return Err("no complete answer in time (a hang)".into()),
        Ok(Err(e)) if raw.is_empty() => return Err(format!("read: {e}")),
        Ok(_) => {}
    }
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no header end in {:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let mut body = raw[head_end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

// ---- what the fuzz knows of the server ---------------------------------------------------------

/// Valid values, per path parameter, that exist (or existed) on the server, so that requests
/// get past "not found" into the handlers; deletions only ever name victims of their own.
struct World {
    credentials: Vec<(&'static str, Vec<u8>)>,
    mcp_url: String,
}

const SESSION: &str = "fuzz-session-0123456789-0123456789-0123456789";

fn valid_ids(param: &str, deleting: bool) -> Vec<&'static str> {
    match (param, deleting) {
        ("id", false) => vec!["acme", "globex", "churn-0", "churn-1"],
        ("id", true) => vec!["churn-0", "churn-1", "churn-2", "nobody"],
        ("tier", _) => vec!["fuzz", "basic", "standard", "churn-tier"],
        ("name", false) => vec![
            "fuzz",
            "basic",
            "churn-tier",
            "echo",
            "kit",
            "churn-kit",
            "churn-rt-0",
        ],
        ("name", true) => vec!["churn-kit", "churn-rt-0", "churn-rt-1", "victim", "kit"],
        ("key_id", false) => vec!["victimkey0000", "aaaaaaaaaaaa"],
        ("key_id", true) => vec!["victimkey0000"],
        ("runtime", _) => vec!["echo", "churn-rt-0", "nothing"],
        ("model", _) => vec!["mock-small", "default", "smart", "fast"],
        ("scope", _) => vec!["platform", "tier:basic", "tenant:acme", "tenant:churn-0"],
        _ if param.contains("session") => vec![SESSION],
        _ => vec![SESSION, "acme"],
    }
}

/// Path segments no handler should trip on, as raw (already percent-encoded) bytes.
fn odd_ids() -> Vec<Vec<u8>> {
    let mut ids: Vec<Vec<u8>> = [
        "",
        "a",
        ".",
        "..",
        "%2e%2e",
        "%2E%2e%2F",
        "..%2F..%2Fetc%2Fpasswd",
        "%2F",
        "a%2Fb",
        "%00",
        "acme%00",
        "%ZZ",
        "%",
        "%C3%A9t%C3%A9",
        "%F0%9F%92%A9",
        "%FF%FE",
        "%0A%0D",
        "%20acme",
        "ACME",
        "acme-",
        "-1",
        "1e999",
        "tenant:",
        "tenant:..",
        "tier:%00",
        "platform%2Fx",
        "*",
        "a;b",
        "acme%3Fx%3D1",
        "%252e%252e",
        "null",
        "tk_acme_x_y",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    ids.push(vec![b'a'; 300]);
    ids.push(vec![b'x'; 20_000]);
    ids.push("%C3%A9".repeat(3000).into_bytes());
    ids
}

fn odd_queries() -> Vec<&'static str> {
    vec![
        "?",
        "?user=",
        "?user=%ZZ",
        "?user=%00",
        "?runtime=..",
        "?runtime=%2F",
        "?group_by=nope",
        "?group_by=tenant&tenant=..",
        "?from=-1&to=99999999999999999999",
        "?from=2024-13-45&to=x",
        "?from=1&from=2",
        "?version=-1",
        "?version=1e9",
        "?purge=usage",
        "?storage=true",
        "?a[b]=c&&&=",
        "?tenant=acme&tenant=globex",
    ]
}

/// A body that a handler accepts (or nearly), to mutate; `{}` for the others.
fn template(method: &str, path: &str, w: &World, rng: &mut Rng) -> Value {
    let n = rng.below(1000);
    match (method, path) {
        ("PUT", "/v1/admin/tiers/{name}") => json!({"display_name": "Fuzz",
            "allowed_models": ["*"], "allowed_tools": ["*"],
            "limits": {"requests_per_second": 100000, "burst": 100000,
                       "concurrent_invocations": 100, "concurrent_sessions": 100}}),
        ("POST", "/v1/admin/tenants") => json!({"id": format!("fz-{n}"), "tier": "basic",
            "name": "Fuzz", "isolation": {"preset": "bridge", "overrides": {"data": "silo"}},
            "region": "eu-1", "features": {"beta": true}, "entitlements": {"seats": 3}}),
        ("PATCH", "/v1/admin/tenants/{id}") => {
            json!({"name": "Renamed", "status": "active", "features": {"x": false}})
        }
        ("POST", "/v1/admin/tenants/{id}/api-keys") | ("POST", "/v1/api-keys") => {
            json!({"name": "fz", "roles": ["tenant-admin"], "expires_in_seconds": 3600})
        }
        ("POST", "/v1/admin/runtimes") => json!({"name": format!("fz-rt-{n}"),
            "command": ["python3", "agent.py"], "workdir": env!("CARGO_MANIFEST_DIR"), "protocol": "http",
            "env": {"A": "b"}, "allowed_headers": ["X-Tenantry-Custom-Plan"], "warm_pool": 0}),
        ("PATCH", "/v1/admin/runtimes/{name}") => json!({"env": {"B": "c"}}),
        ("POST", "/v1/runtimes/{runtime}/invocations") => json!({"prompt": "hi"}),
        ("PUT", "/v1/admin/models/tiers/{tier}") => json!({"default": "mock-small",
            "aliases": {"fast": "mock-small"}, "fallback": {"mock-large": ["mock-small"]}}),
        ("PUT", "/v1/admin/tenants/{id}/models") => json!({"default": "fz-ft",
            "models": {"fz-ft": {"provider": "mock", "upstream_model": "ft:x",
                                 "input_price_per_mtok": "1", "output_price_per_mtok": "2"}}}),
        ("PUT", "/v1/admin/tenants/{id}/limits") => json!({"model_requests_per_minute": 100000,
            "tokens_per_minute": 10000000, "budget_per_month": "1000",
            "per_user": {"model_requests_per_minute": 100000}}),
        ("POST", "/v1/chat/completions") => json!({"model": "default", "max_tokens": 16,
            "stream": rng.chance(30),
            "messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": "hello"}]}),
        ("POST", "/v1/embeddings") => json!({"model": "default", "input": ["a", "b"]}),
        ("POST", "/v1/admin/tool-targets") => json!({"name": format!("fz-t-{n}"),
            "kind": {"type": "mcp", "url": w.mcp_url}, "timeout_ms": 2000}),
        ("PUT", "/v1/admin/tool-targets/{name}") => {
            json!({"kind": {"type": "mcp", "url": w.mcp_url}, "timeout_ms": 2000})
        }
        ("POST", "/v1/admin/policies") => json!({"tenant": "acme", "mode": "log_only",
            "text": cedar_text(rng)}),
        ("POST", "/v1/admin/policies/{scope}/activate") => json!({"version": 1}),
        ("PUT", "/v1/admin/tenants/{id}/credentials/{name}") => {
            json!({"kind": "api_key", "value": "fuzz-secret-value"})
        }
        ("POST", "/mcp") => match rng.below(4) {
            0 => json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "fuzz", "version": "1"}}}),
            1 => json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
            2 => json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "kit___echo", "arguments": {"message": "x"}}}),
            _ => json!([{"jsonrpc": "2.0", "id": 4, "method": "ping"},
                        {"jsonrpc": "2.0", "method": "notifications/initialized"}]),
        },
        _ => json!({}),
    }
}

/// A Cedar policy text: an ordinary one, or one whose nesting, chains or size push the
/// parser (which recurses on nesting) and the validator to their edges.
fn cedar_text(rng: &mut Rng) -> String {
    let n = 1 + rng.below(3000);
    let when = |cond: String| format!("permit (principal, action, resource) when {{ {cond} }};");
    match rng.below(10) {
        0 | 1 => "permit (principal, action, resource);".to_owned(),
        2 => when(format!("{}true{}", "(".repeat(n), ")".repeat(n))),
        3 => when(format!("{}1{} == [1]", "[".repeat(n), "]".repeat(n))),
        4 => when(format!("{}1{} has a", "{a: ".repeat(n), "}".repeat(n))),
        5 => when(format!("true{}", " && true".repeat(n * 5))),
        6 => when(format!("1{} > 2", " + 1".repeat(n * 5))),
        7 => when(format!(
            "{}true{}",
            "if true then ".repeat(n),
            " else false".repeat(n)
        )),
        8 => format!(
            "@id(\"{}\") forbid (principal, action, resource) when {{ context.input{} }};",
            "x".repeat(n),
            ".a".repeat(n)
        ),
        _ => "permit (principal, action == Tenantry::Action::\"kit___echo\", resource) \
              unless { context.input has message && context.input.message like \"*x*\" };"
            .to_owned(),
    }
}

/// Every JSON path in `v` (object keys and array indices), for picking one to change.
fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                prefix.push(json!(k));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                prefix.push(json!(i));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

fn at_path<'a>(v: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    let mut cur = v;
    for step in path {
        cur = match step {
            Value::String(k) => cur.get_mut(k.as_str())?,
            Value::Number(i) => cur.get_mut(i.as_u64()? as usize)?,
            Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => return None,
        };
    }
    Some(cur)
}

fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(1e308),
        4 => json!(u64::MAX),
        5 => json!(0.5),
        6 => json!([]),
        7 => json!({}),
        8 => json!(""),
        9 => json!("x".repeat(100_000)),
        10 => json!("\u{0}\u{1}\n\t"),
        11 => json!("../../etc/passwd"),
        12 => json!("é😀\u{202e}"),
        13 => json!([[[[["deep"]]]]]),
        14 => json!({"nested": {"unknown": [1, "2", null]}}),
        _ => json!(i64::MIN),
    }
}

/// Every number in `v` replaced by one extreme value, every string (but in a JSON-RPC
/// envelope's `jsonrpc`) by one odd string, or both: limits, prices and counts at their edges.
fn extremes(v: &mut Value, rng: &mut Rng, numbers: bool, strings: bool) {
    let number = rng
        .pick(&[
            json!(u64::MAX),
            json!(i64::MIN),
            json!(i64::MAX),
            json!(-1),
            json!(0),
            json!(1e308),
            json!(-1e-308),
            json!(9_007_199_254_740_993u64),
            json!(4_294_967_296u64),
        ])
        .clone();
    let string = rng.pick_copy(&[
        "",
        "-1",
        "0",
        "1e400",
        "NaN",
        "-0.000000000000000000001",
        "99999999999999999999999999999999",
        "é😀",
        "../..",
        "\u{0}",
        "*",
        " default ",
    ]);
    match v {
        Value::Number(_) if numbers => *v = number,
        Value::String(_) if strings => *v = json!(string),
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if k != "jsonrpc" {
                    extremes(child, rng, numbers, strings);
                }
            }
        }
        Value::Array(a) => {
            for child in a {
                extremes(child, rng, numbers, strings);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// A body: the template, mutated one way or another (or sent as it is).
fn mutate(mut v: Value, rng: &mut Rng) -> Vec<u8> {
    let mut all = Vec::new();
    paths(&v, &mut Vec::new(), &mut all);
    match rng.below(21) {
        0..=5 => v.to_string().into_bytes(),
        17 | 18 => {
            extremes(&mut v, rng, true, false);
            v.to_string().into_bytes()
        }
        19 => {
            extremes(&mut v, rng, false, true);
            v.to_string().into_bytes()
        }
        20 => {
            extremes(&mut v, rng, true, true);
            v.to_string().into_bytes()
        }
        6 | 7 => {
            if !all.is_empty() {
                let path = rng.pick(&all).clone();
                if let Some(slot) = at_path(&mut v, &path) {
                    *slot = odd_value(rng);
                }
            }
            v.to_string().into_bytes()
        }
        8 => {
            if let Some(m) = v.as_object_mut() {
                m.insert("unknown_field".into(), odd_value(rng));
            }
            v.to_string().into_bytes()
        }
        9 => {
            if let Some(m) = v.as_object_mut()
                && !m.is_empty()
            {
                let key = m.keys().nth(rng.below(m.len())).unwrap().clone();
                m.remove(&key);
            }
            v.to_string().into_bytes()
        }
        10 => {
            let text = v.to_string().into_bytes();
            let cut = rng.below(text.len());
            text[..cut].to_vec()
        }
        11 => {
            let depth = 100 + rng.below(20_000);
            if rng.chance(50) {
                format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
            } else {
                format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)).into_bytes()
            }
        }
        12 => {
            // Just over the 1 MiB limit, or large but under it.
            let size = if rng.chance(50) {
                (1 << 20) + 10
            } else {
                900 * 1024
            };
            format!("{{\"x\":\"{}\"}}", "a".repeat(size)).into_bytes()
        }
        13 => rng
            .pick(&["[]", "\"s\"", "1", "null", "true", "", " ", "{}", "[{}]"])
            .as_bytes()
            .to_vec(),
        14 => {
            let mut text = v.to_string().into_bytes();
            let at = rng.below(text.len());
            text.splice(at..at, [0xff, 0xfe, 0xc3]);
            text
        }
        15 => {
            let text = v.to_string();
            format!("{{\"dup\":1,\"dup\":2,{}", text.trim_start_matches('{')).into_bytes()
        }
        16 => b"\xef\xbb\xbf{}".to_vec(),
        _ => {
            let mut text = v.to_string().into_bytes();
            text.extend_from_slice(b" trailing garbage");
            text
        }
    }
}

fn credentials(s: &TestServer, api_key: &str) -> Vec<(&'static str, Vec<u8>)> {
    let bearer = |t: &str| format!("Bearer {t}").into_bytes();
    let jwt_parts = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln";
    vec![
        ("none", Vec::new()),
        ("operator", bearer(&s.admin_key)),
        ("operator", bearer(&s.admin_key)),
        ("alice", bearer(&s.token("acme", "alice", &[]))),
        (
            "acme admin",
            bearer(&s.token("acme", "ann", &["tenant-admin"])),
        ),
        (
            "globex",
            bearer(&s.token("globex", "gil", &["tenant-admin"])),
        ),
        ("api key", bearer(api_key)),
        ("bare bearer", b"Bearer".to_vec()),
        ("empty bearer", b"Bearer ".to_vec()),
        ("basic", b"Basic YWRtaW46YWRtaW4=".to_vec()),
        (
            "lowercase",
            format!("bearer   {}", s.admin_key).into_bytes(),
        ),
        ("jwt garbage", bearer(jwt_parts)),
        ("jwt dots", bearer("..")),
        ("api key forms", bearer("tk_acme__")),
        ("api key forms", bearer("tk_..%2F_x_y")),
        (
            "api key forms",
            bearer(&format!("tk_acme_{}", "x".repeat(5000))),
        ),
        ("huge token", bearer(&"A".repeat(50_000))),
        ("obs-text", b"Bearer \xff\xfe\x80".to_vec()),
        (
            "workload-shaped",
            bearer(&format!(
                "{}.{}.x",
                "eyJhbGciOiJub25lIn0", "eyJpc3MiOiJ0ZW5hbnRyeTp3b3JrbG9hZCJ9"
            )),
        ),
    ]
}

fn odd_content_types() -> Vec<&'static [u8]> {
    vec![
        b"text/plain",
        b"application/json; charset=utf-16",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=x",
        b"application/jsonx",
        b"APPLICATION/JSON",
        b"application/json;;;",
        b"application/json\xff",
        b"",
    ]
}

/// Extra headers, one odd set per request that gets any.
fn odd_headers(rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let s = |n: &str, v: &[u8]| (n.to_owned(), v.to_vec());
    match rng.below(12) {
        0 => vec![s("x-fuzz", &vec![b'a'; 8 * 1024])],
        1 => vec![s("x-fuzz", &vec![b'a'; 300 * 1024])],
        2 => (0..150)
            .map(|i| (format!("x-many-{i}"), b"v".to_vec()))
            .collect(),
        3 => vec![s("authorization", b"Bearer second-one")],
        4 => vec![
            s("x-tenantry-tenant-id", b"globex"),
            s("x-tenantry-tier", b"premium"),
            s("x-tenantry-user-id", b"root"),
        ],
        5 => {
            let long = [b's'; 300];
            let values: [&[u8]; 5] = [
                b"short",
                &long,
                b"\xff\xfe-not-utf8-but-obs-text-0123456789",
                b"../../../../etc/passwd-0123456789-0123456789",
                SESSION.as_bytes(),
            ];
            let value = rng.pick_copy(&values);
            vec![s("x-tenantry-session-id", value)]
        }
        6 => vec![s("x-amzn-bedrock-agentcore-runtime-session-id", b"../x")],
        7 => vec![
            s("traceparent", b"00-zzzz-yyyy-01"),
            s("baggage", &vec![b'b'; 9000]),
        ],
        8 => {
            let long = [b'm'; 5000];
            let values: [&[u8]; 4] = [b"", b"\xff", &long, b"../x"];
            let value = rng.pick_copy(&values);
            vec![s("mcp-session-id", value)]
        }
        9 => vec![
            s("mcp-protocol-version", b"1999-01-01"),
            s("accept", b"nothing/at-all"),
        ],
        10 => vec![s("x-request-id", &vec![b'r'; 10_000])],
        _ => vec![
            s("x-tenantry-custom-plan", b"\x80\x81"),
            s("content-encoding", b"gzip"),
        ],
    }
}

fn build(endpoints: &[Endpoint], w: &World, rng: &mut Rng) -> Request {
    let ep = rng.pick(endpoints);
    let method = *rng.pick(&ep.methods);
    let deleting = method == "DELETE";
    let odd = odd_ids();
    let mut target = Vec::new();
    let mut rest = ep.path.as_str();
    while let Some(open) = rest.find('{') {
        target.extend_from_slice(&rest.as_bytes()[..open]);
        let close = rest[open..].find('}').unwrap() + open;
        let param = &rest[open + 1..close];
        if rng.chance(70) {
            target.extend_from_slice(rng.pick(&valid_ids(param, deleting)).as_bytes());
        } else {
            let id: &Vec<u8> = rng.pick(&odd);
            target.extend_from_slice(id);
        }
        rest = &rest[close + 1..];
    }
    target.extend_from_slice(rest.as_bytes());
    if rng.chance(15) {
        target.extend_from_slice(rng.pick(&odd_queries()).as_bytes());
    }
    let mut req = Request::new(method, target);
    // Mostly the credential the endpoint wants, so requests reach the handlers; else any.
    let wanted: Vec<&(&str, Vec<u8>)> = w
        .credentials
        .iter()
        .filter(|(who, _)| {
            if ep.path.starts_with("/v1/admin") {
                *who == "operator"
            } else {
                ["alice", "acme admin", "globex", "api key"].contains(who)
            }
        })
        .collect();
    let (_, cred) = if rng.chance(75) && !wanted.is_empty() {
        *rng.pick(&wanted)
    } else {
        rng.pick(&w.credentials)
    };
    if !cred.is_empty() {
        req = req.header("authorization", cred.clone());
    }
    if ep.path.contains("invocations") && rng.chance(80) {
        req = req.header("x-tenantry-session-id", SESSION);
    }
    if ep.path == "/mcp" {
        req = req.header("accept", "application/json, text/event-stream");
    }
    let wants_body = matches!(method, "POST" | "PUT" | "PATCH") || rng.chance(10);
    if wants_body {
        let body = mutate(template(method, &ep.path, w, rng), rng);
        let content_type: &[u8] = if rng.chance(85) {
            b"application/json"
        } else {
            rng.pick_copy(&odd_content_types())
        };
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        req.body = Some(body);
    }
    if rng.chance(15) {
        req.headers.extend(odd_headers(rng));
    }
    req
}

/// The one 5xx that is the environment's, not a fault (see the module comment).
fn environmental(req: &Request, a: &Answer) -> bool {
    a.status == 503
        && a.code() == "unavailable"
        && a.body.contains("cannot start sandboxes")
        && req.target.windows(12).any(|w| w == b"/invocations")
}

// ---- concurrent control-plane changes ----------------------------------------------------------

/// Creates and deletes tenants, a tier, runtimes, a tool target and policy sets, in a loop,
/// until `stop`; every answer is checked like the fuzz's.
async fn churn(
    addr: SocketAddr,
    admin: String,
    mcp_url: String,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let mut bad = Vec::new();
    let auth = format!("Bearer {admin}");
    let mut i = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let t = format!("churn-{}", i % 3);
        let next = format!("churn-{}", (i + 1) % 3);
        let steps = vec![
            Request::new("POST", "/v1/admin/tenants").json(&json!({"id": t, "tier": "basic"})),
            Request::new("DELETE", format!("/v1/admin/tenants/{next}")),
            Request::new("PUT", "/v1/admin/tiers/churn-tier")
                .json(&json!({"display_name": format!("Churn {i}"), "allowed_models": ["*"]})),
            Request::new("POST", "/v1/admin/runtimes").json(&json!({
                "name": format!("churn-rt-{}", i % 2), "command": ["python3", "agent.py"],
                "workdir": env!("CARGO_MANIFEST_DIR"), "tenancy": {"dedicated": t}})),
            Request::new(
                "DELETE",
                format!("/v1/admin/runtimes/churn-rt-{}", (i + 1) % 2),
            ),
            Request::new("POST", "/v1/admin/tool-targets").json(&json!({"name": "churn-kit",
                "tenant": t, "kind": {"type": "mcp", "url": mcp_url}, "timeout_ms": 2000})),
            Request::new("POST", "/v1/admin/policies").json(&json!({"tenant": t,
                "text": "permit (principal, action, resource);"})),
            Request::new("DELETE", format!("/v1/admin/policies/tenant:{t}")),
            Request::new("DELETE", "/v1/admin/tool-targets/churn-kit"),
            Request::new("PUT", format!("/v1/admin/tenants/{t}/limits"))
                .json(&json!({"model_requests_per_minute": 1000 + i})),
        ];
        for step in steps {
            let step = step.header("authorization", auth.clone());
            match send(addr, &step).await {
                Ok(a) if a.status < 500 => {}
                Ok(a) => bad.push(format!("{} → {} {}", step.describe(), a.status, a.body)),
                Err(e) => bad.push(format!("{} → {e}", step.describe())),
            }
        }
        i += 1;
    }
    bad
}

// ---- the test ----------------------------------------------------------------------------------

async fn setup(s: &TestServer, mcp_url: &str) -> String {
    s.admin(
        "PUT",
        "/v1/admin/tiers/fuzz",
        Some(
            json!({"display_name": "Fuzz", "allowed_models": ["*"], "allowed_tools": ["*"],
                    "limits": {"requests_per_second": 100000, "burst": 100000,
                               "concurrent_invocations": 100, "concurrent_sessions": 100}}),
        ),
    )
    .await;
    s.create_tenant("acme", "fuzz").await;
    s.create_tenant("globex", "fuzz").await;
    let key = s
        .admin(
            "POST",
            "/v1/admin/tenants/acme/api-keys",
            Some(json!({"name": "fuzz", "roles": ["tenant-admin"]})),
        )
        .await;
    s.admin(
        "POST",
        "/v1/admin/runtimes",
        Some(json!({"name": "echo", "command": ["python3", "agent.py"], "workdir": env!("CARGO_MANIFEST_DIR")})),
    )
    .await;
    s.admin(
        "POST",
        "/v1/admin/tool-targets",
        Some(json!({"name": "kit", "kind": {"type": "mcp", "url": mcp_url}, "timeout_ms": 2000})),
    )
    .await;
    s.admin(
        "PUT",
        "/v1/admin/tenants/acme/credentials/kit",
        Some(json!({"kind": "api_key", "value": "acme-kit-secret"})),
    )
    .await;
    key["key"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzing_every_endpoint_finds_no_5xx_and_no_panic() {
    let panics = Arc::new(AtomicUsize::new(0));
    {
        let panics = panics.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            panics.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    }
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7e4a_2717_u64);
    eprintln!("fuzz seed {seed} (replay with {SEED_ENV}={seed})");

    let endpoints = endpoints();
    let pairs: usize = endpoints.iter().map(|e| e.methods.len()).sum();
    assert!(
        pairs >= 50,
        "only {pairs} endpoint methods found: {endpoints:?}"
    );

    let mcp = MockMcpServer::start().await;
    let s = TestServer::start().await;
    let api_key = setup(&s, &mcp.url()).await;
    let addr: SocketAddr = s.url.trim_start_matches("http://").parse().unwrap();
    let world = Arc::new(World {
        credentials: credentials(&s, &api_key),
        mcp_url: mcp.url(),
    });

    let stop = Arc::new(AtomicBool::new(false));
    let churner = tokio::spawn(churn(addr, s.admin_key.clone(), mcp.url(), stop.clone()));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let statuses: Arc<Mutex<BTreeMap<u16, usize>>> = Arc::default();
    let environmental_answers = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let endpoints = endpoints.clone();
            let world = world.clone();
            let (sent, failures, statuses, env) = (
                sent.clone(),
                failures.clone(),
                statuses.clone(),
                environmental_answers.clone(),
            );
            tokio::spawn(async move {
                let mut rng = Rng(seed ^ (w as u64).wrapping_mul(0xA24B_AED4_963E_E407));
                while sent.fetch_add(1, Ordering::SeqCst) < REQUESTS
                    && started.elapsed() < TIME_BOUND
                {
                    let req = build(&endpoints, &world, &mut rng);
                    match send(addr, &req).await {
                        Ok(a) => {
                            *statuses.lock().unwrap().entry(a.status).or_default() += 1;
                            if environmental(&req, &a) {
                                env.fetch_add(1, Ordering::SeqCst);
                            } else if a.status >= 500 {
                                failures.lock().unwrap().push(format!(
                                    "{} → {} {}",
                                    req.describe(),
                                    a.status,
                                    &a.body[..a.body.len().min(300)]
                                ));
                            }
                        }
                        Err(e) => failures
                            .lock()
                            .unwrap()
                            .push(format!("{} → {e}", req.describe())),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let churn_failures = churner.await.unwrap();
    let elapsed = started.elapsed();

    // The server still answers, and answers correctly.
    let health = send(addr, &Request::new("GET", "/healthz")).await.unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
    let me = send(
        addr,
        &Request::new("GET", "/v1/me").header("authorization", format!("Bearer {api_key}")),
    )
    .await
    .unwrap();
    assert_eq!(me.status, 200, "{}", me.body);

    let sent = sent.load(Ordering::SeqCst).min(REQUESTS);
    eprintln!(
        "fuzz: {sent} requests over {} endpoint methods in {elapsed:?}; statuses {:?}; \
         {} environmental 503s (no sandbox helper)",
        pairs,
        statuses.lock().unwrap(),
        environmental_answers.load(Ordering::SeqCst)
    );
    let mut failures = failures.lock().unwrap().clone();
    failures.extend(churn_failures.into_iter().map(|f| format!("churn: {f}")));
    assert!(
        failures.is_empty(),
        "{} failures (seed {seed}), e.g.:\n{}",
        failures.len(),
        failures
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(panics.load(Ordering::SeqCst), 0, "the server panicked");
    assert!(
        sent >= REQUESTS / 4,
        "only {sent} requests in {TIME_BOUND:?}: the server is too slow to fuzz meaningfully"
    );
    s.stop().await;
}
