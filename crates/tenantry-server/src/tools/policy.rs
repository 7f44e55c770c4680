//! The tool gateway's `ToolPolicy`, over the Cedar engine of `tenantry-policy`.
//!
//! The engine knows tools by name with their typed input: every time the gateway learns a
//! target's tools (`tools_offered`) they are merged into the catalogue of all targets and
//! handed to `PolicyEngine::set_tools` (only when something changed; a removed target's tools
//! are forgotten). Every `tools/call`
//! decision is written to the audit log (`tracing` target `audit`, INFO) with tenant, user,
//! tool, decision, mode and the policies that decided. Anything but an allow refuses.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde_json::Value;
use tenantry_policy::{
    AuthzRequest, PolicyEngine, PrincipalAttrs, ToolRef as PolicyToolRef, ToolSpec,
};
use tenantry_tools::{
    CallerIdentity, OfferedTool, TargetSpec, ToolAuthzRequest, ToolDecision, ToolPolicy, ToolRef,
};

/// Each target's tools (exported name → input schema), as last offered.
type Offered = BTreeMap<String, BTreeMap<String, Value>>;

/// `ToolPolicy` over a shared `PolicyEngine`.
#[derive(Debug)]
pub struct CedarPolicy {
    engine: PolicyEngine,
    offered: Mutex<Offered>,
    /// The audit log every decision goes to (besides the `audit` log target).
    audit: std::sync::OnceLock<crate::audit::Audit>,
}

fn principal(caller: &CallerIdentity) -> PrincipalAttrs {
    PrincipalAttrs {
        tenant: caller.tenant().clone(),
        tier: caller.tier.clone(),
        user: caller.user.clone(),
        roles: caller.roles.clone(),
        claims: caller.claims.clone(),
    }
}

fn tool_ref(tool: &ToolRef<'_>) -> PolicyToolRef {
    PolicyToolRef {
        full_name: tool.name.to_owned(),
        target: tool.target.to_string(),
        tenant_owned: !tool.shared,
    }
}

impl CedarPolicy {
    pub fn new(engine: PolicyEngine) -> Self {
        Self {
            engine,
            offered: Mutex::new(BTreeMap::new()),
            audit: std::sync::OnceLock::new(),
        }
    }

    pub fn set_audit(&self, audit: crate::audit::Audit) {
        let _ = self.audit.set(audit);
    }

    pub fn engine(&self) -> &PolicyEngine {
        &self.engine
    }

    /// Forgets a target's tools (it was removed or replaced): the engine then denies and hides
    /// them until the target offers them again.
    pub fn forget_target(&self, target: &str) {
        let mut offered = self.offered.lock().unwrap_or_else(PoisonError::into_inner);
        if offered.remove(target).is_some() {
            self.install(&offered);
        }
    }

    fn install(&self, offered: &Offered) {
        let tools = offered.values().flat_map(|tools| {
            tools.iter().map(|(name, schema)| ToolSpec {
                full_name: name.clone(),
                input_schema: schema.clone(),
            })
        });
        if let Err(e) = self.engine.set_tools(tools) {
            // The engine keeps its previous catalogue: the new tools stay unknown, so they
            // are hidden and refused (fail closed).
            tracing::error!(error = %e, "cannot give the policy engine the tool catalogue");
        }
    }
}

impl ToolPolicy for CedarPolicy {
    fn visible(&self, caller: &CallerIdentity, tool: &ToolRef<'_>) -> bool {
        self.engine.visible(&principal(caller), &tool_ref(tool))
    }

    fn authorize(&self, request: &ToolAuthzRequest<'_>) -> ToolDecision {
        let principal = principal(request.caller);
        let tool = tool_ref(&request.tool);
        let decision = self.engine.authorize(&AuthzRequest {
            principal: &principal,
            tool: &tool,
            input: request.input,
            now: request.now,
        });
        decision.log_audit();
        if let Some(audit) = self.audit.get() {
            let fields = decision.audit_fields();
            audit.record(crate::audit::event(
                Some(decision.tenant.clone()),
                format!("user:{}", decision.user),
                "tool.decision",
                Some(decision.tool.clone()),
                fields.decision,
                serde_json::to_value(&fields).unwrap_or_default(),
            ));
        }
        if decision.allowed {
            ToolDecision::Allow
        } else {
            ToolDecision::Deny {
                reason: decision.reason(),
            }
        }
    }

    fn tools_offered(&self, target: &TargetSpec, tools: &[OfferedTool<'_>]) {
        let fresh: BTreeMap<String, Value> = tools
            .iter()
            .map(|t| (t.name.to_owned(), t.input_schema.clone()))
            .collect();
        let mut offered = self.offered.lock().unwrap_or_else(PoisonError::into_inner);
        // Lists fetched with different tenants' credentials may differ: the catalogue is their
        // union (a tool one tenant was never shown is still never called for it: the gateway
        // checks the caller's own list first).
        let known = offered.entry(target.name.to_string()).or_default();
        if fresh
            .iter()
            .all(|(name, schema)| known.get(name) == Some(schema))
        {
            return;
        }
        known.extend(fresh);
        self.install(&offered);
    }
}
