//! The host-wide `favordynmods` option of the cgroup file system, which makes placing a
//! sandbox's init in its cgroups fast. It changes one host mount's options and nothing else;
//! it must never be applied without the operator's setting (`favor_dynamic_cgroups`).

use std::fs;
use std::path::PathBuf;

use super::mountinfo::parse_mountinfo;
use crate::SandboxError;

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

#[cfg(test)]
mod tests {
    use super::super::testdata::HYBRID_MOUNTINFO;
    use super::*;

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
}
