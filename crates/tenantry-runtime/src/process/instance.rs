//! A running process sandbox (`ProcessInstance`): what every backend's instance offers (see
//! `SandboxInstance`) and the process backend's own diagnostics (init pid, cgroups, tasks),
//! which only code that names this type can reach. Dropping it kills the sandbox.

use std::any::Any;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tenantry_core::TenantId;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::monitor::Meter;
use super::release_blocking;
use crate::SandboxError;
use crate::cgroup::SandboxCgroup;
use crate::instance::{AgentConnection, SandboxInstance};
use crate::sandbox::{ComputeUsage, SandboxExit, SandboxFuture, SandboxReport, SandboxStatus};

/// One running (or ended) process sandbox. Dropping it kills the sandbox; `stop()` does so and
/// also waits for the end and releases the cgroup and run directory.
#[derive(Debug)]
pub struct ProcessInstance {
    pub(super) id: String,
    pub(super) session_id: String,
    pub(super) tenant: TenantId,
    pub(super) agent_socket: PathBuf,
    pub(super) run_dir: PathBuf,
    pub(super) agent_port: u16,
    pub(super) init_pid: u32,
    pub(super) cgroup: Arc<SandboxCgroup>,
    pub(super) meter: Arc<Meter>,
    pub(super) control: tokio::sync::Mutex<Option<ChildStdin>>,
    pub(super) helper: tokio::sync::Mutex<Option<Child>>,
    pub(super) exit_rx: watch::Receiver<Option<SandboxExit>>,
    pub(super) stop_requested: Arc<AtomicBool>,
    pub(super) stop_lock: tokio::sync::Mutex<Option<SandboxReport>>,
    pub(super) output: Arc<crate::output::Output>,
    pub(super) tasks: Vec<JoinHandle<()>>,
    pub(super) stop_timeout: Duration,
}

impl ProcessInstance {
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

    /// The agent's port inside the sandbox.
    pub fn agent_port(&self) -> u16 {
        self.agent_port
    }

    /// Host pid of the sandbox's PID 1.
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
        self.output.recent()
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

impl SandboxInstance for ProcessInstance {
    fn id(&self) -> &str {
        &self.id
    }

    fn session_id(&self) -> &str {
        &self.session_id
    }

    fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    fn agent_port(&self) -> u16 {
        self.agent_port
    }

    fn connect_agent(&self) -> SandboxFuture<'_, Result<AgentConnection, SandboxError>> {
        Box::pin(async move {
            let stream = ProcessInstance::connect_agent(self).await?;
            Ok(Box::new(stream) as AgentConnection)
        })
    }

    fn wait_for_agent(&self, timeout: Duration) -> SandboxFuture<'_, Result<(), SandboxError>> {
        Box::pin(ProcessInstance::wait_for_agent(self, timeout))
    }

    fn status(&self) -> SandboxStatus {
        ProcessInstance::status(self)
    }

    fn wait(&self) -> SandboxFuture<'_, SandboxExit> {
        Box::pin(ProcessInstance::wait(self))
    }

    fn usage(&self) -> ComputeUsage {
        ProcessInstance::usage(self)
    }

    fn recent_output(&self) -> Vec<String> {
        ProcessInstance::recent_output(self)
    }

    fn follow_output(&self) -> crate::output::OutputFeed {
        self.output.follow()
    }

    fn stop(&self) -> SandboxFuture<'_, Result<SandboxReport, SandboxError>> {
        Box::pin(ProcessInstance::stop(self))
    }

    /// The sandbox's root as its init sees it, through `/proc/<init>/root`.
    fn host_path(&self, inside: &Path) -> Option<PathBuf> {
        let rel = inside.strip_prefix("/").unwrap_or(inside);
        Some(PathBuf::from(format!("/proc/{}/root", self.init_pid)).join(rel))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for ProcessInstance {
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
/// `ProcessInstance::wait_for_agent`): for diagnostics and baselines, not for polling.
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
    fn proc_net_tcp_listening_is_parsed() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0100007F:23DC 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n";
        assert!(listening_on(t, 8080));
        assert!(!listening_on(t, 9180), "established, not listening");
        assert!(!listening_on(t, 80));
    }
}
