//! The report: percentiles and units, and the tables and target verdicts printed at the end
//! of a run from what each phase measured. Printing only; nothing here measures.

use super::*;

pub(crate) fn pct(values: &[u64], p: f64) -> u64 {
    tenantry_bench::percentile(values, p)
}

pub(crate) fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) cold: Vec<ColdResult>,
    pub(crate) raw: Vec<RawResult>,
    pub(crate) added: Option<AddedResult>,
    pub(crate) concurrent: Option<ConcurrentResult>,
}

impl Summary {
    pub(crate) fn cold_p50(&self, agent: &str, pooled: bool) -> Option<(u64, &ColdResult)> {
        self.cold
            .iter()
            .find(|c| c.agent == agent && (c.pool > 0) == pooled && !c.total_us.is_empty())
            .map(|c| (pct(&c.total_us, 50.0), c))
    }

    pub(crate) fn print(&self, args: &Args) {
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
