//! Typed limit keys: who a limit applies to (a tenant, or one user of a tenant) and what it
//! counts. Keys are built only from verified ids and closed enums, so a request can never
//! choose, widen or collide with another tenant's key by sending a crafted string.
//!
//! This module owns the Redis key layout. It must never put anything before the tenant's hash
//! tag, and must keep the user id (the only free-form part) last, so two keys never collide.

use std::marker::PhantomData;

use tenantry_core::{Money, TenantId, UserId};

use crate::budget::{BudgetUnit, Tokens};

/// Whom a limit applies to: a whole tenant, or one user within a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject {
    tenant: TenantId,
    user: Option<UserId>,
}

impl Subject {
    /// The whole tenant: every user of it shares this limit.
    pub fn tenant(tenant: TenantId) -> Self {
        Self { tenant, user: None }
    }

    /// One user of a tenant.
    pub fn user(tenant: TenantId, user: UserId) -> Self {
        Self {
            tenant,
            user: Some(user),
        }
    }

    pub fn tenant_id(&self) -> &TenantId {
        &self.tenant
    }

    pub fn user_id(&self) -> Option<&UserId> {
        self.user.as_ref()
    }

    /// `tenantry:lim:{TENANT}:` — the braces are a Redis Cluster hash tag, so every key of one
    /// tenant lands in one slot and a multi-key script over them stays legal on a cluster.
    fn redis_prefix(&self) -> String {
        format!("tenantry:lim:{{{}}}:", self.tenant)
    }

    /// `t` for the tenant, `u:USER` for a user; always the last part of a key.
    fn redis_suffix(&self) -> String {
        match &self.user {
            None => "t".to_owned(),
            Some(u) => format!("u:{u}"),
        }
    }
}

/// What a rate limit or a concurrency cap counts. Closed, so metric labels and Redis keys stay
/// bounded; add a variant here when a new kind of admission appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// Every authenticated API request (ingress admission).
    Requests,
    /// Model gateway calls (`/v1/chat/completions`, `/v1/embeddings`).
    ModelRequests,
    /// Tool gateway calls (`tools/call`).
    ToolCalls,
    /// Runtime invocations in flight.
    Invocations,
    /// Live sessions (sandboxes).
    Sessions,
}

impl Dimension {
    pub const fn as_str(self) -> &'static str {
        match self {
            Dimension::Requests => "requests",
            Dimension::ModelRequests => "model_requests",
            Dimension::ToolCalls => "tool_calls",
            Dimension::Invocations => "invocations",
            Dimension::Sessions => "sessions",
        }
    }
}

/// The key of a rate limit (GCRA).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateKey {
    pub subject: Subject,
    pub dimension: Dimension,
}

impl RateKey {
    pub fn new(subject: Subject, dimension: Dimension) -> Self {
        Self { subject, dimension }
    }

    pub(crate) fn redis_key(&self) -> String {
        format!(
            "{}rate:{}:{}",
            self.subject.redis_prefix(),
            self.dimension.as_str(),
            self.subject.redis_suffix()
        )
    }
}

/// The key of a concurrency cap.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConcurrencyKey {
    pub subject: Subject,
    pub dimension: Dimension,
}

impl ConcurrencyKey {
    pub fn new(subject: Subject, dimension: Dimension) -> Self {
        Self { subject, dimension }
    }

    pub(crate) fn redis_key(&self) -> String {
        format!(
            "{}conc:{}:{}",
            self.subject.redis_prefix(),
            self.dimension.as_str(),
            self.subject.redis_suffix()
        )
    }
}

/// The two budgeted units and their windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetKind {
    /// Model tokens (input + output) per calendar minute (UTC).
    TokensPerMinute,
    /// Money in micro-dollars per calendar month (UTC).
    MoneyPerMonth,
}

impl BudgetKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            BudgetKind::TokensPerMinute => "tokens",
            BudgetKind::MoneyPerMonth => "money",
        }
    }
}

/// The key of one subject's budget in unit `U` (`Tokens` per minute or `Money` per month);
/// the unit fixes the kind, so a token amount can never be charged to a money budget.
#[derive(Debug)]
pub struct BudgetKey<U> {
    pub subject: Subject,
    unit: PhantomData<fn() -> U>,
}

impl<U: BudgetUnit> BudgetKey<U> {
    pub fn new(subject: Subject) -> Self {
        Self {
            subject,
            unit: PhantomData,
        }
    }

    pub fn kind(&self) -> BudgetKind {
        U::KIND
    }

    /// The hash (`used`, `reserved`, one `r:ID` field per live reservation) and the sorted set
    /// (reservation ids by expiry) of one window.
    pub(crate) fn redis_keys(&self, window: i64) -> (String, String) {
        let prefix = self.subject.redis_prefix();
        let suffix = self.subject.redis_suffix();
        let kind = U::KIND.as_str();
        (
            format!("{prefix}budget:{kind}:{window}:h:{suffix}"),
            format!("{prefix}budget:{kind}:{window}:z:{suffix}"),
        )
    }
}

impl BudgetKey<Tokens> {
    /// Tokens per minute of `subject`.
    pub fn tokens(subject: Subject) -> Self {
        Self::new(subject)
    }
}

impl BudgetKey<Money> {
    /// Money per month of `subject`.
    pub fn money(subject: Subject) -> Self {
        Self::new(subject)
    }
}

// Written by hand: a derive would demand `U: Clone` etc. of a type that is never stored.
impl<U> Clone for BudgetKey<U> {
    fn clone(&self) -> Self {
        Self {
            subject: self.subject.clone(),
            unit: PhantomData,
        }
    }
}

impl<U> PartialEq for BudgetKey<U> {
    fn eq(&self, other: &Self) -> bool {
        self.subject == other.subject
    }
}

impl<U> Eq for BudgetKey<U> {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn t(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    #[test]
    fn redis_keys_are_namespaced_and_hash_tagged_by_tenant() {
        let k = RateKey::new(Subject::tenant(t("acme")), Dimension::Requests);
        assert_eq!(k.redis_key(), "tenantry:lim:{acme}:rate:requests:t");
        let u = UserId::new("bob:requests").unwrap();
        let k = ConcurrencyKey::new(Subject::user(t("acme"), u), Dimension::Invocations);
        assert_eq!(
            k.redis_key(),
            "tenantry:lim:{acme}:conc:invocations:u:bob:requests"
        );
        let (h, z) = BudgetKey::money(Subject::tenant(t("acme"))).redis_keys(7);
        assert_eq!(h, "tenantry:lim:{acme}:budget:money:7:h:t");
        assert_eq!(z, "tenantry:lim:{acme}:budget:money:7:z:t");
    }

    #[test]
    fn a_user_named_like_a_key_part_cannot_collide() {
        // Free-form user ids come last, so no user id reproduces the tenant key or another
        // dimension's key.
        let tenant = RateKey::new(Subject::tenant(t("acme")), Dimension::Requests);
        let user = RateKey::new(
            Subject::user(t("acme"), UserId::new("t").unwrap()),
            Dimension::Requests,
        );
        assert_ne!(tenant.redis_key(), user.redis_key());
        let a = RateKey::new(
            Subject::user(t("acme"), UserId::new("x").unwrap()),
            Dimension::ToolCalls,
        );
        let b = RateKey::new(
            Subject::user(t("acme"), UserId::new("x").unwrap()),
            Dimension::Requests,
        );
        assert_ne!(a.redis_key(), b.redis_key());
    }
}
