//! Sandbox start-up benchmark: starts N process sandboxes one after the other, each running a
//! trivial HTTP agent, and measures how long until the helper reports the sandbox ready and
//! until the agent answers its first request through the agent bridge; then how long `stop()`
//! takes. Prints p50/p90/p99/min/max.
//!
//! Build both binaries first, then run:
//! ```text
//! cargo build --release -p tenantry-runtime --bins
//! target/release/sandbox-bench [--runs 200] [--agent native|python]
//! ```
//! The `native` agent is this binary itself (`--serve-agent`), a std-only HTTP responder, so the
//! number is the sandbox's cost plus an exec; `python` runs a standard-library Python agent.
//! Must run where process sandboxes work (see `tenantry_runtime::probe`); it says so otherwise.

use std::error::Error;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tenantry_core::{SandboxResources, TenantId};
use tenantry_runtime::{ProcessInstance, ProcessSandbox, ProcessSandboxConfig, SandboxSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PYTHON_AGENT: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "20")
        self.end_headers()
        self.wfile.write(b'{"status":"Healthy"}')
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

type Res<T> = Result<T, Box<dyn Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve-agent") {
        return serve_agent();
    }
    let mut runs = 100usize;
    let mut agent = "native".to_string();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().ok_or("--runs needs a number")?.parse()?,
            "--agent" => agent = it.next().ok_or("--agent needs native|python")?.clone(),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let report = tenantry_runtime::probe();
    if !report.sandbox_supported() {
        return Err(format!(
            "process sandboxes are unavailable here: {}",
            report.missing().join("; ")
        )
        .into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(bench(runs, &agent))
}

/// The trivial agent: answers every request on `$PORT` with a fixed health response.
fn serve_agent() -> Res<()> {
    let port: u16 = std::env::var("PORT")?.parse()?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let _ = conn
            .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 20\r\n\r\n{\"status\":\"Healthy\"}");
    }
    Ok(())
}

async fn bench(runs: usize, agent: &str) -> Res<()> {
    let exe = std::env::current_exe()?;
    let bin_dir = exe.parent().ok_or("no binary directory")?.to_path_buf();
    let helper = bin_dir.join("tenantry-sandbox");
    if !helper.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p tenantry-runtime --bins`",
            helper.display()
        )
        .into());
    }
    let backend = ProcessSandbox::new(ProcessSandboxConfig::new(&helper))?;
    let scratch = Scratch::new()?;
    let (workdir, command) = match agent {
        "native" => (
            bin_dir.clone(),
            vec![exe.display().to_string(), "--serve-agent".into()],
        ),
        "python" => {
            let dir = scratch.path().join("agent");
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("agent.py"), PYTHON_AGENT)?;
            (dir, vec!["/usr/bin/python3".into(), "agent.py".into()])
        }
        other => return Err(format!("unknown agent {other:?}").into()),
    };

    println!(
        "sandbox-bench: {runs} sequential sandboxes, {agent} agent, cgroup {}, {} CPUs",
        backend.cgroup_layout().version(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut ready = Vec::with_capacity(runs);
    let mut reachable = Vec::with_capacity(runs);
    let mut stopped = Vec::with_capacity(runs);
    for i in 0..runs.max(1) + 3 {
        let storage = scratch.path().join(format!("s{i}"));
        std::fs::create_dir_all(&storage)?;
        let mut spec = SandboxSpec::new(
            format!("bench-{i}"),
            TenantId::new("bench")?,
            command.clone(),
            &workdir,
            &storage,
        );
        spec.resources = SandboxResources {
            memory_mb: 256,
            cpu_millis: 1000,
            max_processes: 32,
            storage_mb: 64,
            log_kb: 1024,
        };
        let t0 = Instant::now();
        let handle = backend.launch(spec).await?;
        let t_ready = t0.elapsed();
        first_response(&handle, Duration::from_secs(10)).await?;
        let t_reach = t0.elapsed();
        let t1 = Instant::now();
        handle.stop().await?;
        let t_stop = t1.elapsed();
        let _ = std::fs::remove_dir_all(&storage);
        // The first runs warm the page cache; they are not counted.
        if i >= 3 {
            ready.push(t_ready);
            reachable.push(t_reach);
            stopped.push(t_stop);
        }
    }
    print_row("helper ready (launch returned)", &mut ready);
    print_row("agent reachable (first 200 via bridge)", &mut reachable);
    print_row("stop (killed, cgroup removed)", &mut stopped);
    Ok(())
}

/// A scratch directory removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Res<Self> {
        let dir = std::env::temp_dir().join(format!("sandbox-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Retries a GET /ping through the bridge until the agent answers 200.
async fn first_response(handle: &ProcessInstance, timeout: Duration) -> Res<()> {
    let start = Instant::now();
    loop {
        if let Ok(mut s) = handle.connect_agent().await {
            // Before the agent listens, the bridge closes the connection: retry.
            let mut out = Vec::new();
            if s.write_all(b"GET /ping HTTP/1.0\r\n\r\n").await.is_ok()
                && s.read_to_end(&mut out).await.is_ok()
                && (out.starts_with(b"HTTP/1.0 200") || out.starts_with(b"HTTP/1.1 200"))
            {
                return Ok(());
            }
        }
        if start.elapsed() > timeout {
            return Err(format!("agent not reachable: {:?}", handle.recent_output()).into());
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    let idx = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn print_row(name: &str, samples: &mut [Duration]) {
    samples.sort();
    if samples.is_empty() {
        return;
    }
    println!(
        "{name:<42} p50 {:>9}  p90 {:>9}  p99 {:>9}  min {:>9}  max {:>9}",
        ms(pct(samples, 0.50)),
        ms(pct(samples, 0.90)),
        ms(pct(samples, 0.99)),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
    );
}
