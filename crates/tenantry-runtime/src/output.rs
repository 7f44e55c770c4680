//! A sandbox's output: every line the agent writes to stdout or stderr, numbered and
//! timestamped, the last ones kept (bounded) and each one offered to followers as it comes.
//!
//! Keeping and offering happen under one lock, so a follower that takes the kept lines and
//! subscribes at once sees every line exactly once: none missing between the two, none twice.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::broadcast;

/// Lines kept for diagnostics and for a follower's start.
const KEPT_LINES: usize = 200;
/// Lines a slow follower may fall behind before it is told it missed some.
const FEED_CAPACITY: usize = 1024;

/// One line the agent (or the sandbox helper) wrote, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// 1 for the sandbox's first line, then one more for each.
    pub seq: u64,
    /// When the platform read it, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub text: String,
}

/// The output so far (the kept tail) and what follows it.
#[derive(Debug)]
pub struct OutputFeed {
    pub kept: Vec<OutputLine>,
    /// Closed when the sandbox is gone; `Lagged(n)` when the follower fell `n` lines behind.
    pub next: broadcast::Receiver<OutputLine>,
}

/// The output of one sandbox.
#[derive(Debug)]
pub struct Output {
    inner: Mutex<Kept>,
    feed: broadcast::Sender<OutputLine>,
}

#[derive(Debug, Default)]
struct Kept {
    lines: VecDeque<OutputLine>,
    last_seq: u64,
}

impl Default for Output {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Kept::default()),
            feed: broadcast::channel(FEED_CAPACITY).0,
        }
    }
}

impl Output {
    /// Records a line read from the sandbox now.
    pub fn push(&self, text: String) {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let Ok(mut kept) = self.inner.lock() else {
            return;
        };
        kept.last_seq += 1;
        let line = OutputLine {
            seq: kept.last_seq,
            at_ms,
            text,
        };
        if kept.lines.len() == KEPT_LINES {
            kept.lines.pop_front();
        }
        kept.lines.push_back(line.clone());
        // No follower is not an error.
        let _ = self.feed.send(line);
    }

    /// The texts of the kept lines, oldest first.
    pub fn recent(&self) -> Vec<String> {
        self.inner
            .lock()
            .map(|k| k.lines.iter().map(|l| l.text.clone()).collect())
            .unwrap_or_default()
    }

    /// The kept lines and a subscription to every line after them.
    pub fn follow(&self) -> OutputFeed {
        let kept = self.inner.lock();
        let next = self.feed.subscribe();
        OutputFeed {
            kept: kept
                .map(|k| k.lines.iter().cloned().collect())
                .unwrap_or_default(),
            next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_follower_sees_each_line_once_in_order() {
        let out = Output::default();
        for i in 0..KEPT_LINES + 5 {
            out.push(format!("line {i}"));
        }
        let mut feed = out.follow();
        assert_eq!(feed.kept.len(), KEPT_LINES);
        assert_eq!(feed.kept[0].seq, 6);
        assert_eq!(feed.kept.last().map(|l| l.seq), Some(KEPT_LINES as u64 + 5));
        out.push("after".into());
        let next = feed.next.recv().await.expect("the next line");
        assert_eq!(
            (next.seq, next.text.as_str()),
            (KEPT_LINES as u64 + 6, "after")
        );
        assert_eq!(out.recent().last().map(String::as_str), Some("after"));
    }
}
