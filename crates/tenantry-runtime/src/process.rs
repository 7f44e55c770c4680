//! The `process` sandbox backend, platform side: prepares a session's cgroup, storage and
//! run directory, runs the helper (see `helper`), and hands back a `SandboxHandle` that owns the
//! sandbox: it reaches the agent, meters the cgroup, reports how the agent ended, and stops
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

use std::collections::VecDeque;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tenantry_core::TenantId;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cgroup::{CgroupLayout, SandboxCgroup};
use crate::protocol::{HelperEvent, HelperSpec, IdMap, ProcessEnd, SetupStage};
use crate::sandbox::{
    BackendKind, ComputeUsage, Sandbox, SandboxExit, SandboxReport, SandboxStatus, StartFuture,
};
use crate::{SandboxError, SandboxSpec};

/// Host uid (and gid) of a sandbox's root user when the platform runs as root.
pub const DEFAULT_SANDBOX_UID: u32 = 0x7E00_0000;
/// Number of host uids sandboxes are spread over.
pub const DEFAULT_SANDBOX_UID_COUNT: u32 = 65_536;
/// Longest `run_root`: `/<32 hex>/agent.sock` (44 bytes) must still fit in `sun_path`.
const MAX_RUN_ROOT: usize = 107 - 44;
/// Lines of agent output kept for diagnostics (`recent_output`).
const OUTPUT_LINES: usize = 200;
const OUTPUT_LINE_MAX: usize = 4096;

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

/// How long after a launch its spare is replaced: after the new sandbox's own set-up has
/// begun, yet soon enough for sessions that arrive a few milliseconds apart.
const SPARE_REFILL_DELAY: Duration = Duration::from_millis(5);

/// Helpers waiting for a spec (see `ProcessSandboxConfig::spare_helpers`). A spare has read
/// nothing yet, so it is no one's; dropping one closes its stdin, and it exits.
#[derive(Debug)]
struct Spares {
    helper: PathBuf,
    args: Vec<String>,
    want: usize,
    ready: Mutex<Vec<Child>>,
    refilling: AtomicBool,
}

impl Spares {
    fn spawn(&self) -> Result<Child, SandboxError> {
        Command::new(&self.helper)
            .args(&self.args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Not `kill_on_drop`: closing its stdin makes the helper kill the sandbox and reap
            // its init itself, leaving no zombie to the host's init.
            .spawn()
            .map_err(|source| SandboxError::Helper {
                path: self.helper.clone(),
                source,
            })
    }

    /// A spare that is still alive, if there is one.
    fn take(&self) -> Option<Child> {
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(mut child) = ready.pop() {
            if matches!(child.try_wait(), Ok(None)) {
                return Some(child);
            }
        }
        None
    }

    /// Starts spares until there are `want`, after `delay`, in the background (one top-up at a
    /// time). Needs a Tokio runtime; without one, nothing happens.
    fn refill(self: &Arc<Self>, delay: Duration) {
        if self.want == 0 || self.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.refilling.store(false, Ordering::Release);
            return;
        };
        let spares = Arc::clone(self);
        runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            loop {
                let have = spares.ready.lock().map(|r| r.len()).unwrap_or(spares.want);
                if have >= spares.want {
                    break;
                }
                // Spawning waits until the helper has exec'd (a vfork): on a thread of its own,
                // not on a worker that other sessions' requests need meanwhile.
                let spawner = Arc::clone(&spares);
                let spawned = tokio::task::spawn_blocking(move || spawner.spawn())
                    .await
                    .unwrap_or_else(|e| {
                        Err(SandboxError::io(
                            "starting a spare helper",
                            std::io::Error::other(e.to_string()),
                        ))
                    });
                match spawned {
                    Ok(child) => {
                        if let Ok(mut r) = spares.ready.lock() {
                            r.push(child);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start a spare sandbox helper");
                        break;
                    }
                }
            }
            spares.refilling.store(false, Ordering::Release);
        });
    }

    fn alive(&self) -> Vec<u32> {
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        ready.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        ready.iter().filter_map(Child::id).collect()
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
    pub async fn start(spec: SandboxSpec, helper: &Path) -> Result<SandboxHandle, SandboxError> {
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
    /// (use `SandboxHandle::wait_for_agent` to know when it listens).
    pub async fn launch(&self, spec: SandboxSpec) -> Result<SandboxHandle, SandboxError> {
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
    ) -> Result<SandboxHandle, SandboxError> {
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

        let output = Arc::new(Mutex::new(VecDeque::new()));
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
                let tail = recent(&output).join("\n");
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
        Ok(SandboxHandle {
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
        Box::pin(ProcessSandbox::launch(self, spec))
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
fn release_blocking(cgroup: &SandboxCgroup, run_dir: &Path, deadline: Duration) -> bool {
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

async fn next_event(events: &mut BufReader<ChildStdout>) -> Option<HelperEvent> {
    let mut line = String::new();
    loop {
        line.clear();
        match events.read_line(&mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {
                if let Ok(ev) = serde_json::from_str::<HelperEvent>(line.trim()) {
                    return Some(ev);
                }
            }
        }
    }
}

fn recent(output: &Mutex<VecDeque<String>>) -> Vec<String> {
    output
        .lock()
        .map(|o| o.iter().cloned().collect())
        .unwrap_or_default()
}

async fn collect_output(
    stderr: tokio::process::ChildStderr,
    output: Arc<Mutex<VecDeque<String>>>,
    sandbox: String,
    session: String,
    tenant: TenantId,
) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let end = buf.len().min(OUTPUT_LINE_MAX);
                let line = String::from_utf8_lossy(&buf[..end]).trim_end().to_string();
                tracing::info!(
                    target: "tenantry_runtime::agent",
                    sandbox = %sandbox,
                    session = %session,
                    tenant = %tenant,
                    "{line}"
                );
                if let Ok(mut o) = output.lock() {
                    if o.len() == OUTPUT_LINES {
                        o.pop_front();
                    }
                    o.push_back(line);
                }
            }
        }
    }
}

/// Decides how the sandbox ended from the helper's report and the cgroup's OOM counter.
fn classify_exit(
    agent: Option<ProcessEnd>,
    init: ProcessEnd,
    oom_kills: u64,
    stop_requested: bool,
) -> SandboxExit {
    if stop_requested {
        return SandboxExit::Stopped;
    }
    match agent {
        Some(ProcessEnd::Signal(libc::SIGKILL)) if oom_kills > 0 => SandboxExit::OutOfMemory,
        Some(ProcessEnd::Code(code)) => SandboxExit::Exited { code },
        Some(ProcessEnd::Signal(signal)) => SandboxExit::Signaled { signal },
        // The init itself died before the agent: killed from outside or by the OOM killer.
        None if oom_kills > 0 => SandboxExit::OutOfMemory,
        None => match init {
            ProcessEnd::Signal(signal) => SandboxExit::Signaled { signal },
            ProcessEnd::Code(code) => SandboxExit::Exited { code },
        },
    }
}

async fn watch_exit(
    mut events: BufReader<ChildStdout>,
    cgroup: Arc<SandboxCgroup>,
    stop_requested: Arc<AtomicBool>,
    meter: Arc<Meter>,
    exit_tx: watch::Sender<Option<SandboxExit>>,
) {
    let exit = loop {
        match next_event(&mut events).await {
            Some(HelperEvent::Exited { agent, init }) => {
                let oom = cgroup.counters().oom_kills;
                break classify_exit(agent, init, oom, stop_requested.load(Ordering::SeqCst));
            }
            Some(HelperEvent::Ready { .. }) | Some(HelperEvent::SetupFailed { .. }) => continue,
            None => {
                let oom = cgroup.counters().oom_kills;
                break classify_exit(
                    None,
                    ProcessEnd::Signal(libc::SIGKILL),
                    oom,
                    stop_requested.load(Ordering::SeqCst),
                );
            }
        }
    };
    meter.sample(&cgroup);
    let _ = exit_tx.send(Some(exit));
}

/// Memory that stays the same (an idle agent) is looked at less and less often, down to once
/// every `IDLE_SAMPLE_FACTOR` intervals; the first change brings the pace back. A flat stretch
/// integrates exactly at any pace, and the peak comes from the cgroup's own high-water mark.
const IDLE_SAMPLE_FACTOR: u32 = 8;

async fn sample_memory(cgroup: Arc<SandboxCgroup>, meter: Arc<Meter>, every: Duration) {
    let base = every.max(Duration::from_millis(10));
    let mut wait = base;
    loop {
        tokio::time::sleep(wait).await;
        let changed = meter.integrate(cgroup.memory_current());
        wait = if changed {
            base
        } else {
            (wait * 2).min(base * IDLE_SAMPLE_FACTOR)
        };
    }
}

/// Integrates the cgroup's memory use over time (trapezoid rule) and keeps the peak.
#[derive(Debug)]
struct Meter {
    state: Mutex<MeterState>,
}

#[derive(Debug)]
struct MeterState {
    started: Instant,
    last_at: Instant,
    last_bytes: u64,
    byte_seconds: f64,
    peak: u64,
    frozen: Option<ComputeUsage>,
}

impl MeterState {
    fn add(&mut self, bytes: u64, now: Instant) -> bool {
        let dt = now.duration_since(self.last_at).as_secs_f64();
        self.byte_seconds += (self.last_bytes as f64 + bytes as f64) / 2.0 * dt;
        self.last_at = now;
        let changed = bytes != self.last_bytes;
        self.last_bytes = bytes;
        self.peak = self.peak.max(bytes);
        changed
    }
}

impl Meter {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            state: Mutex::new(MeterState {
                started: now,
                last_at: now,
                last_bytes: 0,
                byte_seconds: 0.0,
                peak: 0,
                frozen: None,
            }),
        }
    }

    /// Adds the time since the last sample at the mean of then and now; whether the memory
    /// in use changed.
    fn integrate(&self, memory_current: u64) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        if s.frozen.is_some() {
            return false;
        }
        s.add(memory_current, Instant::now())
    }

    fn sample(&self, cgroup: &SandboxCgroup) -> ComputeUsage {
        let Ok(mut s) = self.state.lock() else {
            return ComputeUsage::default();
        };
        if let Some(f) = s.frozen {
            return f;
        }
        let c = cgroup.counters();
        let now = Instant::now();
        s.add(c.memory_current, now);
        s.peak = s.peak.max(c.memory_peak.unwrap_or(0));
        ComputeUsage {
            cpu_seconds: c.cpu_usec as f64 / 1e6,
            memory_peak_bytes: s.peak,
            memory_gb_seconds: s.byte_seconds / (1u64 << 30) as f64,
            oom_kills: c.oom_kills,
            wall_seconds: now.duration_since(s.started).as_secs_f64(),
        }
    }

    fn freeze(&self, usage: ComputeUsage) {
        if let Ok(mut s) = self.state.lock() {
            s.frozen = Some(usage);
        }
    }
}

/// One running (or ended) process sandbox. Dropping it kills the sandbox; `stop()` does so and
/// also waits for the end and releases the cgroup and run directory.
#[derive(Debug)]
pub struct SandboxHandle {
    id: String,
    session_id: String,
    tenant: TenantId,
    agent_socket: PathBuf,
    run_dir: PathBuf,
    agent_port: u16,
    init_pid: u32,
    cgroup: Arc<SandboxCgroup>,
    meter: Arc<Meter>,
    control: tokio::sync::Mutex<Option<ChildStdin>>,
    helper: tokio::sync::Mutex<Option<Child>>,
    exit_rx: watch::Receiver<Option<SandboxExit>>,
    stop_requested: Arc<AtomicBool>,
    stop_lock: tokio::sync::Mutex<Option<SandboxReport>>,
    output: Arc<Mutex<VecDeque<String>>>,
    tasks: Vec<JoinHandle<()>>,
    stop_timeout: Duration,
}

impl SandboxHandle {
    /// This sandbox's own id (random; names its cgroup and run directory).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Host pid of the sandbox's PID 1.
    /// The agent's port inside the sandbox.
    pub fn agent_port(&self) -> u16 {
        self.agent_port
    }

    pub fn init_pid(&self) -> u32 {
        self.init_pid
    }

    /// Host path of the Unix socket bridged to the agent's port inside the sandbox.
    pub fn agent_socket_path(&self) -> &Path {
        &self.agent_socket
    }

    /// Opens a connection to the agent's port (8080 by default) inside the sandbox: a TCP
    /// socket of the sandbox's network namespace, connected by its init and passed out through
    /// the agent bridge socket.
    pub async fn connect_agent(&self) -> Result<crate::AgentStream, SandboxError> {
        if let SandboxStatus::Ended(exit) = self.status() {
            return Err(SandboxError::NotRunning(exit.as_str().into()));
        }
        crate::bridge::connect(&self.agent_socket)
            .await
            .map_err(SandboxError::AgentConnect)
    }

    /// Waits until the agent listens on its port inside the sandbox, the agent ends, or
    /// `timeout` passes. A look is a connection through the agent bridge (the init's connect
    /// is refused at once while nothing listens); the agent sees a connection closed without
    /// a request when it succeeds.
    ///
    /// Not `/proc/<pid>/net/tcp`: reading it walks the kernel's TCP hash table, which all
    /// network namespaces share (262,144 buckets on a 24 GiB host: 4–5 ms of CPU per read).
    pub async fn wait_for_agent(&self, timeout: Duration) -> Result<(), SandboxError> {
        let start = Instant::now();
        // Looking every 2 ms at most keeps the time between the agent listening and the
        // session starting short; a refused look costs the host and the init about 0.1 ms.
        let mut delay = Duration::from_micros(250);
        loop {
            if let SandboxStatus::Ended(exit) = self.status() {
                return Err(SandboxError::NotRunning(format!(
                    "{} before listening on port {}",
                    exit.as_str(),
                    self.agent_port
                )));
            }
            let left = timeout.saturating_sub(start.elapsed());
            // Any failure means "not yet": refused while nothing listens, reset or gone while
            // the sandbox ends. A sandbox that ends during a look is reported, with its exit,
            // by the look at its status above.
            let look = tokio::time::timeout(left, crate::bridge::connect(&self.agent_socket));
            tokio::select! {
                looked = look => {
                    if let Ok(Ok(_)) = looked {
                        return Ok(());
                    }
                }
                _ = self.wait() => continue,
            }
            if start.elapsed() >= timeout {
                return Err(SandboxError::AgentNotReady {
                    port: self.agent_port,
                    waited: timeout,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(2));
        }
    }

    /// Whether the sandbox still runs, or how it ended.
    pub fn status(&self) -> SandboxStatus {
        match *self.exit_rx.borrow() {
            Some(exit) => SandboxStatus::Ended(exit),
            None => SandboxStatus::Running,
        }
    }

    /// Waits until the sandbox ends (by itself or through `stop()`), and says how.
    pub async fn wait(&self) -> SandboxExit {
        let mut rx = self.exit_rx.clone();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            if rx.changed().await.is_err() {
                return SandboxExit::Stopped;
            }
        }
    }

    /// Compute consumed so far (final figures once stopped).
    pub fn usage(&self) -> ComputeUsage {
        self.meter.sample(&self.cgroup)
    }

    /// Host pids of the processes in the sandbox's cgroup.
    pub fn pids(&self) -> Vec<u32> {
        self.cgroup.pids()
    }

    /// Tasks (processes and threads) the pids controller counts now.
    pub fn tasks_current(&self) -> Option<u64> {
        self.cgroup.pids_current()
    }

    /// How many forks the process limit has refused so far.
    pub fn pids_limit_hits(&self) -> Option<u64> {
        self.cgroup.pids_limit_hits()
    }

    /// The sandbox's cgroup directories (`v1`: one per hierarchy).
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        self.cgroup.dirs()
    }

    /// `"v1"` or `"v2"`.
    pub fn cgroup_version(&self) -> &'static str {
        self.cgroup.version()
    }

    /// The last lines the agent (and the helper) wrote to stdout/stderr.
    pub fn recent_output(&self) -> Vec<String> {
        recent(&self.output)
    }

    /// Kills every process of the sandbox, waits for the end, releases the cgroup and the run
    /// directory, and returns how the sandbox ended with its final usage. Idempotent.
    pub async fn stop(&self) -> Result<SandboxReport, SandboxError> {
        let mut done = self.stop_lock.lock().await;
        if let Some(report) = *done {
            return Ok(report);
        }
        self.stop_requested.store(true, Ordering::SeqCst);
        if let Some(mut stdin) = self.control.lock().await.take() {
            let _ = stdin.write_all(b"kill\n").await;
        }
        // The helper kills the init through its pidfd; the kernel then kills everything else
        // in the PID namespace and the init's exit waits for them, so the exit report means
        // the sandbox is empty. The cgroup sweep is the fallback for a helper that does not
        // answer.
        let exit = match tokio::time::timeout(self.stop_timeout, self.wait()).await {
            Ok(exit) => exit,
            Err(_) => {
                let cg = Arc::clone(&self.cgroup);
                let _ =
                    tokio::task::spawn_blocking(move || cg.kill_all(Duration::from_secs(1))).await;
                SandboxExit::Stopped
            }
        };
        if let Some(mut child) = self.helper.lock().await.take()
            && tokio::time::timeout(self.stop_timeout, child.wait())
                .await
                .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        let usage = self.meter.sample(&self.cgroup);
        self.meter.freeze(usage);
        for t in &self.tasks[1..] {
            t.abort();
        }
        let cg = Arc::clone(&self.cgroup);
        tokio::task::spawn_blocking(move || {
            cg.kill_all(Duration::from_secs(1));
            cg.remove(Duration::from_secs(3))
        })
        .await
        .map_err(|e| SandboxError::io("cgroup removal task", std::io::Error::other(e)))??;
        let _ = fs::remove_dir_all(&self.run_dir);
        let report = SandboxReport { exit, usage };
        *done = Some(report);
        Ok(report)
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let stopped = self
            .stop_lock
            .try_lock()
            .map(|g| g.is_some())
            .unwrap_or(false);
        if stopped {
            return;
        }
        // Closing the helper's stdin tells it to kill the sandbox. Then sweep the cgroup
        // briefly here (the processes die within a millisecond or two of SIGKILL), and hand
        // what is left to a thread rather than blocking longer.
        drop(self.control.get_mut().take());
        if !release_blocking(&self.cgroup, &self.run_dir, Duration::from_millis(50)) {
            let cgroup = Arc::clone(&self.cgroup);
            let run_dir = self.run_dir.clone();
            let _ = std::thread::Builder::new()
                .name("tenantry-sandbox-cleanup".into())
                .spawn(move || release_blocking(&cgroup, &run_dir, Duration::from_secs(3)));
        }
    }
}

/// Whether a TCP socket listens on `port` in the network namespace of process `pid`, as its
/// `/proc/<pid>/net/tcp{,6}` shows. Each read walks the kernel's TCP hash table, which all
/// network namespaces share (milliseconds on a large host; see
/// `SandboxHandle::wait_for_agent`): for diagnostics and baselines, not for polling.
pub fn port_listening_in(pid: u32, port: u16) -> bool {
    ["tcp", "tcp6"].iter().any(|f| {
        fs::read_to_string(format!("/proc/{pid}/net/{f}")).is_ok_and(|t| listening_on(&t, port))
    })
}

/// Whether `/proc/net/tcp`-format text shows a listening socket on `port`.
fn listening_on(table: &str, port: u16) -> bool {
    let want = format!("{port:04X}");
    table.lines().skip(1).any(|l| {
        let mut f = l.split_whitespace();
        let local = f.nth(1).unwrap_or("");
        let state = f.nth(1).unwrap_or("");
        state == "0A" && local.rsplit(':').next() == Some(want.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_integral_is_exact_for_flat_stretches_at_any_pace() {
        let t0 = Instant::now();
        let mut s = MeterState {
            started: t0,
            last_at: t0,
            last_bytes: 0,
            byte_seconds: 0.0,
            peak: 0,
            frozen: None,
        };
        assert!(
            s.add(1000, t0 + Duration::from_secs(1)),
            "0 -> 1000 is a change"
        );
        assert!((s.byte_seconds - 500.0).abs() < 1e-6);
        // Flat: one sample 4 s later integrates the same as many in between.
        assert!(!s.add(1000, t0 + Duration::from_secs(5)));
        assert!((s.byte_seconds - 4500.0).abs() < 1e-6);
        assert!(s.add(3000, t0 + Duration::from_secs(6)));
        assert!((s.byte_seconds - 6500.0).abs() < 1e-6);
        assert_eq!(s.peak, 3000);
    }

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
    fn proc_net_tcp_listening_is_parsed() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0100007F:23DC 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n";
        assert!(listening_on(t, 8080));
        assert!(!listening_on(t, 9180), "established, not listening");
        assert!(!listening_on(t, 80));
    }

    #[test]
    fn exits_are_classified() {
        use ProcessEnd::{Code, Signal};
        assert_eq!(
            classify_exit(Some(Signal(9)), Code(0), 1, false),
            SandboxExit::OutOfMemory
        );
        assert_eq!(
            classify_exit(Some(Signal(9)), Code(0), 0, false),
            SandboxExit::Signaled { signal: 9 }
        );
        assert_eq!(
            classify_exit(Some(Code(3)), Code(0), 0, false),
            SandboxExit::Exited { code: 3 }
        );
        assert_eq!(
            classify_exit(None, Signal(9), 0, true),
            SandboxExit::Stopped
        );
        assert_eq!(
            classify_exit(None, Signal(9), 2, false),
            SandboxExit::OutOfMemory
        );
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
