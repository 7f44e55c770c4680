//! A raw MCP client of `/mcp` (streamable HTTP, JSON answers) that shows every HTTP status and
//! JSON-RPC error as it is, for tests that check what a caller sees. It panics on transport
//! failures: it is for tests.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

pub const PROTOCOL: &str = "2025-06-18";

/// A client session on `/mcp`, with the bearer credential it connected with.
#[derive(Debug, Clone)]
pub struct Mcp {
    http: reqwest::Client,
    url: String,
    token: String,
    session: String,
    next: Arc<std::sync::atomic::AtomicU64>,
}

/// An answer of `/mcp`: the HTTP status and the JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The JSON-RPC error code, if the answer is an error.
    pub fn error_code(&self) -> Option<i64> {
        self.body.pointer("/error/code").and_then(Value::as_i64)
    }

    pub fn error_message(&self) -> String {
        self.body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    /// The first text content of a tool result.
    pub fn text(&self) -> String {
        self.body
            .pointer("/result/content/0/text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    /// The first text content, parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text()).unwrap_or(Value::Null)
    }
}

impl Mcp {
    pub async fn post(
        http: &reqwest::Client,
        url: &str,
        token: &str,
        session: Option<&str>,
        body: &Value,
    ) -> Answer {
        let mut req = http
            .post(format!("{url}/mcp"))
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL)
            .json(body);
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.text().await.unwrap();
        let mut body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if let (Some(s), Some(obj)) = (session, body.as_object_mut()) {
            obj.insert("_session".into(), json!(s));
        }
        Answer { status, body }
    }

    /// `initialize` and `notifications/initialized`; panics unless both succeed.
    pub async fn connect(url: &str, token: &str) -> Mcp {
        Self::try_connect(url, token)
            .await
            .unwrap_or_else(|a| panic!("initialize failed: {} {}", a.status, a.body))
    }

    pub async fn try_connect(url: &str, token: &str) -> Result<Mcp, Answer> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let init = Self::post(
            &http,
            url,
            token,
            None,
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": PROTOCOL, "capabilities": {},
                "clientInfo": {"name": "tenantry-test", "version": "1"}}}),
        )
        .await;
        let Some(session) = init.body["_session"].as_str().map(str::to_owned) else {
            return Err(init);
        };
        let ack = Self::post(
            &http,
            url,
            token,
            Some(&session),
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
        assert_eq!(ack.status, 202, "{:?}", ack.body);
        Ok(Mcp {
            http,
            url: url.to_owned(),
            token: token.to_owned(),
            session,
            next: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        })
    }

    pub fn session_id(&self) -> &str {
        &self.session
    }

    pub async fn rpc(&self, method: &str, params: Value) -> Answer {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self::post(
            &self.http,
            &self.url,
            &self.token,
            Some(&self.session),
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )
        .await
    }

    /// The names `tools/list` shows.
    pub async fn tools(&self) -> Vec<String> {
        let a = self.rpc("tools/list", json!({})).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        let mut names: Vec<String> = a.body["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("no tools in {}", a.body))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    pub async fn call(&self, tool: &str, arguments: Value) -> Answer {
        self.rpc("tools/call", json!({"name": tool, "arguments": arguments}))
            .await
    }

    /// Ends the session (`DELETE /mcp`); returns the HTTP status.
    pub async fn close(&self) -> u16 {
        self.http
            .delete(format!("{}/mcp", self.url))
            .bearer_auth(&self.token)
            .header("mcp-session-id", &self.session)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}
