//! What the `tenantry` crate's integration tests share: where the binary, the example agents
//! and the test agents are, and the check that skips a sandbox test, visibly, on a host that
//! cannot run sandboxes.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenantry_testkit::{RequestBody, Response, TestServer};

/// The `tenantry` binary under test (also the sandbox helper: `tenantry sandbox-helper`).
pub const BIN: &str = env!("CARGO_BIN_EXE_tenantry");

/// A directory of the repository, given relative to this crate, as an absolute path.
pub fn dir(relative: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(relative)
        .canonicalize()
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
        .display()
        .to_string()
}

/// The test agents (hostile, broken, tool and model callers).
pub fn test_agents_dir() -> String {
    dir("tests/agents")
}

/// Whether this host can run sandboxes; if not, prints a SKIP line naming the test and what is
/// missing.
pub fn sandboxes_available(test: &str) -> bool {
    let report = tenantry_runtime::probe();
    if !report.sandbox_supported() {
        eprintln!(
            "SKIP {test}: this host cannot run sandboxes: {}",
            report.missing().join("; ")
        );
    }
    report.sandbox_supported()
}

/// The Python example agent.
pub fn python_agent_dir() -> String {
    dir("../../examples/agents/python")
}

/// A test server that runs sandboxes through this binary's helper; `divisor` shortens the
/// lifecycle's durations.
pub async fn server(divisor: u32) -> TestServer {
    TestServer::builder()
        .sandbox_helper(BIN, &["sandbox-helper"])
        .configure(move |c| {
            c.runtime.ready_timeout_seconds = 5;
            c.runtime.time_divisor = divisor;
        })
        .start()
        .await
}

/// `server(1)`, but the tier's storage size is a soft limit (`storage_limit = "measure"`: the
/// storage is a directory, measured after each invocation) even where images are possible.
pub async fn measured_server() -> TestServer {
    TestServer::builder()
        .sandbox_helper(BIN, &["sandbox-helper"])
        .configure(|c| {
            c.runtime.ready_timeout_seconds = 5;
            c.runtime.storage_limit = tenantry_server::config::StorageLimit::Measure;
        })
        .start()
        .await
}

/// Creates the tier `small-disk`: sessions get `storage_mb` of storage (and 256 MiB, one core,
/// 64 processes); its request rate is never reached by a test.
pub async fn small_disk_tier(s: &TestServer, storage_mb: u32) {
    let tier = json!({"limits": {"requests_per_second": 1000, "burst": 1000},
                      "sandbox": {"memory_mb": 256, "cpu_millis": 1000, "max_processes": 64,
                                  "storage_mb": storage_mb}});
    s.admin("PUT", "/v1/admin/tiers/small-disk", Some(tier))
        .await;
}

/// The start most sandbox tests share: `None` (after a SKIP line) on a host that cannot run
/// sandboxes; otherwise `server(divisor)` with tenant `acme` on `tier`, the runtime `runtime`
/// created, and a token of acme's user `alice`.
pub async fn acme_with_runtime(
    test: &str,
    divisor: u32,
    tier: &str,
    runtime: Value,
) -> Option<(TestServer, String)> {
    if !sandboxes_available(test) {
        return None;
    }
    let s = server(divisor).await;
    s.create_tenant("acme", tier).await;
    create_runtime(&s, runtime).await;
    let alice = s.token("acme", "alice", &[]);
    Some((s, alice))
}

/// `acme_with_runtime`'s start for tests of two tenants: tenants `acme` and `globex`, both on
/// tier `standard`, and the runtime `runtime`.
pub async fn acme_and_globex_with_runtime(test: &str, runtime: Value) -> Option<TestServer> {
    if !sandboxes_available(test) {
        return None;
    }
    let s = server(1).await;
    s.create_tenant("acme", "standard").await;
    s.create_tenant("globex", "standard").await;
    create_runtime(&s, runtime).await;
    Some(s)
}

pub fn session_id(tag: &str) -> String {
    format!("{tag}-{}", uuid_like())
}

/// A session id of the tests, as the session manager takes it.
#[allow(dead_code)]
pub fn typed(id: &str) -> tenantry_core::SessionId {
    tenantry_core::SessionId::new(id).expect("a valid session id")
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:032x}-{}", N.fetch_add(1, Ordering::Relaxed))
}

pub async fn invoke(
    s: &TestServer,
    runtime: &str,
    token: &str,
    session: &str,
    body: Value,
    extra: &[(&str, &str)],
) -> Response {
    let mut headers = vec![("X-Tenantry-Session-Id", session)];
    headers.extend_from_slice(extra);
    s.request(
        "POST",
        &format!("/v1/runtimes/{runtime}/invocations"),
        Some(token),
        &headers,
        Some(RequestBody::Json(body)),
    )
    .await
}

/// `invoke` with no extra headers, which must answer 200.
pub async fn invoke_ok(
    s: &TestServer,
    runtime: &str,
    token: &str,
    session: &str,
    body: Value,
) -> Response {
    let r = invoke(s, runtime, token, session, body, &[]).await;
    assert_eq!(r.status, 200, "{runtime}: {}", r.text);
    r
}

/// A session whose storage (a directory, measured after each invocation) went over its tier's
/// size: once measured, its next invocation is refused with 507 `storage_exceeded`, and so is
/// its resume after a stop.
pub async fn assert_refused_over_quota(s: &TestServer, runtime: &str, token: &str, session: &str) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = invoke(s, runtime, token, session, json!({}), &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (507, "storage_exceeded"),
        "{}",
        r.text
    );
    s.delete(&format!("/v1/sessions/{session}"), token).await;
    let r = invoke(s, runtime, token, session, json!({}), &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (507, "storage_exceeded"),
        "a resume: {}",
        r.text
    );
}

pub async fn create_runtime(s: &TestServer, body: Value) {
    s.admin("POST", "/v1/admin/runtimes", Some(body)).await;
}

/// Runs the `tenantry` command, with no configuration taken from the environment.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("TENANTRY_CONFIG")
        .env_remove("TENANTRY_URL")
        .env_remove("TENANTRY_ADMIN_KEY")
        .output()
        .unwrap()
}

/// `run`, which must succeed; its standard output.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "tenantry {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh state directory (`tenantry init`) in `dir` whose server listens on `port`; the
/// config file's path.
pub fn init_state(dir: &Path, port: u16) -> PathBuf {
    ok(&[
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    dir.join("tenantry.toml")
}

/// `tenantry serve` in the background; killed when dropped.
pub struct Serving(pub Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tenantry serve` on `config` and waits until it listens on `port`.
pub fn serve(config: &Path, port: u16) -> Serving {
    serve_logging(config, port, None)
}

/// `serve`, started by a shell that leaves descriptor `fd` open on `file` (read-only, not
/// close-on-exec) in the server, as a careless launching script would.
pub fn serve_holding(config: &Path, port: u16, fd: u32, file: &Path) -> Serving {
    let mut command = Command::new("sh");
    command.args([
        "-c",
        &format!("exec \"$0\" serve --config \"$1\" {fd}<\"$2\""),
        BIN,
        config.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    command.env("TENANTRY_LOG", "warn").stderr(Stdio::null());
    wait_until_listening(command, port)
}

/// `serve`, with its log (at DEBUG) appended to `log` when given.
pub fn serve_logging(config: &Path, port: u16, log: Option<&Path>) -> Serving {
    let (level, stderr) = match log {
        Some(path) => (
            "debug",
            Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap(),
            ),
        ),
        None => ("warn", Stdio::null()),
    };
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("TENANTRY_LOG", level)
        .stderr(stderr);
    wait_until_listening(command, port)
}

/// Starts a server with `command` and waits until it listens on `port`.
fn wait_until_listening(mut command: Command, port: u16) -> Serving {
    let child = command
        .env_remove("TENANTRY_VAULT_MASTER_KEY")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let serving = Serving(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    serving
}

/// An operator's view of a `tenantry serve` process: its URL, operator key and the `--config`
/// to mint tokens with.
pub struct Remote {
    pub url: String,
    pub admin: String,
    pub config: PathBuf,
    pub http: reqwest::Client,
}

impl Remote {
    /// The server of the state directory `dir` (made by `init_state`) on `port`.
    pub fn new(dir: &Path, port: u16) -> Self {
        let admin = std::fs::read_to_string(dir.join("admin.key")).unwrap();
        Self {
            url: format!("http://127.0.0.1:{port}"),
            admin: admin.trim().to_string(),
            config: dir.join("tenantry.toml"),
            http: reqwest::Client::new(),
        }
    }

    /// An operator `POST`, which must answer 201.
    pub async fn create(&self, path: &str, body: Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }

    /// A development token of `user` in `tenant`.
    pub fn token(&self, tenant: &str, user: &str) -> String {
        let config = self.config.to_str().unwrap();
        ok(&[
            "token", "issue", "--tenant", tenant, "--user", user, "--config", config,
        ])
        .trim()
        .to_string()
    }

    /// One invocation of `runtime` in `session`; the status and the JSON answer.
    pub async fn invoke(
        &self,
        runtime: &str,
        token: &str,
        session: &str,
        body: Value,
    ) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/runtimes/{runtime}/invocations", self.url))
            .bearer_auth(token)
            .header("X-Tenantry-Session-Id", session)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}
