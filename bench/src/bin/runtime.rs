//! Runtime benchmark: what a session costs, against the real server and real sandboxes, in one
//! run.
//!
//! 1. **Cold start**: from sending the first invocation of a new session to its complete `200`
//!    response, for the Rust and the Python example agent, without a warm pool and with one.
//!    Each session is stopped (`DELETE /v1/sessions/{id}`) before the next. Which sandbox served
//!    each session is checked on the host (the sandbox's init process), so a "warm" row counts
//!    only sessions that really got a pre-started sandbox. Baseline in the same run: the same
//!    sandbox started directly through `tenantry_runtime` (no server), with the agent's port
//!    polled every millisecond or watched by `wait_for_agent` as the server does, and with the
//!    kernel's cgroup-migration lock kept warm (see `Moves`).
//! 2. **Added latency** of a warm invocation through Tenantry (authentication, admission,
//!    session lookup, the sandbox's Unix-socket bridge) against the same agent binary called
//!    directly on a loopback TCP port, at a fixed rate, the two paths taking turns request by
//!    request; and the CPU time each path costs per invocation.
//! 3. **Concurrent idle sessions**: starts up to M sessions, keeps them, measures host memory
//!    per session and the platform's idle CPU, invokes each again, stops all and checks that
//!    the memory comes back.
//!
//! The server runs in this process on its own multi-threaded runtime; the load generator on a
//! single-threaded one (the main thread). The sandbox helper is the release `tenantry` binary
//! next to this one, and the Rust agent the release `example-agent`:
//! `cargo build --release -p tenantry -p tenantry-bench -p tenantry-example-agent`.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tenantry_bench::{Answer, BodyClient, Call, Report, body_client, call, fixed_rate_interleaved};

const BUILD_HINT: &str =
    "cargo build --release -p tenantry -p tenantry-bench -p tenantry-example-agent";
const AGENT_PORT: u16 = 8080;
const TENANT: &str = "bench";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    Cold,
    Added,
    Concurrent,
}

#[derive(Debug, Parser)]
#[command(about = "Session cold start, added invocation latency and concurrent idle sessions")]
struct Args {
    /// Phases to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "cold,added,concurrent"
    )]
    phases: Vec<Phase>,
    /// Measured sessions per cold-start configuration (agent x warm pool).
    #[arg(long, default_value_t = 50)]
    sessions: usize,
    /// Uncounted sessions before each cold-start configuration (page cache, first exec).
    #[arg(long, default_value_t = 3)]
    warmup_sessions: usize,
    /// Milliseconds between one cold-start session's stop and the next one's request (without
    /// a pool; the sandbox-alone baseline waits the same). Longer gaps let the kernel finish
    /// tearing down the previous sandbox first.
    #[arg(long, default_value_t = 20)]
    gap_ms: u64,
    /// Warm pool size of the runtimes measured with a pool.
    #[arg(long, default_value_t = 2)]
    warm_pool: u32,
    /// Invocations per second in the added-latency phase (for each of the two paths).
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Seconds of measurement in the added-latency phase (after 2 s of warm-up); both paths
    /// are measured at the same time, request by request in turn.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Sessions to hold at once in the concurrency phase.
    #[arg(long, default_value_t = 500)]
    concurrent: usize,
    /// Tenants the concurrent sessions are spread over (round robin).
    #[arg(long, default_value_t = 5)]
    tenants: usize,
    /// Sessions started (and stopped) at the same time in the concurrency phase.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Memory limit of each sandbox (the bench tier's `sandbox.memory_mb`).
    #[arg(long, default_value_t = 256)]
    memory_mb: u32,
    /// Process limit of each sandbox (the bench tier's `sandbox.max_processes`). The init
    /// starts a short-lived thread for each new connection to the agent, which counts against
    /// it while it connects.
    #[arg(long, default_value_t = 256)]
    max_processes: u32,
    /// Worker threads of the server's runtime.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    /// Skip the Python agent.
    #[arg(long)]
    no_python: bool,
    /// Start the server with `favor_dynamic_cgroups = false`: it leaves the host's cgroup
    /// mounts as they are. To measure cold starts without `favordynmods` on a host where it is
    /// set, clear it first (e.g. `mount -o remount /sys/fs/cgroup/unified`).
    #[arg(long)]
    no_cgroup_tuning: bool,
}

/// The cgroup mounts carrying `favordynmods`, from `/proc/self/mountinfo`.
fn favordynmods_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (mount, fs) = l.split_once(" - ")?;
            let mut fs = fs.split(' ');
            let kind = fs.next()?;
            let options = fs.nth(1)?;
            ((kind == "cgroup" || kind == "cgroup2")
                && options.split(',').any(|o| o == "favordynmods"))
            .then(|| mount.split(' ').nth(4).unwrap_or("?").to_owned())
        })
        .collect()
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bins = binaries()?;
    let probe = tenantry_runtime::probe();
    if !probe.sandbox_supported() {
        bail!(
            "this host cannot run sandboxes: {}",
            probe.missing().join("; ")
        );
    }
    let started = StartedLog::default();
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        // Logs at info as in production (formatting cost included), into a sink; the extra
        // layer notes when the server reports each session started.
        let _ = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info"))
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
            .with(started.clone())
            .try_init();
    }

    // The agents live beside the state directory: the server refuses a workdir inside it.
    let dir = tempfile::tempdir()?;
    let root = std::fs::canonicalize(dir.path())?;
    let state_dir = root.join("state");
    std::fs::create_dir_all(&state_dir)?;
    tenantry_server::statedir::init(&state_dir, "127.0.0.1:0", false)?;
    let rust_dir = root.join("agents/rust");
    std::fs::create_dir_all(&rust_dir)?;
    std::fs::copy(&bins.agent, rust_dir.join("example-agent"))?;
    let python = !args.no_python && which("python3").is_some();
    let py_dir = root.join("agents/python");
    if python {
        std::fs::create_dir_all(&py_dir)?;
        std::fs::write(
            py_dir.join("agent.py"),
            include_str!("../../../examples/agents/python/agent.py"),
        )?;
    }

    let config_path = state_dir.join(tenantry_server::statedir::CONFIG_FILE);
    let mut config = tenantry_server::Config::load(&config_path, &|_| None)?;
    config.runtime.helper = Some(bins.tenantry.clone());
    config.runtime.helper_args = Some(vec![
        tenantry_server::config::SANDBOX_HELPER_SUBCOMMAND.to_string(),
    ]);
    config.runtime.favor_dynamic_cgroups = !args.no_cgroup_tuning;
    let before = favordynmods_mounts();
    let tenantry_bench::InProcessServer {
        runtime: server_rt,
        server,
        admin_key: admin,
        issuer,
    } = tenantry_bench::InProcessServer::start(config, args.server_threads)?;
    let after = favordynmods_mounts();
    println!(
        "cgroup favordynmods: {} (before the server started: {})",
        if after.is_empty() {
            "not set".to_owned()
        } else {
            format!("set on {}", after.join(", "))
        },
        if before.is_empty() {
            "not set".to_owned()
        } else {
            format!("set on {}", before.join(", "))
        },
    );
    let bench = Bench {
        base: server.url(),
        admin,
        issuer,
        http: body_client(64),
        helper: bins.tenantry.clone(),
        small_helper: bins.small_helper.clone(),
        rust_dir,
        py_dir: python.then_some(py_dir),
        state_dir: state_dir.clone(),
        started,
        memory_mount: memory_mount(),
        resources: tenantry_core::SandboxResources {
            memory_mb: args.memory_mb,
            cpu_millis: 1000,
            max_processes: args.max_processes,
            storage_mb: 64,
        },
    };

    let load_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = load_rt.block_on(run(&bench, &args));
    server_rt.block_on(server.shutdown());
    result
}

/// The binaries this benchmark needs, next to its own executable.
#[derive(Debug)]
struct Binaries {
    tenantry: PathBuf,
    agent: PathBuf,
    small_helper: Option<PathBuf>,
}

fn binaries() -> Result<Binaries> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let dir = exe
        .parent()
        .context("this executable has no directory")?
        .to_path_buf();
    let bins = Binaries {
        tenantry: dir.join("tenantry"),
        agent: dir.join("example-agent"),
        small_helper: Some(dir.join("tenantry-sandbox")).filter(|p| p.is_file()),
    };
    for p in [&bins.tenantry, &bins.agent] {
        if !p.is_file() {
            bail!(
                "{} is missing: build the benchmark, the sandbox helper and the example agent together first:\n  {BUILD_HINT}",
                p.display()
            );
        }
    }
    Ok(bins)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

// ---- the server's own account of when each session started ------------------------------

/// Notes the instant of each `session started` event (logged by the session manager once the
/// sandbox is bound to the session, before the first request is forwarded to the agent), and
/// the steps it reports.
#[derive(Debug, Clone, Default)]
struct StartedLog(Arc<Mutex<HashMap<String, (Instant, ServerSteps)>>>);

/// The session manager's own account of a start, in microseconds: before the sandbox (session
/// row, storage), the backend's launch, the wait for the agent to listen, and all of it.
#[derive(Debug, Clone, Copy, Default)]
struct ServerSteps {
    prepare_us: u64,
    launch_us: u64,
    listen_us: u64,
    total_us: u64,
}

impl StartedLog {
    fn take(&self, session: &str) -> Option<(Instant, ServerSteps)> {
        self.0.lock().ok()?.remove(session)
    }
}

#[derive(Debug, Default)]
struct EventFields {
    message: Option<String>,
    session: Option<String>,
    steps: ServerSteps,
}

impl tracing::field::Visit for EventFields {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        match field.name() {
            "prepare_us" => self.steps.prepare_us = value,
            "launch_us" => self.steps.launch_us = value,
            "listen_us" => self.steps.listen_us = value,
            "total_us" => self.steps.total_us = value,
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = Some(format!("{value:?}")),
            "session.id" => self.session = Some(format!("{value:?}")),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => self.message = Some(value.to_string()),
            "session.id" => self.session = Some(value.to_string()),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StartedLog {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let at = Instant::now();
        let mut fields = EventFields::default();
        event.record(&mut fields);
        if fields.message.as_deref() == Some("session started")
            && let Some(session) = fields.session
            && let Ok(mut m) = self.0.lock()
        {
            m.insert(session, (at, fields.steps));
        }
    }
}

// ---- the host's view of the sandboxes ----------------------------------------------------

/// What `/proc` says about this process's sandboxes: each is a helper process (a child of this
/// process running the helper binary) and its child, the sandbox's init (PID 1 inside).
mod host {
    use std::collections::BTreeSet;
    use std::path::Path;

    #[derive(Debug, Clone, Copy)]
    pub struct Proc {
        pub pid: u32,
        pub ppid: u32,
        pub zombie: bool,
    }

    pub fn processes() -> Vec<Proc> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
                let rest = &stat[stat.rfind(')')? + 1..];
                let mut it = rest.split_whitespace();
                let state = it.next()?;
                let ppid = it.next()?.parse().ok()?;
                Some(Proc {
                    pid,
                    ppid,
                    zombie: state == "Z" || state == "X",
                })
            })
            .collect()
    }

    /// `(helper pid, init pid)` of each live sandbox started by this process.
    pub fn sandboxes(helper: &Path) -> Vec<(u32, u32)> {
        let me = std::process::id();
        let procs = processes();
        let helper = helper.to_string_lossy();
        let helpers: Vec<u32> = procs
            .iter()
            .filter(|p| p.ppid == me && !p.zombie)
            .filter(|p| {
                std::fs::read_link(format!("/proc/{}/exe", p.pid))
                    .is_ok_and(|exe| exe.to_string_lossy().starts_with(helper.as_ref()))
            })
            .map(|p| p.pid)
            .collect();
        procs
            .iter()
            .filter(|p| !p.zombie && helpers.contains(&p.ppid))
            .map(|p| (p.ppid, p.pid))
            .collect()
    }

    pub fn init_pids(helper: &Path) -> BTreeSet<u32> {
        sandboxes(helper)
            .into_iter()
            .map(|(_, init)| init)
            .collect()
    }

    fn kib_field(text: &str, key: &str) -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Every `/proc/meminfo` field, in KiB.
    pub fn meminfo() -> std::collections::BTreeMap<String, u64> {
        std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.to_string(), v.split_whitespace().next()?.parse().ok()?))
            })
            .collect()
    }

    pub fn mem_total_kib() -> Option<u64> {
        kib_field(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemTotal:")
    }

    /// Proportional set size: the process's private memory plus its share of shared pages.
    pub fn pss_kib(pid: u32) -> Option<u64> {
        kib_field(
            &std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?,
            "Pss:",
        )
    }

    pub fn self_rss_kib() -> Option<u64> {
        kib_field(
            &std::fs::read_to_string("/proc/self/status").ok()?,
            "VmRSS:",
        )
    }

    /// CPU time (user + system) of a process or thread from its `stat` file, in clock ticks.
    fn stat_cpu_ticks(path: &str) -> u64 {
        let Ok(stat) = std::fs::read_to_string(path) else {
            return 0;
        };
        let Some(close) = stat.rfind(')') else {
            return 0;
        };
        // After `) `: state(3) ppid(4) ... utime(14) stime(15); index 0 here is field 3.
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        num(11) + num(12)
    }

    /// CPU time of this process (all threads), in clock ticks.
    pub fn self_cpu_ticks() -> u64 {
        stat_cpu_ticks("/proc/self/stat")
    }

    pub fn cpu_ticks(pid: u32) -> u64 {
        stat_cpu_ticks(&format!("/proc/{pid}/stat"))
    }

    /// CPU time of this process's threads other than the main one (the load generator runs
    /// on the main thread; the server on the others), in clock ticks.
    pub fn server_threads_cpu_ticks() -> u64 {
        let me = std::process::id();
        std::fs::read_dir("/proc/self/task")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|tid| *tid != me)
                    .map(|tid| stat_cpu_ticks(&format!("/proc/self/task/{tid}/stat")))
                    .sum()
            })
            .unwrap_or(0)
    }

    /// CPU time used by the cgroup of `pid` (all its processes), in microseconds.
    pub fn cgroup_cpu_us(pid: u32) -> Option<u64> {
        if let Some(rel) = cgroup_of(pid, "cpuacct") {
            let dir =
                std::path::Path::new("/sys/fs/cgroup/cpuacct").join(rel.trim_start_matches('/'));
            if let Ok(t) = std::fs::read_to_string(dir.join("cpuacct.usage")) {
                return t.trim().parse::<u64>().ok().map(|ns| ns / 1000);
            }
        }
        let rel = cgroup_of(pid, "")?;
        let dir = std::path::Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
        std::fs::read_to_string(dir.join("cpu.stat"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse().ok())
    }

    /// How many forks the process limit of `pid`'s cgroup has refused (`pids.events max`).
    pub fn pids_refused(pid: u32) -> Option<u64> {
        let rel = cgroup_of(pid, "pids")?;
        let v1 = std::path::Path::new("/sys/fs/cgroup/pids").join(rel.trim_start_matches('/'));
        let v2 = std::path::Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
        [v1, v2].iter().find_map(|dir| {
            std::fs::read_to_string(dir.join("pids.events"))
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("max ")?.trim().parse().ok())
        })
    }

    pub fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }

    /// The `controller` cgroup of `pid` (v1, or the v2 one), relative to its hierarchy's root.
    pub fn cgroup_of(pid: u32, controller: &str) -> Option<String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let v1 = text.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then(|| path.to_string())
        });
        v1.or_else(|| {
            text.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        })
    }
}

/// Where the memory controller is mounted: the v1 `memory` hierarchy, or the v2 mount.
fn memory_mount() -> Option<(PathBuf, bool)> {
    match tenantry_runtime::CgroupLayout::detect().ok()? {
        tenantry_runtime::CgroupLayout::V1 { memory, .. } => Some((memory.mount, true)),
        tenantry_runtime::CgroupLayout::V2 { mount, .. } => Some((mount, false)),
    }
}

// ---- the benchmark -----------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agent {
    Rust,
    Python,
}

impl Agent {
    fn name(self) -> &'static str {
        match self {
            Agent::Rust => "rust",
            Agent::Python => "python",
        }
    }
}

struct Bench {
    base: String,
    admin: String,
    issuer: tenantry_identity::DevIssuer,
    http: BodyClient,
    helper: PathBuf,
    /// `tenantry-sandbox` next to this benchmark, when built: the baseline then also shows
    /// what the helper binary's size costs.
    small_helper: Option<PathBuf>,
    rust_dir: PathBuf,
    py_dir: Option<PathBuf>,
    state_dir: PathBuf,
    started: StartedLog,
    memory_mount: Option<(PathBuf, bool)>,
    resources: tenantry_core::SandboxResources,
}

fn session_id(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "bench-{tag}-{nanos:024x}-{:06}",
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Bench {
    fn token(&self, tenant: &str, user: &str) -> Result<String> {
        Ok(self.issuer.mint(
            &tenantry_core::TenantId::new(tenant)?,
            &tenantry_core::UserId::new(user)?,
            &[],
            Duration::from_secs(4 * 3600),
        )?)
    }

    async fn admin(&self, method: http::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut c = Call::new(method, format!("{}{path}", self.base)).bearer(&self.admin);
        if let Some(b) = body {
            c = c
                .header("content-type", "application/json")
                .body(Bytes::from(b.to_string()));
        }
        let a = call(&self.http, &c)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("calling {path}"))?;
        ensure!(
            a.status.is_success(),
            "{path} answered {}: {}",
            a.status,
            a.text()
        );
        Ok(a.json())
    }

    async fn create_runtime(&self, name: &str, agent: Agent, warm_pool: u32) -> Result<()> {
        let (command, workdir) = match agent {
            Agent::Rust => (
                vec![self.rust_dir.join("example-agent").display().to_string()],
                self.rust_dir.clone(),
            ),
            Agent::Python => (
                vec!["python3".to_string(), "agent.py".to_string()],
                self.py_dir.clone().context("no Python agent")?,
            ),
        };
        self.admin(
            http::Method::POST,
            "/v1/admin/runtimes",
            Some(json!({
                "name": name, "protocol": "http", "command": command, "workdir": workdir,
                "warm_pool": warm_pool,
                "lifecycle": {"idle_timeout_seconds": 3600, "max_lifetime_seconds": 28800},
            })),
        )
        .await?;
        Ok(())
    }

    async fn delete_runtime(&self, name: &str) -> Result<()> {
        self.admin(
            http::Method::DELETE,
            &format!("/v1/admin/runtimes/{name}"),
            None,
        )
        .await?;
        Ok(())
    }

    async fn invoke(
        &self,
        runtime: &str,
        token: &str,
        session: &str,
        body: &Value,
    ) -> Result<Answer, String> {
        let c = Call::post_json(
            format!("{}/v1/runtimes/{runtime}/invocations", self.base),
            body,
        )
        .bearer(token)
        .header("x-tenantry-session-id", session);
        call(&self.http, &c).await
    }

    async fn stop_session(&self, token: &str, session: &str) -> Result<(), String> {
        let c = Call::new(
            http::Method::DELETE,
            format!("{}/v1/sessions/{session}", self.base),
        )
        .bearer(token);
        let a = call(&self.http, &c).await?;
        if a.status.is_success() && a.json()["was_running"] == json!(true) {
            Ok(())
        } else {
            Err(format!("stop answered {}: {}", a.status, a.text()))
        }
    }

    fn init_pids(&self) -> BTreeSet<u32> {
        host::init_pids(&self.helper)
    }

    /// Waits until exactly `want` sandboxes exist and every one's agent listens.
    async fn wait_sandboxes(&self, want: usize, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let s = host::sandboxes(&self.helper);
            if s.len() == want
                && s.iter()
                    .all(|(_, init)| tenantry_runtime::port_listening_in(*init, AGENT_PORT))
            {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "waited {timeout:?} for {want} ready sandboxes; there are {}",
                    s.len()
                );
            }
            // Each look reads every process's `stat`: not too often, it competes for the CPU.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn run(b: &Bench, args: &Args) -> Result<()> {
    let load_start = host::loadavg();
    println!(
        "runtime bench: {} CPUs, {} MiB memory, load average {load_start}, cgroup {}, helper {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        host::mem_total_kib().unwrap_or(0) / 1024,
        match &b.memory_mount {
            Some((_, true)) => "v1",
            Some((_, false)) => "v2",
            None => "unknown",
        },
        b.helper.display()
    );
    // A tier that never refuses: rate, invocation and session limits far above the load.
    let tier = json!({
        "limits": {"requests_per_second": 1_000_000, "burst": 1_000_000,
                   "concurrent_sessions": 100_000},
        "sandbox": b.resources,
    });
    b.admin(http::Method::PUT, "/v1/admin/tiers/bench", Some(tier))
        .await?;
    b.admin(
        http::Method::POST,
        "/v1/admin/tenants",
        Some(json!({"id": TENANT, "tier": "bench"})),
    )
    .await?;

    let mut summary = Summary::default();
    let agents: Vec<Agent> = if b.py_dir.is_some() {
        vec![Agent::Rust, Agent::Python]
    } else {
        println!("(no python3 on PATH or --no-python: the Python agent is skipped)");
        vec![Agent::Rust]
    };
    if args.phases.contains(&Phase::Cold) {
        cold_phase(b, args, &agents, &mut summary).await?;
    }
    if args.phases.contains(&Phase::Added) {
        summary.added = Some(added_phase(b, args).await?);
    }
    if args.phases.contains(&Phase::Concurrent) {
        summary.concurrent = Some(concurrent_phase(b, args).await?);
    }
    summary.print(args);
    println!(
        "load average at start {load_start}, at end {}",
        host::loadavg()
    );
    Ok(())
}

// ---- 1. cold start -----------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
struct ColdResult {
    agent: &'static str,
    pool: u32,
    total_us: Vec<u64>,
    /// Request sent to the server's `session started` (sandbox launched, agent listening).
    bound_us: Vec<u64>,
    /// The server's own account of each start (see `ServerSteps`).
    server_steps: Vec<ServerSteps>,
    stop_us: Vec<u64>,
    /// Sessions whose sandbox existed (in the pool) before their request.
    warm: usize,
    /// Sessions whose sandbox was started for them.
    fresh: usize,
    errors: usize,
    first_error: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct RawResult {
    agent: &'static str,
    variant: Option<RawVariant>,
    launch_us: Vec<u64>,
    listening_us: Vec<u64>,
    first_us: Vec<u64>,
    stop_us: Vec<u64>,
}

async fn cold_phase(b: &Bench, args: &Args, agents: &[Agent], summary: &mut Summary) -> Result<()> {
    println!(
        "\n== 1. session cold start: {} sessions per row after {} uncounted; each stopped before the next ==",
        args.sessions, args.warmup_sessions
    );
    for &agent in agents {
        for pool in [0, args.warm_pool] {
            let r = cold_config(b, args, agent, pool).await?;
            println!(
                "   {} agent, warm pool {}: p50 {} ms, p99 {} ms ({} warm, {} fresh, {} errors)",
                r.agent,
                r.pool,
                ms(pct(&r.total_us, 50.0)),
                ms(pct(&r.total_us, 99.0)),
                r.warm,
                r.fresh,
                r.errors
            );
            summary.cold.push(r);
        }
        let mut variants = vec![
            RawVariant::named(Watch::Poll, Moves::AsTheyCome, "tenantry"),
            RawVariant::named(Watch::WaitForAgent, Moves::AsTheyCome, "tenantry"),
        ];
        if agent == Agent::Rust {
            if matches!(b.memory_mount, Some((_, true))) {
                variants.push(RawVariant::named(Watch::Poll, Moves::KeptWarm, "tenantry"));
            }
            if b.small_helper.is_some() {
                variants.push(RawVariant::named(
                    Watch::Poll,
                    Moves::AsTheyCome,
                    "tenantry-sandbox",
                ));
            }
        }
        for v in variants {
            let r = raw_config(b, args, agent, v).await?;
            println!(
                "   {} agent, sandbox alone ({}, {}, helper {}): first 200 p50 {} ms",
                r.agent,
                v.watch.label(),
                v.moves.label(),
                v.helper,
                ms(pct(&r.first_us, 50.0))
            );
            summary.raw.push(r);
        }
    }
    Ok(())
}

async fn cold_config(b: &Bench, args: &Args, agent: Agent, pool: u32) -> Result<ColdResult> {
    let runtime = format!("{}-pool{pool}", agent.name());
    b.wait_sandboxes(0, Duration::from_secs(10)).await?;
    b.create_runtime(&runtime, agent, pool).await?;
    let token = b.token(TENANT, "cold")?;
    let body = json!({"prompt": "cold start"});
    let mut r = ColdResult {
        agent: agent.name(),
        pool,
        ..ColdResult::default()
    };
    if pool > 0 {
        // Pools are filled per (runtime, tenant) after that tenant's first session.
        let s = session_id("prime");
        b.invoke(&runtime, &token, &s, &body)
            .await
            .map_err(anyhow::Error::msg)?;
        b.stop_session(&token, &s)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    for i in 0..args.warmup_sessions + args.sessions {
        if pool > 0 {
            b.wait_sandboxes(pool as usize, Duration::from_secs(20))
                .await?;
            // The pool takes a sandbox in once `wait_for_agent` sees it listen; that poll
            // sleeps up to 20 ms between looks.
            tokio::time::sleep(Duration::from_millis(50)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
        }
        let before = b.init_pids();
        let session = session_id("cold");
        let t0 = Instant::now();
        let answer = b.invoke(&runtime, &token, &session, &body).await;
        let total = t0.elapsed();
        let started = b.started.take(&session);
        let bound = started.map(|(at, _)| at.duration_since(t0));
        if let Some((_, steps)) = started {
            r.server_steps.push(steps);
        }
        let after = b.init_pids();
        let t1 = Instant::now();
        let stopped = b.stop_session(&token, &session).await;
        let stop = t1.elapsed();
        // The session's sandbox is the one that ended with the session.
        let mut mine = BTreeSet::new();
        let wait = Instant::now();
        while wait.elapsed() < Duration::from_secs(2) {
            let now = b.init_pids();
            mine = after.difference(&now).copied().collect();
            if !mine.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let counted = i >= args.warmup_sessions;
        let ok = match &answer {
            Ok(a) => {
                let v = a.json();
                a.status == 200 && v["invocations_in_session"] == json!(1)
            }
            Err(_) => false,
        };
        if !counted {
            continue;
        }
        if !ok || stopped.is_err() {
            r.errors += 1;
            if r.first_error.is_none() {
                r.first_error = Some(match (&answer, &stopped) {
                    (Err(e), _) => e.clone(),
                    (Ok(a), Ok(())) => format!("{}: {}", a.status, a.text()),
                    (Ok(_), Err(e)) => e.clone(),
                });
            }
            continue;
        }
        r.total_us.push(total.as_micros() as u64);
        if let Some(bound) = bound {
            r.bound_us.push(bound.as_micros() as u64);
        }
        r.stop_us.push(stop.as_micros() as u64);
        if mine.len() == 1 && mine.is_subset(&before) {
            r.warm += 1;
        } else if mine.len() == 1 {
            r.fresh += 1;
        }
    }
    if pool > 0 {
        // Delete the runtime only with its pool full: a refill still starting when the runtime
        // is deleted leaves sandboxes behind (the refill does not check the runtime), so wait
        // until the pool's sandboxes listen...
        b.wait_sandboxes(pool as usize, Duration::from_secs(20))
            .await?;
        // ...and taken in: `wait_for_agent` looks at most every 20 ms.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.delete_runtime(&runtime).await?;
    b.wait_sandboxes(0, Duration::from_secs(10)).await?;
    Ok(r)
}

/// How the baseline learns that the agent listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// Looks at the sandbox's `/proc/<init>/net/tcp` every millisecond.
    Poll,
    /// `SandboxHandle::wait_for_agent`, as the session manager does.
    WaitForAgent,
}

impl Watch {
    fn label(self) -> &'static str {
        match self {
            Watch::Poll => "port polled every 1 ms",
            Watch::WaitForAgent => "wait_for_agent",
        }
    }
}

/// Whether the kernel's cgroup-migration lock is left alone, or kept "warm" by a task moved
/// between two empty cgroups every 5 ms. Placing the sandbox's init in its cgroups takes that
/// lock for writing; when no move happened in the last few tens of milliseconds, the writer
/// first waits for an RCU grace period (milliseconds on a busy VM). Sessions arrive one by
/// one, so the server pays it on every cold start; the kept-warm row shows the start-up
/// without it (what a v2 `CLONE_INTO_CGROUP` or a `favordynmods` mount would give).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moves {
    AsTheyCome,
    KeptWarm,
}

impl Moves {
    fn label(self) -> &'static str {
        match self {
            Moves::AsTheyCome => "as they come",
            Moves::KeptWarm => "kept warm",
        }
    }
}

/// The "kept warm" mover: a `sleep` child moved between two pids cgroups (v1) every 5 ms.
struct KeepWarm {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    child: std::process::Child,
    dirs: [PathBuf; 2],
}

impl KeepWarm {
    fn start() -> Result<Self> {
        let rel = host::cgroup_of(std::process::id(), "pids")
            .context("no v1 pids cgroup: the kept-warm baseline needs cgroup v1")?;
        let parent = PathBuf::from("/sys/fs/cgroup/pids")
            .join(rel.trim_start_matches('/'))
            .join("tenantry");
        let dirs = [
            parent.join(format!("bench-keepwarm-{}-a", std::process::id())),
            parent.join(format!("bench-keepwarm-{}-b", std::process::id())),
        ];
        for d in &dirs {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let child = std::process::Command::new("sleep")
            .arg("3600")
            .stdin(std::process::Stdio::null())
            .spawn()?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (pid, flag, targets) = (child.id().to_string(), stop.clone(), dirs.clone());
        let thread = std::thread::spawn(move || {
            let mut i = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::write(targets[i % 2].join("cgroup.procs"), &pid);
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Ok(Self {
            stop,
            thread: Some(thread),
            child,
            dirs,
        })
    }
}

impl Drop for KeepWarm {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct RawVariant {
    watch: Watch,
    moves: Moves,
    /// `tenantry` (the server's helper, a hidden subcommand) or `tenantry-sandbox` (the
    /// runtime crate's small helper binary).
    helper: &'static str,
}

impl RawVariant {
    fn named(watch: Watch, moves: Moves, helper: &'static str) -> Self {
        Self {
            watch,
            moves,
            helper,
        }
    }
}

/// The same sandbox without the server: `ProcessSandbox::launch` with the same helper, agent
/// and limits, then the agent's port watched, then one `POST /invocations` through the agent
/// bridge, then `stop()`.
async fn raw_config(b: &Bench, args: &Args, agent: Agent, v: RawVariant) -> Result<RawResult> {
    use tenantry_runtime::{ProcessSandbox, ProcessSandboxConfig, SandboxSpec};
    let mut config = match (v.helper, &b.small_helper) {
        ("tenantry-sandbox", Some(small)) => ProcessSandboxConfig::new(small),
        _ => {
            let mut c = ProcessSandboxConfig::new(&b.helper);
            c.helper_args = vec![tenantry_server::config::SANDBOX_HELPER_SUBCOMMAND.into()];
            c
        }
    };
    config.run_root = b.state_dir.join("raw-run");
    let backend = ProcessSandbox::new(config)?;
    let (command, workdir) = match agent {
        Agent::Rust => (
            vec![b.rust_dir.join("example-agent").display().to_string()],
            b.rust_dir.clone(),
        ),
        Agent::Python => (
            vec!["python3".to_string(), "agent.py".to_string()],
            b.py_dir.clone().context("no Python agent")?,
        ),
    };
    let mut r = RawResult {
        agent: agent.name(),
        variant: Some(v),
        ..RawResult::default()
    };
    let _keep_warm = match v.moves {
        Moves::KeptWarm => Some(KeepWarm::start()?),
        Moves::AsTheyCome => None,
    };
    for i in 0..args.warmup_sessions + args.sessions {
        // Sessions arrive one by one, not in a tight loop.
        tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
        let storage = b
            .state_dir
            .join(format!("raw-storage/{}-{i}", agent.name()));
        std::fs::create_dir_all(&storage)?;
        let mut spec = SandboxSpec::new(
            format!("raw-{i}"),
            tenantry_core::TenantId::new(TENANT)?,
            command.clone(),
            &workdir,
            &storage,
        );
        spec.resources = b.resources.clone();
        let t0 = Instant::now();
        let handle = backend.launch(spec).await?;
        let launched = t0.elapsed();
        match v.watch {
            Watch::Poll => {
                let pid = handle.init_pid();
                while !tenantry_runtime::port_listening_in(pid, AGENT_PORT) {
                    ensure!(
                        t0.elapsed() < Duration::from_secs(10),
                        "the agent did not listen within 10 s"
                    );
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Watch::WaitForAgent => handle.wait_for_agent(Duration::from_secs(10)).await?,
        }
        let listening = t0.elapsed();
        let stream = handle.connect_agent().await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = http::Request::post("/invocations")
            .header("host", "agent")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from_static(
                br#"{"prompt":"cold start"}"#,
            )))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        http_body_util::BodyExt::collect(resp.into_body()).await?;
        let first = t0.elapsed();
        ensure!(status == 200, "the agent answered {status}");
        let t1 = Instant::now();
        handle.stop().await?;
        let stop = t1.elapsed();
        let _ = std::fs::remove_dir_all(&storage);
        if i >= args.warmup_sessions {
            r.launch_us.push(launched.as_micros() as u64);
            r.listening_us.push(listening.as_micros() as u64);
            r.first_us.push(first.as_micros() as u64);
            r.stop_us.push(stop.as_micros() as u64);
        }
    }
    Ok(r)
}

// ---- 2. added latency --------------------------------------------------------------------

#[derive(Debug)]
struct AddedResult {
    direct: Report,
    through: Report,
    rate: u32,
    /// Forks and thread starts the sandbox's process limit refused during the run.
    pids_refused: Option<u64>,
    cpu: CpuPerCall,
}

/// CPU time per successful invocation, in microseconds.
#[derive(Debug)]
struct CpuPerCall {
    /// Server threads (ingress, session manager, proxy, SQLite), through Tenantry.
    server_us: f64,
    /// The sandbox's cgroup (agent and init), through Tenantry.
    sandbox_us: Option<f64>,
    /// The agent as a plain process, called directly.
    direct_us: f64,
    /// The agent's own process in the sandbox (part of `sandbox_us`).
    sandboxed_agent_us: Option<f64>,
}

/// The example agent as a plain host process, killed on drop.
struct DirectAgent(std::process::Child);

impl Drop for DirectAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn added_phase(b: &Bench, args: &Args) -> Result<AddedResult> {
    println!(
        "\n== 2. added latency of a warm invocation: {} invocations/s on each path, taking turns, for {} s after 2 s of warm-up ==",
        args.rate, args.seconds
    );
    b.wait_sandboxes(0, Duration::from_secs(10)).await?;
    let runtime = "rust-hot";
    b.create_runtime(runtime, Agent::Rust, 0).await?;
    let token = b.token(TENANT, "hot")?;
    let session = session_id("hot");
    let body = json!({"prompt": "hello"});
    let first = b
        .invoke(runtime, &token, &session, &body)
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(
        first.status == 200,
        "first invocation: {} {}",
        first.status,
        first.text()
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let session_dir = b.state_dir.join("direct-session");
    std::fs::create_dir_all(&session_dir)?;
    let agent = DirectAgent(
        std::process::Command::new(b.rust_dir.join("example-agent"))
            .env_clear()
            .env("PORT", port.to_string())
            .env("SESSION_DIR", &session_dir)
            .stdin(std::process::Stdio::null())
            .spawn()
            .context("starting the example agent on the host")?,
    );
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        ensure!(
            start.elapsed() < Duration::from_secs(5),
            "the direct agent does not listen on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let http = body_client(256);
    let through = Call::post_json(
        format!("{}/v1/runtimes/{runtime}/invocations", b.base),
        &body,
    )
    .bearer(&token)
    .header("x-tenantry-session-id", &session);
    let direct = Call::post_json(format!("http://127.0.0.1:{port}/invocations"), &body);
    let calls = [direct, through];
    fixed_rate_interleaved(&http, &calls, args.rate, Duration::from_secs(2)).await;
    // CPU spent per invocation: by the server (this process's threads but the load
    // generator's), by the sandbox (agent and init), by the direct agent.
    let init = host::sandboxes(&b.helper).first().map(|(_, init)| *init);
    let sandboxed_agent = init.and_then(|init| {
        host::processes()
            .into_iter()
            .find(|p| p.ppid == init && !p.zombie)
            .map(|p| p.pid)
    });
    let cpu_before = (
        host::server_threads_cpu_ticks(),
        init.and_then(host::cgroup_cpu_us),
        host::cpu_ticks(agent.0.id()),
        sandboxed_agent.map(host::cpu_ticks),
    );
    let mut reports =
        fixed_rate_interleaved(&http, &calls, args.rate, Duration::from_secs(args.seconds)).await;
    let t = reports.pop().unwrap_or_default();
    let d = reports.pop().unwrap_or_default();
    let tick_us = |ticks: u64| ticks * 10_000; // USER_HZ = 100
    let per = |us: u64, n: usize| us as f64 / n.max(1) as f64;
    let cpu = CpuPerCall {
        server_us: per(
            tick_us(host::server_threads_cpu_ticks() - cpu_before.0),
            t.latencies_us.len(),
        ),
        sandbox_us: match (init.and_then(host::cgroup_cpu_us), cpu_before.1) {
            (Some(after), Some(before)) => Some(per(after - before, t.latencies_us.len())),
            _ => None,
        },
        direct_us: per(
            tick_us(host::cpu_ticks(agent.0.id()) - cpu_before.2),
            d.latencies_us.len(),
        ),
        sandboxed_agent_us: match (sandboxed_agent, cpu_before.3) {
            (Some(pid), Some(before)) => Some(per(
                tick_us(host::cpu_ticks(pid) - before),
                t.latencies_us.len(),
            )),
            _ => None,
        },
    };
    let sandboxes = host::sandboxes(&b.helper);
    ensure!(
        sandboxes.len() == 1,
        "{} sandboxes after the run; the session should have kept its one",
        sandboxes.len()
    );
    let pids_refused = sandboxes
        .first()
        .and_then(|(_, init)| host::pids_refused(*init));
    b.stop_session(&token, &session)
        .await
        .map_err(anyhow::Error::msg)?;
    b.delete_runtime(runtime).await?;
    Ok(AddedResult {
        direct: d,
        through: t,
        rate: args.rate,
        pids_refused,
        cpu,
    })
}

// ---- 3. concurrent idle sessions ---------------------------------------------------------

#[derive(Debug, Default)]
struct ConcurrentResult {
    wanted: usize,
    started: usize,
    failed: usize,
    first_error: Option<String>,
    start_seconds: f64,
    start_us: Vec<u64>,
    sandboxes: usize,
    mem_before: MemInfo,
    mem_during: MemInfo,
    mem_after: MemInfo,
    cgroup_usage_kib: Option<u64>,
    cgroup_rss_kib: Option<u64>,
    helper_pss_kib: u64,
    sandbox_pss_kib: u64,
    server_rss_delta_kib: i64,
    idle_cpu_percent: f64,
    reinvoked_ok: usize,
    stop_seconds: f64,
    stop_failed: usize,
    left_after_stop: usize,
}

/// `/proc/meminfo` fields that show where memory goes, averaged over a few reads, in KiB.
const MEMINFO_FIELDS: &[&str] = &[
    "MemAvailable",
    "AnonPages",
    "Shmem",
    "Slab",
    "SUnreclaim",
    "KernelStack",
    "PageTables",
    "Percpu",
];

type MemInfo = std::collections::BTreeMap<String, u64>;

async fn meminfo_avg() -> MemInfo {
    let mut sum = MemInfo::new();
    for _ in 0..5 {
        let m = host::meminfo();
        for f in MEMINFO_FIELDS {
            *sum.entry((*f).to_string()).or_default() += m.get(*f).copied().unwrap_or(0);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sum.values_mut().for_each(|v| *v /= 5);
    sum
}

async fn concurrent_phase(b: &Bench, args: &Args) -> Result<ConcurrentResult> {
    println!(
        "\n== 3. concurrent idle sessions: up to {} Rust-agent sessions over {} tenants, {} started at a time ==",
        args.concurrent, args.tenants, args.parallel
    );
    b.wait_sandboxes(0, Duration::from_secs(10)).await?;
    let runtime = "rust-idle";
    b.create_runtime(runtime, Agent::Rust, 0).await?;
    let tenants = args.tenants.max(1);
    let mut tokens = Vec::new();
    for t in 0..tenants {
        let id = format!("bench-c{t}");
        b.admin(
            http::Method::POST,
            "/v1/admin/tenants",
            Some(json!({"id": id, "tier": "bench"})),
        )
        .await?;
        tokens.push(b.token(&id, "idle")?);
    }
    let mut r = ConcurrentResult {
        wanted: args.concurrent,
        ..ConcurrentResult::default()
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.mem_before = meminfo_avg().await;
    let rss_before = host::self_rss_kib().unwrap_or(0);

    let body = json!({"prompt": "idle"});
    let plan: Vec<(usize, String)> = (0..args.concurrent)
        .map(|i| (i % tenants, session_id("idle")))
        .collect();
    let t0 = Instant::now();
    let results: Vec<(usize, String, Result<u64, String>)> =
        futures_util::stream::iter(plan.into_iter().map(|(t, s)| {
            let token = &tokens[t];
            let body = &body;
            async move {
                let start = Instant::now();
                let res = match b.invoke(runtime, token, &s, body).await {
                    Ok(a) if a.status == 200 => Ok(start.elapsed().as_micros() as u64),
                    Ok(a) => Err(format!("{}: {}", a.status, a.text())),
                    Err(e) => Err(e),
                };
                (t, s, res)
            }
        }))
        .buffer_unordered(args.parallel.max(1))
        .collect()
        .await;
    r.start_seconds = t0.elapsed().as_secs_f64();
    let mut live = Vec::new();
    for (t, s, res) in results {
        match res {
            Ok(us) => {
                r.start_us.push(us);
                live.push((t, s));
            }
            Err(e) => {
                r.failed += 1;
                if r.first_error.is_none() {
                    r.first_error = Some(e);
                }
            }
        }
    }
    r.started = live.len();
    println!(
        "   started {} of {} in {:.1} s ({} failed)",
        r.started, r.wanted, r.start_seconds, r.failed
    );

    // Let start-up transients (agents' first-request threads, page cache) settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sandboxes = host::sandboxes(&b.helper);
    r.sandboxes = sandboxes.len();
    r.mem_during = meminfo_avg().await;
    r.server_rss_delta_kib = host::self_rss_kib().unwrap_or(0) as i64 - rss_before as i64;
    let mut usage = 0;
    let mut rss = 0;
    let mut have_cgroup = false;
    for (helper, init) in &sandboxes {
        r.helper_pss_kib += host::pss_kib(*helper).unwrap_or(0);
        let Some((mount, v1)) = &b.memory_mount else {
            continue;
        };
        let Some(cg) = host::cgroup_of(*init, "memory") else {
            continue;
        };
        let dir = mount.join(cg.trim_start_matches('/'));
        let (usage_file, rss_key) = if *v1 {
            ("memory.usage_in_bytes", "rss ")
        } else {
            ("memory.current", "anon ")
        };
        if let Some(u) = std::fs::read_to_string(dir.join(usage_file))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            usage += u;
            have_cgroup = true;
        }
        if let Some(v) = std::fs::read_to_string(dir.join("memory.stat"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(rss_key)?.trim().parse::<u64>().ok())
            })
        {
            rss += v;
        }
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                r.sandbox_pss_kib += host::pss_kib(pid).unwrap_or(0);
            }
        }
    }
    if have_cgroup {
        r.cgroup_usage_kib = Some(usage / 1024);
        r.cgroup_rss_kib = Some(rss / 1024);
    }

    // What the platform spends on idle sessions (metering samples, lifecycle ticks).
    let ticks = host::self_cpu_ticks();
    let t_idle = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let per_sec = 100.0; // USER_HZ on Linux
    r.idle_cpu_percent =
        (host::self_cpu_ticks() - ticks) as f64 / per_sec / t_idle.elapsed().as_secs_f64() * 100.0;

    // Every session must still answer, from the same sandbox (its counter is at 2).
    let again: Vec<bool> = futures_util::stream::iter(live.iter().map(|(t, s)| {
        let token = &tokens[*t];
        let body = &body;
        async move {
            matches!(b.invoke(runtime, token, s, body).await,
                Ok(a) if a.status == 200 && a.json()["invocations_in_session"] == json!(2))
        }
    }))
    .buffer_unordered(args.parallel.max(1))
    .collect()
    .await;
    r.reinvoked_ok = again.iter().filter(|ok| **ok).count();

    let t1 = Instant::now();
    let stops: Vec<bool> = futures_util::stream::iter(live.iter().map(|(t, s)| {
        let token = &tokens[*t];
        async move { b.stop_session(token, s).await.is_ok() }
    }))
    .buffer_unordered(args.parallel.max(1))
    .collect()
    .await;
    r.stop_seconds = t1.elapsed().as_secs_f64();
    r.stop_failed = stops.iter().filter(|ok| !**ok).count();
    let wait = Instant::now();
    while !host::sandboxes(&b.helper).is_empty() && wait.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.left_after_stop = host::sandboxes(&b.helper).len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    r.mem_after = meminfo_avg().await;
    b.delete_runtime(runtime).await?;
    Ok(r)
}

// ---- report ------------------------------------------------------------------------------

fn pct(values: &[u64], p: f64) -> u64 {
    tenantry_bench::percentile(values, p)
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

#[derive(Debug, Default)]
struct Summary {
    cold: Vec<ColdResult>,
    raw: Vec<RawResult>,
    added: Option<AddedResult>,
    concurrent: Option<ConcurrentResult>,
}

impl Summary {
    fn cold_p50(&self, agent: &str, pooled: bool) -> Option<(u64, &ColdResult)> {
        self.cold
            .iter()
            .find(|c| c.agent == agent && (c.pool > 0) == pooled && !c.total_us.is_empty())
            .map(|c| (pct(&c.total_us, 50.0), c))
    }

    fn print(&self, args: &Args) {
        println!("\n================ results ================");
        if !self.cold.is_empty() {
            println!(
                "\n1. Session cold start, request sent to complete first response ({} sessions each)",
                args.sessions
            );
            println!(
                "{:<8} {:<10} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10} {:>12} {:>7}",
                "agent",
                "warm pool",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "bound p50",
                "bound p90",
                "stop p50",
                "sandbox",
                "errors"
            );
            for c in &self.cold {
                let sandbox = if c.pool > 0 {
                    format!("warm {}/{}", c.warm, c.total_us.len())
                } else {
                    format!("new {}/{}", c.fresh, c.total_us.len())
                };
                println!(
                    "{:<8} {:<10} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10} {:>12} {:>7}",
                    c.agent,
                    if c.pool > 0 {
                        c.pool.to_string()
                    } else {
                        "none".into()
                    },
                    ms(pct(&c.total_us, 50.0)),
                    ms(pct(&c.total_us, 90.0)),
                    ms(pct(&c.total_us, 99.0)),
                    ms(c.total_us.iter().copied().max().unwrap_or(0)),
                    ms(pct(&c.bound_us, 50.0)),
                    ms(pct(&c.bound_us, 90.0)),
                    ms(pct(&c.stop_us, 50.0)),
                    sandbox,
                    c.errors
                );
                if let Some(e) = &c.first_error {
                    println!("         first error: {e}");
                }
            }
            println!(
                "  bound = request sent to the server's `session started` (sandbox launched, agent seen listening, session bound)"
            );
            println!(
                "  the server's own steps, p50 / p90 ms: prepare (session row, storage), launch (helper to agent executed), listen (until seen listening), total"
            );
            for c in &self.cold {
                let step = |f: fn(&ServerSteps) -> u64| {
                    let v: Vec<u64> = c.server_steps.iter().map(f).collect();
                    format!("{} / {}", ms(pct(&v, 50.0)), ms(pct(&v, 90.0)))
                };
                println!(
                    "  {:<8} {:<6} prepare {:>15}  launch {:>15}  listen {:>15}  total {:>15}",
                    c.agent,
                    if c.pool > 0 { "pool" } else { "cold" },
                    step(|s| s.prepare_us),
                    step(|s| s.launch_us),
                    step(|s| s.listen_us),
                    step(|s| s.total_us)
                );
            }
        }
        if !self.raw.is_empty() {
            println!(
                "\n   Baseline: the same sandbox started directly (no server), ms from launch, p50 / p99"
            );
            println!(
                "{:<8} {:<24} {:<14} {:<17} {:>15} {:>15} {:>15} {:>13}",
                "agent",
                "agent port watched",
                "cgroup moves",
                "helper",
                "helper ready",
                "listening seen",
                "first 200",
                "stop"
            );
            for r in &self.raw {
                let pp = |v: &[u64]| format!("{} / {}", ms(pct(v, 50.0)), ms(pct(v, 99.0)));
                let Some(v) = r.variant else { continue };
                println!(
                    "{:<8} {:<24} {:<14} {:<17} {:>15} {:>15} {:>15} {:>13}",
                    r.agent,
                    v.watch.label(),
                    v.moves.label(),
                    v.helper,
                    pp(&r.launch_us),
                    pp(&r.listening_us),
                    pp(&r.first_us),
                    pp(&r.stop_us)
                );
            }
        }
        if let Some(a) = &self.added {
            println!(
                "\n2. Warm invocation, POST /invocations with a JSON body, {} req/s",
                a.rate
            );
            println!(
                "{:<34} {:>7} {:>8} {:>8} {:>8} {:>9} {:>8} {:>7} {:>9}",
                "path",
                "sent",
                "req/s",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
                "errors",
                "lag p99"
            );
            for (name, r) in [
                ("agent directly (loopback TCP)", &a.direct),
                ("through Tenantry (sandbox bridge)", &a.through),
            ] {
                println!(
                    "{:<34} {:>7} {:>8.0} {:>8} {:>8} {:>9} {:>8} {:>7} {:>9}",
                    name,
                    r.sent,
                    r.achieved_rate(),
                    ms(r.percentile(50.0)),
                    ms(r.percentile(99.0)),
                    ms(r.percentile(99.9)),
                    ms(r.latencies_us.iter().copied().max().unwrap_or(0)),
                    r.errors,
                    ms(r.lag_percentile(99.0))
                );
                if let Some(e) = &r.first_error {
                    println!("         first error: {e}");
                }
            }
            let diff =
                |p: f64| (a.through.percentile(p) as f64 - a.direct.percentile(p) as f64) / 1000.0;
            println!(
                "added by Tenantry: p50 {:+.3} ms, p99 {:+.3} ms, p99.9 {:+.3} ms",
                diff(50.0),
                diff(99.0),
                diff(99.9)
            );
            let us = |v: Option<f64>| v.map_or("unknown".to_string(), |v| format!("{v:.0} us"));
            println!(
                "CPU per invocation: through Tenantry, server {:.0} us + sandbox cgroup {} (of which the agent process {}); directly, the agent process {:.0} us",
                a.cpu.server_us,
                us(a.cpu.sandbox_us),
                us(a.cpu.sandboxed_agent_us),
                a.cpu.direct_us
            );
            if let Some(n) = a.pids_refused {
                println!(
                    "forks and threads refused by the sandbox's process limit during the run: {n}"
                );
            }
            if !(a.direct.kept_schedule() && a.through.kept_schedule()) {
                println!(
                    "warning: the load generator fell behind its schedule (lag p99 > 2 ms); the machine is too busy for this rate"
                );
            }
        }
        if let Some(c) = &self.concurrent {
            let n = c.started.max(1) as u64;
            let field = |m: &MemInfo, f: &str| m.get(f).copied().unwrap_or(0) as i64;
            let used = field(&c.mem_before, "MemAvailable") - field(&c.mem_during, "MemAvailable");
            println!("\n3. Concurrent idle sessions (Rust agent)");
            println!(
                "started {} of {} ({} failed) in {:.1} s: {:.0} sessions/s, start p50 {} ms, p99 {} ms ({} at a time)",
                c.started,
                c.wanted,
                c.failed,
                c.start_seconds,
                c.started as f64 / c.start_seconds.max(1e-9),
                ms(pct(&c.start_us, 50.0)),
                ms(pct(&c.start_us, 99.0)),
                args.parallel
            );
            if let Some(e) = &c.first_error {
                println!("   first error: {e}");
            }
            println!(
                "sandboxes on the host: {}; answering a second invocation from the same sandbox: {}",
                c.sandboxes, c.reinvoked_ok
            );
            println!(
                "host memory used (MemAvailable before - with sessions): {:+.1} MiB, {:+.2} MiB per session",
                used as f64 / 1024.0,
                used as f64 / 1024.0 / n as f64
            );
            println!(
                "  /proc/meminfo, KiB per session (with sessions - before) and MiB left after stopping (after stop - before):"
            );
            for f in MEMINFO_FIELDS.iter().skip(1) {
                let during = field(&c.mem_during, f) - field(&c.mem_before, f);
                let after = field(&c.mem_after, f) - field(&c.mem_before, f);
                println!(
                    "  {f:<12} {:>+9.0} KiB/session   {:>+8.1} MiB left",
                    during as f64 / n as f64,
                    after as f64 / 1024.0
                );
            }
            if let (Some(u), Some(rss)) = (c.cgroup_usage_kib, c.cgroup_rss_kib) {
                println!(
                    "sandbox cgroups (init, agent): usage {} MiB ({} MiB per session), of which rss {} MiB ({} MiB per session)",
                    mib(u),
                    mib(u / n),
                    mib(rss),
                    mib(rss / n)
                );
            }
            println!(
                "PSS per session: helper (host side, outside the cgroup) {} MiB, sandbox processes {} MiB; server RSS growth {:+.2} MiB per session",
                mib(c.helper_pss_kib / n),
                mib(c.sandbox_pss_kib / n),
                c.server_rss_delta_kib as f64 / 1024.0 / n as f64
            );
            println!(
                "platform CPU while the sessions idle: {:.1}% of one core",
                c.idle_cpu_percent
            );
            println!(
                "stopped all in {:.1} s ({} failed); sandboxes left: {}; MemAvailable after stop vs before start: {:+.1} MiB",
                c.stop_seconds,
                c.stop_failed,
                c.left_after_stop,
                (field(&c.mem_after, "MemAvailable") - field(&c.mem_before, "MemAvailable")) as f64
                    / 1024.0
            );
        }

        println!("\nTargets (Rust example agent)");
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        if let Some((p50, c)) = self.cold_p50("rust", false) {
            println!(
                "  cold start p50 without warm pool < 25 ms: {} ms -> {}",
                ms(p50),
                verdict(p50 < 25_000 && c.errors == 0)
            );
        }
        if let Some((p50, c)) = self.cold_p50("rust", true) {
            println!(
                "  cold start p50 with warm pool < 5 ms: {} ms ({}/{} sessions verified warm) -> {}",
                ms(p50),
                c.warm,
                c.total_us.len(),
                verdict(p50 < 5_000 && c.errors == 0 && c.warm == c.total_us.len())
            );
        }
        for pooled in [false, true] {
            if let Some((p50, _)) = self.cold_p50("python", pooled) {
                println!(
                    "  (Python agent, {}: cold start p50 {} ms; no target)",
                    if pooled { "warm pool" } else { "no warm pool" },
                    ms(p50)
                );
            }
        }
        if let Some(a) = &self.added {
            let added = a.through.percentile(99.0) as i64 - a.direct.percentile(99.0) as i64;
            println!(
                "  added p99 of a warm invocation < 2 ms: {:+.3} ms -> {}",
                added as f64 / 1000.0,
                verdict(added < 2000 && a.through.errors == 0 && a.direct.errors == 0)
            );
        }
        if let Some(c) = &self.concurrent {
            println!(
                "  at least 500 concurrent sessions: {} held (of {} tried) -> {}",
                c.started,
                c.wanted,
                verdict(c.started >= 500 && c.reinvoked_ok >= 500)
            );
        }
    }
}
