//! Following a running process sandbox: the helper's events (ready, set-up failure, exit), the
//! agent's output (logged and kept, bounded), how the sandbox ended, and the meter that
//! integrates its memory use. It only reads the cgroup; it must never act on the sandbox.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tenantry_core::TenantId;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::ChildStdout;
use tokio::sync::watch;

use crate::cgroup::SandboxCgroup;
use crate::output::Output;
use crate::protocol::{HelperEvent, ProcessEnd};
use crate::sandbox::{ComputeUsage, SandboxExit};

/// The longest line kept: longer ones are cut.
const OUTPUT_LINE_MAX: usize = 4096;

pub(super) async fn next_event(events: &mut BufReader<ChildStdout>) -> Option<HelperEvent> {
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

pub(super) async fn collect_output(
    stderr: tokio::process::ChildStderr,
    output: Arc<Output>,
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
                output.push(line);
            }
        }
    }
}

/// Decides how the sandbox ended from the helper's report and the cgroup's OOM counter.
pub(super) fn classify_exit(
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

pub(super) async fn watch_exit(
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

pub(super) async fn sample_memory(cgroup: Arc<SandboxCgroup>, meter: Arc<Meter>, every: Duration) {
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
pub(super) struct Meter {
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
    pub(super) fn new() -> Self {
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
    pub(super) fn integrate(&self, memory_current: u64) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        if s.frozen.is_some() {
            return false;
        }
        s.add(memory_current, Instant::now())
    }

    pub(super) fn sample(&self, cgroup: &SandboxCgroup) -> ComputeUsage {
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

    pub(super) fn freeze(&self, usage: ComputeUsage) {
        if let Ok(mut s) = self.state.lock() {
            s.frozen = Some(usage);
        }
    }
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
}
