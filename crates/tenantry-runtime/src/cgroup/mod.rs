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
//!
//! Split by concern: `layout` (what the host has), `mountinfo` (parsing the kernel's mount
//! table), `sandbox` (one sandbox's cgroups: limits, accounting, kill, removal) and `tuning`
//! (the host-wide `favordynmods` option).

mod layout;
mod mountinfo;
mod sandbox;
mod tuning;

pub use layout::{CgroupLayout, V1Hierarchy};
pub(crate) use mountinfo::mounts_under;
pub use sandbox::{CgroupCounters, INIT_PIDS_OVERHEAD, SandboxCgroup};
pub use tuning::{MigrationTuning, favor_dynamic_migrations};

/// Mount tables and cgroup memberships shared by the tests of the submodules.
#[cfg(test)]
mod testdata {
    pub(super) const HYBRID_MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    pub(super) const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
";
}
