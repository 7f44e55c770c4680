//! The harness of the tool gateway's integration tests: the `/mcp` router on a real TCP port
//! behind a stand-in for the server's auth layer, in-test implementations of the policy, vault
//! and meter traits, and a small raw MCP client that shows every status and header.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};
use tenantry_core::{CredentialKind, TenantId, TierName, UserId};
use tenantry_tools::{
    AdmitFuture, CallerIdentity, Catalog, CredentialError, CredentialFuture, CredentialSource,
    RecordFuture, Refusal, Secret, TargetSpec, ToolAuthzRequest, ToolCallRecord, ToolDecision,
    ToolGateway, ToolMeter, ToolPolicy, ToolRef,
};

/// The stand-in auth layer: `Authorization: Bearer TENANT:USER:TIER` becomes the caller.
/// Anything else leaves the request unauthenticated (the endpoint answers 401).
async fn fake_auth(mut req: Request, next: Next) -> Response {
    let caller = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| {
            let mut p = t.split(':');
            let (tenant, user, tier) = (p.next()?, p.next()?, p.next()?);
            Some(CallerIdentity::new(
                tenantry_core::TenantScope::for_tests(TenantId::new(tenant).ok()?),
                UserId::new(user).ok()?,
                TierName::new(tier).ok()?,
                CredentialKind::ApiKey {
                    key_id: "test".into(),
                },
            ))
        });
    if let Some(c) = caller {
        req.extensions_mut().insert(c);
    }
    next.run(req).await
}

/// A policy decided by a closure over (caller, exported tool name, input); `visible` asks it
/// with no input.
type Rule = dyn Fn(&CallerIdentity, &str, Option<&Value>) -> ToolDecision + Send + Sync;

pub struct FnPolicy(pub Box<Rule>);

impl std::fmt::Debug for FnPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnPolicy")
    }
}

impl ToolPolicy for FnPolicy {
    fn visible(&self, caller: &CallerIdentity, tool: &ToolRef<'_>) -> bool {
        (self.0)(caller, tool.name, None) == ToolDecision::Allow
    }
    fn authorize(&self, r: &ToolAuthzRequest<'_>) -> ToolDecision {
        (self.0)(r.caller, r.tool.name, Some(r.input))
    }
}

pub fn allow_all() -> Arc<FnPolicy> {
    Arc::new(FnPolicy(Box::new(|_, _, _| ToolDecision::Allow)))
}

/// A vault holding one secret per tenant, placed as each target says. A tenant listed in
/// `broken` makes the vault fail (to prove the gateway fails closed).
#[derive(Debug, Default)]
pub struct MapVault {
    pub secrets: HashMap<String, String>,
    pub broken: Vec<String>,
}

impl MapVault {
    pub fn with(pairs: &[(&str, &str)]) -> Arc<Self> {
        Arc::new(Self {
            secrets: pairs
                .iter()
                .map(|(t, s)| (t.to_string(), s.to_string()))
                .collect(),
            broken: Vec::new(),
        })
    }
}

impl CredentialSource for MapVault {
    fn credential_for<'a>(
        &'a self,
        caller: &'a CallerIdentity,
        target: &'a TargetSpec,
    ) -> CredentialFuture<'a> {
        Box::pin(async move {
            if self.broken.iter().any(|t| t == caller.tenant().as_str()) {
                return Err(CredentialError::Unavailable("the vault is sealed".into()));
            }
            let Some(secret) = self.secrets.get(caller.tenant().as_str()) else {
                return Ok(None);
            };
            Ok(target
                .credential
                .as_ref()
                .map(|p| p.place(Secret::new(secret.clone()))))
        })
    }
}

/// Records every call; refuses a tenant's calls beyond `limit` of them.
#[derive(Debug, Default)]
pub struct RecordingMeter {
    pub records: Mutex<Vec<ToolCallRecord>>,
    pub admitted: Mutex<HashMap<String, u32>>,
    pub limit: Option<u32>,
}

impl RecordingMeter {
    pub fn records(&self) -> Vec<ToolCallRecord> {
        self.records.lock().unwrap().clone()
    }
}

impl ToolMeter for RecordingMeter {
    fn admit<'a>(&'a self, caller: &'a CallerIdentity, _tool: &'a str) -> AdmitFuture<'a> {
        Box::pin(async move {
            let mut admitted = self.admitted.lock().unwrap();
            let n = admitted.entry(caller.tenant().to_string()).or_default();
            if self.limit.is_some_and(|l| *n >= l) {
                return Err(Refusal {
                    code: tenantry_core::ErrorCode::RateLimited,
                    reason: "tool_rate_limited",
                    message: format!("tenant {} is over its tool-call rate", caller.tenant()),
                    retry_after: Some(std::time::Duration::from_secs(7)),
                });
            }
            *n += 1;
            Ok(())
        })
    }
    fn record<'a>(&'a self, record: ToolCallRecord) -> RecordFuture<'a> {
        self.records.lock().unwrap().push(record);
        Box::pin(async { Ok(()) })
    }
}

/// The gateway on `127.0.0.1:0`, behind the fake auth layer. Stops when dropped.
pub struct Harness {
    pub url: String,
    pub gateway: Arc<ToolGateway>,
    pub meter: Arc<RecordingMeter>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Harness {
    pub async fn start(
        specs: Vec<Value>,
        policy: Arc<dyn ToolPolicy>,
        vault: Arc<dyn CredentialSource>,
    ) -> Self {
        Self::start_with_meter(specs, policy, vault, Arc::new(RecordingMeter::default())).await
    }

    pub async fn start_with_meter(
        specs: Vec<Value>,
        policy: Arc<dyn ToolPolicy>,
        vault: Arc<dyn CredentialSource>,
        meter: Arc<RecordingMeter>,
    ) -> Self {
        let catalog = Arc::new(Catalog::new().unwrap());
        for s in specs {
            let spec: TargetSpec = serde_json::from_value(s).unwrap();
            catalog.upsert(spec).await.unwrap();
        }
        let gateway = Arc::new(ToolGateway::new(catalog, policy, vault).with_meter(meter.clone()));
        let app =
            tenantry_tools::router(gateway.clone()).layer(axum::middleware::from_fn(fake_auth));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/mcp"),
            gateway,
            meter,
            task,
        }
    }

    pub fn client(&self, caller: &str) -> Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client {
            http: reqwest::Client::new(),
            url: self.url.clone(),
            token: Some(caller.to_owned()),
            session: None,
            version: None,
            next_id: 0,
        }
    }
}

/// A raw MCP client: every answer with its status and headers.
pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
    pub session: Option<String>,
    pub version: Option<String>,
    next_id: u64,
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Client {
    pub async fn raw(
        &self,
        method: reqwest::Method,
        body: Option<String>,
        content_type: &str,
    ) -> Answer {
        let mut rb = self
            .http
            .request(method, &self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", content_type);
        if let Some(t) = &self.token {
            rb = rb.header("authorization", format!("Bearer {t}"));
        }
        if let Some(s) = &self.session {
            rb = rb.header("mcp-session-id", s);
        }
        if let Some(v) = &self.version {
            rb = rb.header("mcp-protocol-version", v);
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(if text.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        });
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, msg: &Value) -> Answer {
        self.raw(
            reqwest::Method::POST,
            Some(msg.to_string()),
            "application/json",
        )
        .await
    }

    pub async fn request(&mut self, method: &str, params: Value) -> Answer {
        self.next_id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        self.post(&msg).await
    }

    /// `initialize` + `notifications/initialized`; keeps the session id and version.
    pub async fn initialize(&mut self, version: &str) -> Answer {
        let a = self
            .request(
                "initialize",
                json!({"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        self.session = a
            .headers
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            self.session.is_some(),
            "initialize must return a session id"
        );
        self.version = a.body["result"]["protocolVersion"]
            .as_str()
            .map(str::to_owned);
        let n = self
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(n.status, 202);
        a
    }

    pub async fn tool_names(&mut self) -> Vec<String> {
        let a = self.request("tools/list", json!({})).await;
        assert_eq!(a.status, 200, "{a:?}");
        a.body["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn call(&mut self, name: &str, arguments: Value) -> Answer {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))
            .await
    }
}

/// The text of a `CallToolResult`'s first content item.
pub fn text(answer: &Answer) -> String {
    answer.body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub fn mcp_target(name: &str, url: &str, extra: Value) -> Value {
    let mut v = json!({"name": name, "kind": {"type": "mcp", "url": url}});
    merge(&mut v, extra);
    v
}

pub fn openapi_target(name: &str, spec: &str, base_url: &str, extra: Value) -> Value {
    let mut v = json!({"name": name, "kind": {"type": "openapi", "spec": {"inline": spec}, "base_url": base_url}});
    merge(&mut v, extra);
    v
}

fn merge(v: &mut Value, extra: Value) {
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
}
