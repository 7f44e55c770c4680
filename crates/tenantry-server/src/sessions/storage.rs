//! Session storage size: measured after each invocation and on resume (the soft limit).

use super::*;

pub(super) fn storage_exceeded(limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::StorageExceeded,
        format!(
            "the session's storage holds more than its tier allows ({} MiB); the agent must delete files, or the operator raise the tier's sandbox.storage_mb",
            limit / (1024 * 1024)
        ),
    )
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
