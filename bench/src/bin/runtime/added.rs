//! Phase 2, added latency: the same invocation to the agent through Tenantry and to the same
//! agent binary as a plain host process, taking turns request by request at a fixed rate, and
//! the CPU time each path costs per invocation.

use super::*;

#[derive(Debug)]
pub(crate) struct AddedResult {
    pub(crate) direct: Report,
    pub(crate) through: Report,
    pub(crate) rate: u32,
    /// Forks and thread starts the sandbox's process limit refused during the run.
    pub(crate) pids_refused: Option<u64>,
    pub(crate) cpu: CpuPerCall,
}

/// CPU time per successful invocation, in microseconds.
#[derive(Debug)]
pub(crate) struct CpuPerCall {
    /// Server threads (ingress, session manager, proxy, SQLite), through Tenantry.
    pub(crate) server_us: f64,
    /// The sandbox's cgroup (agent and init), through Tenantry.
    pub(crate) sandbox_us: Option<f64>,
    /// The agent as a plain process, called directly.
    pub(crate) direct_us: f64,
    /// The agent's own process in the sandbox (part of `sandbox_us`).
    pub(crate) sandboxed_agent_us: Option<f64>,
}

/// The example agent as a plain host process, killed on drop.
pub(crate) struct DirectAgent(std::process::Child);

impl Drop for DirectAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) async fn added_phase(b: &Bench, args: &Args) -> Result<AddedResult> {
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
