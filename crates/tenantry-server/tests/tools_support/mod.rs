//! Shared pieces of the tool gateway's tests through the real server: the server's logs
//! captured in memory (to scan them for secrets and read the audit log), a small raw MCP client
//! that shows every status and error, a mock OAuth2 token endpoint (client credentials and
//! RFC 8693 exchange with an `act` claim), and the set-up most tests start from.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tenantry_testkit::TestServer;
use tenantry_tools::testing::{MockMcpServer, MockOpenApi};

// ---- logs --------------------------------------------------------------------------------------

#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The lines logged with target `audit`.
    pub fn audit_lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "audit")
            .collect()
    }
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this process (the server runs in it), as JSON, at DEBUG and above:
/// stricter than the server's default of INFO.
pub fn logs() -> LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuffer::default();
        let inner = buf.0.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_target(true)
            .with_current_span(true)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || Writer(inner.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one log subscriber");
        buf
    })
    .clone()
}

/// Fails if any of `secrets` appears in `text` (naming where).
pub fn assert_no_secrets(place: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !text.contains(s),
            "a secret ({}...) appears in {place}",
            &s[..s.len().min(6)]
        );
    }
}

// ---- a raw MCP client -------------------------------------------------------------------------

pub use tenantry_testkit::mcp::Mcp;

// ---- a mock OAuth2 token endpoint -------------------------------------------------------------

/// What a token "signed" by the mock endpoint says: an unsigned JWT (`alg: none`) whose claims
/// the test reads back from what the upstream received.
pub fn jwt_claims(token: &str) -> Value {
    token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

fn unsigned_jwt(claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// One token request's form fields (and the client id of its Basic auth).
pub type Form = Vec<(String, String)>;

/// A token endpoint on 127.0.0.1: `client_credentials` answers `cc-<client_id>-<n>`; a token
/// exchange (RFC 8693) answers a token for the subject token's `sub`, with `act: {sub}` of
/// the actor token when one is sent. Every request's form is recorded.
#[derive(Debug)]
pub struct MockTokenEndpoint {
    pub addr: SocketAddr,
    pub forms: Arc<Mutex<Vec<Form>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockTokenEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockTokenEndpoint {
    pub async fn start() -> Self {
        let forms: Arc<Mutex<Vec<Form>>> = Arc::default();
        let log = forms.clone();
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let log = log.clone();
                    async move {
                        let mut form: Vec<(String, String)> =
                            url::form_urlencoded::parse(&body).into_owned().collect();
                        // client_secret_basic: the client id is in the Authorization header.
                        if let Some(basic) = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("Basic "))
                            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                            .and_then(|b| String::from_utf8(b).ok())
                            && let Some((id, _)) = basic.split_once(':')
                        {
                            let id = url::form_urlencoded::parse(format!("x={id}").as_bytes())
                                .next()
                                .map(|(_, v)| v.into_owned())
                                .unwrap_or_default();
                            form.push(("client_id".into(), id));
                        }
                        let get = |k: &str| {
                            form.iter()
                                .find(|(n, _)| n == k)
                                .map(|(_, v)| v.clone())
                                .unwrap_or_default()
                        };
                        let n = {
                            let mut l = log.lock().unwrap();
                            l.push(form.clone());
                            l.len()
                        };
                        let token = match get("grant_type").as_str() {
                            "client_credentials" => format!("cc-{}-{n}", get("client_id")),
                            "urn:ietf:params:oauth:grant-type:token-exchange" => {
                                let subject = jwt_claims(&get("subject_token"));
                                let mut claims =
                                    json!({"sub": subject["sub"], "iss": "mock-idp", "n": n});
                                let actor = jwt_claims(&get("actor_token"));
                                if !actor.is_null() {
                                    claims["act"] = json!({"sub": actor["sub"]});
                                }
                                unsigned_jwt(&claims)
                            }
                            _ => {
                                return axum::Json(json!({"error": "unsupported_grant_type"}))
                                    .into_response_with(400);
                            }
                        };
                        axum::Json(json!({"access_token": token, "token_type": "Bearer",
                                      "expires_in": 3600}))
                        .into_response_with(200)
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, forms, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn forms(&self) -> Vec<Form> {
        self.forms.lock().unwrap().clone()
    }
}

trait WithStatus {
    fn into_response_with(self, status: u16) -> axum::response::Response;
}

impl WithStatus for axum::Json<Value> {
    fn into_response_with(self, status: u16) -> axum::response::Response {
        use axum::response::IntoResponse;
        let mut r = self.into_response();
        *r.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
        r
    }
}

// ---- the usual set-up --------------------------------------------------------------------------

/// A running server with an upstream MCP server (`kit`, bearer credential, 1 s timeout, priced)
/// and an OpenAPI service (`pets`, registered by its document's URL, `X-Api-Key` credential),
/// tenants `acme` (basic, its tier's request rate raised for test clients) and `bolt`
/// (premium), each with an API key and its own credential for both targets, and `carl`
/// (standard) without credentials.
pub struct Env {
    pub server: TestServer,
    pub mcp: MockMcpServer,
    pub api: MockOpenApi,
    pub logs: LogBuffer,
    pub keys: std::collections::HashMap<&'static str, String>,
    /// Every control-plane answer's text, for the secret scan.
    pub answers: Mutex<Vec<String>>,
}

pub const ACME_KIT: &str = "acme-kit-s3cr3t-7f1c";
pub const ACME_PETS: &str = "acme-pets-s3cr3t-93b2";
pub const BOLT_KIT: &str = "bolt-kit-s3cr3t-4d88";
pub const BOLT_PETS: &str = "bolt-pets-s3cr3t-c015";

impl Env {
    pub async fn start() -> Env {
        let logs = logs();
        let server = TestServer::start().await;
        let mcp = MockMcpServer::start().await;
        let api = MockOpenApi::start().await;
        let env = Env {
            server,
            mcp,
            api,
            logs,
            keys: Default::default(),
            answers: Mutex::new(Vec::new()),
        };
        env.admin(
            "POST",
            "/v1/admin/tool-targets",
            json!({"name": "kit", "kind": {"type": "mcp", "url": env.mcp.url()},
                   "credential": {"placement": "bearer"}, "timeout_ms": 1000,
                   "price_per_call": "0.002"}),
            201,
        )
        .await;
        env.admin(
            "POST",
            "/v1/admin/tool-targets",
            json!({"name": "pets",
                   "kind": {"type": "openapi", "spec": {"url": env.api.spec_url()},
                            "base_url": env.api.base_url()},
                   "credential": {"placement": "header", "name": "X-Api-Key"}}),
            201,
        )
        .await;
        // The starter basic tier allows 5 requests per second (burst 10): enough for people,
        // not for a test client that lists and calls in a burst.
        let mut basic = env
            .admin("GET", "/v1/admin/tiers/basic", Value::Null, 200)
            .await;
        basic["limits"]["requests_per_second"] = json!(200);
        basic["limits"]["burst"] = json!(400);
        env.admin("PUT", "/v1/admin/tiers/basic", basic, 200).await;
        let mut keys = std::collections::HashMap::new();
        for (tenant, tier) in [("acme", "basic"), ("bolt", "premium"), ("carl", "standard")] {
            env.server.create_tenant(tenant, tier).await;
            let (_, key) = env.server.create_api_key(tenant, &[]).await;
            keys.insert(tenant, key);
        }
        for (tenant, target, secret) in [
            ("acme", "kit", ACME_KIT),
            ("acme", "pets", ACME_PETS),
            ("bolt", "kit", BOLT_KIT),
            ("bolt", "pets", BOLT_PETS),
        ] {
            let a = env
                .admin(
                    "PUT",
                    &format!("/v1/admin/tenants/{tenant}/credentials/{target}"),
                    json!({"kind": "api_key", "value": secret}),
                    201,
                )
                .await;
            assert_eq!(a["kind"], "api_key");
        }
        Env { keys, ..env }
    }

    /// A control-plane call with the operator key; asserts the status; keeps the answer.
    pub async fn admin(&self, method: &str, path: &str, body: Value, status: u16) -> Value {
        let r = self
            .server
            .request(
                method,
                path,
                Some(&self.server.admin_key),
                &[],
                (!body.is_null()).then_some(tenantry_testkit::RequestBody::Json(body)),
            )
            .await;
        self.answers.lock().unwrap().push(r.text.clone());
        assert_eq!(r.status, status, "{method} {path}: {}", r.text);
        r.body
    }

    pub fn key(&self, tenant: &str) -> &str {
        &self.keys[tenant]
    }

    pub async fn connect(&self, tenant: &str) -> Mcp {
        Mcp::connect(&self.server.url, self.key(tenant)).await
    }

    /// Uploads a policy set; returns the answer (asserting `status`).
    pub async fn policy(&self, scope: Value, text: &str, mode: &str, status: u16) -> Value {
        let mut body = scope;
        body["text"] = json!(text);
        body["mode"] = json!(mode);
        self.admin("POST", "/v1/admin/policies", body, status).await
    }

    /// Scans every control-plane answer and every log line for the tenants' secrets (and
    /// `extra` ones).
    pub fn assert_no_secrets(&self, extra: &[&str]) {
        let mut secrets = vec![ACME_KIT, ACME_PETS, BOLT_KIT, BOLT_PETS];
        secrets.extend_from_slice(extra);
        let answers = self.answers.lock().unwrap().join("\n");
        assert_no_secrets("a control-plane answer", &answers, &secrets);
        assert_no_secrets("the server's log", &self.logs.text(), &secrets);
    }
}
