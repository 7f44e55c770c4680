//! The limiter's closed error enum and its classification into `ErrorCode`.
//!
//! It owns the one rule of tenancy law 4 for admission: when the limiter cannot decide (Redis
//! down, slow or answering nonsense) the answer is `Unavailable`, and callers refuse the
//! request. Nothing here may ever turn a failure into "allowed".

use std::time::Duration;

use tenantry_core::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The request rate is over its limit; the same request is admitted after `retry_after`.
    #[error("rate limit exceeded; retry after {}s", secs_ceil(*retry_after))]
    RateLimited { retry_after: Duration },
    /// The reservation does not fit the budget's window; the window ends after `retry_after`
    /// (the end of the minute for tokens, of the calendar month for money).
    #[error("budget exceeded; the budget renews in {}s", secs_ceil(*retry_after))]
    BudgetExceeded { retry_after: Duration },
    /// As many holders as the cap allows are already in flight.
    #[error("concurrency limit of {max} reached")]
    ConcurrencyExceeded { max: u32 },
    /// The limiter cannot decide (backend unreachable, timed out, or an unexpected reply); the
    /// request must be refused.
    #[error("limiter unavailable: {0}")]
    Unavailable(String),
    /// The limiter URL or configuration is not usable; reported at start-up.
    #[error("invalid limiter configuration: {0}")]
    InvalidConfig(String),
}

impl LimitError {
    pub fn code(&self) -> ErrorCode {
        match self {
            // A concurrency refusal is a rate limit from the caller's point of view: slow down.
            LimitError::RateLimited { .. } | LimitError::ConcurrencyExceeded { .. } => {
                ErrorCode::RateLimited
            }
            LimitError::BudgetExceeded { .. } => ErrorCode::BudgetExceeded,
            LimitError::Unavailable(_) => ErrorCode::Unavailable,
            LimitError::InvalidConfig(_) => ErrorCode::Internal,
        }
    }

    /// How long the caller should wait before trying again, for a `Retry-After` header.
    /// A concurrency refusal suggests one second: a slot frees when any holder finishes.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LimitError::RateLimited { retry_after }
            | LimitError::BudgetExceeded { retry_after } => Some(*retry_after),
            LimitError::ConcurrencyExceeded { .. } => Some(Duration::from_secs(1)),
            LimitError::Unavailable(_) | LimitError::InvalidConfig(_) => None,
        }
    }

    /// `retry_after` in whole seconds, rounded up (at least 1), as `Retry-After` wants it.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after().map(secs_ceil)
    }
}

/// Whole seconds, rounded up so a client never retries too early, and at least 1.
pub(crate) fn secs_ceil(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_without_guessing() {
        let d = Duration::from_millis(1500);
        assert_eq!(
            LimitError::RateLimited { retry_after: d }.code(),
            ErrorCode::RateLimited
        );
        assert_eq!(
            LimitError::ConcurrencyExceeded { max: 1 }.code(),
            ErrorCode::RateLimited
        );
        assert_eq!(
            LimitError::BudgetExceeded { retry_after: d }.code(),
            ErrorCode::BudgetExceeded
        );
        assert_eq!(
            LimitError::Unavailable(String::new()).code(),
            ErrorCode::Unavailable
        );
        assert_eq!(
            LimitError::RateLimited { retry_after: d }.retry_after_secs(),
            Some(2)
        );
        assert_eq!(
            LimitError::RateLimited {
                retry_after: Duration::ZERO
            }
            .retry_after_secs(),
            Some(1)
        );
        assert_eq!(LimitError::Unavailable(String::new()).retry_after(), None);
    }
}
