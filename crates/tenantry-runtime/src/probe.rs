//! What this host can do for the process backend: user namespaces, cgroup controllers (v2 or
//! v1), Landlock and seccomp. Each check is real (a forked child tries the call), not a guess
//! from configuration files, and each failure comes with what the kernel answered.
//!
//! Tests use it to skip loudly, never silently, and `tenantry` can print it at start-up.

use std::fmt;

use serde::Serialize;
use tenantry_core::SandboxResources;

use crate::cgroup::{CgroupLayout, SandboxCgroup};

/// What works on this host.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// User, mount, PID, IPC, UTS and network namespaces can be created.
    pub user_namespaces: Result<(), String>,
    /// The cgroup layout in use (`v1` or `v2`) and whether a sandbox cgroup can be created.
    pub cgroups: Result<String, String>,
    /// The kernel's Landlock ABI version, `None` when Landlock is unavailable.
    pub landlock_abi: Option<u32>,
    /// The sandbox's seccomp filter can be installed.
    pub seccomp: Result<(), String>,
    pub running_as_root: bool,
}

impl ProbeReport {
    /// Human-readable reasons why the process backend cannot run here (empty when it can).
    pub fn missing(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = &self.user_namespaces {
            out.push(format!("user namespaces: {e}"));
        }
        if let Err(e) = &self.cgroups {
            out.push(format!("cgroups: {e}"));
        }
        if let Err(e) = &self.seccomp {
            out.push(format!("seccomp: {e}"));
        }
        if self.landlock_abi.is_none() {
            out.push("landlock: not supported or not enabled by this kernel".into());
        }
        out
    }

    /// Whether process sandboxes (with Landlock required) can start here.
    pub fn sandbox_supported(&self) -> bool {
        self.missing().is_empty()
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ok = |r: &Result<(), String>| match r {
            Ok(()) => "yes".to_string(),
            Err(e) => format!("no ({e})"),
        };
        writeln!(f, "user namespaces: {}", ok(&self.user_namespaces))?;
        match &self.cgroups {
            Ok(v) => writeln!(f, "cgroups: {v}")?,
            Err(e) => writeln!(f, "cgroups: no ({e})")?,
        }
        match self.landlock_abi {
            Some(v) => writeln!(f, "landlock: ABI {v}")?,
            None => writeln!(f, "landlock: no")?,
        }
        writeln!(f, "seccomp: {}", ok(&self.seccomp))?;
        write!(f, "running as root: {}", self.running_as_root)
    }
}

/// Probes the host. Safe to call from a multi-threaded process: the namespace and seccomp
/// checks run in forked children that only make raw system calls.
pub fn probe() -> ProbeReport {
    ProbeReport {
        user_namespaces: probe_namespaces(),
        cgroups: probe_cgroups(),
        landlock_abi: crate::sys::landlock_abi_version(),
        seccomp: probe_seccomp(),
        running_as_root: crate::sys::effective_ids().0 == 0,
    }
}

fn child_result(status: std::io::Result<i32>, what: &str) -> Result<(), String> {
    match status {
        Ok(s) if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0 => Ok(()),
        Ok(s) if libc::WIFEXITED(s) => Err(format!(
            "{what} failed: {}",
            std::io::Error::from_raw_os_error(libc::WEXITSTATUS(s))
        )),
        Ok(s) => Err(format!("{what}: probe child ended with status {s}")),
        Err(e) => Err(format!("cannot fork a probe child: {e}")),
    }
}

fn probe_namespaces() -> Result<(), String> {
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWNET;
    child_result(
        crate::sys::fork_and_wait(|| crate::sys::unshare_raw(flags)),
        "unshare(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWIPC|CLONE_NEWUTS|CLONE_NEWNET)",
    )
}

fn probe_seccomp() -> Result<(), String> {
    let programs = crate::seccomp::compile().map_err(|e| e.to_string())?;
    child_result(
        crate::sys::fork_and_wait(|| match crate::seccomp::install(&programs) {
            Ok(()) => 0,
            Err(errno) => errno,
        }),
        "installing the seccomp filter",
    )
}

fn probe_cgroups() -> Result<String, String> {
    let layout = CgroupLayout::detect().map_err(|e| e.to_string())?;
    let name = format!("probe-{}", uuid::Uuid::new_v4().simple());
    let cg = SandboxCgroup::create(&layout, None, &name, &SandboxResources::default())
        .map_err(|e| e.to_string())?;
    let removed = cg.remove(std::time::Duration::from_secs(1));
    removed.map_err(|e| e.to_string())?;
    let detail = match &layout {
        CgroupLayout::V2 { mount, .. } => format!("v2 at {}", mount.display()),
        CgroupLayout::V1 {
            memory,
            cpu,
            cpuacct,
            pids,
        } => format!(
            "v1 (memory at {}, cpu at {}, cpuacct {}, pids at {})",
            memory.mount.display(),
            cpu.mount.display(),
            cpuacct
                .as_ref()
                .map_or("unavailable: cpu time unknown".to_string(), |h| format!(
                    "at {}",
                    h.mount.display()
                )),
            pids.mount.display()
        ),
    };
    Ok(detail)
}
