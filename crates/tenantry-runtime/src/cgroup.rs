//! One cgroup per sandbox: detection of the host's cgroup layout (v2, or v1 hierarchies, or the
//! hybrid of both that many hosts run), creation with the tier's limits, accounting reads, and
//! killing and removal.
//!
//! Layout is detected at run time from `/proc/self/mountinfo`, `/proc/self/cgroup` and
//! `cgroup.controllers`: v2 is used when its `memory`, `cpu` and `pids` controllers are
//! available there; otherwise v1 `memory` + `cpu` (+ `cpuacct`) + `pids`.
//!
//! Sandbox cgroups are created *below the platform's own cgroup* (in a `tenantry` child, unless
//! configured otherwise), so the sandboxes stay inside whatever limits the platform itself was
//! given and never escape to the root. This module only touches directories it created.
//!
//! It must never place the platform process itself into a sandbox cgroup: the helper places the
//! sandbox's init by pid, and the helper stays outside so it survives an OOM kill to report it.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tenantry_core::SandboxResources;

use crate::SandboxError;

/// Processes and threads the sandbox's own init and forwarders may use on top of the agent's
/// `max_processes` (init, two acceptor threads, and a few connection threads).
pub const INIT_PIDS_OVERHEAD: u32 = 8;
/// CFS period used for the CPU limit.
const CPU_PERIOD_US: u64 = 100_000;

/// The cgroup layout of this host, as seen from the platform's own cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Unified hierarchy with the needed controllers available.
    V2 {
        /// Mount point of the cgroup2 file system.
        mount: PathBuf,
        /// The platform's own cgroup, relative to `mount`.
        own: PathBuf,
    },
    /// Legacy per-controller hierarchies.
    V1 {
        memory: V1Hierarchy,
        cpu: V1Hierarchy,
        /// Where `cpuacct` is (possibly the same mount as `cpu`); without it CPU time is unknown.
        cpuacct: Option<V1Hierarchy>,
        pids: V1Hierarchy,
    },
}

/// One v1 hierarchy: its mount point and the platform's own cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub mount: PathBuf,
    pub own: PathBuf,
}

impl V1Hierarchy {
    fn dir(&self, rel: &Path) -> PathBuf {
        self.mount.join(rel)
    }
}

impl CgroupLayout {
    /// Detects the layout of the running host.
    pub fn detect() -> Result<Self, SandboxError> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| SandboxError::io("reading /proc/self/mountinfo", e))?;
        let own = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| SandboxError::io("reading /proc/self/cgroup", e))?;
        Self::detect_from(&mountinfo, &own, |p| fs::read_to_string(p).ok()).map_err(|detail| {
            SandboxError::Unsupported {
                feature: "cgroup memory/cpu/pids controllers",
                detail,
            }
        })
    }

    /// Detection from the text of `/proc/self/mountinfo` and `/proc/self/cgroup`; `read` reads a
    /// file (used for `cgroup.controllers`). Separate from `detect` so it can be tested.
    pub fn detect_from(
        mountinfo: &str,
        proc_cgroup: &str,
        read: impl Fn(&Path) -> Option<String>,
    ) -> Result<Self, String> {
        let mounts = parse_mountinfo(mountinfo);
        let memberships = parse_proc_cgroup(proc_cgroup);
        let mut notes = Vec::new();

        if let Some(m) = mounts.iter().find(|m| m.fstype == "cgroup2") {
            let own_path = memberships
                .iter()
                .find(|c| c.hierarchy == 0)
                .map(|c| c.path.clone())
                .unwrap_or_else(|| "/".into());
            let own = relative_to_mount(&own_path, &m.root);
            let available =
                read(&m.mount_point.join(&own).join("cgroup.controllers")).unwrap_or_default();
            let available: BTreeSet<&str> = available.split_whitespace().collect();
            let missing: Vec<&str> = ["memory", "cpu", "pids"]
                .into_iter()
                .filter(|c| !available.contains(c))
                .collect();
            if missing.is_empty() {
                return Ok(CgroupLayout::V2 {
                    mount: m.mount_point.clone(),
                    own,
                });
            }
            notes.push(format!(
                "cgroup v2 at {} lacks {} (its controllers are on v1 hierarchies or not delegated)",
                m.mount_point.display(),
                missing.join(", ")
            ));
        } else {
            notes.push("no cgroup v2 mount".to_string());
        }

        let find_v1 = |controller: &str| -> Option<V1Hierarchy> {
            let m = mounts.iter().find(|m| {
                m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == controller)
            })?;
            let own_path = memberships
                .iter()
                .find(|c| c.controllers.split(',').any(|o| o == controller))
                .map(|c| c.path.clone())
                .unwrap_or_else(|| "/".into());
            Some(V1Hierarchy {
                mount: m.mount_point.clone(),
                own: relative_to_mount(&own_path, &m.root),
            })
        };
        match (find_v1("memory"), find_v1("cpu"), find_v1("pids")) {
            (Some(memory), Some(cpu), Some(pids)) => Ok(CgroupLayout::V1 {
                memory,
                cpu,
                cpuacct: find_v1("cpuacct"),
                pids,
            }),
            (memory, cpu, pids) => {
                let missing: Vec<&str> = [("memory", memory.is_none()), ("cpu", cpu.is_none())]
                    .into_iter()
                    .chain([("pids", pids.is_none())])
                    .filter_map(|(n, m)| m.then_some(n))
                    .collect();
                notes.push(format!("no cgroup v1 hierarchy for {}", missing.join(", ")));
                Err(notes.join("; "))
            }
        }
    }

    /// `"v2"` or `"v1"`.
    pub fn version(&self) -> &'static str {
        match self {
            CgroupLayout::V2 { .. } => "v2",
            CgroupLayout::V1 { .. } => "v1",
        }
    }

    /// The directories sandbox cgroups are created in (one per hierarchy used, deduplicated):
    /// `parent` below each hierarchy's root, or by default `tenantry` below the platform's own
    /// cgroup.
    pub fn sandbox_parents(&self, parent: Option<&Path>) -> Vec<PathBuf> {
        match self {
            CgroupLayout::V2 { mount, .. } => {
                let rel = parent
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| self.default_parent());
                vec![mount.join(rel)]
            }
            CgroupLayout::V1 {
                memory,
                cpu,
                cpuacct,
                pids,
            } => {
                let mut out: Vec<PathBuf> = Vec::new();
                for h in [Some(memory), Some(cpu), cpuacct.as_ref(), Some(pids)]
                    .into_iter()
                    .flatten()
                {
                    let rel = parent
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| h.own.join("tenantry"));
                    let dir = h.dir(&rel);
                    if !out.contains(&dir) {
                        out.push(dir);
                    }
                }
                out
            }
        }
    }

    /// The default parent of sandbox cgroups: `tenantry` below the platform's own cgroup.
    fn default_parent(&self) -> PathBuf {
        match self {
            CgroupLayout::V2 { own, .. } => own.join("tenantry"),
            // In v1 each hierarchy has its own "own" path; `None` below means "per hierarchy".
            CgroupLayout::V1 { .. } => PathBuf::from("tenantry"),
        }
    }
}

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

// ---- migration latency ------------------------------------------------------------------------

/// What [`favor_dynamic_migrations`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationTuning {
    /// A cgroup hierarchy was mounted with `favordynmods` already.
    AlreadySet(PathBuf),
    /// The hierarchy at this path was remounted with `favordynmods`.
    Set(PathBuf),
}

/// What to remount, from `/proc/self/mountinfo`.
#[derive(Debug, PartialEq, Eq)]
enum TuningPlan {
    Already(PathBuf),
    Remount { target: PathBuf, data: String },
}

fn plan_favordynmods(mountinfo: &str) -> Result<TuningPlan, String> {
    let mounts = parse_mountinfo(mountinfo);
    let cgroups = || {
        mounts
            .iter()
            .filter(|m| m.fstype == "cgroup2" || m.fstype == "cgroup")
    };
    if let Some(m) = cgroups().find(|m| m.super_options.split(',').any(|o| o == "favordynmods")) {
        return Ok(TuningPlan::Already(m.mount_point.clone()));
    }
    // The v2 root when there is one (on a hybrid host it holds no controller, so its options
    // are few), else a v1 hierarchy; the setting is the kernel's, whichever root carries it.
    let m = cgroups()
        .find(|m| m.fstype == "cgroup2")
        .or_else(|| cgroups().next())
        .ok_or_else(|| "no cgroup file system is mounted".to_string())?;
    let mut options: Vec<&str> = m
        .super_options
        .split(',')
        .filter(|o| !matches!(*o, "rw" | "ro" | ""))
        .collect();
    options.push("favordynmods");
    Ok(TuningPlan::Remount {
        target: m.mount_point.clone(),
        data: options.join(","),
    })
}

/// Makes moving a process into a cgroup fast: remounts a cgroup hierarchy with the kernel's
/// `favordynmods` option (Linux 6.0+), unless one has it already.
///
/// Placing a process in a cgroup takes the kernel's global `cgroup_threadgroup_rwsem` for
/// writing, and without `favordynmods` a writer that comes after a quiet spell first waits for
/// an RCU grace period: 7–15 ms on a busy VM, paid by every sandbox start when sessions arrive
/// one at a time. With it, placement takes a fraction of a millisecond, at the cost of forks
/// and exits taking the lock's slow path (the kernel's own trade-off, documented with the
/// option). The setting is machine-wide: it changes a host mount's options, keeping the
/// others. Needs privilege over the host's mounts; otherwise an error that says so.
pub fn favor_dynamic_migrations() -> Result<MigrationTuning, SandboxError> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| SandboxError::io("reading /proc/self/mountinfo", e))?;
    let plan = plan_favordynmods(&mountinfo).map_err(|detail| SandboxError::Unsupported {
        feature: "cgroup favordynmods",
        detail,
    })?;
    match plan {
        TuningPlan::Already(path) => Ok(MigrationTuning::AlreadySet(path)),
        TuningPlan::Remount { target, data } => {
            let flags = libc::MS_REMOUNT
                | crate::sys::locked_mount_flags(&target)
                | crate::sys::statvfs_flags(&target).map_or(0, |f| {
                    if f & libc::ST_RDONLY != 0 {
                        libc::MS_RDONLY
                    } else {
                        0
                    }
                });
            crate::sys::mount(None, &target, None, flags, Some(&data)).map_err(|e| {
                SandboxError::Unsupported {
                    feature: "cgroup favordynmods",
                    detail: format!(
                        "remounting {} with favordynmods: {e} (needs root; kernels before 6.0 \
                         lack the option)",
                        target.display()
                    ),
                }
            })?;
            Ok(MigrationTuning::Set(target))
        }
    }
}

#[derive(Debug)]
struct MountEntry {
    root: PathBuf,
    mount_point: PathBuf,
    fstype: String,
    super_options: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space...).
pub(crate) fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(MountEntry {
                root: PathBuf::from(unescape_mountinfo(fields.get(3)?)),
                mount_point: PathBuf::from(unescape_mountinfo(fields.get(4)?)),
                fstype: (*fields.get(sep + 1)?).to_string(),
                super_options: (*fields.get(sep + 3)?).to_string(),
            })
        })
        .collect()
}

/// Mount points (in order) of every mount whose mount point is `dir` or below it.
pub(crate) fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    parse_mountinfo(mountinfo)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect()
}

#[derive(Debug)]
struct Membership {
    hierarchy: u32,
    controllers: String,
    path: PathBuf,
}

fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            Some(Membership {
                hierarchy: it.next()?.parse().ok()?,
                controllers: it.next()?.to_string(),
                path: PathBuf::from(it.next()?),
            })
        })
        .collect()
}

/// The platform's cgroup relative to the hierarchy's mount point, given the root of the mount
/// inside the hierarchy (non-`/` in containers).
fn relative_to_mount(own: &Path, mount_root: &Path) -> PathBuf {
    let rel = own.strip_prefix(mount_root).unwrap_or(Path::new(""));
    rel.components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn hybrid_layout_uses_v1_and_says_why_not_v2() {
        let layout = CgroupLayout::detect_from(HYBRID_MOUNTINFO, HYBRID_CGROUP, |p| {
            (p == Path::new("/sys/fs/cgroup/unified/cgroup.controllers")).then(String::new)
        })
        .expect("v1 is usable");
        assert_eq!(
            layout,
            CgroupLayout::V1 {
                memory: V1Hierarchy {
                    mount: "/sys/fs/cgroup/memory".into(),
                    own: "process_api/abc".into()
                },
                cpu: V1Hierarchy {
                    mount: "/sys/fs/cgroup/cpu".into(),
                    own: "".into()
                },
                cpuacct: Some(V1Hierarchy {
                    mount: "/sys/fs/cgroup/cpuacct".into(),
                    own: "".into()
                }),
                pids: V1Hierarchy {
                    mount: "/sys/fs/cgroup/pids".into(),
                    own: "".into()
                },
            }
        );
    }

    #[test]
    fn pure_v2_with_controllers_is_preferred() {
        let mi = "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let cg = "0::/system.slice/tenantry.service\n";
        let layout = CgroupLayout::detect_from(mi, cg, |p| {
            (p == Path::new("/sys/fs/cgroup/system.slice/tenantry.service/cgroup.controllers"))
                .then(|| "cpuset cpu io memory pids\n".to_string())
        })
        .expect("v2 usable");
        assert_eq!(
            layout,
            CgroupLayout::V2 {
                mount: "/sys/fs/cgroup".into(),
                own: "system.slice/tenantry.service".into()
            }
        );
    }

    #[test]
    fn nothing_usable_is_explained() {
        let mi = "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let err = CgroupLayout::detect_from(mi, "0::/\n", |_| Some("io\n".into()))
            .expect_err("no controllers");
        assert!(err.contains("lacks memory, cpu, pids"), "{err}");
        assert!(
            err.contains("no cgroup v1 hierarchy for memory, cpu, pids"),
            "{err}"
        );
    }

    #[test]
    fn comounted_cpu_cpuacct_and_container_roots() {
        let mi = "\
32 31 0:29 /docker/x /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/x /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
39 31 0:36 /docker/x /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";
        let cg = "3:cpu,cpuacct:/docker/x\n4:memory:/docker/x/sub\n8:pids:/docker/x\n";
        let layout = CgroupLayout::detect_from(mi, cg, |_| None).expect("v1");
        match layout {
            CgroupLayout::V1 {
                memory,
                cpu,
                cpuacct,
                ..
            } => {
                assert_eq!(memory.own, PathBuf::from("sub"));
                assert_eq!(cpu.own, PathBuf::from(""));
                assert_eq!(cpuacct.map(|h| h.mount), Some(cpu.mount));
            }
            CgroupLayout::V2 { .. } => panic!("expected v1"),
        }
    }

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

    #[test]
    fn favordynmods_goes_on_the_v2_root_keeping_its_options() {
        assert_eq!(
            plan_favordynmods(HYBRID_MOUNTINFO),
            Ok(TuningPlan::Remount {
                target: "/sys/fs/cgroup/unified".into(),
                data: "favordynmods".into()
            })
        );
        let pure_v2 = "31 23 0:28 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        assert_eq!(
            plan_favordynmods(pure_v2),
            Ok(TuningPlan::Remount {
                target: "/sys/fs/cgroup".into(),
                data: "nsdelegate,memory_recursiveprot,favordynmods".into()
            })
        );
        let v1_only: String = HYBRID_MOUNTINFO
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            plan_favordynmods(&v1_only),
            Ok(TuningPlan::Remount {
                target: "/sys/fs/cgroup/cpu".into(),
                data: "cpu,favordynmods".into()
            })
        );
        let tuned =
            HYBRID_MOUNTINFO.replace("cgroup2 cgroup2 rw", "cgroup2 cgroup2 rw,favordynmods");
        assert_eq!(
            plan_favordynmods(&tuned),
            Ok(TuningPlan::Already("/sys/fs/cgroup/unified".into()))
        );
        assert!(plan_favordynmods("27 1 254:0 / / rw - ext4 /dev/vda rw\n").is_err());
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        let mi = "1 0 0:1 / /tmp/x\\040y rw - tmpfs tmpfs rw\n2 0 0:1 / /usr rw - ext4 x rw\n";
        assert_eq!(
            mounts_under(mi, Path::new("/tmp")),
            vec![PathBuf::from("/tmp/x y")]
        );
    }
}
