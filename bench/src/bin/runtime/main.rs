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
//!
//! Layout: this file parses the arguments, finds the binaries, starts the server and runs the
//! phases; `harness` is the benchmark's calls to the server, `host` what `/proc` shows of the
//! sandboxes, `started_log` the server's own start-up timings; `cold`, `added` and
//! `concurrent` are the three phases, and `report` prints the tables.

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

mod added;
mod cold;
mod concurrent;
mod harness;
mod host;
mod report;
mod started_log;

use added::*;
use cold::*;
use concurrent::*;
use harness::*;
use report::*;
use started_log::*;

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
            include_str!("../../../../examples/agents/python/agent.py"),
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
            log_kb: 1024,
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

/// Where the memory controller is mounted: the v1 `memory` hierarchy, or the v2 mount.
fn memory_mount() -> Option<(PathBuf, bool)> {
    match tenantry_runtime::CgroupLayout::detect().ok()? {
        tenantry_runtime::CgroupLayout::V1 { memory, .. } => Some((memory.mount, true)),
        tenantry_runtime::CgroupLayout::V2 { mount, .. } => Some((mount, false)),
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
