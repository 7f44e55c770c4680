//! The tool gateway's `ToolMeter`: each `tools/call` is admitted against its tenant's tool-call
//! rate and recorded in the usage ledger.
//!
//! The rate is the tier's `requests_per_second` (with `burst`), counted in a bucket of its own
//! (`Dimension::ToolCalls`), so tool calls are limited like the tenant's requests without
//! sharing their bucket (each `/mcp` POST also counts as a request at ingress). A limiter that
//! cannot decide refuses (law 4). Ledger entries are `UsageKind::Tool`: tenant, user, the
//! runtime session of an agent's call, the tool (`resource`), its target (`provider`),
//! latency, status and price. The call's answer waits for the commit of its entry (group
//! commit, `crate::ledger`); a call that cannot be recorded is refused with 503.

use std::sync::Arc;

use tenantry_core::{CredentialKind, ErrorCode, Money, RuntimeName};
use tenantry_limits::{Dimension, Limiter, Rate, RateKey, Subject};
use tenantry_store::{Store, UsageKind, UsageRecord};
use tenantry_tools::{
    AdmitFuture, CallStatus, CallerIdentity, RecordFuture, Refusal, ToolCallRecord, ToolMeter,
};

use crate::ledger::{Ledger, LedgerError};
use crate::registry::RegistryCache;

/// `ToolMeter` over the limiter and the ledger.
#[derive(Debug, Clone)]
pub struct LedgerMeter {
    store: Store,
    registry: Arc<RegistryCache>,
    limiter: Limiter,
    ledger: Ledger,
}

impl LedgerMeter {
    pub fn new(
        store: Store,
        registry: Arc<RegistryCache>,
        limiter: Limiter,
        ledger: Ledger,
    ) -> Self {
        Self {
            store,
            registry,
            limiter,
            ledger,
        }
    }
}

fn refusal(code: ErrorCode, reason: &'static str, message: String) -> Refusal {
    Refusal {
        code,
        reason,
        message,
        retry_after: None,
    }
}

/// The ledger entry of one call.
pub fn ledger_entry(record: &ToolCallRecord) -> UsageRecord {
    let (session, runtime) = match &record.credential {
        CredentialKind::Workload {
            session_id,
            runtime,
        } => (Some(session_id.clone()), RuntimeName::new(runtime).ok()),
        CredentialKind::Jwt { .. }
        | CredentialKind::ApiKey { .. }
        | CredentialKind::AccessKey { .. } => (None, None),
    };
    let status = match record.status {
        CallStatus::Ok | CallStatus::ToolError => record.status.ledger_status(),
        CallStatus::Failed { reason, .. } => format!("error:{reason}"),
    };
    UsageRecord {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: record.tenant.clone(),
        user_id: Some(record.user.clone()),
        runtime,
        session_id: session,
        kind: UsageKind::Tool,
        resource: Some(record.tool.clone()),
        provider: Some(record.target.to_string()),
        input_tokens: 0,
        output_tokens: 0,
        cpu_ms: 0,
        memory_mb_ms: 0,
        calls: 1,
        cost: record.price.unwrap_or(Money::ZERO),
        latency_ms: Some(i64::try_from(record.latency.as_millis()).unwrap_or(i64::MAX)),
        ttft_ms: None,
        status,
        at: tenantry_core::unix_now(),
    }
}

impl ToolMeter for LedgerMeter {
    fn admit<'a>(&'a self, caller: &'a CallerIdentity, _tool: &'a str) -> AdmitFuture<'a> {
        Box::pin(async move {
            let tier = self
                .registry
                .tier(&self.store, &caller.tier)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "cannot read the caller's tier; refusing a tool call");
                    refusal(
                        ErrorCode::Unavailable,
                        "limits_undecided",
                        "the tool-call limits cannot be decided right now; retry shortly".into(),
                    )
                })?
                .ok_or_else(|| {
                    refusal(
                        ErrorCode::Unavailable,
                        "limits_undecided",
                        format!(
                            "the limits of tenant {} cannot be decided: its tier {} does not exist",
                            caller.tenant(), caller.tier
                        ),
                    )
                })?;
            let Some(rps) = tier.limits.requests_per_second else {
                return Ok(());
            };
            let burst = tier.limits.burst.unwrap_or(rps);
            let key = RateKey::new(
                Subject::tenant(caller.tenant().clone()),
                Dimension::ToolCalls,
            );
            let decision = self
                .limiter
                .check_rate(&key, Rate::per_second(rps), burst)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "the limiter cannot decide; refusing a tool call");
                    refusal(
                        ErrorCode::Unavailable,
                        "limits_undecided",
                        "the limiter cannot decide right now; the call is refused, retry shortly"
                            .into(),
                    )
                })?;
            if decision.allowed {
                Ok(())
            } else {
                Err(Refusal {
                    code: ErrorCode::RateLimited,
                    reason: "tool_rate_limited",
                    message: format!(
                        "tenant {} is over its tool-call rate ({rps} per second on tier {}); retry later",
                        caller.tenant(),
                        tier.name
                    ),
                    retry_after: decision.retry_after,
                })
            }
        })
    }

    fn record<'a>(&'a self, record: ToolCallRecord) -> RecordFuture<'a> {
        Box::pin(async move {
            let scope = record.scope.clone();
            let entry = ledger_entry(&record);
            // On a task of its own: a caller that goes away while it waits cannot stop the
            // entry before it is queued.
            let ledger = self.ledger.clone();
            let written = tokio::spawn(async move { ledger.record(scope, entry).await });
            let written = written.await.unwrap_or(Err(LedgerError::Stopped));
            written.map_err(|e| {
                tracing::error!(tenant.id = %record.tenant, tool = %record.tool, error = %e,
                    "a tool call cannot be written to the ledger");
                unrecorded()
            })
        })
    }
}

/// The refusal of a call whose use cannot be recorded (503, retryable).
fn unrecorded() -> Refusal {
    Refusal {
        code: ErrorCode::Unavailable,
        reason: "usage_unrecorded",
        message: "the usage of this tool call cannot be recorded right now, so its result is \
                  withheld; retry shortly"
            .into(),
        retry_after: Some(std::time::Duration::from_secs(1)),
    }
}
