//! Each session's agent output, kept on the host: every line the agent writes (stdout and
//! stderr), timestamped, appended to a log file beside the session's storage — not inside it,
//! so the agent can neither rewrite its log nor spend its storage quota on it. The file is
//! bounded by the tier (`sandbox.log_kb`): it rotates to `.1` at half the bound, so at most the
//! bound is kept and the oldest lines go first. It lives as long as the session's storage and
//! is deleted with it (reset, expiry, tenant deletion).

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tenantry_runtime::{OutputFeed, OutputLine};
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast::error::RecvError;

use super::*;

/// One line of a session's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LogLine {
    /// When the platform read it, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub text: String,
}

/// Where a session's log is, given its storage directory: `<dir>.log` (and `<dir>.log.1`).
pub(super) fn log_file(storage_dir: &Path) -> PathBuf {
    let mut name = storage_dir.as_os_str().to_owned();
    name.push(".log");
    PathBuf::from(name)
}

fn rotated(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Deletes a session's log (both files); a missing one is not an error.
pub(super) fn remove_log(storage_dir: &Path) {
    let log = log_file(storage_dir);
    for f in [rotated(&log), log] {
        if let Err(e) = std::fs::remove_file(&f)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %f.display(), error = %e, "cannot delete a session log");
        }
    }
}

impl SessionManager {
    /// Starts appending the sandbox's output to the session's log, from the lines it kept
    /// (a warm sandbox's start-up included) until the sandbox is gone.
    pub(super) fn keep_log(&self, live: &Live, session: &SessionId, tier: &Tier) {
        let path = log_file(&self.storage_dir(&live.tenant_uid, session));
        let max_bytes = u64::from(tier.sandbox.log_kb) * 1024;
        let feed = live.sandbox.handle.follow_output();
        tokio::spawn(write_log(feed, path, max_bytes));
    }

    /// The last `tail` lines of the session's log, oldest first (none when it has none).
    pub async fn read_log(
        &self,
        tenant: &TenantUid,
        session: &SessionId,
        tail: usize,
    ) -> Result<Vec<LogLine>, SessionError> {
        let log = log_file(&self.storage_dir(tenant, session));
        tokio::task::spawn_blocking(move || {
            let mut lines = Vec::new();
            for f in [rotated(&log), log] {
                read_lines(&f, 0, &mut lines)?;
            }
            let skip = lines.len().saturating_sub(tail);
            Ok::<_, std::io::Error>(lines.split_off(skip))
        })
        .await
        .map_err(|e| SessionError::internal("reading a session log", e))?
        .map_err(|e| SessionError::internal("reading a session log", e))
    }

    /// Where a follower of the session's log starts: the end of what is there now.
    pub fn log_cursor(&self, tenant: &TenantUid, session: &SessionId) -> LogCursor {
        let path = log_file(&self.storage_dir(tenant, session));
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        LogCursor { path, offset }
    }
}

/// A follower's place in a session's log.
#[derive(Debug)]
pub struct LogCursor {
    path: PathBuf,
    offset: u64,
}

impl LogCursor {
    /// The whole lines appended since the last call. After a rotation the rest of the rotated
    /// file comes first, so no line is skipped.
    pub async fn next_lines(&mut self) -> Vec<LogLine> {
        let path = self.path.clone();
        let offset = self.offset;
        let read = tokio::task::spawn_blocking(move || {
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let mut lines = Vec::new();
            let start = if len < offset {
                // Rotated: finish the old file, then read the new one from its start.
                let _ = read_lines(&rotated(&path), offset, &mut lines);
                0
            } else {
                offset
            };
            let end = read_lines(&path, start, &mut lines).unwrap_or(start);
            (lines, end)
        })
        .await;
        match read {
            Ok((lines, end)) => {
                self.offset = end;
                lines
            }
            Err(_) => Vec::new(),
        }
    }
}

/// Appends the whole lines of `file` from byte `from` to `out`; returns the offset after the
/// last whole line read (a line being written is left for the next read).
fn read_lines(file: &Path, from: u64, out: &mut Vec<LogLine>) -> std::io::Result<u64> {
    let mut f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(from),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(from))?;
    let mut reader = std::io::BufReader::new(f.take(u64::MAX));
    let mut at = from;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Ok(at);
        }
        at += n as u64;
        if let Ok(line) = serde_json::from_slice::<LogLine>(&buf) {
            out.push(line);
        }
    }
}

/// Appends each line of `feed` to the log at `path`, rotating it at half of `max_bytes`.
async fn write_log(mut feed: OutputFeed, path: PathBuf, max_bytes: u64) {
    let mut log = match LogWriter::open(path, max_bytes).await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open a session log; its output is not kept");
            return;
        }
    };
    let mut last_seq = 0;
    for line in std::mem::take(&mut feed.kept) {
        last_seq = line.seq;
        log.append(&line).await;
    }
    loop {
        match feed.next.recv().await {
            Ok(line) if line.seq <= last_seq => {}
            Ok(line) => {
                last_seq = line.seq;
                log.append(&line).await;
            }
            Err(RecvError::Lagged(n)) => {
                let note = OutputLine {
                    seq: last_seq,
                    at_ms: unix_now() * 1000,
                    text: format!("[{n} lines of output were not kept: written faster than kept]"),
                };
                log.append(&note).await;
            }
            Err(RecvError::Closed) => return,
        }
    }
}

struct LogWriter {
    path: PathBuf,
    file: tokio::fs::File,
    len: u64,
    max_bytes: u64,
}

impl LogWriter {
    async fn open(path: PathBuf, max_bytes: u64) -> std::io::Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await?;
        let len = file.metadata().await?.len();
        Ok(Self {
            path,
            file,
            len,
            max_bytes,
        })
    }

    async fn append(&mut self, line: &OutputLine) {
        let mut json = match serde_json::to_vec(&LogLine {
            time_ms: line.at_ms,
            text: line.text.clone(),
        }) {
            Ok(j) => j,
            Err(_) => return,
        };
        json.push(b'\n');
        if self.len + json.len() as u64 > self.max_bytes / 2
            && self.len > 0
            && let Err(e) = self.rotate().await
        {
            tracing::warn!(error = %e, "cannot rotate a session log");
            return;
        }
        // Flushed line by line: a reader sees each line as soon as it is appended.
        let written = match self.file.write_all(&json).await {
            Ok(()) => self.file.flush().await,
            Err(e) => Err(e),
        };
        match written {
            Ok(()) => self.len += json.len() as u64,
            Err(e) => tracing::warn!(error = %e, "cannot append to a session log"),
        }
    }

    async fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush().await?;
        tokio::fs::rename(&self.path, rotated(&self.path)).await?;
        self.file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await?;
        self.len = 0;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_log_keeps_at_most_its_bound_newest_lines_last() {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("session");
        let path = log_file(&storage);
        let mut log = LogWriter::open(path.clone(), 4096).await.unwrap();
        for seq in 1..=500 {
            let line = OutputLine {
                seq,
                at_ms: 1_700_000_000_000 + seq as i64,
                text: format!("line {seq}"),
            };
            log.append(&line).await;
        }
        let kept = std::fs::metadata(&path).unwrap().len()
            + std::fs::metadata(rotated(&path)).unwrap().len();
        assert!(kept <= 4096, "{kept} bytes kept");
        let mut lines = Vec::new();
        for f in [rotated(&path), path.clone()] {
            read_lines(&f, 0, &mut lines).unwrap();
        }
        assert_eq!(lines.last().map(|l| l.text.as_str()), Some("line 500"));
        let seqs: Vec<i64> = lines.iter().map(|l| l.time_ms).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] + 1 == w[1]),
            "in order, none missing"
        );
        remove_log(&storage);
        assert!(!path.exists() && !rotated(&path).exists());
    }
}
