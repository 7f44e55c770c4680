//! One sandbox's cgroup (v2) or cgroups (one per v1 hierarchy): creation below the platform's
//! own cgroup with the tier's limits, the accounting the meter reads, killing every process in
//! it, and removal. It only touches the directories it created, and must never place the
//! platform itself in them.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tenantry_core::SandboxResources;

use super::layout::{CgroupLayout, V1Hierarchy};
use crate::SandboxError;

/// Processes and threads the sandbox's own init and forwarders may use on top of the agent's
/// `max_processes` (init, two acceptor threads, and a few connection threads).
pub const INIT_PIDS_OVERHEAD: u32 = 8;
/// CFS period used for the CPU limit.
const CPU_PERIOD_US: u64 = 100_000;

/// The cgroup (v2) or cgroups (one per v1 hierarchy) of one sandbox.
#[derive(Debug)]
pub struct SandboxCgroup {
    kind: CgroupKind,
}

#[derive(Debug)]
enum CgroupKind {
    V2 {
        dir: PathBuf,
    },
    V1 {
        memory: PathBuf,
        cpu: PathBuf,
        cpuacct: Option<PathBuf>,
        pids: PathBuf,
    },
}

/// Raw accounting read from the cgroup files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupCounters {
    pub cpu_usec: u64,
    pub memory_current: u64,
    /// `None` when the kernel keeps no high-water mark for this cgroup.
    pub memory_peak: Option<u64>,
    pub oom_kills: u64,
}

fn cg_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SandboxError + use<> {
    let path = path.to_path_buf();
    move |source| SandboxError::Cgroup {
        action,
        path,
        source,
    }
}

fn write_file(path: &Path, value: &str) -> Result<(), SandboxError> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(cg_err("write", path))
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads `key value` lines (cpu.stat, memory.events, memory.oom_control).
fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next()?.parse().ok())?
    })
}

fn make_dir(path: &Path) -> Result<(), SandboxError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) => Err(cg_err("create", path)(e)),
    }
}

fn make_parent(path: &Path) -> Result<(), SandboxError> {
    fs::create_dir_all(path).map_err(cg_err("create parent", path))
}

impl SandboxCgroup {
    /// Creates the sandbox's cgroup(s) named `name` and writes the limits from `resources`.
    /// `parent` is relative to each hierarchy's root; `None` means `tenantry` below the
    /// platform's own cgroup.
    pub fn create(
        layout: &CgroupLayout,
        parent: Option<&Path>,
        name: &str,
        resources: &SandboxResources,
    ) -> Result<Self, SandboxError> {
        let memory_bytes = u64::from(resources.memory_mb) * 1024 * 1024;
        let quota_us = (u64::from(resources.cpu_millis) * CPU_PERIOD_US / 1000).max(1000);
        let pids_max = resources.max_processes.saturating_add(INIT_PIDS_OVERHEAD);
        let cg = match layout {
            CgroupLayout::V2 { mount, own: _ } => {
                let parent_rel = parent
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| layout.default_parent());
                let parent_dir = mount.join(&parent_rel);
                enable_v2_controllers(mount, &parent_dir)?;
                let dir = parent_dir.join(name);
                make_dir(&dir)?;
                let cg = SandboxCgroup {
                    kind: CgroupKind::V2 { dir: dir.clone() },
                };
                let setup = (|| {
                    write_file(&dir.join("memory.max"), &memory_bytes.to_string())?;
                    if dir.join("memory.swap.max").exists() {
                        write_file(&dir.join("memory.swap.max"), "0")?;
                    }
                    write_file(&dir.join("cpu.max"), &format!("{quota_us} {CPU_PERIOD_US}"))?;
                    write_file(&dir.join("pids.max"), &pids_max.to_string())
                })();
                if let Err(e) = setup {
                    let _ = cg.remove(Duration::ZERO);
                    return Err(e);
                }
                cg
            }
            CgroupLayout::V1 {
                memory,
                cpu,
                cpuacct,
                pids,
            } => {
                let dir_in = |h: &V1Hierarchy| -> PathBuf {
                    let parent_rel = parent
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| h.own.join("tenantry"));
                    h.dir(&parent_rel).join(name)
                };
                let memory_dir = dir_in(memory);
                let cpu_dir = dir_in(cpu);
                let cpuacct_dir = cpuacct.as_ref().map(dir_in);
                let pids_dir = dir_in(pids);
                let cg = SandboxCgroup {
                    kind: CgroupKind::V1 {
                        memory: memory_dir.clone(),
                        cpu: cpu_dir.clone(),
                        cpuacct: cpuacct_dir.clone(),
                        pids: pids_dir.clone(),
                    },
                };
                let setup = (|| {
                    for dir in cg.dirs() {
                        if let Some(p) = dir.parent() {
                            make_parent(p)?;
                        }
                        make_dir(&dir)?;
                    }
                    write_file(
                        &memory_dir.join("memory.limit_in_bytes"),
                        &memory_bytes.to_string(),
                    )?;
                    // Swap would let a sandbox exceed its memory limit; cap memory+swap at the
                    // same value where the kernel accounts swap.
                    let memsw = memory_dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write_file(&memsw, &memory_bytes.to_string())?;
                    }
                    // Best effort: refused under some parents, and memsw already caps swap.
                    let swappiness = memory_dir.join("memory.swappiness");
                    if swappiness.exists() {
                        let _ = write_file(&swappiness, "0");
                    }
                    write_file(
                        &cpu_dir.join("cpu.cfs_period_us"),
                        &CPU_PERIOD_US.to_string(),
                    )?;
                    write_file(&cpu_dir.join("cpu.cfs_quota_us"), &quota_us.to_string())?;
                    write_file(&pids_dir.join("pids.max"), &pids_max.to_string())
                })();
                if let Err(e) = setup {
                    let _ = cg.remove(Duration::ZERO);
                    return Err(e);
                }
                cg
            }
        };
        Ok(cg)
    }

    /// `"v1"` or `"v2"`.
    pub fn version(&self) -> &'static str {
        match self.kind {
            CgroupKind::V2 { .. } => "v2",
            CgroupKind::V1 { .. } => "v1",
        }
    }

    /// Every directory of this sandbox's cgroup(s), deduplicated (co-mounted v1 controllers
    /// share one).
    pub fn dirs(&self) -> Vec<PathBuf> {
        match &self.kind {
            CgroupKind::V2 { dir } => vec![dir.clone()],
            CgroupKind::V1 {
                memory,
                cpu,
                cpuacct,
                pids,
            } => {
                let mut out: Vec<PathBuf> = Vec::new();
                for d in [Some(memory), Some(cpu), cpuacct.as_ref(), Some(pids)]
                    .into_iter()
                    .flatten()
                {
                    if !out.contains(d) {
                        out.push(d.clone());
                    }
                }
                out
            }
        }
    }

    /// The `cgroup.procs` files a process must be written to, to be placed in the sandbox.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    fn memory_dir(&self) -> &Path {
        match &self.kind {
            CgroupKind::V2 { dir } => dir,
            CgroupKind::V1 { memory, .. } => memory,
        }
    }

    /// Host pids of every process in the sandbox.
    pub fn pids(&self) -> Vec<u32> {
        let mut set = BTreeSet::new();
        for f in self.procs_files() {
            if let Ok(text) = fs::read_to_string(&f) {
                set.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
        set.into_iter().collect()
    }

    /// Reads the accounting counters. Missing files read as zero (a cgroup being removed).
    pub fn counters(&self) -> CgroupCounters {
        match &self.kind {
            CgroupKind::V2 { dir } => CgroupCounters {
                cpu_usec: read_keyed(&dir.join("cpu.stat"), "usage_usec").unwrap_or(0),
                memory_current: self.memory_current(),
                memory_peak: read_u64(&dir.join("memory.peak")),
                oom_kills: read_keyed(&dir.join("memory.events"), "oom_kill").unwrap_or(0),
            },
            CgroupKind::V1 {
                memory, cpuacct, ..
            } => CgroupCounters {
                cpu_usec: cpuacct
                    .as_ref()
                    .and_then(|d| read_u64(&d.join("cpuacct.usage")))
                    .map_or(0, |ns| ns / 1000),
                memory_current: self.memory_current(),
                memory_peak: read_u64(&memory.join("memory.max_usage_in_bytes")),
                // `oom_kill` exists in memory.oom_control since Linux 4.13.
                oom_kills: read_keyed(&memory.join("memory.oom_control"), "oom_kill").unwrap_or(0),
            },
        }
    }

    /// Memory in use right now, in bytes (one file read; `counters()` reads four).
    pub fn memory_current(&self) -> u64 {
        let file = match &self.kind {
            CgroupKind::V2 { dir } => dir.join("memory.current"),
            CgroupKind::V1 { memory, .. } => memory.join("memory.usage_in_bytes"),
        };
        read_u64(&file).unwrap_or(0)
    }

    /// The number of processes (tasks) the pids controller counts right now.
    pub fn pids_current(&self) -> Option<u64> {
        let dir = match &self.kind {
            CgroupKind::V2 { dir } => dir,
            CgroupKind::V1 { pids, .. } => pids,
        };
        read_u64(&dir.join("pids.current"))
    }

    /// How many times a fork was refused because the process limit was reached.
    pub fn pids_limit_hits(&self) -> Option<u64> {
        let dir = match &self.kind {
            CgroupKind::V2 { dir } => dir,
            CgroupKind::V1 { pids, .. } => pids,
        };
        read_keyed(&dir.join("pids.events"), "max")
    }

    /// Sends SIGKILL to every process of the sandbox: `cgroup.kill` on v2 where the kernel has
    /// it, otherwise every pid listed in `cgroup.procs`, repeated until none is left (a process
    /// forked during the sweep is caught by the next pass).
    pub fn kill_all(&self, deadline: Duration) {
        if let CgroupKind::V2 { dir } = &self.kind {
            let kill = dir.join("cgroup.kill");
            if kill.exists() && write_file(&kill, "1").is_ok() {
                return;
            }
        }
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            let pids = self.pids();
            if pids.is_empty() || start.elapsed() > deadline {
                return;
            }
            for pid in pids {
                if let Ok(pid) = libc::pid_t::try_from(pid) {
                    let _ = crate::sys::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Removes the cgroup directories, retrying while the last processes are being reaped.
    pub fn remove(&self, deadline: Duration) -> Result<(), SandboxError> {
        let start = Instant::now();
        for dir in self.dirs() {
            loop {
                match fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) => {
                        if start.elapsed() >= deadline {
                            return Err(cg_err("remove", &dir)(e));
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the memory limit has been reached at least once (v1 `failcnt`, v2 `max` events).
    pub fn memory_limit_hit(&self) -> bool {
        match &self.kind {
            CgroupKind::V2 { dir } => {
                read_keyed(&dir.join("memory.events"), "max").is_some_and(|n| n > 0)
            }
            CgroupKind::V1 { .. } => {
                read_u64(&self.memory_dir().join("memory.failcnt")).is_some_and(|n| n > 0)
            }
        }
    }
}

/// Makes sure `memory`, `cpu` and `pids` are enabled for the children of `parent_dir`: in its
/// parent's `cgroup.subtree_control` (so `parent_dir` has them) and in its own.
fn enable_v2_controllers(mount: &Path, parent_dir: &Path) -> Result<(), SandboxError> {
    let want = ["memory", "cpu", "pids"];
    let enable = |dir: &Path| -> Result<(), SandboxError> {
        let file = dir.join("cgroup.subtree_control");
        let current = fs::read_to_string(&file).unwrap_or_default();
        let missing: Vec<String> = want
            .iter()
            .filter(|c| !current.split_whitespace().any(|x| x == **c))
            .map(|c| format!("+{c}"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        fs::write(&file, missing.join(" ")).map_err(|source| SandboxError::Unsupported {
            feature: "cgroup v2 delegation",
            detail: format!(
                "cannot enable {} in {}: {source}; a non-root cgroup that holds processes \
                 cannot delegate controllers, so run Tenantry in its own delegated cgroup \
                 (e.g. systemd Delegate=yes) or configure a cgroup parent",
                missing.join(" "),
                file.display()
            ),
        })
    };
    if let Some(grand) = parent_dir.parent()
        && grand.starts_with(mount)
    {
        enable(grand)?;
    }
    make_parent(parent_dir)?;
    enable(parent_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_written_to_a_v1_tree() {
        let root = tempfile::tempdir().expect("tempdir");
        let h = |n: &str| V1Hierarchy {
            mount: root.path().join(n),
            own: "platform".into(),
        };
        let layout = CgroupLayout::V1 {
            memory: h("memory"),
            cpu: h("cpu"),
            cpuacct: Some(h("cpu")),
            pids: h("pids"),
        };
        let res = SandboxResources {
            memory_mb: 64,
            cpu_millis: 250,
            max_processes: 10,
            storage_mb: 1,
            log_kb: 1024,
        };
        let cg = SandboxCgroup::create(&layout, None, "sb1", &res).expect("create");
        let mem = root.path().join("memory/platform/tenantry/sb1");
        assert_eq!(
            fs::read_to_string(mem.join("memory.limit_in_bytes")).expect("limit"),
            (64u64 << 20).to_string()
        );
        let cpu = root.path().join("cpu/platform/tenantry/sb1");
        assert_eq!(
            fs::read_to_string(cpu.join("cpu.cfs_quota_us")).expect("quota"),
            "25000"
        );
        let pids = root.path().join("pids/platform/tenantry/sb1");
        assert_eq!(
            fs::read_to_string(pids.join("pids.max")).expect("pids"),
            (10 + INIT_PIDS_OVERHEAD).to_string()
        );
        assert_eq!(
            cg.dirs().len(),
            3,
            "co-mounted cpu/cpuacct share a directory"
        );
        fs::write(cpu.join("cpuacct.usage"), "2500000000\n").expect("write");
        fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .expect("write");
        let c = cg.counters();
        assert_eq!(c.cpu_usec, 2_500_000);
        assert_eq!(c.oom_kills, 2);
    }

    #[test]
    fn limits_are_written_to_a_v2_tree() {
        let root = tempfile::tempdir().expect("tempdir");
        let layout = CgroupLayout::V2 {
            mount: root.path().to_path_buf(),
            own: "svc".into(),
        };
        fs::create_dir_all(root.path().join("svc")).expect("mkdir");
        let res = SandboxResources {
            memory_mb: 32,
            cpu_millis: 1500,
            max_processes: 5,
            storage_mb: 1,
            log_kb: 1024,
        };
        let cg = SandboxCgroup::create(&layout, None, "sb2", &res).expect("create");
        let dir = root.path().join("svc/tenantry/sb2");
        assert_eq!(
            fs::read_to_string(dir.join("cpu.max")).expect("cpu.max"),
            "150000 100000"
        );
        assert_eq!(
            fs::read_to_string(root.path().join("svc/cgroup.subtree_control")).expect("sc"),
            "+memory +cpu +pids"
        );
        assert_eq!(cg.procs_files(), vec![dir.join("cgroup.procs")]);
    }
}
