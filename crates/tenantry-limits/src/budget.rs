//! Budgets in two units, tokens per minute and money per calendar month, spent by
//! reserve-then-settle: an estimate is reserved atomically before the work, and replaced by
//! the actual amount after it.
//!
//! This module owns the unit types, the `Reservation` handle and the `Usage` report. It must
//! never let a reservation be settled twice (settling consumes it) and never release a
//! dropped reservation early: an unsettled reservation holds its amount until its TTL ends,
//! which errs towards refusing rather than overspending.

use std::fmt::Debug;
use std::time::Duration;

use tenantry_core::Money;

use crate::clock::Window;
use crate::key::{BudgetKey, BudgetKind};

/// The largest amount a budget counts (2^53 - 1, the largest integer Redis's Lua numbers hold
/// exactly); larger limits and amounts are clamped to it, which leaves them effectively
/// unlimited ($9 billion, or 9·10^15 tokens).
pub const MAX_UNITS: i64 = (1 << 53) - 1;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Tokens {}
    impl Sealed for tenantry_core::Money {}
}

/// A unit a budget counts in. Implemented by `Tokens` and `Money` only.
pub trait BudgetUnit: Copy + Send + Sync + Debug + PartialEq + 'static + sealed::Sealed {
    /// The window this unit's budgets are counted in.
    const KIND: BudgetKind;
    const ZERO: Self;
    /// The amount as an integer count, clamped to `0..=MAX_UNITS`.
    fn to_units(self) -> i64;
    fn from_units(units: i64) -> Self;
}

/// A number of model tokens (input plus output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tokens(pub u64);

impl BudgetUnit for Tokens {
    const KIND: BudgetKind = BudgetKind::TokensPerMinute;
    const ZERO: Self = Tokens(0);

    fn to_units(self) -> i64 {
        i64::try_from(self.0).unwrap_or(MAX_UNITS).min(MAX_UNITS)
    }

    fn from_units(units: i64) -> Self {
        Tokens(u64::try_from(units).unwrap_or(0))
    }
}

impl BudgetUnit for Money {
    const KIND: BudgetKind = BudgetKind::MoneyPerMonth;
    const ZERO: Self = Money::ZERO;

    fn to_units(self) -> i64 {
        self.micros().clamp(0, MAX_UNITS)
    }

    fn from_units(units: i64) -> Self {
        Money::from_micros(units)
    }
}

/// A budget's state in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage<U> {
    /// Settled (actual) amounts.
    pub used: U,
    /// Amounts held by live reservations.
    pub reserved: U,
    /// Time until the window ends and the budget renews.
    pub resets_in: Duration,
}

/// An amount held against a budget until it is settled (`Limiter::settle`) or expires.
#[must_use = "settle a reservation with the actual amount; a dropped one holds its budget until it expires"]
#[derive(Debug)]
pub struct Reservation<U: BudgetUnit> {
    pub(crate) key: BudgetKey<U>,
    pub(crate) window: Window,
    pub(crate) id: u128,
    pub(crate) amount: i64,
    pub(crate) settled: bool,
}

impl<U: BudgetUnit> Reservation<U> {
    pub fn key(&self) -> &BudgetKey<U> {
        &self.key
    }

    /// The amount reserved.
    pub fn amount(&self) -> U {
        U::from_units(self.amount)
    }
}

impl<U: BudgetUnit> Drop for Reservation<U> {
    fn drop(&mut self) {
        if !self.settled {
            // Not an error for the request at hand, but usage that is never settled is missing
            // from the budget after the reservation expires: the caller has a bug.
            tracing::warn!(
                tenant.id = %self.key.subject.tenant_id(),
                budget = U::KIND.as_str(),
                amount = self.amount,
                "budget reservation dropped without settle; it holds its amount until it expires"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_clamp_into_the_exact_range() {
        assert_eq!(Tokens(u64::MAX).to_units(), MAX_UNITS);
        assert_eq!(Tokens(7).to_units(), 7);
        assert_eq!(Money::from_micros(-5).to_units(), 0);
        assert_eq!(Money::from_micros(i64::MAX).to_units(), MAX_UNITS);
        assert_eq!(Money::from_units(1_500_000), Money::from_micros(1_500_000));
    }
}
