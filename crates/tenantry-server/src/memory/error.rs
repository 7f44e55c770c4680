//! `MemoryServiceError`: the memory service's closed error enum, classified without a wildcard
//! arm, and its HTTP answer.

use tenantry_core::{Blame, ErrorCode};
use tenantry_memory::MemoryError;
use tenantry_store::StoreError;

use crate::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum MemoryServiceError {
    /// The caller's request broke a memory rule (bad id, namespace, actor...).
    #[error(transparent)]
    Domain(#[from] MemoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A dependency (the registry's runtime lookup) cannot answer.
    #[error("memory cannot decide now: {0}")]
    Unavailable(String),
}

impl MemoryServiceError {
    pub fn admin_only() -> Self {
        MemoryError::Forbidden(
            "managing memories and erasing users needs the tenant-admin role or the operator"
                .into(),
        )
        .into()
    }

    pub fn not_found(what: &'static str) -> Self {
        MemoryError::NotFound(what).into()
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            MemoryServiceError::Domain(e) => e.code(),
            MemoryServiceError::Store(e) => e.code(),
            MemoryServiceError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}

impl From<MemoryServiceError> for ApiError {
    fn from(e: MemoryServiceError) -> Self {
        match e {
            MemoryServiceError::Domain(d) => ApiError::new(d.code(), d.to_string()),
            MemoryServiceError::Store(s) => ApiError::from(s),
            MemoryServiceError::Unavailable(why) => {
                let code = ErrorCode::Unavailable;
                debug_assert_eq!(code.blame(), Blame::Upstream);
                tracing::warn!(error = %why, "memory cannot decide");
                ApiError::new(code, "memory cannot decide now; retry shortly")
            }
        }
    }
}
