//! Ledger entries of model calls, attributed to the verified caller: tenant, user, and the
//! session and runtime when the credential is a workload token (law 5).
//!
//! One entry per upstream attempt: the answer (`ok`), each attempt that failed before a
//! fallback answered or before the call gave up (`error:REASON`, with the provider error's
//! stable reason), and a stream the caller abandoned (`cancelled`, with the usage so far).
//! Attribution comes only from the `TenantContext`, never from the request body.

use std::time::Duration;

use tenantry_core::{CredentialKind, Money, RuntimeName, TenantContext, TenantScope, UserId};
use tenantry_models::{FailedAttempt, ProviderError};
use tenantry_store::{UsageKind, UsageRecord};

/// Who a model call is billed to.
#[derive(Debug, Clone)]
pub struct Attribution {
    pub scope: TenantScope,
    pub user: UserId,
    pub session: Option<String>,
    pub runtime: Option<RuntimeName>,
}

impl Attribution {
    pub fn of(ctx: &TenantContext) -> Self {
        let (session, runtime) = match &ctx.credential {
            CredentialKind::Workload {
                session_id,
                runtime,
            } => (
                Some(session_id.clone()),
                // A runtime name the registry would refuse cannot be attributed; the session
                // still is.
                RuntimeName::new(runtime).ok(),
            ),
            CredentialKind::Jwt { .. }
            | CredentialKind::ApiKey { .. }
            | CredentialKind::AccessKey { .. } => (None, None),
        };
        Self {
            scope: ctx.scope(),
            user: ctx.user_id.clone(),
            session,
            runtime,
        }
    }
}

/// How a metered attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The caller went away before the end of a stream.
    Cancelled,
    Failed(&'static str),
}

impl Outcome {
    pub fn of_error(e: &ProviderError) -> Self {
        Outcome::Failed(e.reason())
    }

    pub fn status(&self) -> String {
        match self {
            Outcome::Ok => "ok".to_owned(),
            Outcome::Cancelled => "cancelled".to_owned(),
            Outcome::Failed(reason) => format!("error:{reason}"),
        }
    }
}

/// The numbers of one attempt.
#[derive(Debug, Clone)]
pub struct Metered<'a> {
    pub model: &'a str,
    pub provider: &'a str,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: Money,
    pub latency: Duration,
    pub ttft: Option<Duration>,
    pub outcome: Outcome,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Attribution {
    pub fn entry(&self, m: &Metered<'_>) -> UsageRecord {
        UsageRecord {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: self.scope.tenant().clone(),
            user_id: Some(self.user.clone()),
            runtime: self.runtime.clone(),
            session_id: self.session.clone(),
            kind: UsageKind::Model,
            resource: Some(m.model.to_owned()),
            provider: Some(m.provider.to_owned()),
            input_tokens: count(m.input_tokens),
            output_tokens: count(m.output_tokens),
            cpu_ms: 0,
            memory_mb_ms: 0,
            calls: 1,
            cost: m.cost,
            latency_ms: Some(ms(m.latency)),
            ttft_ms: m.ttft.map(ms),
            status: m.outcome.status(),
            at: tenantry_core::unix_now(),
        }
    }

    /// The entry of an attempt that failed: nothing billable was produced.
    pub fn failed(&self, f: &FailedAttempt) -> UsageRecord {
        self.entry(&Metered {
            model: &f.model,
            provider: &f.provider,
            input_tokens: 0,
            output_tokens: 0,
            cost: Money::ZERO,
            latency: f.latency,
            ttft: None,
            outcome: Outcome::of_error(&f.error),
        })
    }
}
