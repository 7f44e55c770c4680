//! The outcome of one authorization, with everything its audit record needs.

use serde::Serialize;
use tenantry_core::{TenantId, UserId};

use crate::Mode;

/// What the engine decided about one tool call.
///
/// `allowed` is the outcome: the gateway lets the call through if and only if it is true.
/// When every applicable policy set is in `enforce` mode, it is the policies' verdict. When a
/// set in `log_only` mode applies, that set's effect is only reported: `allowed` is the verdict
/// of the enforce-mode sets alone, `policy_allowed` the verdict with the log-only sets too
/// (what would happen if they were enforced), and `enforced` is false.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub tenant: TenantId,
    pub user: UserId,
    /// The tool's full name, `target___tool`.
    pub tool: String,
    /// Whether the call may proceed.
    pub allowed: bool,
    /// The verdict of every applicable set, log-only ones included.
    pub policy_allowed: bool,
    /// False when a log-only set applies: `policy_allowed` is reported, not applied.
    pub enforced: bool,
    pub mode: Mode,
    /// The policies that decided the full verdict (`policy_allowed`), e.g.
    /// `tier:basic@v3#no-premium` or `platform@v0#starter`: the permits that were satisfied
    /// for an allow, the forbids that were satisfied for a deny (none for a deny by default).
    pub determining_policies: Vec<String>,
    /// False when the request could not be evaluated at all (a tool the engine does not know,
    /// an input that does not fit the tool's schema): the call is denied (fail closed) and
    /// `errors` says why.
    pub evaluated: bool,
    /// Errors met while deciding: policies that failed to evaluate (Cedar skips those), or why
    /// the request could not be evaluated.
    pub errors: Vec<String>,
}

/// The audit record of a decision: what the tools gateway logs with target `audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditFields<'a> {
    pub tenant: &'a str,
    pub user: &'a str,
    pub tool: &'a str,
    /// `allow` or `deny`: the outcome.
    pub decision: &'static str,
    /// `allow` or `deny`: the verdict with log-only sets included.
    pub policy_decision: &'static str,
    pub mode: &'static str,
    pub determining_policies: &'a [String],
    pub evaluated: bool,
    pub errors: &'a [String],
}

fn word(allowed: bool) -> &'static str {
    if allowed { "allow" } else { "deny" }
}

impl Decision {
    /// A denial without evaluation: the request could not be evaluated (fail closed).
    pub(crate) fn refused(tenant: &TenantId, user: &UserId, tool: &str, error: String) -> Self {
        Self {
            tenant: tenant.clone(),
            user: user.clone(),
            tool: tool.to_owned(),
            allowed: false,
            policy_allowed: false,
            enforced: true,
            mode: Mode::Enforce,
            determining_policies: Vec::new(),
            evaluated: false,
            errors: vec![error],
        }
    }

    pub fn audit_fields(&self) -> AuditFields<'_> {
        AuditFields {
            tenant: self.tenant.as_str(),
            user: self.user.as_str(),
            tool: &self.tool,
            decision: word(self.allowed),
            policy_decision: word(self.policy_allowed),
            mode: self.mode.as_str(),
            determining_policies: &self.determining_policies,
            evaluated: self.evaluated,
            errors: &self.errors,
        }
    }

    /// Writes the audit record with `tracing`, target `audit`, at INFO.
    pub fn log_audit(&self) {
        let a = self.audit_fields();
        tracing::info!(
            target: "audit",
            event = "tool_policy_decision",
            tenant = a.tenant,
            user = a.user,
            tool = a.tool,
            decision = a.decision,
            policy_decision = a.policy_decision,
            mode = a.mode,
            policies = %a.determining_policies.join(","),
            evaluated = a.evaluated,
            errors = %a.errors.join("; "),
            "tool call {}",
            a.decision
        );
    }

    /// A short explanation for the caller of a denied call (no policy text, only ids).
    pub fn reason(&self) -> String {
        if self.allowed {
            return "allowed".to_owned();
        }
        if !self.evaluated {
            return format!("denied: {}", self.errors.join("; "));
        }
        if self.policy_allowed {
            return "denied: no policy in force permits this call (a log-only set would)"
                .to_owned();
        }
        if !self.determining_policies.is_empty() {
            return format!("denied by policy {}", self.determining_policies.join(", "));
        }
        "denied: no policy permits this call".to_owned()
    }
}
