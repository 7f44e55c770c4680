//! Calendar time for budget windows: the clock that says which minute or month it is, and the
//! arithmetic that turns an instant into a window id and the window's end.
//!
//! Only budget windows read this clock. Rate limits, leases and reservation expiry use a
//! monotonic clock (in-process) or the Redis server's clock (shared), so a wall clock that
//! jumps can shift a window boundary but never extend a lease or refill a rate limit.
//! This module must never do I/O.

use std::fmt::Debug;
use std::time::Duration;

use crate::key::BudgetKind;

const MICROS_PER_SEC: i64 = 1_000_000;
const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SEC;
const SECS_PER_DAY: i64 = 86_400;

/// The calendar clock used to choose budget windows.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Microseconds since the Unix epoch (UTC).
    fn now_unix_micros(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_micros(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that stands still until moved (feature `test-util`), so tests of per-minute windows
/// cannot be broken by a real minute ending mid-test.
#[cfg(feature = "test-util")]
#[derive(Debug, Default)]
pub struct ManualClock {
    micros: std::sync::atomic::AtomicI64,
}

#[cfg(feature = "test-util")]
impl ManualClock {
    pub fn at_unix_micros(micros: i64) -> Self {
        Self {
            micros: std::sync::atomic::AtomicI64::new(micros),
        }
    }

    pub fn set_unix_micros(&self, micros: i64) {
        self.micros
            .store(micros, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(feature = "test-util")]
impl Clock for ManualClock {
    fn now_unix_micros(&self) -> i64 {
        self.micros.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One budget window: a calendar minute or a calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// Minutes since the epoch, or `year * 12 + month - 1`.
    pub id: i64,
    /// When the window ends (exclusive), in microseconds since the epoch.
    pub ends_at_us: i64,
}

impl Window {
    pub fn at(kind: BudgetKind, now_us: i64) -> Window {
        match kind {
            BudgetKind::TokensPerMinute => {
                let id = now_us.div_euclid(MICROS_PER_MINUTE);
                Window {
                    id,
                    ends_at_us: (id + 1).saturating_mul(MICROS_PER_MINUTE),
                }
            }
            BudgetKind::MoneyPerMonth => {
                let days = now_us.div_euclid(MICROS_PER_SEC * SECS_PER_DAY);
                let (year, month, _) = civil_from_days(days);
                let (next_year, next_month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                let end_days = days_from_civil(next_year, next_month, 1);
                Window {
                    id: year * 12 + i64::from(month) - 1,
                    ends_at_us: end_days
                        .saturating_mul(SECS_PER_DAY)
                        .saturating_mul(MICROS_PER_SEC),
                }
            }
        }
    }

    /// When the window began (inclusive), in whole seconds since the epoch.
    pub fn starts_at_secs(&self, kind: BudgetKind) -> i64 {
        match kind {
            BudgetKind::TokensPerMinute => self.id.saturating_mul(60),
            BudgetKind::MoneyPerMonth => {
                let (year, month0) = (self.id.div_euclid(12), self.id.rem_euclid(12));
                let month = u32::try_from(month0 + 1).unwrap_or(1);
                days_from_civil(year, month, 1).saturating_mul(SECS_PER_DAY)
            }
        }
    }

    /// Time from `now_us` to the end of the window (zero if already over).
    pub fn remaining(&self, now_us: i64) -> Duration {
        micros_to_duration(self.ends_at_us.saturating_sub(now_us))
    }
}

pub(crate) fn micros_to_duration(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01, proleptic Gregorian.
/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// Days since 1970-01-01 of a civil date; the inverse of `civil_from_days`.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = MICROS_PER_SEC;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        for days in -800_000..800_000 {
            if days % 997 != 0 {
                continue;
            }
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn minute_windows() {
        // 2025-01-31T23:59:30Z
        let t = 1_738_367_970 * S;
        let w = Window::at(BudgetKind::TokensPerMinute, t);
        assert_eq!(w.ends_at_us, 1_738_368_000 * S);
        assert_eq!(w.remaining(t), Duration::from_secs(30));
        let next = Window::at(BudgetKind::TokensPerMinute, w.ends_at_us);
        assert_eq!(next.id, w.id + 1);
    }

    #[test]
    fn windows_know_where_they_began() {
        // 2026-03-15T10:20:30.5Z
        let t = 1_773_570_030_500_000;
        let m = Window::at(BudgetKind::TokensPerMinute, t);
        assert_eq!(m.starts_at_secs(BudgetKind::TokensPerMinute), 1_773_570_000);
        let w = Window::at(BudgetKind::MoneyPerMonth, t);
        // 2026-03-01T00:00:00Z
        assert_eq!(w.starts_at_secs(BudgetKind::MoneyPerMonth), 1_772_323_200);
        let jan = Window::at(BudgetKind::MoneyPerMonth, 1_767_225_600_000_000);
        assert_eq!(jan.starts_at_secs(BudgetKind::MoneyPerMonth), 1_767_225_600);
    }

    #[test]
    fn month_windows_follow_the_calendar() {
        // 2025-01-31T23:59:30Z is still January; February ends at 2025-03-01T00:00:00Z.
        let jan = Window::at(BudgetKind::MoneyPerMonth, 1_738_367_970 * S);
        assert_eq!(jan.id, 2025 * 12);
        assert_eq!(jan.ends_at_us, 1_738_368_000 * S);
        let feb = Window::at(BudgetKind::MoneyPerMonth, jan.ends_at_us);
        assert_eq!(feb.id, 2025 * 12 + 1);
        assert_eq!(feb.ends_at_us, 1_740_787_200 * S);
        // Leap year February, and December rolling into the next year.
        let feb_2024 = Window::at(BudgetKind::MoneyPerMonth, 1_708_992_000 * S); // 2024-02-27
        assert_eq!(feb_2024.ends_at_us, 1_709_251_200 * S); // 2024-03-01
        let dec = Window::at(BudgetKind::MoneyPerMonth, 1_735_603_200 * S); // 2024-12-31
        assert_eq!(dec.id, 2024 * 12 + 11);
        assert_eq!(dec.ends_at_us, 1_735_689_600 * S); // 2025-01-01
    }
}
