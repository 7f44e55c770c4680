//! The memory domain's closed error enum, classified into `ErrorCode` without a wildcard arm.

use tenantry_core::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// An id, namespace, payload or filter the caller sent is malformed or out of bounds.
    #[error("{0}")]
    Invalid(String),
    /// The memory, event or record does not exist for this caller (absent, or another
    /// tenant's: indistinguishable by design).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller's credential may not do this (another actor than its session's user, a
    /// shared memory changed by a tenant, a tenant-admin operation without the role).
    #[error("{0}")]
    Forbidden(String),
    /// The resource exists already (a memory of that name).
    #[error("{0}")]
    Conflict(String),
}

impl MemoryError {
    pub fn invalid(message: impl Into<String>) -> Self {
        MemoryError::Invalid(message.into())
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            MemoryError::Invalid(_) => ErrorCode::InvalidRequest,
            MemoryError::NotFound(_) => ErrorCode::NotFound,
            MemoryError::Forbidden(_) => ErrorCode::Forbidden,
            MemoryError::Conflict(_) => ErrorCode::Conflict,
        }
    }
}
