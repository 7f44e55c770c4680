//! What the gateway needs from the policy engine: [`ToolPolicy`], asked whether a caller may
//! see a tool (for `tools/list`) and whether it may call it with this input (for `tools/call`).
//!
//! The engine (Cedar, per tier and tenant, with enforce and log-only modes and its audit log)
//! lives in its own crate; the server adapts it to this trait. The gateway treats anything but
//! an explicit allow as a refusal (tenancy law 4).

use std::time::SystemTime;

use serde_json::Value;

use crate::identity::CallerIdentity;
use crate::target::{TargetName, TargetSpec};

/// One exported tool, as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct ToolRef<'a> {
    /// The exported name, `{target}___{tool}`: the Cedar action.
    pub name: &'a str,
    pub target: &'a TargetName,
    /// The tool's name at the target (the upstream tool, or the OpenAPI operation).
    pub tool: &'a str,
    /// Whether the target is shared by all tenants (`false`: the caller's tenant's own).
    pub shared: bool,
}

/// A `tools/call` to decide.
#[derive(Debug, Clone, Copy)]
pub struct ToolAuthzRequest<'a> {
    pub caller: &'a CallerIdentity,
    pub tool: ToolRef<'a>,
    /// The call's `arguments` (a JSON object, or `null` when absent).
    pub input: &'a Value,
    pub now: SystemTime,
}

/// A tool as the gateway offers it, for the policy engine's catalogue.
#[derive(Debug, Clone, Copy)]
pub struct OfferedTool<'a> {
    /// The exported name, `{target}___{tool}`.
    pub name: &'a str,
    /// The tool's name at the target.
    pub tool: &'a str,
    /// The tool's JSON Schema for its input (`{}` when the upstream gave none).
    pub input_schema: &'a Value,
}

/// The policy's answer to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolDecision {
    Allow,
    /// Refused; `reason` is shown to the caller, so it names the rule, not other tenants' data.
    Deny {
        reason: String,
    },
    /// The engine could not decide (no policy loaded, an evaluation error); refused.
    Undecided {
        reason: String,
    },
}

/// The policy engine, as the tool gateway uses it. Decisions are synchronous: the engine keeps
/// its policy sets in memory.
pub trait ToolPolicy: Send + Sync + std::fmt::Debug {
    /// Whether `caller` may see `tool` in `tools/list`: a tool it could never call is hidden.
    fn visible(&self, caller: &CallerIdentity, tool: &ToolRef<'_>) -> bool;

    /// Whether this call, with its input, may go ahead.
    fn authorize(&self, request: &ToolAuthzRequest<'_>) -> ToolDecision;

    /// The tools `target` offers, each time the gateway learns them and before any of them is
    /// passed to [`visible`](Self::visible) or [`authorize`](Self::authorize): an OpenAPI
    /// target's once per registration, an upstream MCP server's on each fetch of its list (at
    /// most once per cache period and credential; lists fetched with different credentials may
    /// differ). An engine that knows tools by name and types their input keeps its catalogue
    /// from these. The default does nothing.
    fn tools_offered(&self, target: &TargetSpec, tools: &[OfferedTool<'_>]) {
        let _ = (target, tools);
    }
}
