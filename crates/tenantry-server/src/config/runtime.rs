//! `[runtime]`: where sessions keep their storage and run directories, how sandboxes start and
//! how their storage size is enforced.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Where session storage lives (one directory per session, below one per tenant).
    #[serde(default = "default_storage_dir")]
    pub storage_dir: PathBuf,
    /// Where sandboxes' sockets and run files live.
    #[serde(default = "default_run_dir")]
    pub run_dir: PathBuf,
    /// The sandbox helper program [default: this `tenantry` binary, with `helper_args`
    /// `["sandbox-helper"]`].
    #[serde(default)]
    pub helper: Option<PathBuf>,
    #[serde(default)]
    pub helper_args: Option<Vec<String>>,
    /// Longest wait for a new sandbox's agent to listen on its port.
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout_seconds: u64,
    /// Remount a cgroup hierarchy with the kernel's `favordynmods` option at start (when it
    /// has no hierarchy with it yet and the server may): placing a new sandbox in its cgroups
    /// then takes well under a millisecond instead of waiting for an RCU grace period (7-15 ms
    /// on a busy machine, on every session start). Machine-wide; `false` leaves the host's
    /// mounts as they are.
    #[serde(default = "default_true")]
    pub favor_dynamic_cgroups: bool,
    /// This server process's name among the nodes sharing the store: its sessions are
    /// recorded under it, and at start it marks those a previous process of it left `active`
    /// as stopped (reason `crash`). Default: an id kept in `node.id` of the state directory.
    #[serde(default)]
    pub node_id: Option<String>,
    /// How often a running session's compute (CPU, memory) is written to the ledger, in
    /// seconds; a crash loses at most this much metering.
    #[serde(default = "default_compute_sample")]
    pub compute_sample_seconds: u64,
    /// How the tier's `sandbox.storage_mb` is enforced: `image` (a fixed-size ext4 image per
    /// session, loop-mounted: writes past the size fail with ENOSPC at once; needs root, loop
    /// devices and `mkfs.ext4`), `measure` (the storage is measured after each invocation and
    /// on resume, and a session over its size is refused: a soft limit, which an agent can
    /// overrun until it is measured), or `auto` (`image` where the host allows it, otherwise
    /// `measure`, said at start).
    #[serde(default)]
    pub storage_limit: StorageLimit,
    /// Divides lifecycle durations; only tests set it (it cannot come from the file).
    #[serde(skip)]
    pub time_divisor: u32,
}

/// See `RuntimeConfig::storage_limit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageLimit {
    #[default]
    Auto,
    Image,
    Measure,
}

pub(super) fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn default_true() -> bool {
    true
}

fn default_ready_timeout() -> u64 {
    20
}

fn default_compute_sample() -> u64 {
    60
}

fn default_storage_dir() -> PathBuf {
    PathBuf::from("sessions")
}

fn default_run_dir() -> PathBuf {
    PathBuf::from("run")
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            storage_dir: default_storage_dir(),
            run_dir: default_run_dir(),
            helper: None,
            helper_args: None,
            ready_timeout_seconds: default_ready_timeout(),
            favor_dynamic_cgroups: true,
            node_id: None,
            compute_sample_seconds: default_compute_sample(),
            storage_limit: StorageLimit::Auto,
            time_divisor: 1,
        }
    }
}
