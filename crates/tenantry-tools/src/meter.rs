//! Limits and metering hooks: the server admits each `tools/call` (per-tenant tool-call rate
//! limits) through [`ToolMeter::admit`] and receives a [`ToolCallRecord`] of every call that
//! was admitted through [`ToolMeter::record`], to write into the usage ledger.
//!
//! The gateway itself keeps no counters and writes no ledger: it only reports.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use tenantry_core::{CredentialKind, ErrorCode, Money, TenantId, TenantScope, UserId};

use crate::identity::CallerIdentity;
use crate::target::TargetName;

/// Why the meter refused a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `RateLimited`, `BudgetExceeded`, or `Unavailable` when the limiter cannot decide.
    pub code: ErrorCode,
    /// A stable snake_case reason, e.g. `tool_rate_limited`.
    pub reason: &'static str,
    /// Shown to the caller.
    pub message: String,
    pub retry_after: Option<Duration>,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CallStatus {
    /// The tool ran and succeeded.
    Ok,
    /// The tool ran and reported an error (`isError: true`); the upstream did the work.
    ToolError,
    /// No result: refused or failed before or at the upstream.
    Failed {
        code: ErrorCode,
        reason: &'static str,
    },
}

impl CallStatus {
    /// The ledger's status text: `ok`, `tool_error` or `error:CODE`.
    pub fn ledger_status(&self) -> String {
        match self {
            CallStatus::Ok => "ok".to_owned(),
            CallStatus::ToolError => "tool_error".to_owned(),
            CallStatus::Failed { code, .. } => format!("error:{}", code.as_str()),
        }
    }
}

/// One `tools/call` as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallRecord {
    pub tenant: TenantId,
    pub user: UserId,
    /// The MCP session the call came in, if any.
    pub session: Option<String>,
    pub target: TargetName,
    /// The exported name, `{target}___{tool}`.
    pub tool: String,
    /// From the call's arrival to its answer, policy and credential lookup included.
    pub latency: Duration,
    pub status: CallStatus,
    /// The target's price per call, when the upstream was reached (`Ok` or `ToolError`).
    pub price: Option<Money>,
    /// How the caller authenticated (a workload token names the runtime session the call
    /// belongs to).
    pub credential: CredentialKind,
    /// The caller's scope ([`CallerIdentity::scope`]): the ledger entry is written in it.
    pub scope: TenantScope,
}

/// The future of an admission check.
pub type AdmitFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Refusal>> + Send + 'a>>;

/// The future of recording a call.
pub type RecordFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Refusal>> + Send + 'a>>;

/// The server's limits and metering around tool calls.
pub trait ToolMeter: Send + Sync + std::fmt::Debug {
    /// Called before each `tools/call` is resolved; a refusal ends it with an MCP error.
    /// `tool` is the name the caller asked for, which may not exist.
    fn admit<'a>(&'a self, caller: &'a CallerIdentity, tool: &'a str) -> AdmitFuture<'a>;

    /// Called once for every admitted call that named one of the caller's targets, before its
    /// answer is sent; resolves once the record is durable. A refusal means it could not be
    /// recorded: the gateway then withholds a successful result (fail closed) and answers
    /// with the refusal instead.
    fn record<'a>(&'a self, record: ToolCallRecord) -> RecordFuture<'a>;
}

/// The future of a guard's check: the value to use instead (masked), `None` to keep it as it
/// is, or a refusal.
pub type GuardFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<serde_json::Value>, Refusal>> + Send + 'a>>;

/// The server's guardrails around tool calls: the arguments before the policy and the
/// upstream see them, the result before the caller (and its model) sees it.
pub trait ToolGuard: Send + Sync + std::fmt::Debug {
    fn check_input<'a>(
        &'a self,
        caller: &'a CallerIdentity,
        tool: &'a str,
        arguments: &'a serde_json::Value,
    ) -> GuardFuture<'a>;

    fn check_result<'a>(
        &'a self,
        caller: &'a CallerIdentity,
        tool: &'a str,
        result: &'a serde_json::Value,
    ) -> GuardFuture<'a>;
}

/// No guardrails.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGuard;

impl ToolGuard for NoGuard {
    fn check_input<'a>(
        &'a self,
        _caller: &'a CallerIdentity,
        _tool: &'a str,
        _arguments: &'a serde_json::Value,
    ) -> GuardFuture<'a> {
        Box::pin(async { Ok(None) })
    }

    fn check_result<'a>(
        &'a self,
        _caller: &'a CallerIdentity,
        _tool: &'a str,
        _result: &'a serde_json::Value,
    ) -> GuardFuture<'a> {
        Box::pin(async { Ok(None) })
    }
}

/// No limits, no ledger: for tests and tools that do not meter.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMeter;

impl ToolMeter for NoMeter {
    fn admit<'a>(&'a self, _caller: &'a CallerIdentity, _tool: &'a str) -> AdmitFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn record<'a>(&'a self, _record: ToolCallRecord) -> RecordFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}
