//! What `/proc` says about this process's sandboxes: each is a helper process (a child of this
//! process running the helper binary) and its child, the sandbox's init (PID 1 inside). Only
//! reads `/proc`; it never signals or changes a process.

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
        let dir = std::path::Path::new("/sys/fs/cgroup/cpuacct").join(rel.trim_start_matches('/'));
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
