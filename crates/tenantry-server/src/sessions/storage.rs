//! Session storage and its size limit. Two ways, chosen at start (`[runtime] storage_limit`):
//!
//! * `image`: each session's storage is an ext4 image of the tier's `storage_mb`, loop-mounted
//!   for its sandbox only (see `tenantry_runtime::storage`): a write past the size fails with
//!   ENOSPC at once, from any process, and the agent can always delete files to make room;
//! * `measure` (the soft limit, where images are not possible): the storage is a directory,
//!   measured after each invocation and on resume; a session found over its size is refused
//!   until the owner resets its storage.
//!
//! A session whose storage is still a directory with files in it (from before images were
//! enabled) keeps its directory, measured, so nothing of it is lost.
//!
//! The owner can reset a session's storage (stop it and delete everything in it) at any time.

use super::*;
use crate::config::StorageLimit;
use tenantry_runtime::storage::BlankImages;

/// Blank images kept ready per storage size in use (each one a rename away from a session's).
const BLANKS_PER_SIZE: usize = 2;

pub(super) fn storage_exceeded(limit: u64) -> SessionError {
    SessionError::StorageExceeded { limit_bytes: limit }
}

/// How session storage is sized on this host, decided once at start: blank images when they are
/// to be used, and, when `image` was required but the host cannot do it, why sessions cannot
/// start (the server then gets a sandbox backend that refuses every launch with that reason).
#[derive(Debug)]
pub struct SessionStorage {
    pub(super) blanks: Option<Arc<BlankImages>>,
    refusal: Option<String>,
}

impl SessionStorage {
    pub fn prepare(settings: &SessionSettings) -> Self {
        let (blanks, refusal) = storage_images(settings);
        Self { blanks, refusal }
    }

    /// Why no session can start on this host because of its storage, if that is the case.
    pub fn refusal(&self) -> Option<&str> {
        self.refusal.as_deref()
    }
}

/// How the storage size will be enforced: blank images when they are to be used, and, when
/// `image` was required but the host cannot do it, why sessions cannot start.
fn storage_images(settings: &SessionSettings) -> (Option<Arc<BlankImages>>, Option<String>) {
    let mode = settings.storage_limit;
    if mode == StorageLimit::Measure {
        tracing::info!(
            "session storage size is measured after each invocation (runtime.storage_limit = \"measure\"): a soft limit"
        );
        return (None, None);
    }
    let blanks = tenantry_runtime::storage::image_support().and_then(|mkfs| {
        BlankImages::new(settings.storage_root.join(".blank"), mkfs, BLANKS_PER_SIZE)
            .map_err(|e| format!("cannot prepare {}: {e}", settings.storage_root.display()))
    });
    match (blanks, mode) {
        (Ok(blanks), _) => {
            tracing::info!(
                "session storage is a fixed-size image per session: the tier's storage_mb is a hard limit"
            );
            (Some(blanks), None)
        }
        (Err(why), StorageLimit::Image) => {
            tracing::error!(reason = %why,
                "runtime.storage_limit = \"image\" but this host cannot give sessions image storage: sessions cannot start");
            (
                None,
                Some(format!(
                    "runtime.storage_limit is \"image\" but this host cannot provide it: {why}"
                )),
            )
        }
        (Err(why), _) => {
            tracing::warn!(reason = %why,
                "SESSION STORAGE SIZE IS NOT A HARD LIMIT on this host: storage is measured after each invocation and on resume, and an agent can write past its tier's storage_mb until then (set runtime.storage_limit = \"measure\" to silence this)");
            (None, None)
        }
    }
}

/// Bytes used by the files below `dir` (symbolic links are not followed).
pub(super) async fn measure_storage(dir: PathBuf) -> u64 {
    tokio::task::spawn_blocking(move || {
        let mut total = 0u64;
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    stack.push(entry.path());
                } else {
                    total = total.saturating_add(meta.len());
                }
            }
        }
        total
    })
    .await
    .unwrap_or(0)
}

impl SessionManager {
    /// The image a session whose storage directory is `storage` runs on: `None` without
    /// images, or when the directory already holds files of its own (kept as it is).
    pub(super) fn image_for(&self, storage: &Path) -> Option<PathBuf> {
        self.inner.blanks.as_ref()?;
        let image = image_of(storage);
        let legacy =
            !image.exists() && std::fs::read_dir(storage).is_ok_and(|mut d| d.next().is_some());
        (!legacy).then_some(image)
    }

    /// Creates the session's storage directory (0700) and, when it runs on an image, puts an
    /// empty one of `size_mb` in place if it has none yet. The image, if any.
    pub(super) async fn prepare_storage(
        &self,
        storage: &Path,
        size_mb: u32,
    ) -> Result<Option<PathBuf>, SessionError> {
        tenantry_runtime::storage::create_private_dir(storage)
            .map_err(|e| SessionError::internal("creating session storage", e))?;
        let Some(image) = self.image_for(storage) else {
            return Ok(None);
        };
        if image.exists() {
            return Ok(Some(image));
        }
        let Some(blanks) = self.inner.blanks.clone() else {
            return Ok(None);
        };
        let dest = image.clone();
        tokio::task::spawn_blocking(move || blanks.place(size_mb, &dest))
            .await
            .map_err(|e| SessionError::internal("preparing session storage", e))?
            .map_err(|e| SessionError::internal("preparing a session storage image", e))?;
        Ok(Some(image))
    }

    /// Where the host sees the session's files now: inside its running sandbox when they are
    /// on an image (mounted there only), else its storage directory. For operators and tests.
    pub fn storage_view(&self, tenant: &TenantUid, session: &SessionId) -> PathBuf {
        let key = (tenant.clone(), session.clone());
        if let Some(live) = self.live(&key)
            && live.running()
            && live.sandbox.image.is_some()
            && let Some(seen) = live
                .sandbox
                .handle
                .host_path(&live.runtime.spec.storage.mount_path)
        {
            return seen;
        }
        self.storage_dir(tenant, session)
    }

    /// Stops the session (reason `storage_reset`) if it runs and deletes its storage, under
    /// the session's lock (a start racing it waits, then finds empty storage). Whether the
    /// session was running.
    pub async fn reset_storage(
        &self,
        tenant: &TenantUid,
        session: &SessionId,
    ) -> Result<bool, SessionError> {
        let key = (tenant.clone(), session.clone());
        let (entry, _lock) = self.lock_entry(&key).await?;
        let _vacate = start::Vacate {
            manager: self,
            key: key.clone(),
            entry: entry.clone(),
        };
        let was_running = match entry.live() {
            Some(live) => {
                entry.set(None);
                self.finish(&key, live, "storage_reset").await;
                true
            }
            None => false,
        };
        let dir = self.storage_dir(tenant, session);
        tokio::task::spawn_blocking(move || {
            logs::remove_log(&dir);
            remove_storage(&dir)
        })
        .await
        .map_err(|e| SessionError::internal("resetting session storage", e))?
        .map_err(|e| SessionError::internal("resetting session storage", e))?;
        tracing::info!(tenant.uid = %tenant, session.id = %session, was_running, "session storage reset");
        Ok(was_running)
    }
}
