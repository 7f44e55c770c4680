//! Admission of model calls: requests per minute, then tokens per minute and money per month,
//! each for the tenant and for the calling user, from the tier with the tenant's overrides.
//!
//! Token and money budgets are reserve-then-settle (law 7): the estimate is reserved
//! atomically before the upstream call and replaced by the actual use after it, so concurrent
//! calls, on one replica or many, cannot overspend. A refusal says which limit refused and when
//! it renews (`Retry-After`, `RateLimit-*`); a limiter that cannot decide refuses (law 4).
//! This module must never let a call through without every configured reservation held, and
//! never leave a reservation unsettled on any path (a dropped one holds budget until it
//! expires).

use std::time::Duration;

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tenantry_core::{ErrorCode, Money, SystemGrant, TenantContext, TenantScope, Tier, UserLimits};
use tenantry_limits::{
    BudgetKey, Decision, Dimension, LimitError, Limiter, Rate, RateKey, Reservation, Subject,
    Tokens,
};

use tenantry_store::{Store, StoreError};

use crate::error::ApiError;

/// The model-call limits of one subject (the tenant, or one of its users). `None`: unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubjectLimits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
    pub budget_per_month: Option<Money>,
}

/// The limits a model call is admitted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelLimits {
    pub tenant: SubjectLimits,
    pub user: SubjectLimits,
}

/// A tenant's overrides of its tier's model limits, set by the operator
/// (`PUT /v1/admin/tenants/{id}/limits`). A value given replaces the tier's; a value left out
/// keeps it. Kept in the store as a setting of the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_requests_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// US dollars per calendar month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_per_month: Option<Money>,
    /// Overrides of the limits of each user of the tenant.
    #[serde(default)]
    pub per_user: UserLimits,
}

impl LimitOverrides {
    /// What serde cannot check: a rate of zero would refuse everything (suspend the tenant for
    /// that), a negative budget makes no sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.model_requests_per_minute == Some(0)
            || self.per_user.model_requests_per_minute == Some(0)
        {
            return Err("model_requests_per_minute must be at least 1".into());
        }
        if self.budget_per_month.is_some_and(|m| m.micros() < 0)
            || self
                .per_user
                .budget_per_month
                .is_some_and(|m| m.micros() < 0)
        {
            return Err("budget_per_month must not be negative".into());
        }
        Ok(())
    }
}

impl ModelLimits {
    /// The limits of a tenant on `tier`, with its overrides.
    pub fn of(tier: &Tier, overrides: Option<&LimitOverrides>) -> Self {
        let l = &tier.limits;
        let mut limits = Self {
            tenant: SubjectLimits {
                requests_per_minute: l.model_requests_per_minute,
                tokens_per_minute: l.tokens_per_minute,
                budget_per_month: l.budget_per_month,
            },
            user: SubjectLimits {
                requests_per_minute: l.per_user.model_requests_per_minute,
                tokens_per_minute: l.per_user.tokens_per_minute,
                budget_per_month: l.per_user.budget_per_month,
            },
        };
        if let Some(o) = overrides {
            let (t, u) = (&mut limits.tenant, &mut limits.user);
            t.requests_per_minute = o.model_requests_per_minute.or(t.requests_per_minute);
            t.tokens_per_minute = o.tokens_per_minute.or(t.tokens_per_minute);
            t.budget_per_month = o.budget_per_month.or(t.budget_per_month);
            let p = &o.per_user;
            u.requests_per_minute = p.model_requests_per_minute.or(u.requests_per_minute);
            u.tokens_per_minute = p.tokens_per_minute.or(u.tokens_per_minute);
            u.budget_per_month = p.budget_per_month.or(u.budget_per_month);
        }
        limits
    }
}

/// A refused call: the error and the `RateLimit-*` headers that explain it.
#[derive(Debug)]
pub struct Refusal {
    pub error: ApiError,
    pub headers: Vec<(&'static str, String)>,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            headers: Vec::new(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        add_headers(&mut response, &self.headers);
        response
    }
}

pub fn add_headers(response: &mut Response, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, v);
        }
    }
}

/// Whom a limit belongs to, for messages.
#[derive(Debug, Clone, Copy)]
enum Who {
    Tenant,
    User,
}

fn subject(ctx: &TenantContext, who: Who) -> Subject {
    match who {
        Who::Tenant => Subject::tenant(ctx.tenant_id.clone()),
        Who::User => Subject::user(ctx.tenant_id.clone(), ctx.user_id.clone()),
    }
}

fn describe(ctx: &TenantContext, who: Who) -> String {
    match who {
        Who::Tenant => format!("tenant {}", ctx.tenant_id),
        Who::User => format!("user {} of tenant {}", ctx.user_id, ctx.tenant_id),
    }
}

fn secs_ceil(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// Checks the requests-per-minute limits, the user's first: a request its user's limit refuses
/// costs the tenant's limit nothing, so one user's flood cannot use up its colleagues' share.
/// Returns the decision to show the caller in `RateLimit-*` headers: the one with the fewest
/// requests left.
pub async fn check_rate(
    limiter: &Limiter,
    ctx: &TenantContext,
    limits: &ModelLimits,
) -> Result<Option<Decision>, Refusal> {
    let mut shown: Option<Decision> = None;
    for (who, per_minute) in [
        (Who::User, limits.user.requests_per_minute),
        (Who::Tenant, limits.tenant.requests_per_minute),
    ] {
        let Some(per_minute) = per_minute else {
            continue;
        };
        let key = RateKey::new(subject(ctx, who), Dimension::ModelRequests);
        let d = limiter
            .check_rate(&key, Rate::per_minute(per_minute), per_minute)
            .await
            .map_err(|e| Refusal::from(ApiError::from(e)))?;
        if !d.allowed {
            let mut error = ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "{} is over its model request rate ({per_minute} per minute); retry later",
                    describe(ctx, who)
                ),
            );
            error.retry_after = d.retry_after.map(secs_ceil);
            return Err(Refusal {
                error,
                headers: d.headers(),
            });
        }
        if shown.is_none_or(|s| d.remaining < s.remaining) {
            shown = Some(d);
        }
    }
    Ok(shown)
}

/// Reservations held for one model call. Settle them (`settle`) on every path.
#[derive(Debug, Default)]
#[must_use = "settle the reservations with the actual use"]
pub struct Held {
    tokens: Vec<Reservation<Tokens>>,
    money: Vec<Reservation<Money>>,
}

impl Held {
    /// Replaces every reservation by the actual use. Failures are logged: the limiter releases
    /// an unsettled reservation at its expiry.
    pub async fn settle(self, limiter: &Limiter, tokens: u64, cost: Money) {
        for r in self.tokens {
            if let Err(e) = limiter.settle(r, Tokens(tokens)).await {
                tracing::warn!(error = %e, "cannot settle a token reservation");
            }
        }
        for r in self.money {
            if let Err(e) = limiter.settle(r, cost).await {
                tracing::warn!(error = %e, "cannot settle a money reservation");
            }
        }
    }
}

/// Reserves `tokens` and `cost` against every configured budget of the tenant and the user.
/// On a refusal, the reservations already made are released before returning.
pub async fn reserve(
    limiter: &Limiter,
    ctx: &TenantContext,
    limits: &ModelLimits,
    tokens: u64,
    cost: Money,
) -> Result<Held, Refusal> {
    let mut held = Held::default();
    let result = reserve_into(&mut held, limiter, ctx, limits, tokens, cost).await;
    match result {
        Ok(()) => Ok(held),
        Err(refusal) => {
            held.settle(limiter, 0, Money::ZERO).await;
            Err(refusal)
        }
    }
}

async fn reserve_into(
    held: &mut Held,
    limiter: &Limiter,
    ctx: &TenantContext,
    limits: &ModelLimits,
    tokens: u64,
    cost: Money,
) -> Result<(), Refusal> {
    for (who, l) in [(Who::Tenant, &limits.tenant), (Who::User, &limits.user)] {
        if let Some(limit) = l.tokens_per_minute {
            let key = BudgetKey::tokens(subject(ctx, who));
            match limiter.reserve(&key, Tokens(tokens), Tokens(limit)).await {
                Ok(r) => held.tokens.push(r),
                Err(e) => {
                    return Err(budget_refusal(
                        e,
                        format!(
                            "{} has used its {limit} model tokens for this minute \
                             (this call may use up to {tokens})",
                            describe(ctx, who)
                        ),
                        limit.to_string(),
                    ));
                }
            }
        }
        if let Some(limit) = l.budget_per_month {
            let key = BudgetKey::money(subject(ctx, who));
            match limiter.reserve(&key, cost, limit).await {
                Ok(r) => held.money.push(r),
                Err(e) => {
                    return Err(budget_refusal(
                        e,
                        format!(
                            "{} has spent its model budget of ${limit} for this month \
                             (this call may cost up to ${cost})",
                            describe(ctx, who)
                        ),
                        limit.micros().to_string(),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A budget refusal (429 `budget_exceeded`) with its headers; any other limiter error (it
/// cannot decide) becomes the limiter's own refusal (503).
fn budget_refusal(e: LimitError, message: String, limit: String) -> Refusal {
    match e {
        LimitError::BudgetExceeded { retry_after } => {
            let reset = secs_ceil(retry_after);
            let mut error = ApiError::new(
                ErrorCode::BudgetExceeded,
                format!("{message}; it renews in {reset}s"),
            );
            error.retry_after = Some(reset);
            Refusal {
                error,
                headers: vec![
                    ("RateLimit-Limit", limit),
                    ("RateLimit-Remaining", "0".to_owned()),
                    ("RateLimit-Reset", reset.to_string()),
                ],
            }
        }
        LimitError::RateLimited { .. }
        | LimitError::ConcurrencyExceeded { .. }
        | LimitError::Unavailable(_)
        | LimitError::InvalidConfig(_) => Refusal::from(ApiError::from(e)),
    }
}

/// Seeds an in-process limiter with the model spend the ledger holds for the current windows
/// (this calendar month's money, this minute's tokens) of every tenant and of each of its users,
/// so a restart, clean or not, forgets no budget. A shared limiter (Redis) keeps its own state
/// and is not seeded. Only spend since the tenant's creation counts: a tenant deleted and
/// created again under the same id starts afresh, as it does on Redis (deletion clears its
/// budgets there), though the ledger keeps the old tenant's entries under that id for billing.
/// Returns the number of tenants with spend in the month.
pub async fn seed_from_ledger(
    system: SystemGrant,
    store: &Store,
    limiter: &Limiter,
) -> Result<usize, StoreError> {
    if limiter.backend() != "memory" {
        return Ok(0);
    }
    let month = limiter.window_start::<Money>();
    let minute = limiter.window_start::<Tokens>();
    let mut seeded = 0;
    for tenant in store.list_tenants().await? {
        let scope = TenantScope::for_operator(system, tenant.id.clone());
        let spent = store
            .model_spend_since(&scope, month.max(tenant.created_at))
            .await?;
        if spent.is_empty() {
            continue;
        }
        seeded += 1;
        let recent = store
            .model_spend_since(&scope, minute.max(tenant.created_at))
            .await?;
        let mut total = (Money::ZERO, 0u64);
        for s in &spent {
            total.0 = Money::from_micros(total.0.micros().saturating_add(s.cost.micros()));
            if let Some(user) = &s.user_id {
                let key = BudgetKey::money(Subject::user(tenant.id.clone(), user.clone()));
                record(limiter.record(&key, s.cost).await);
            }
        }
        for s in &recent {
            let tokens = u64::try_from(s.tokens).unwrap_or(0);
            total.1 = total.1.saturating_add(tokens);
            if let Some(user) = &s.user_id {
                let key = BudgetKey::tokens(Subject::user(tenant.id.clone(), user.clone()));
                record(limiter.record(&key, Tokens(tokens)).await);
            }
        }
        let subject = Subject::tenant(tenant.id.clone());
        record(
            limiter
                .record(&BudgetKey::money(subject.clone()), total.0)
                .await,
        );
        record(
            limiter
                .record(&BudgetKey::tokens(subject), Tokens(total.1))
                .await,
        );
        tracing::debug!(tenant.id = %tenant.id, spent = %total.0, "budget seeded from the ledger");
    }
    Ok(seeded)
}

fn record(r: Result<(), LimitError>) {
    // The in-process backend does not fail.
    if let Err(e) = r {
        tracing::warn!(error = %e, "cannot seed a budget from the ledger");
    }
}
