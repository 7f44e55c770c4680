//! Guardrails applied to traffic: a chat request's messages before the model sees them (a
//! `tool` message is checked as a tool result), a whole answer before the caller sees it, a
//! streamed answer chunk by chunk (`OutputGuard`), and tool calls' arguments and results
//! (`ToolGuardrails`, plugged into the tool gateway).
//!
//! A block answers `guardrail_blocked` naming the category and the profile's version, never the
//! matched text; a mask is silent. Every finding is counted and audited (`Guardrails::record`).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use tenantry_core::{ErrorCode, TenantId};
use tenantry_guardrails::{Found, Guard, Outcome, Stage, Step, StreamScanner, Verdict};
use tenantry_models::wire::{ChatChunk, ChatRequest, ChatResponse, Content, Role};
use tenantry_tools::{CallerIdentity, GuardFuture, Refusal, ToolGuard};

use super::{Applied, Guardrails};
use crate::error::ApiError;
use crate::registry::RegistryCache;

/// The caller's error for a block: category and profile version, never the text.
pub fn blocked_message(guard: &Guard, category: &str) -> String {
    format!(
        "blocked by a guardrail: category {category} (profile {} version {})",
        guard.source, guard.version
    )
}

pub fn blocked(guard: &Guard, category: &str) -> ApiError {
    ApiError::new(
        ErrorCode::GuardrailBlocked,
        blocked_message(guard, category),
    )
}

fn stage_of(role: Role) -> Stage {
    match role {
        Role::Tool => Stage::ToolResult,
        Role::System | Role::Developer | Role::User | Role::Assistant => Stage::ModelInput,
    }
}

/// Applies `f` to every text of a message (its string content or its text parts).
fn texts_mut(content: &mut Option<Content>, f: &mut dyn FnMut(&mut String)) {
    match content {
        None => {}
        Some(Content::Text(s)) => f(s),
        Some(Content::Parts(parts)) => parts.iter_mut().filter_map(|p| p.text.as_mut()).for_each(f),
    }
}

fn merge(into: &mut Vec<Found>, more: Vec<Found>) {
    for f in more {
        if !into.contains(&f) {
            into.push(f);
        }
    }
}

/// Checks (and masks in place) the messages of a chat request.
pub async fn check_request(
    gr: &Guardrails,
    applied: &Applied,
    tenant: &TenantId,
    request: &mut ChatRequest,
) -> Result<(), ApiError> {
    let guard = &applied.guard;
    let ctx = gr.context(tenant, &applied.leak);
    let mut findings: HashMap<Stage, Vec<Found>> = HashMap::new();
    let mut joined: HashMap<Stage, String> = HashMap::new();
    let mut block: Option<(Stage, String)> = None;
    for m in &mut request.messages {
        let stage = stage_of(m.role);
        if !guard.applies(stage) {
            continue;
        }
        texts_mut(&mut m.content, &mut |s: &mut String| {
            if block.is_some() {
                return;
            }
            let v = guard.check_local(stage, s, &ctx);
            merge(findings.entry(stage).or_default(), v.findings);
            match v.outcome {
                Outcome::Pass => {}
                Outcome::Masked(masked) => *s = masked,
                Outcome::Blocked { category } => block = Some((stage, category)),
            }
            let j = joined.entry(stage).or_default();
            j.push_str(s);
            j.push('\n');
        });
    }
    if block.is_none() {
        for (stage, text) in &joined {
            let mut v = Verdict::pass();
            guard.check_remote(*stage, text, &ctx, &mut v).await;
            merge(findings.entry(*stage).or_default(), v.findings);
            if let Outcome::Blocked { category } = v.outcome {
                block = Some((*stage, category));
                break;
            }
        }
    }
    for (stage, f) in &findings {
        gr.record(tenant, *stage, guard, f);
    }
    match block {
        Some((_, category)) => Err(blocked(guard, &category)),
        None => Ok(()),
    }
}

/// Checks (and masks in place) a whole answer.
pub async fn check_response(
    gr: &Guardrails,
    applied: &Applied,
    tenant: &TenantId,
    response: &mut ChatResponse,
) -> Result<(), ApiError> {
    let guard = &applied.guard;
    if !guard.applies(Stage::ModelOutput) {
        return Ok(());
    }
    let ctx = gr.context(tenant, &applied.leak);
    for choice in &mut response.choices {
        let text = choice.message.text();
        let v = guard.check(Stage::ModelOutput, &text, &ctx).await;
        gr.record(tenant, Stage::ModelOutput, guard, &v.findings);
        match v.outcome {
            Outcome::Pass => {}
            Outcome::Masked(masked) => choice.message.content = Some(Content::Text(masked)),
            Outcome::Blocked { category } => return Err(blocked(guard, &category)),
        }
    }
    Ok(())
}

/// The output checks of one streamed answer: a scanner per choice.
#[derive(Debug)]
pub struct OutputGuard {
    gr: Guardrails,
    applied: Applied,
    tenant: TenantId,
    scanners: HashMap<u32, StreamScanner>,
    recorded: bool,
}

impl OutputGuard {
    /// `None` when the profile has no output check.
    pub fn new(gr: &Guardrails, applied: &Applied, tenant: &TenantId) -> Option<Self> {
        applied.guard.applies(Stage::ModelOutput).then(|| Self {
            gr: gr.clone(),
            applied: applied.clone(),
            tenant: tenant.clone(),
            scanners: HashMap::new(),
            recorded: false,
        })
    }

    /// Rewrites a chunk's text (held back or masked); `Err` with the caller's message when a
    /// check blocks.
    pub async fn chunk(&mut self, chunk: &mut ChatChunk) -> Result<(), String> {
        let gr = self.gr.clone();
        let tenant = self.tenant.clone();
        let leak = self.applied.leak.clone();
        let ctx = gr.context(&tenant, &leak);
        for choice in &mut chunk.choices {
            let scanner = self.scanners.entry(choice.index).or_insert_with(|| {
                StreamScanner::new(self.applied.guard.clone(), Stage::ModelOutput, &ctx)
            });
            let mut out = String::new();
            if let Some(text) = &choice.delta.content {
                match scanner.push(text, &ctx) {
                    Step::Emit(t) => out.push_str(&t),
                    Step::Blocked { category } => return Err(self.block(&category)),
                }
            }
            if choice.finish_reason.is_some() {
                match scanner.finish(&ctx).await {
                    Step::Emit(t) => out.push_str(&t),
                    Step::Blocked { category } => return Err(self.block(&category)),
                }
            }
            if choice.delta.content.is_some() || !out.is_empty() {
                choice.delta.content = Some(out);
            }
        }
        Ok(())
    }

    /// The end of the stream: what is still held back (a stream that ended without a finish
    /// reason), as text per choice.
    pub async fn end(&mut self) -> Result<Vec<(u32, String)>, String> {
        let gr = self.gr.clone();
        let tenant = self.tenant.clone();
        let leak = self.applied.leak.clone();
        let ctx = gr.context(&tenant, &leak);
        let mut rest = Vec::new();
        let mut indices: Vec<u32> = self.scanners.keys().copied().collect();
        indices.sort_unstable();
        for i in indices {
            let Some(scanner) = self.scanners.get_mut(&i) else {
                continue;
            };
            match scanner.finish(&ctx).await {
                Step::Emit(t) if !t.is_empty() => rest.push((i, t)),
                Step::Emit(_) => {}
                Step::Blocked { category } => return Err(self.block(&category)),
            }
        }
        self.record();
        Ok(rest)
    }

    fn block(&mut self, category: &str) -> String {
        self.record();
        blocked_message(&self.applied.guard, category)
    }

    /// Counts the findings once (at the end, or when the stream is dropped).
    fn record(&mut self) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let mut all = Vec::new();
        for s in self.scanners.values() {
            merge(&mut all, s.findings().to_vec());
        }
        self.gr
            .record(&self.tenant, Stage::ModelOutput, &self.applied.guard, &all);
    }
}

impl Drop for OutputGuard {
    fn drop(&mut self) {
        self.record();
    }
}

/// The guardrails of the tool gateway: arguments at `tool_input`, results at `tool_result`.
#[derive(Debug)]
pub struct ToolGuardrails {
    gr: Guardrails,
    registry: Arc<RegistryCache>,
}

impl ToolGuardrails {
    pub fn new(gr: Guardrails, registry: Arc<RegistryCache>) -> Self {
        Self { gr, registry }
    }

    async fn check(
        &self,
        caller: &CallerIdentity,
        stage: Stage,
        value: &Value,
    ) -> Result<Option<Value>, Refusal> {
        let refusal = |code: ErrorCode, reason: &'static str, message: String| Refusal {
            code,
            reason,
            message,
            retry_after: None,
        };
        let tier = self
            .registry
            .tier(self.gr.store(), &caller.tier)
            .await
            .map_err(|e| {
                refusal(
                    ErrorCode::Unavailable,
                    "guardrail_undecided",
                    format!("the guardrails cannot decide right now: {e}"),
                )
            })?
            .ok_or_else(|| {
                refusal(
                    ErrorCode::Unavailable,
                    "guardrail_undecided",
                    format!("the tier {} of the caller does not exist", caller.tier),
                )
            })?;
        let applied = match self.gr.applied(caller.tenant(), &tier) {
            Ok(Some(a)) => a,
            Ok(None) => return Ok(None),
            Err(e) => return Err(refusal(e.code, "guardrail_undecided", e.message)),
        };
        let ctx = self.gr.context(caller.tenant(), &applied.leak);
        let v = applied.guard.check_value(stage, value, &ctx).await;
        self.gr
            .record(caller.tenant(), stage, &applied.guard, &v.findings);
        match v.blocked {
            Some(category) => Err(refusal(
                ErrorCode::GuardrailBlocked,
                "guardrail_blocked",
                blocked_message(&applied.guard, &category),
            )),
            None => Ok(v.masked),
        }
    }
}

impl ToolGuard for ToolGuardrails {
    fn check_input<'a>(
        &'a self,
        caller: &'a CallerIdentity,
        _tool: &'a str,
        arguments: &'a Value,
    ) -> GuardFuture<'a> {
        Box::pin(self.check(caller, Stage::ToolInput, arguments))
    }

    fn check_result<'a>(
        &'a self,
        caller: &'a CallerIdentity,
        _tool: &'a str,
        result: &'a Value,
    ) -> GuardFuture<'a> {
        Box::pin(self.check(caller, Stage::ToolResult, result))
    }
}
