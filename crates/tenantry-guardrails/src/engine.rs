//! A compiled profile ([`Guard`]) and its decisions: which checks run at a stage, what they
//! found, and the outcome (pass, masked text, or blocked with a category).
//!
//! Local checks run first, in the profile's order, on the original text; if none blocks,
//! remote checks (judge, webhook) run on the text as masked so far, so a third party never
//! sees what a local check masked. A decision carries categories and actions only, never the
//! matched text.

use std::sync::Arc;

use regex::Regex;
use tenantry_core::TenantId;

use crate::attack;
use crate::leak::LeakIndex;
use crate::normalize::Folded;
use crate::profile::{Action, Check, CheckKind, Entity, Profile, ProfileError, Stage};
use crate::remote::{Remote, RemoteCheck};
use crate::sensitive;
use crate::words::PhraseSet;

/// One thing a check found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Found {
    /// `sensitive_info:card`, `denied_topic:weapons`, `prompt_attack`, ...
    pub category: String,
    pub action: Action,
}

/// What happens to the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// The text with every masked finding replaced by its placeholder.
    Masked(String),
    /// Refused; `category` is the first blocking finding's.
    Blocked {
        category: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub findings: Vec<Found>,
}

impl Verdict {
    pub fn pass() -> Self {
        Self {
            outcome: Outcome::Pass,
            findings: Vec::new(),
        }
    }

    pub fn is_blocked(&self) -> bool {
        matches!(self.outcome, Outcome::Blocked { .. })
    }
}

/// A finding with where it is (whole-text findings have no span).
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) check: usize,
    pub(crate) span: Option<(usize, usize)>,
    pub(crate) category: String,
    pub(crate) placeholder: String,
    pub(crate) action: Action,
}

#[derive(Debug)]
enum Detector {
    Sensitive {
        entities: Vec<Entity>,
        custom: Vec<(String, Regex, String, usize)>,
    },
    Phrases {
        set: PhraseSet,
        categories: Vec<String>,
        placeholder: &'static str,
    },
    PromptAttack {
        threshold: f64,
    },
    Leak,
    Remote(RemoteCheck),
}

#[derive(Debug)]
struct Compiled {
    detector: Detector,
    action: Action,
    on: Vec<Stage>,
}

/// A profile compiled for scanning. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Guard {
    /// `profile:NAME` or `tenant:ID`, as stored.
    pub source: String,
    pub version: i64,
    checks: Vec<Compiled>,
}

/// What a check needs besides the text: whose traffic it is, the leak index, and the client
/// of remote checks (none: remote checks fail by their fail mode).
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub tenant: &'a TenantId,
    pub leak: &'a LeakIndex,
    pub remote: Option<&'a dyn Remote>,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("tenant", self.tenant)
            .field("remote", &self.remote.is_some())
            .finish()
    }
}

fn compile_check(c: &Check) -> Result<Detector, ProfileError> {
    Ok(match &c.kind {
        CheckKind::SensitiveInfo { entities, custom } => {
            let mut compiled = Vec::new();
            for p in custom {
                let re = sensitive::compile_custom(&p.pattern)
                    .map_err(|e| ProfileError::new("custom.pattern", e.to_string()))?;
                compiled.push((
                    format!("sensitive_info:{}", p.name),
                    re,
                    format!("[{}]", p.name.to_ascii_uppercase()),
                    p.max_len,
                ));
            }
            Detector::Sensitive {
                entities: entities.clone(),
                custom: compiled,
            }
        }
        CheckKind::DeniedTopics { topics } => {
            let mut set = PhraseSet::new();
            let mut categories = Vec::new();
            for t in topics {
                for p in &t.phrases {
                    set.add(p, categories.len());
                }
                categories.push(format!("denied_topic:{}", t.name));
            }
            Detector::Phrases {
                set,
                categories,
                placeholder: "[DENIED_TOPIC]",
            }
        }
        CheckKind::WordFilter { words } => {
            let mut set = PhraseSet::new();
            for w in words {
                set.add(w, 0);
            }
            Detector::Phrases {
                set,
                categories: vec!["word_filter".into()],
                placeholder: "[FILTERED]",
            }
        }
        CheckKind::PromptAttack { threshold } => Detector::PromptAttack {
            threshold: *threshold,
        },
        CheckKind::CrossTenantLeak => Detector::Leak,
        CheckKind::ModelJudge { .. } | CheckKind::Webhook { .. } => {
            Detector::Remote(RemoteCheck::of(&c.kind).ok_or_else(|| {
                ProfileError::new("checks", "a remote check without its settings")
            })?)
        }
    })
}

/// The checks of a tenant's override that inherits its tier's profile: the tier's first.
pub fn merged(tier: Option<&Profile>, own: &Profile) -> Profile {
    let mut p = own.clone();
    if own.inherit
        && let Some(t) = tier
    {
        p.checks = t.checks.iter().chain(&own.checks).cloned().collect();
    }
    p
}

impl Guard {
    pub fn compile(source: String, version: i64, profile: &Profile) -> Result<Self, ProfileError> {
        profile.validate()?;
        let checks = profile
            .checks
            .iter()
            .map(|c| {
                Ok(Compiled {
                    detector: compile_check(c)?,
                    action: c.action,
                    on: c.on.clone(),
                })
            })
            .collect::<Result<Vec<_>, ProfileError>>()?;
        Ok(Self {
            source,
            version,
            checks,
        })
    }

    /// A guard with no checks (nothing applies).
    pub fn empty() -> Arc<Self> {
        Arc::new(Self {
            source: String::new(),
            version: 0,
            checks: Vec::new(),
        })
    }

    pub fn applies(&self, stage: Stage) -> bool {
        self.checks.iter().any(|c| c.on.contains(&stage))
    }

    pub(crate) fn has_remote(&self, stage: Stage) -> bool {
        self.checks
            .iter()
            .any(|c| c.on.contains(&stage) && matches!(c.detector, Detector::Remote(_)))
    }

    /// How much text a stream must hold back at `stage` so that no local match is cut: the
    /// longest match any local check there can make, in characters.
    pub fn window(&self, stage: Stage, leak: &LeakIndex) -> usize {
        let mut w = 0;
        for c in self.checks.iter().filter(|c| c.on.contains(&stage)) {
            let n = match &c.detector {
                Detector::Sensitive { entities, custom } => entities
                    .iter()
                    .map(|e| sensitive::max_len(*e))
                    .chain(custom.iter().map(|c| c.3))
                    .max()
                    .unwrap_or(0),
                Detector::Phrases { set, .. } => set.max_len(),
                Detector::PromptAttack { .. } => attack::MAX_LEN,
                Detector::Leak => leak.max_len(),
                Detector::Remote(_) => 0,
            };
            w = w.max(n);
        }
        w
    }

    /// Runs the local checks of `stage` over `text`.
    pub(crate) fn scan_local(&self, stage: Stage, text: &str, ctx: &Context<'_>) -> Vec<Hit> {
        let mut hits = Vec::new();
        let mut folded: Option<(Folded, Vec<(usize, usize)>)> = None;
        let mut spans = Vec::new();
        for (i, c) in self.checks.iter().enumerate() {
            if !c.on.contains(&stage) {
                continue;
            }
            let mut push = |span, category: String, placeholder: String| {
                hits.push(Hit {
                    check: i,
                    span,
                    category,
                    placeholder,
                    action: c.action,
                })
            };
            match &c.detector {
                Detector::Sensitive { entities, custom } => {
                    for e in entities {
                        spans.clear();
                        sensitive::find(*e, text, &mut spans);
                        for &s in &spans {
                            push(
                                Some(s),
                                format!("sensitive_info:{}", e.as_str()),
                                e.placeholder().to_owned(),
                            );
                        }
                    }
                    for (category, re, placeholder, _) in custom {
                        spans.clear();
                        sensitive::find_custom(re, text, &mut spans);
                        for &s in &spans {
                            push(Some(s), category.clone(), placeholder.clone());
                        }
                    }
                }
                Detector::Phrases {
                    set,
                    categories,
                    placeholder,
                } => {
                    let (f, w) = folded.get_or_insert_with(|| {
                        let f = Folded::new(text);
                        let w = f.words();
                        (f, w)
                    });
                    let mut found = Vec::new();
                    set.find(f, w, &mut found);
                    for (s, e, label) in found {
                        let category = categories.get(label).cloned().unwrap_or_default();
                        push(Some((s, e)), category, (*placeholder).to_owned());
                    }
                }
                Detector::PromptAttack { threshold } => {
                    let (f, _) = folded.get_or_insert_with(|| {
                        let f = Folded::new(text);
                        let w = f.words();
                        (f, w)
                    });
                    let a = attack::assess(text, &f.text, stage == Stage::ToolResult);
                    if a.score >= *threshold {
                        push(None, "prompt_attack".into(), String::new());
                    }
                }
                Detector::Leak => {
                    if ctx.leak.is_empty() {
                        continue;
                    }
                    let (f, w) = folded.get_or_insert_with(|| {
                        let f = Folded::new(text);
                        let w = f.words();
                        (f, w)
                    });
                    spans.clear();
                    ctx.leak.find(ctx.tenant, f, w, &mut spans);
                    for &s in &spans {
                        push(Some(s), "cross_tenant_leak".into(), "[PROTECTED]".into());
                    }
                }
                Detector::Remote(_) => {}
            }
        }
        hits
    }

    /// Decides on the local hits of `text`.
    pub(crate) fn decide(text: &str, hits: &[Hit]) -> Verdict {
        let mut findings: Vec<Found> = hits
            .iter()
            .map(|h| Found {
                category: h.category.clone(),
                action: h.action,
            })
            .collect();
        findings.sort();
        findings.dedup();
        let block = hits
            .iter()
            .filter(|h| h.action == Action::Block)
            .min_by_key(|h| h.check);
        if let Some(b) = block {
            return Verdict {
                outcome: Outcome::Blocked {
                    category: b.category.clone(),
                },
                findings,
            };
        }
        let outcome = match mask(text, hits) {
            Some(masked) => Outcome::Masked(masked),
            None => Outcome::Pass,
        };
        Verdict { outcome, findings }
    }

    /// The local checks of `stage` only (no judge, no webhook): what a stream applies chunk by
    /// chunk and what the benchmark measures.
    pub fn check_local(&self, stage: Stage, text: &str, ctx: &Context<'_>) -> Verdict {
        if text.is_empty() || !self.applies(stage) {
            return Verdict::pass();
        }
        let hits = self.scan_local(stage, text, ctx);
        Self::decide(text, &hits)
    }

    /// Every check of `stage`: local ones, then (unless already blocked) remote ones on the
    /// text as masked so far.
    pub async fn check(&self, stage: Stage, text: &str, ctx: &Context<'_>) -> Verdict {
        let mut verdict = self.check_local(stage, text, ctx);
        if verdict.is_blocked() || !self.has_remote(stage) || text.is_empty() {
            return verdict;
        }
        let current = match &verdict.outcome {
            Outcome::Masked(m) => m.clone(),
            Outcome::Pass | Outcome::Blocked { .. } => text.to_owned(),
        };
        self.check_remote(stage, &current, ctx, &mut verdict).await;
        verdict
    }

    /// Runs the remote checks of `stage` on `text`, adding to `verdict` (blocking it if one
    /// blocks).
    pub async fn check_remote(
        &self,
        stage: Stage,
        text: &str,
        ctx: &Context<'_>,
        verdict: &mut Verdict,
    ) {
        for c in self.checks.iter().filter(|c| c.on.contains(&stage)) {
            let Detector::Remote(r) = &c.detector else {
                continue;
            };
            if let Some(category) = r.run(stage, text, ctx).await {
                verdict.findings.push(Found {
                    category: category.clone(),
                    action: c.action,
                });
                if c.action == Action::Block {
                    verdict.outcome = Outcome::Blocked { category };
                    return;
                }
            }
        }
    }
}

/// `text` with the masking hits replaced by their placeholders (overlaps merged, the first
/// hit's placeholder kept); `None` if nothing is masked.
pub(crate) fn mask(text: &str, hits: &[Hit]) -> Option<String> {
    let mut spans: Vec<(usize, usize, &str)> = hits
        .iter()
        .filter(|h| h.action == Action::Mask)
        .filter_map(|h| h.span.map(|(s, e)| (s, e, h.placeholder.as_str())))
        .collect();
    if spans.is_empty() {
        return None;
    }
    spans.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e, placeholder) in spans {
        if e <= at {
            continue;
        }
        if s >= at {
            out.push_str(&text[at..s]);
            out.push_str(placeholder);
        }
        at = e;
    }
    out.push_str(&text[at..]);
    Some(out)
}
