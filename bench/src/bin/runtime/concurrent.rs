//! Phase 3, concurrent idle sessions: how many sessions the host holds at once, what each
//! costs in memory and idle CPU, that each answers again from the same sandbox, and that
//! memory comes back once all are stopped.

use super::*;

#[derive(Debug, Default)]
pub(crate) struct ConcurrentResult {
    pub(crate) wanted: usize,
    pub(crate) started: usize,
    pub(crate) failed: usize,
    pub(crate) first_error: Option<String>,
    pub(crate) start_seconds: f64,
    pub(crate) start_us: Vec<u64>,
    pub(crate) sandboxes: usize,
    pub(crate) mem_before: MemInfo,
    pub(crate) mem_during: MemInfo,
    pub(crate) mem_after: MemInfo,
    pub(crate) cgroup_usage_kib: Option<u64>,
    pub(crate) cgroup_rss_kib: Option<u64>,
    pub(crate) helper_pss_kib: u64,
    pub(crate) sandbox_pss_kib: u64,
    pub(crate) server_rss_delta_kib: i64,
    pub(crate) idle_cpu_percent: f64,
    pub(crate) reinvoked_ok: usize,
    pub(crate) stop_seconds: f64,
    pub(crate) stop_failed: usize,
    pub(crate) left_after_stop: usize,
}

/// `/proc/meminfo` fields that show where memory goes, averaged over a few reads, in KiB.
pub(crate) const MEMINFO_FIELDS: &[&str] = &[
    "MemAvailable",
    "AnonPages",
    "Shmem",
    "Slab",
    "SUnreclaim",
    "KernelStack",
    "PageTables",
    "Percpu",
];

pub(crate) type MemInfo = std::collections::BTreeMap<String, u64>;

pub(crate) async fn meminfo_avg() -> MemInfo {
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

pub(crate) async fn concurrent_phase(b: &Bench, args: &Args) -> Result<ConcurrentResult> {
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
