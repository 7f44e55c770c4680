//! What a platform process that died without cleaning up (`kill -9`, the OOM killer) leaves on
//! the host, and its removal by the next one at start.
//!
//! Its sandboxes do not outlive it: each helper kills its sandbox when its stdin closes, and a
//! sandbox's init dies with its helper. What stays is the bookkeeping: the sandboxes' (empty)
//! cgroups and their run directories. Both are named after the platform process that made them
//! (`instance_id`: its pid and the kernel's start time of that pid, so a recycled pid is not
//! mistaken for it), so a new process removes exactly those of processes that are gone, never
//! those of another platform process running beside it on the same host (cgroups are
//! host-wide; several servers may share a parent cgroup).

use std::fs;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use crate::cgroup::CgroupLayout;

/// Prefix of every sandbox cgroup's name: `sb-<instance>-<sandbox id>`.
pub(crate) const CGROUP_PREFIX: &str = "sb-";

/// This process's instance id, `p<pid>s<start time in clock ticks since boot>`.
pub fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let pid = std::process::id();
        format!("p{pid}s{}", start_time(pid).unwrap_or(0))
    })
}

/// Field 22 of `/proc/<pid>/stat` (after the parenthesised command name, which may contain
/// anything), unless the process is a zombie (it has ended; only its parent's wait is missing).
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3 (state); the start time is field 22.
    fields.nth(18)?.parse().ok()
}

/// `Some(alive)` for a name that is an instance id, `None` for any other name.
fn instance_alive(name: &str) -> Option<bool> {
    let (pid, start) = name.strip_prefix('p')?.split_once('s')?;
    let pid: u32 = pid.parse().ok()?;
    let start: u64 = start.parse().ok()?;
    Some(start_time(pid) == Some(start))
}

/// The instance a sandbox cgroup's name names (`sb-<instance>-<id>`); `None` for other names
/// (cgroups made by builds that did not name them so).
fn cgroup_instance(name: &str) -> Option<&str> {
    name.strip_prefix(CGROUP_PREFIX)?
        .split_once('-')
        .map(|(i, _)| i)
}

/// Removes, below each directory sandbox cgroups are created in, the cgroups of platform
/// processes that are gone (killing any process still in one first), and those of earlier
/// builds that are empty. Returns how many cgroup directories were removed.
pub fn reap_cgroups(layout: &CgroupLayout, parent: Option<&Path>) -> usize {
    let mut removed = 0;
    for dir in layout.sandbox_parents(parent) {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(CGROUP_PREFIX) || !entry.path().is_dir() {
                continue;
            }
            let stale = match cgroup_instance(name).and_then(instance_alive) {
                Some(alive) => !alive,
                // An earlier build's name: only an empty one is certainly nobody's.
                None => fs::read_to_string(entry.path().join("cgroup.procs"))
                    .is_ok_and(|p| p.trim().is_empty()),
            };
            if stale && remove_cgroup(&entry.path()) {
                removed += 1;
            }
        }
    }
    removed
}

fn remove_cgroup(dir: &Path) -> bool {
    for _ in 0..100 {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<libc::pid_t> = procs
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        for pid in &pids {
            let _ = crate::sys::kill(*pid, libc::SIGKILL);
        }
        match fs::remove_dir(dir) {
            Ok(()) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    tracing::warn!(cgroup = %dir.display(), "cannot remove a stale sandbox cgroup");
    false
}

/// Removes the entries of `root` named after platform processes that are gone (their run
/// directories); leaves everything else. Returns how many were removed.
pub fn reap_run_dirs(root: &Path) -> usize {
    let Ok(entries) = fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if instance_alive(name) == Some(false) && fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        let me = instance_id();
        assert!(me.starts_with(&format!("p{}s", std::process::id())), "{me}");
        assert_eq!(instance_alive(me), Some(true));
        let (pid, start) = me[1..].split_once('s').expect("id");
        let other = format!("p{pid}s{}", start.parse::<u64>().expect("n") + 1);
        assert_eq!(instance_alive(&other), Some(false), "same pid, other start");
        assert_eq!(instance_alive("p4194304999s1"), Some(false));
        assert_eq!(instance_alive("sandboxes"), None);
        assert_eq!(instance_alive("bridges"), None);
    }

    #[test]
    fn cgroup_names_carry_their_instance() {
        assert_eq!(cgroup_instance("sb-p12s34-abcdef"), Some("p12s34"));
        assert_eq!(cgroup_instance("sb-0123456789abcdef"), None);
        assert_eq!(cgroup_instance("other"), None);
    }

    #[test]
    fn run_dirs_of_dead_instances_go_and_others_stay() {
        let root = tempfile::tempdir().expect("tempdir");
        let dead = root.path().join("p4194304999s1");
        let live = root.path().join(instance_id());
        let other = root.path().join("keep-me");
        for d in [&dead, &live, &other] {
            fs::create_dir_all(d.join("sandboxes/x")).expect("mkdir");
        }
        assert_eq!(reap_run_dirs(root.path()), 1);
        assert!(!dead.exists() && live.exists() && other.exists());
    }
}
