//! Spare helpers: sandbox helpers started ahead of need, exec'd and waiting for a spec on their
//! stdin, so that a launch does not wait for the helper's own start-up. A spare has read
//! nothing, so it holds nothing of any tenant's; it must never be handed a second spec.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::SandboxError;

/// How long after a launch its spare is replaced: after the new sandbox's own set-up has
/// begun, yet soon enough for sessions that arrive a few milliseconds apart.
pub(super) const SPARE_REFILL_DELAY: Duration = Duration::from_millis(5);

/// Helpers waiting for a spec (see `ProcessSandboxConfig::spare_helpers`). A spare has read
/// nothing yet, so it is no one's; dropping one closes its stdin, and it exits.
#[derive(Debug)]
pub(super) struct Spares {
    pub(super) helper: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) want: usize,
    pub(super) ready: Mutex<Vec<Child>>,
    pub(super) refilling: AtomicBool,
}

impl Spares {
    pub(super) fn spawn(&self) -> Result<Child, SandboxError> {
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
    pub(super) fn take(&self) -> Option<Child> {
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
    pub(super) fn refill(self: &Arc<Self>, delay: Duration) {
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

    pub(super) fn alive(&self) -> Vec<u32> {
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        ready.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        ready.iter().filter_map(Child::id).collect()
    }
}
