//! `TestServer`: the real Tenantry server, started in-process on 127.0.0.1:0 with a fresh
//! state directory made by the same code as `tenantry init`, and a small HTTP client for it.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tenantry_core::{TenantId, UserId};
use tenantry_identity::{DevIssuer, IssuerConfig};
use tenantry_server::{Config, Server};

/// The environment variable naming a PostgreSQL server for tests that need one.
pub const DATABASE_ENV: &str = "TENANTRY_TEST_DATABASE_URL";

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Response {
    /// The stable error code of an error response (`""` if the body is not the error shape).
    pub fn code(&self) -> &str {
        self.body
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type ConfigHook = Box<dyn FnOnce(&mut Config) + Send>;

#[derive(Default)]
pub struct TestServerBuilder {
    issuers: Vec<IssuerConfig>,
    database_url: Option<String>,
    extra_toml: String,
    hooks: Vec<ConfigHook>,
}

impl std::fmt::Debug for TestServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServerBuilder")
            .field("issuers", &self.issuers.len())
            .field("database_url", &self.database_url.is_some())
            .finish_non_exhaustive()
    }
}

impl TestServerBuilder {
    /// Registers an external JWT issuer (e.g. a `MockIssuer`).
    pub fn issuer(mut self, issuer: IssuerConfig) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Runs sandboxes with this helper program (e.g. the `tenantry` binary with
    /// `["sandbox-helper"]`).
    pub fn sandbox_helper(self, program: impl Into<PathBuf>, args: &[&str]) -> Self {
        let program = program.into();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        self.configure(move |c| {
            c.runtime.helper = Some(program);
            c.runtime.helper_args = Some(args);
        })
    }

    /// Uses this database instead of a temporary SQLite file.
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// Changes the loaded configuration before the server starts.
    pub fn configure(mut self, hook: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.hooks.push(Box::new(hook));
        self
    }

    /// TOML appended to the starter config (e.g. a new `[[identity.issuers]]` block).
    pub fn toml(mut self, extra: &str) -> Self {
        self.extra_toml.push('\n');
        self.extra_toml.push_str(extra);
        self
    }

    pub async fn start(self) -> TestServer {
        crate::install_crypto();
        let dir = tempfile::tempdir().expect("temporary directory");
        tenantry_server::statedir::init(dir.path(), "127.0.0.1:0", false).expect("init state dir");
        let config_path = dir.path().join(tenantry_server::statedir::CONFIG_FILE);
        if !self.extra_toml.is_empty() {
            let mut text = std::fs::read_to_string(&config_path).expect("read config");
            text.push_str(&self.extra_toml);
            std::fs::write(&config_path, text).expect("write config");
        }
        let database_url = self.database_url.clone();
        let env = move |k: &str| match k {
            "TENANTRY_DATABASE_URL" => database_url.clone(),
            _ => None,
        };
        let mut config = Config::load(&config_path, &env).expect("load config");
        config.identity.issuers.extend(self.issuers);
        for hook in self.hooks {
            hook(&mut config);
        }
        let dev_issuer = config.load_dev_issuer().expect("dev issuer");
        let admin_key = config.admin_key().expect("admin key");
        let server = Server::start(config, None).await.expect("start server");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        TestServer {
            url: server.url(),
            server: Some(server),
            admin_key,
            dev_issuer,
            http,
            config_path,
            _dir: dir,
        }
    }
}

/// A running server with its own temporary state.
#[derive(Debug)]
pub struct TestServer {
    pub url: String,
    pub admin_key: String,
    pub dev_issuer: DevIssuer,
    pub config_path: PathBuf,
    server: Option<Server>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// A server on embedded defaults (SQLite in a temporary directory).
    pub async fn start() -> TestServer {
        Self::builder().start().await
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    /// Sends a request; `auth` is sent as a bearer credential; `headers` are added as given.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<RequestBody>,
    ) -> Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match body {
            Some(RequestBody::Json(v)) => req = req.json(&v),
            Some(RequestBody::Raw {
                content_type,
                bytes,
            }) => req = req.header("content-type", content_type).body(bytes),
            None => {}
        }
        let resp = req.send().await.expect("send request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("read body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Response {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str, auth: &str) -> Response {
        self.request("GET", path, Some(auth), &[], None).await
    }

    pub async fn delete(&self, path: &str, auth: &str) -> Response {
        self.request("DELETE", path, Some(auth), &[], None).await
    }

    pub async fn send_json(&self, method: &str, path: &str, auth: &str, body: Value) -> Response {
        self.request(method, path, Some(auth), &[], Some(RequestBody::Json(body)))
            .await
    }

    /// A control-plane call with the operator key; panics unless it succeeds.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let resp = self
            .request(
                method,
                path,
                Some(&self.admin_key),
                &[],
                body.map(RequestBody::Json),
            )
            .await;
        assert!(
            (200..300).contains(&resp.status),
            "{method} {path} answered {}: {}",
            resp.status,
            resp.text
        );
        resp.body
    }

    /// Onboards a tenant on a tier.
    pub async fn create_tenant(&self, id: &str, tier: &str) -> Value {
        self.admin(
            "POST",
            "/v1/admin/tenants",
            Some(json!({"id": id, "tier": tier})),
        )
        .await
    }

    /// Creates an API key for a tenant and returns (key id, full key).
    pub async fn create_api_key(&self, tenant: &str, roles: &[&str]) -> (String, String) {
        let v = self
            .admin(
                "POST",
                &format!("/v1/admin/tenants/{tenant}/api-keys"),
                Some(json!({"roles": roles})),
            )
            .await;
        (
            v["id"].as_str().expect("key id").to_string(),
            v["key"].as_str().expect("key").to_string(),
        )
    }

    /// The immutable uid of an existing tenant (from the store).
    pub async fn tenant_uid(&self, tenant: &str) -> tenantry_core::TenantUid {
        self.server()
            .state
            .store
            .get_tenant(&TenantId::new(tenant).expect("tenant id"))
            .await
            .expect("store")
            .expect("the tenant exists")
            .uid
    }

    /// A development-issuer JWT for a user of a tenant.
    pub fn token(&self, tenant: &str, user: &str, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        self.dev_issuer
            .mint(
                &TenantId::new(tenant).expect("tenant id"),
                &UserId::new(user).expect("user id"),
                &roles,
                Duration::from_secs(600),
            )
            .expect("mint token")
    }
}

#[derive(Debug)]
pub enum RequestBody {
    Json(Value),
    Raw {
        content_type: &'static str,
        bytes: Vec<u8>,
    },
}

/// The PostgreSQL URL for tests, or `None` after printing a visible skip line naming `test`.
pub fn postgres_url_or_skip(test: &str) -> Option<String> {
    match std::env::var(DATABASE_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        Ok(_) | Err(_) => {
            eprintln!("SKIP {test}: {DATABASE_ENV} is unset; PostgreSQL is not tested here");
            None
        }
    }
}
