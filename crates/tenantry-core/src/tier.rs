//! Tiers: the operator's product levels (basic, standard, premium...) and everything a tenant
//! inherits from its tier: limits, entitlements, isolation defaults and sandbox resources.

use serde::{Deserialize, Serialize};

use crate::{IsolationSettings, Money, TierName};

/// Admission limits of a tier. `None` means unlimited for that dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimits {
    /// Sustained request rate per tenant.
    #[serde(default)]
    pub requests_per_second: Option<u32>,
    /// Requests allowed in a burst above the sustained rate.
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default)]
    pub concurrent_invocations: Option<u32>,
    #[serde(default)]
    pub concurrent_sessions: Option<u32>,
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// Spending limit per calendar month, in US dollars.
    #[serde(default)]
    pub budget_per_month: Option<Money>,
    /// Model gateway calls (`/v1/chat/completions`, `/v1/embeddings`) per minute per tenant.
    #[serde(default)]
    pub model_requests_per_minute: Option<u32>,
    /// The same limits for each user of a tenant (within the tenant's own).
    #[serde(default)]
    pub per_user: UserLimits,
    /// This tier's share of a saturated shared capacity (a model provider's queue): its
    /// tenants get `fair_share_weight` slots per round of the fair queue to another tier's
    /// tenants' weight (default 1).
    #[serde(default)]
    pub fair_share_weight: Option<u32>,
}

/// Limits of each user of a tenant on a tier. `None` means no limit beyond the tenant's.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserLimits {
    #[serde(default)]
    pub model_requests_per_minute: Option<u32>,
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// Spending limit per calendar month, in US dollars.
    #[serde(default)]
    pub budget_per_month: Option<Money>,
}

impl Default for TierLimits {
    fn default() -> Self {
        Self {
            requests_per_second: Some(10),
            burst: Some(20),
            concurrent_invocations: Some(4),
            concurrent_sessions: Some(10),
            tokens_per_minute: Some(100_000),
            budget_per_month: Some(Money::from_micros(50_000_000)),
            model_requests_per_minute: Some(600),
            per_user: UserLimits::default(),
            fair_share_weight: None,
        }
    }
}

/// Resources of each session sandbox of a tenant on this tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxResources {
    pub memory_mb: u32,
    /// CPU in thousandths of a core (1000 = one full core).
    pub cpu_millis: u32,
    pub max_processes: u32,
    pub storage_mb: u32,
    /// The agent output kept per session (`GET /v1/sessions/{id}/logs`), in KiB; older lines
    /// are dropped first.
    #[serde(default = "default_log_kb")]
    pub log_kb: u32,
}

fn default_log_kb() -> u32 {
    1024
}

impl Default for SandboxResources {
    fn default() -> Self {
        Self {
            memory_mb: 512,
            cpu_millis: 1000,
            max_processes: 64,
            storage_mb: 1024,
            log_kb: default_log_kb(),
        }
    }
}

/// A tier as defined in config and edited through `/v1/admin/tiers/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub name: TierName,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub limits: TierLimits,
    /// Models (or aliases) tenants on this tier may use; `*` allows all.
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// Tools (`target___tool`, or `target___*`) tenants on this tier may call; `*` allows all.
    #[serde(default)]
    pub allowed_tools: Vec<String>,
    #[serde(default)]
    pub guardrail_profile: Option<String>,
    #[serde(default)]
    pub isolation: IsolationSettings,
    #[serde(default)]
    pub sandbox: SandboxResources,
    /// Days after which a memory's events are deleted, for memories that name no expiry.
    #[serde(default = "default_memory_event_expiry_days")]
    pub memory_event_expiry_days: u32,
}

fn default_memory_event_expiry_days() -> u32 {
    90
}

/// Why a tier's settings make no sense together; the message names the setting and the fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TierError {
    #[error("limits.requests_per_second must be at least 1 (omit it for no limit)")]
    NoRequestRate,
    #[error("limits.burst must be at least 1 (omit it to use the rate as the burst)")]
    NoBurst,
    #[error("limits.budget_per_month must not be negative")]
    NegativeBudget,
    #[error("limits.per_user.budget_per_month must not be negative")]
    NegativeUserBudget,
    #[error("model_requests_per_minute must be at least 1 (omit it for no limit)")]
    NoModelRequestRate,
    #[error("sandbox.memory_mb must be at least 16")]
    TooLittleMemory,
    #[error("sandbox.cpu_millis must be at least 10 (a hundredth of a core)")]
    TooLittleCpu,
    #[error("sandbox.max_processes must be at least 1")]
    NoProcesses,
    #[error("sandbox.log_kb must be at least 4")]
    TooLittleLog,
    #[error("limits.fair_share_weight must be at least 1 (omit it for 1)")]
    NoFairShare,
    #[error("display_name must be at most 200 characters")]
    DisplayNameTooLong,
    #[error("memory_event_expiry_days must be 1 to 365")]
    MemoryExpiry,
}

impl Tier {
    /// Checks what serde cannot: numbers that make no sense together.
    pub fn validate(&self) -> Result<(), TierError> {
        let l = &self.limits;
        if l.requests_per_second == Some(0) {
            return Err(TierError::NoRequestRate);
        }
        if l.burst == Some(0) {
            return Err(TierError::NoBurst);
        }
        if l.budget_per_month.is_some_and(|m| m.micros() < 0) {
            return Err(TierError::NegativeBudget);
        }
        if l.per_user.budget_per_month.is_some_and(|m| m.micros() < 0) {
            return Err(TierError::NegativeUserBudget);
        }
        if l.model_requests_per_minute == Some(0) || l.per_user.model_requests_per_minute == Some(0)
        {
            return Err(TierError::NoModelRequestRate);
        }
        if l.fair_share_weight == Some(0) {
            return Err(TierError::NoFairShare);
        }
        let s = &self.sandbox;
        if s.memory_mb < 16 {
            return Err(TierError::TooLittleMemory);
        }
        if s.cpu_millis < 10 {
            return Err(TierError::TooLittleCpu);
        }
        if s.max_processes < 1 {
            return Err(TierError::NoProcesses);
        }
        if s.log_kb < 4 {
            return Err(TierError::TooLittleLog);
        }
        if self.display_name.chars().count() > 200 {
            return Err(TierError::DisplayNameTooLong);
        }
        if !(1..=365).contains(&self.memory_event_expiry_days) {
            return Err(TierError::MemoryExpiry);
        }
        Ok(())
    }
}
