//! Output checks on a streamed answer, without waiting for its end.
//!
//! The scanner holds back the last `window` characters it was given (the longest match any
//! local check can make) and releases everything before them, masked. A match that could
//! still grow with the next chunk is always inside the held-back part, so a secret split across
//! chunks at any point is masked whole; a match that reaches into the releasable part moves
//! the release point back to its start. A blocking finding ends the stream. To keep the cost
//! per character constant, text is scanned in steps of at least `window / 2` characters, so at
//! most `window + step` characters are held back at any time.
//!
//! Remote checks (judge, webhook) answer for a whole text: they run once, at the end, on the
//! full answer, before the held-back tail is released.

use std::sync::Arc;

use crate::engine::{Context, Found, Guard, Hit, mask};
use crate::profile::{Action, Stage};

/// Characters of already released text kept as left context, so words and boundaries that
/// straddle the release point are seen whole.
const CONTEXT: usize = 32;
/// The most text kept for the remote checks at the end, in bytes.
const MAX_FULL_TEXT: usize = 1 << 20;

/// What to do after a piece of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this text on (possibly empty).
    Emit(String),
    /// End the stream with `guardrail_blocked` for this category.
    Blocked { category: String },
}

#[derive(Debug)]
pub struct StreamScanner {
    guard: Arc<Guard>,
    stage: Stage,
    window: usize,
    step: usize,
    /// Released text, last `CONTEXT` characters, unmasked.
    context: String,
    pending: String,
    pending_chars: usize,
    /// The whole answer, for the remote checks at the end.
    full: Option<String>,
    findings: Vec<Found>,
}

fn char_boundary_back(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl StreamScanner {
    pub fn new(guard: Arc<Guard>, stage: Stage, ctx: &Context<'_>) -> Self {
        let window = guard.window(stage, ctx.leak);
        let full = guard.has_remote(stage).then(String::new);
        Self {
            guard,
            stage,
            window,
            step: if window == 0 { 0 } else { (window / 2).max(64) },
            context: String::new(),
            pending: String::new(),
            pending_chars: 0,
            full,
            findings: Vec::new(),
        }
    }

    /// How many characters are held back at most.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Every finding so far (categories and actions, each once).
    pub fn findings(&self) -> &[Found] {
        &self.findings
    }

    fn note(&mut self, hits: &[Hit], offset: usize, cut: usize) {
        for h in hits {
            let counts = match (h.span, h.action) {
                (_, Action::Block) => true,
                (None, _) => true,
                (Some((s, _)), _) => s >= offset && s < offset + cut,
            };
            if counts {
                let f = Found {
                    category: h.category.clone(),
                    action: h.action,
                };
                if !self.findings.contains(&f) {
                    self.findings.push(f);
                }
            }
        }
    }

    /// Feeds a piece of the answer.
    pub fn push(&mut self, text: &str, ctx: &Context<'_>) -> Step {
        if let Some(full) = &mut self.full
            && full.len() + text.len() <= MAX_FULL_TEXT
        {
            full.push_str(text);
        }
        self.pending.push_str(text);
        self.pending_chars += text.chars().count();
        if self.pending_chars < self.window + self.step {
            return Step::Emit(String::new());
        }
        self.release(false, ctx)
    }

    /// The end of the answer: runs the remote checks and releases what was held back.
    pub async fn finish(&mut self, ctx: &Context<'_>) -> Step {
        if let Some(full) = self.full.take() {
            let mut verdict = crate::engine::Verdict::pass();
            self.guard
                .check_remote(self.stage, &full, ctx, &mut verdict)
                .await;
            for f in verdict.findings {
                if !self.findings.contains(&f) {
                    self.findings.push(f);
                }
            }
            if let crate::engine::Outcome::Blocked { category } = verdict.outcome {
                return Step::Blocked { category };
            }
        }
        self.release(true, ctx)
    }

    fn release(&mut self, all: bool, ctx: &Context<'_>) -> Step {
        let offset = self.context.len();
        let scan = format!("{}{}", self.context, self.pending);
        let hits = self.guard.scan_local(self.stage, &scan, ctx);
        if let Some(b) = hits
            .iter()
            .filter(|h| h.action == Action::Block)
            .min_by_key(|h| h.check)
        {
            let category = b.category.clone();
            self.note(&hits, offset, self.pending.len());
            return Step::Blocked { category };
        }
        // Release all but the last `window` characters, then move the cut back before any
        // masked match that crosses it.
        let mut cut = if all {
            self.pending.len()
        } else {
            let keep = self.window;
            let skip = self.pending_chars.saturating_sub(keep);
            self.pending
                .char_indices()
                .nth(skip)
                .map(|(i, _)| i)
                .unwrap_or(self.pending.len())
        };
        loop {
            let crossing = hits
                .iter()
                .filter(|h| h.action == Action::Mask)
                .find_map(|h| {
                    let (s, e) = h.span?;
                    let (s, e) = (s.saturating_sub(offset), e.saturating_sub(offset));
                    (s < cut && e > cut).then_some(s)
                });
            match crossing {
                Some(s) => cut = char_boundary_back(&self.pending, s),
                None => break,
            }
        }
        self.note(&hits, offset, cut);
        // The hits as spans of the released part, clamped to it.
        let released: Vec<Hit> = hits
            .iter()
            .filter_map(|h| {
                let (s, e) = h.span?;
                if e <= offset {
                    return None;
                }
                let s = s.saturating_sub(offset);
                let e = e - offset;
                (s < cut).then(|| Hit {
                    span: Some((s, e.min(cut))),
                    ..h.clone()
                })
            })
            .collect();
        let part = &self.pending[..cut];
        let out = mask(part, &released).unwrap_or_else(|| part.to_owned());
        // Keep the last characters of the released (original) text as context.
        let mut context = std::mem::take(&mut self.context);
        context.push_str(part);
        let n = context.chars().count();
        if n > CONTEXT {
            let from = context
                .char_indices()
                .nth(n - CONTEXT)
                .map(|(i, _)| i)
                .unwrap_or(0);
            context.drain(..from);
        }
        self.context = context;
        self.pending.drain(..cut);
        self.pending_chars = self.pending.chars().count();
        Step::Emit(out)
    }
}
