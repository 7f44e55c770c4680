//! The vocabulary of tenancy, shared by every Tenantry crate.
//!
//! This crate owns the identifiers (`TenantId`, `UserId`, `TierName`, `RuntimeName`), the tier
//! and tenant records, isolation settings, the verified `Principal` and `TenantContext` of a
//! request, the `TenantScope` that every store method for tenant data demands, and the closed
//! error taxonomy (`ErrorCode`) that every layer maps its errors into; and the framing of
//! server-sent events ([`sse`]), which model providers and MCP upstreams both stream in, and
//! the message of an upstream's error answer ([`upstream`]).
//!
//! It must never do I/O: it is plain data and the rules that make it valid. The one exception
//! is the recording mock server behind the `test-util` feature ([`testing`]), for other
//! crates' tests.

#![forbid(unsafe_code)]

pub mod error;
pub mod id;
pub mod money;
pub mod principal;
pub mod secret;
pub mod sse;
pub mod tenant;
pub mod tier;
pub mod upstream;

#[cfg(feature = "test-util")]
pub mod testing;

pub use error::{Blame, ErrorCode};
pub use id::{
    IdError, RuntimeName, SERVICE_PRINCIPAL_PREFIX, SessionId, TenantId, TenantUid, TierName,
    UserId,
};
pub use money::{Money, MoneyError};
pub use principal::{
    CredentialKind, CrossTenantGrant, OperatorGrant, OperatorKey, Principal, SystemGrant,
    TenantContext, TenantScope,
};
pub use secret::Secret;
pub use tenant::{
    IsolationMode, IsolationOverrides, IsolationPreset, IsolationSettings, Tenant, TenantIsolation,
    TenantStatus,
};
pub use tier::{SandboxResources, Tier, TierError, TierLimits, UserLimits};

/// Seconds since the Unix epoch, the one clock representation stored and returned by the API.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
