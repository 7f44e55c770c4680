//! The `process` sandbox backend, platform side: prepares a session's cgroup, storage and
//! run directory, runs the helper (see `helper`), and hands back a `ProcessInstance` that owns
//! the sandbox: it reaches the agent, meters the cgroup, reports how the agent ended, and stops
//! everything.
//!
//! Identity: when the platform runs as root, the sandbox's root user is mapped to an
//! unprivileged host uid, never to host root, so nothing in the read-only host view that only
//! root may read (e.g. `/etc/shadow`) becomes readable. The uid is taken from a range
//! (`sandbox_uid` + 0..`sandbox_uid_count`, default 0x7E000000 + 0..65536) by hashing the
//! storage directory, so a session keeps its uid across restarts (its files stay its own) while
//! concurrent sessions almost never share one, and per-user kernel limits (inotify instances,
//! pipe buffers...) are not pooled between them. The storage is chowned to that uid. When the
//! platform is not root, the sandbox's root is the platform's own uid.
//!
//! This module must never pass the platform's environment, file descriptors or credentials into
//! the sandbox: the helper is started with an empty environment and only stdin/stdout/stderr.
//!
//! Split by concern: this module prepares and launches (`ProcessSandbox`), `spares` keeps
//! helpers started ahead of need, `instance` is the running sandbox (`ProcessInstance`: the
//! neutral `SandboxInstance` plus the process diagnostics: init pid, cgroups), and `monitor`
//! follows it (helper events, agent output, exit classification, the memory meter).

mod instance;
mod monitor;
mod spares;

pub use instance::{ProcessInstance, port_listening_in};

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::watch;

use crate::cgroup::{CgroupLayout, SandboxCgroup};
use crate::protocol::{HelperEvent, HelperSpec, IdMap, SetupStage};
use crate::sandbox::{BackendKind, Sandbox, StartFuture};
use crate::{SandboxError, SandboxHandle, SandboxSpec};
use monitor::{Meter, collect_output, next_event, sample_memory, watch_exit};
use spares::{SPARE_REFILL_DELAY, Spares};

/// Host uid (and gid) of a sandbox's root user when the platform runs as root.
pub const DEFAULT_SANDBOX_UID: u32 = 0x7E00_0000;
/// Number of host uids sandboxes are spread over.
pub const DEFAULT_SANDBOX_UID_COUNT: u32 = 65_536;
/// Longest `run_root`: `/<32 hex>/agent.sock` (44 bytes) must still fit in `sun_path`.
const MAX_RUN_ROOT: usize = 107 - 44;

/// Settings of the process backend (host-wide, not per session).
#[derive(Debug, Clone)]
pub struct ProcessSandboxConfig {
    /// The helper executable (`tenantry-sandbox`, or `tenantry` with its hidden subcommand).
    pub helper: PathBuf,
    /// Arguments for the helper (e.g. the hidden subcommand's name); empty for
    /// `tenantry-sandbox`.
    pub helper_args: Vec<String>,
    /// Where per-sandbox run directories (holding the agent bridge socket) are created.
    pub run_root: PathBuf,
    /// Parent of sandbox cgroups, relative to each hierarchy's root; `None` means `tenantry`
    /// below the platform's own cgroup.
    pub cgroup_parent: Option<PathBuf>,
    /// First host uid (and gid) of the range sandboxes' root users are mapped to when the
    /// platform runs as root.
    pub sandbox_uid: u32,
    /// Size of that range (1 = every sandbox shares `sandbox_uid`).
    pub sandbox_uid_count: u32,
    /// Refuse to start sandboxes when the kernel cannot enforce Landlock.
    pub require_landlock: bool,
    /// Size of the sandbox's `/tmp` (it counts against the memory limit anyway); `None` means
    /// the memory limit.
    pub tmp_size_mb: Option<u32>,
    pub hostname: String,
    pub start_timeout: Duration,
    pub stop_timeout: Duration,
    /// How often the memory integral is sampled while memory use changes (up to 8 times less
    /// often while it does not).
    pub sample_interval: Duration,
    /// Helpers started ahead of need: exec'd and waiting for a spec on their stdin, holding
    /// nothing of any tenant's, so a launch does not wait for the helper's own start-up (fork,
    /// exec, loading the binary: 2-3 ms). Topped up 5 ms after each launch; 0 turns it off.
    pub spare_helpers: usize,
}

impl ProcessSandboxConfig {
    pub fn new(helper: impl Into<PathBuf>) -> Self {
        Self {
            helper: helper.into(),
            helper_args: Vec::new(),
            run_root: std::env::temp_dir().join("tenantry-run"),
            cgroup_parent: None,
            sandbox_uid: DEFAULT_SANDBOX_UID,
            sandbox_uid_count: DEFAULT_SANDBOX_UID_COUNT,
            require_landlock: true,
            tmp_size_mb: None,
            hostname: "sandbox".into(),
            start_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(5),
            sample_interval: Duration::from_millis(250),
            spare_helpers: 1,
        }
    }
}

/// The process backend.
#[derive(Debug)]
pub struct ProcessSandbox {
    config: ProcessSandboxConfig,
    layout: CgroupLayout,
    spares: Arc<Spares>,
}

impl ProcessSandbox {
    /// Checks the helper and detects the host's cgroup layout.
    pub fn new(config: ProcessSandboxConfig) -> Result<Self, SandboxError> {
        match fs::metadata(&config.helper) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(SandboxError::Helper {
                    path: config.helper.clone(),
                    source: std::io::Error::other("not a file"),
                });
            }
            Err(source) => {
                return Err(SandboxError::Helper {
                    path: config.helper.clone(),
                    source,
                });
            }
        }
        // `<run_root>/<32 hex>/agent.sock` must fit in a Unix socket address (107 bytes + NUL).
        if config.run_root.as_os_str().len() > MAX_RUN_ROOT || !config.run_root.is_absolute() {
            return Err(SandboxError::InvalidSpec(format!(
                "run_root {} must be an absolute path of at most {MAX_RUN_ROOT} bytes \
                 (the agent bridge's Unix socket is created below it)",
                config.run_root.display()
            )));
        }
        let layout = CgroupLayout::detect()?;
        let spares = Arc::new(Spares {
            helper: config.helper.clone(),
            args: config.helper_args.clone(),
            want: config.spare_helpers,
            ready: Mutex::new(Vec::new()),
            refilling: AtomicBool::new(false),
        });
        spares.refill(Duration::ZERO);
        Ok(Self {
            config,
            layout,
            spares,
        })
    }

    /// Removes the sandbox cgroups that platform processes which are gone left behind (see
    /// `reap`); how many cgroup directories were removed.
    pub fn reap_stale_cgroups(&self) -> usize {
        crate::reap::reap_cgroups(&self.layout, self.config.cgroup_parent.as_deref())
    }

    /// The process ids of the spare helpers alive now (see
    /// `ProcessSandboxConfig::spare_helpers`).
    pub fn spare_helpers(&self) -> Vec<u32> {
        self.spares.alive()
    }

    /// Starts one sandbox with the default configuration and the given helper.
    pub async fn start(spec: SandboxSpec, helper: &Path) -> Result<ProcessInstance, SandboxError> {
        ProcessSandbox::new(ProcessSandboxConfig::new(helper))?
            .launch(spec)
            .await
    }

    pub fn config(&self) -> &ProcessSandboxConfig {
        &self.config
    }

    pub fn cgroup_layout(&self) -> &CgroupLayout {
        &self.layout
    }

    /// Starts one sandbox for `spec` and returns once the agent process has been started in it
    /// (use `ProcessInstance::wait_for_agent` to know when it listens).
    pub async fn launch(&self, spec: SandboxSpec) -> Result<ProcessInstance, SandboxError> {
        spec.validate()?;
        check_dir("storage_dir", &spec.storage_dir)?;
        check_dir("workdir", &spec.workdir)?;
        if let Some(image) = &spec.storage_image {
            match fs::symlink_metadata(image) {
                Ok(m) if m.is_file() => {}
                _ => {
                    return Err(SandboxError::InvalidSpec(format!(
                        "storage_image {} must be a regular file (see storage::make_image)",
                        image.display()
                    )));
                }
            }
        }

        let id = uuid::Uuid::new_v4().simple().to_string();
        let (euid, egid) = crate::sys::effective_ids();
        let privileged = euid == 0;
        let (uid, gid) = if privileged {
            let id = sandbox_host_id(
                &spec.storage_dir,
                self.config.sandbox_uid,
                self.config.sandbox_uid_count,
            );
            (id, id)
        } else {
            (euid, egid)
        };
        // A storage directory already owned by the sandbox's ids was prepared by an earlier
        // start (and what the agent wrote since is its own): skip the walk, which would cost
        // a stat per file on every start.
        let owned = fs::metadata(&spec.storage_dir).is_ok_and(|m| m.uid() == uid && m.gid() == gid);
        if privileged && !owned {
            let dir = spec.storage_dir.clone();
            tokio::task::spawn_blocking(move || chown_tree(&dir, uid, gid))
                .await
                .map_err(|e| SandboxError::io("chown task", std::io::Error::other(e)))?
                .map_err(|e| {
                    SandboxError::io(
                        format!(
                            "giving {} to the sandbox uid {uid}",
                            spec.storage_dir.display()
                        ),
                        e,
                    )
                })?;
        }

        let run_dir = self.config.run_root.join(&id);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&run_dir)
            .map_err(|e| SandboxError::io(format!("creating {}", run_dir.display()), e))?;
        let cgroup = match SandboxCgroup::create(
            &self.layout,
            self.config.cgroup_parent.as_deref(),
            &format!(
                "{}{}-{id}",
                crate::reap::CGROUP_PREFIX,
                crate::reap::instance_id()
            ),
            &spec.resources,
        ) {
            Ok(cg) => Arc::new(cg),
            Err(e) => {
                let _ = fs::remove_dir_all(&run_dir);
                return Err(e);
            }
        };
        match self
            .run_helper(
                spec,
                id,
                run_dir.clone(),
                Arc::clone(&cgroup),
                privileged,
                (uid, gid),
            )
            .await
        {
            Ok(handle) => Ok(handle),
            Err(e) => {
                release(cgroup, run_dir).await;
                Err(e)
            }
        }
    }

    /// Runs the helper for a prepared sandbox and waits for its first report.
    async fn run_helper(
        &self,
        spec: SandboxSpec,
        id: String,
        run_dir: PathBuf,
        cgroup: Arc<SandboxCgroup>,
        privileged: bool,
        (uid, gid): (u32, u32),
    ) -> Result<ProcessInstance, SandboxError> {
        let agent_socket = run_dir.join("agent.sock");
        let helper_spec = HelperSpec {
            sandbox_id: id.clone(),
            command: spec.command.clone(),
            workdir: spec.workdir.clone(),
            env: spec.agent_env().into_iter().collect(),
            storage_dir: spec.storage_dir.clone(),
            storage_image: spec.storage_image.clone(),
            mount_path: spec.mount_path.clone(),
            agent_socket: agent_socket.clone(),
            agent_port: spec.agent_port,
            platform_socket: spec.platform.as_ref().map(|p| p.socket.clone()),
            platform_port: spec.platform.as_ref().map_or(0, |p| p.port),
            uid: IdMap {
                inside: 0,
                outside: uid,
            },
            gid: IdMap {
                inside: 0,
                outside: gid,
            },
            privileged,
            cgroup_procs: cgroup.procs_files(),
            tmp_size_mb: self.config.tmp_size_mb.unwrap_or(spec.resources.memory_mb),
            hostname: self.config.hostname.clone(),
            require_landlock: self.config.require_landlock,
        };
        let line = serde_json::to_string(&helper_spec)
            .map_err(|e| SandboxError::Setup(format!("encoding the helper spec: {e}")))?;

        let mut child = match self.spares.take() {
            Some(child) => child,
            None => self.spares.spawn()?,
        };
        self.spares.refill(SPARE_REFILL_DELAY);
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(SandboxError::Setup("helper pipes missing".into()));
        };

        let output = Arc::new(crate::output::Output::default());
        let stderr_task = tokio::spawn(collect_output(
            stderr,
            Arc::clone(&output),
            id.clone(),
            spec.session_id.clone(),
            spec.tenant.clone(),
        ));

        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| SandboxError::io("sending the spec to the helper", e))?;
        let mut events = BufReader::new(stdout);
        let first = tokio::time::timeout(self.config.start_timeout, next_event(&mut events)).await;
        let init_pid = match first {
            Ok(Some(HelperEvent::Ready { init_pid })) => init_pid,
            Ok(Some(HelperEvent::SetupFailed { stage, message })) => {
                let _ = child.wait().await;
                stderr_task.abort();
                return Err(setup_error(stage, message));
            }
            Ok(Some(HelperEvent::Exited { .. })) | Ok(None) => {
                let status = child.wait().await.ok();
                // Let the stderr reader drain what the helper printed before it died.
                let _ = tokio::time::timeout(Duration::from_millis(200), stderr_task).await;
                let tail = output.recent().join("\n");
                return Err(SandboxError::Setup(format!(
                    "the helper exited ({status:?}) without reporting the sandbox ready: {tail}"
                )));
            }
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                stderr_task.abort();
                return Err(SandboxError::StartTimeout(self.config.start_timeout));
            }
        };

        let stop_requested = Arc::new(AtomicBool::new(false));
        let (exit_tx, exit_rx) = watch::channel(None);
        let meter = Arc::new(Meter::new());
        let events_task = tokio::spawn(watch_exit(
            events,
            Arc::clone(&cgroup),
            Arc::clone(&stop_requested),
            Arc::clone(&meter),
            exit_tx,
        ));
        let sampler_task = tokio::spawn(sample_memory(
            Arc::clone(&cgroup),
            Arc::clone(&meter),
            self.config.sample_interval,
        ));
        Ok(ProcessInstance {
            id,
            session_id: spec.session_id,
            tenant: spec.tenant,
            agent_socket,
            run_dir,
            agent_port: spec.agent_port,
            init_pid,
            cgroup,
            meter,
            control: tokio::sync::Mutex::new(Some(stdin)),
            helper: tokio::sync::Mutex::new(Some(child)),
            exit_rx,
            stop_requested,
            stop_lock: tokio::sync::Mutex::new(None),
            output,
            tasks: vec![stderr_task, events_task, sampler_task],
            stop_timeout: self.config.stop_timeout,
        })
    }
}

impl Sandbox for ProcessSandbox {
    fn kind(&self) -> BackendKind {
        BackendKind::Process
    }

    fn launch(&self, spec: SandboxSpec) -> StartFuture<'_> {
        Box::pin(async move {
            ProcessSandbox::launch(self, spec)
                .await
                .map(SandboxHandle::new)
        })
    }

    fn reap_leftovers(&self) -> usize {
        self.reap_stale_cgroups()
    }
}

fn check_dir(field: &str, path: &Path) -> Result<(), SandboxError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(SandboxError::InvalidSpec(format!(
            "{field} {} must be a directory (not a symlink)",
            path.display()
        ))),
        Err(e) => Err(SandboxError::InvalidSpec(format!(
            "{field} {} is not usable: {e} (the caller creates it)",
            path.display()
        ))),
    }
}

fn setup_error(stage: SetupStage, message: String) -> SandboxError {
    match stage {
        SetupStage::Namespaces => SandboxError::Unsupported {
            feature: "user namespaces",
            detail: message,
        },
        SetupStage::Agent => SandboxError::AgentSpawn(message),
        SetupStage::Spec | SetupStage::Environment | SetupStage::Confinement => {
            SandboxError::Setup(message)
        }
    }
}

/// The host uid/gid for a sandbox of this storage directory: stable per directory (FNV-1a of
/// its path), spread over `count` ids from `base`.
fn sandbox_host_id(storage_dir: &Path, base: u32, count: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in storage_dir.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let offset = u32::try_from(hash % u64::from(count.max(1))).unwrap_or(0);
    base.saturating_add(offset)
}

/// Gives every entry of the storage tree to the sandbox's uid, without following symlinks
/// (an agent may have planted them) and without leaving the tree.
pub(crate) fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let m = fs::symlink_metadata(&path)?;
            if m.is_dir() {
                chown_tree(&path, uid, gid)?;
            } else if m.uid() != uid || m.gid() != gid {
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
            }
        }
    }
    Ok(())
}

/// Kills what is left of a sandbox and removes its cgroup and run directory.
pub(super) fn release_blocking(cgroup: &SandboxCgroup, run_dir: &Path, deadline: Duration) -> bool {
    cgroup.kill_all(deadline);
    let removed = cgroup.remove(deadline).is_ok();
    let _ = fs::remove_dir_all(run_dir);
    removed
}

/// `release_blocking` off the async runtime, awaited.
async fn release(cgroup: Arc<SandboxCgroup>, run_dir: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || {
        release_blocking(&cgroup, &run_dir, Duration::from_secs(3))
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_are_stable_per_storage_and_spread() {
        let a = sandbox_host_id(Path::new("/srv/sessions/a"), DEFAULT_SANDBOX_UID, 65_536);
        let b = sandbox_host_id(Path::new("/srv/sessions/b"), DEFAULT_SANDBOX_UID, 65_536);
        assert_eq!(
            a,
            sandbox_host_id(Path::new("/srv/sessions/a"), DEFAULT_SANDBOX_UID, 65_536)
        );
        assert_ne!(a, b);
        assert!((DEFAULT_SANDBOX_UID..DEFAULT_SANDBOX_UID + 65_536).contains(&a));
        assert_eq!(sandbox_host_id(Path::new("/x"), 5000, 1), 5000);
        assert_eq!(sandbox_host_id(Path::new("/x"), 5000, 0), 5000);
    }

    #[test]
    fn chown_tree_does_not_follow_symlinks() {
        if crate::sys::effective_ids().0 != 0 {
            println!("SKIPPED chown_tree_does_not_follow_symlinks: needs root to chown");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::NamedTempFile::new().expect("outside file");
        fs::create_dir(dir.path().join("sub")).expect("mkdir");
        fs::write(dir.path().join("sub/f"), "x").expect("write");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).expect("symlink");
        chown_tree(dir.path(), 54321, 54321).expect("walk");
        let f = fs::metadata(dir.path().join("sub/f")).expect("meta");
        assert_eq!((f.uid(), f.gid()), (54321, 54321));
        let link = fs::symlink_metadata(dir.path().join("link")).expect("meta");
        assert_eq!(link.uid(), 54321, "the link itself is chowned");
        let target = fs::metadata(outside.path()).expect("meta");
        assert_eq!(target.uid(), 0, "the symlink's target is untouched");
    }
}
