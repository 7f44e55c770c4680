//! Phase 1, cold start: new sessions from the first request to the complete response, with
//! and without a warm pool, checked on the host for which sandbox served them; and the
//! baseline of the same sandbox started directly through `tenantry_runtime`, without the
//! server. It must stop every sandbox it started before the next row.

use super::*;

#[derive(Debug, Default, Clone)]
pub(crate) struct ColdResult {
    pub(crate) agent: &'static str,
    pub(crate) pool: u32,
    pub(crate) total_us: Vec<u64>,
    /// Request sent to the server's `session started` (sandbox launched, agent listening).
    pub(crate) bound_us: Vec<u64>,
    /// The server's own account of each start (see `ServerSteps`).
    pub(crate) server_steps: Vec<ServerSteps>,
    pub(crate) stop_us: Vec<u64>,
    /// Sessions whose sandbox existed (in the pool) before their request.
    pub(crate) warm: usize,
    /// Sessions whose sandbox was started for them.
    pub(crate) fresh: usize,
    pub(crate) errors: usize,
    pub(crate) first_error: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct RawResult {
    pub(crate) agent: &'static str,
    pub(crate) variant: Option<RawVariant>,
    pub(crate) launch_us: Vec<u64>,
    pub(crate) listening_us: Vec<u64>,
    pub(crate) first_us: Vec<u64>,
    pub(crate) stop_us: Vec<u64>,
}

pub(crate) async fn cold_phase(
    b: &Bench,
    args: &Args,
    agents: &[Agent],
    summary: &mut Summary,
) -> Result<()> {
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

pub(crate) async fn cold_config(
    b: &Bench,
    args: &Args,
    agent: Agent,
    pool: u32,
) -> Result<ColdResult> {
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
pub(crate) enum Watch {
    /// Looks at the sandbox's `/proc/<init>/net/tcp` every millisecond.
    Poll,
    /// `SandboxHandle::wait_for_agent`, as the session manager does.
    WaitForAgent,
}

impl Watch {
    pub(crate) fn label(self) -> &'static str {
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
pub(crate) enum Moves {
    AsTheyCome,
    KeptWarm,
}

impl Moves {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Moves::AsTheyCome => "as they come",
            Moves::KeptWarm => "kept warm",
        }
    }
}

/// The "kept warm" mover: a `sleep` child moved between two pids cgroups (v1) every 5 ms.
pub(crate) struct KeepWarm {
    pub(crate) stop: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
    pub(crate) child: std::process::Child,
    pub(crate) dirs: [PathBuf; 2],
}

impl KeepWarm {
    pub(crate) fn start() -> Result<Self> {
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
pub(crate) struct RawVariant {
    pub(crate) watch: Watch,
    pub(crate) moves: Moves,
    /// `tenantry` (the server's helper, a hidden subcommand) or `tenantry-sandbox` (the
    /// runtime crate's small helper binary).
    pub(crate) helper: &'static str,
}

impl RawVariant {
    pub(crate) fn named(watch: Watch, moves: Moves, helper: &'static str) -> Self {
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
pub(crate) async fn raw_config(
    b: &Bench,
    args: &Args,
    agent: Agent,
    v: RawVariant,
) -> Result<RawResult> {
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
