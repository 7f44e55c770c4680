//! Rate limits by GCRA (the generic cell rate algorithm): one timestamp per key, the
//! theoretical arrival time (TAT), instead of a bucket that needs refilling.
//!
//! A key admits `burst` requests at once and then one every `period / count`. The arithmetic
//! here is the reference for both backends; the Redis script (`redis_backend.rs`) is a line by
//! line port of `gcra`, so keep the two in step. This module must never do I/O.

use std::time::Duration;

use crate::LimitError;
use crate::clock::micros_to_duration;
use crate::error::secs_ceil;

/// A sustained rate: `count` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    period: Duration,
}

impl Rate {
    pub const fn new(count: u32, period: Duration) -> Rate {
        Rate { count, period }
    }

    pub const fn per_second(count: u32) -> Rate {
        Rate::new(count, Duration::from_secs(1))
    }

    pub const fn per_minute(count: u32) -> Rate {
        Rate::new(count, Duration::from_secs(60))
    }

    pub const fn count(&self) -> u32 {
        self.count
    }

    pub const fn period(&self) -> Duration {
        self.period
    }

    /// Microseconds between two requests at the sustained rate, or `None` for a rate of zero
    /// (which admits nothing).
    pub(crate) fn interval_us(&self) -> Option<i64> {
        if self.count == 0 {
            return None;
        }
        let period_us = i64::try_from(self.period.as_micros()).unwrap_or(i64::MAX);
        Some((period_us / i64::from(self.count)).max(1))
    }
}

/// The answer of a rate check, with what the HTTP layer puts in the `RateLimit-*` and
/// `Retry-After` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The burst: how many requests the key admits at once (`RateLimit-Limit`).
    pub limit: u32,
    /// How many more requests would be admitted right now (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Time until the full burst is available again (`RateLimit-Reset`).
    pub reset_after: Duration,
    /// When refused: time until this request would be admitted (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// `Ok(self)` when allowed, `RateLimited` otherwise.
    pub fn into_result(self) -> Result<Decision, LimitError> {
        match (self.allowed, self.retry_after) {
            (true, _) => Ok(self),
            (false, retry_after) => Err(LimitError::RateLimited {
                retry_after: retry_after.unwrap_or(self.reset_after),
            }),
        }
    }

    /// `RateLimit-Reset` in whole seconds (rounded up; 0 when nothing is consumed).
    pub fn reset_secs(&self) -> u64 {
        if self.reset_after.is_zero() {
            0
        } else {
            secs_ceil(self.reset_after)
        }
    }

    /// The response headers for this decision: the three `RateLimit-*` fields always,
    /// `Retry-After` (seconds, rounded up) when refused.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("RateLimit-Limit", self.limit.to_string()),
            ("RateLimit-Remaining", self.remaining.to_string()),
            ("RateLimit-Reset", self.reset_secs().to_string()),
        ];
        if let Some(retry) = self.retry_after {
            headers.push(("Retry-After", secs_ceil(retry).to_string()));
        }
        headers
    }

    /// The refusal of a limit that admits nothing (rate or burst of zero).
    pub(crate) fn refuse_all(rate: Rate) -> Decision {
        Decision {
            allowed: false,
            limit: 0,
            remaining: 0,
            reset_after: rate.period,
            retry_after: Some(rate.period),
        }
    }
}

/// One GCRA step. `tat` is the stored TAT (`None` when absent), all times in microseconds on
/// one clock. Returns the decision and, when allowed, the TAT to store.
pub(crate) fn gcra(
    tat: Option<i64>,
    now: i64,
    interval: i64,
    burst: u32,
) -> (Decision, Option<i64>) {
    let tat = tat.map_or(now, |t| t.max(now));
    let new_tat = tat.saturating_add(interval);
    let allow_at = new_tat.saturating_sub(interval.saturating_mul(i64::from(burst)));
    if now < allow_at {
        let decision = Decision {
            allowed: false,
            limit: burst,
            remaining: 0,
            reset_after: micros_to_duration(tat - now),
            retry_after: Some(micros_to_duration(allow_at - now)),
        };
        return (decision, None);
    }
    let remaining = (now - allow_at) / interval;
    let decision = Decision {
        allowed: true,
        limit: burst,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset_after: micros_to_duration(new_tat - now),
        retry_after: None,
    };
    (decision, Some(new_tat))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let interval = 100_000; // 10 per second
        let mut tat = None;
        for i in 0..5 {
            let (d, t) = gcra(tat, 0, interval, 5);
            assert!(d.allowed, "request {i} is within the burst");
            assert_eq!(d.remaining, 4 - i);
            tat = t;
        }
        let (d, t) = gcra(tat, 0, interval, 5);
        assert!(!d.allowed);
        assert_eq!(t, None);
        assert_eq!(d.retry_after, Some(Duration::from_millis(100)));
        assert_eq!(d.reset_after, Duration::from_millis(500));
        // One interval later exactly one more is admitted.
        let (d, t) = gcra(tat, 100_000, interval, 5);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        let (d, _) = gcra(t, 100_000, interval, 5);
        assert!(!d.allowed);
        // After the whole burst period the key is fresh again.
        let (d, _) = gcra(t, 10_000_000, interval, 5);
        assert_eq!(d.remaining, 4);
    }

    #[test]
    fn headers_round_up_and_only_refusals_say_retry_after() {
        let (d, _) = gcra(None, 0, 1_500_000, 1);
        assert_eq!(
            d.headers(),
            vec![
                ("RateLimit-Limit", "1".to_owned()),
                ("RateLimit-Remaining", "0".to_owned()),
                ("RateLimit-Reset", "2".to_owned()),
            ]
        );
        let (refused, _) = gcra(Some(1_500_000), 0, 1_500_000, 1);
        assert_eq!(refused.retry_after, Some(Duration::from_millis(1500)));
        assert!(refused.headers().contains(&("Retry-After", "2".to_owned())));
        assert!(matches!(
            refused.into_result(),
            Err(LimitError::RateLimited { .. })
        ));
    }

    #[test]
    fn zero_rate_admits_nothing() {
        assert_eq!(Rate::per_second(0).interval_us(), None);
        assert!(!Decision::refuse_all(Rate::per_second(0)).allowed);
        assert_eq!(Rate::per_minute(60).interval_us(), Some(1_000_000));
    }
}
