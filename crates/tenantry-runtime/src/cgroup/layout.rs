//! The host's cgroup layout, detected from the platform's own process: which hierarchy (v2, or
//! the v1 ones) holds the `memory`, `cpu` and `pids` controllers, and where the platform's own
//! cgroup is in each. It only reads; it must never create or change a cgroup.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::mountinfo::parse_mountinfo;
use crate::SandboxError;

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
    pub(super) fn dir(&self, rel: &Path) -> PathBuf {
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
    pub(super) fn default_parent(&self) -> PathBuf {
        match self {
            CgroupLayout::V2 { own, .. } => own.join("tenantry"),
            // In v1 each hierarchy has its own "own" path; `None` below means "per hierarchy".
            CgroupLayout::V1 { .. } => PathBuf::from("tenantry"),
        }
    }
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
    use super::super::testdata::{HYBRID_CGROUP, HYBRID_MOUNTINFO};
    use super::*;

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
}
