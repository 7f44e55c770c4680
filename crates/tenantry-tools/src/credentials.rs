//! What the gateway needs from the vault: [`CredentialSource`], asked for the tenant's (or
//! user's) credential for one target on each call, and [`OutboundCredential`], where that
//! credential goes on the upstream request.
//!
//! The gateway asks only for targets that declare a credential placement, only with the
//! verified caller, and puts the answer on that one request: tenant A's credential can never be
//! used for tenant B because it is never looked up for B. Nothing here logs or prints a
//! credential value.

use std::future::Future;
use std::pin::Pin;

use tenantry_core::ErrorCode;

use crate::identity::{CallerIdentity, Secret};
use crate::target::{CredentialPlacement, TargetSpec};

/// A credential as it goes on the upstream request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundCredential {
    /// A header with the credential as its value.
    Header { name: String, value: Secret },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// A query parameter.
    Query { name: String, value: Secret },
}

impl CredentialPlacement {
    /// The credential `secret` placed as this target says: what a [`CredentialSource`] that
    /// stores bare secrets returns.
    pub fn place(&self, secret: Secret) -> OutboundCredential {
        match self {
            CredentialPlacement::Header { name } => OutboundCredential::Header {
                name: name.clone(),
                value: secret,
            },
            CredentialPlacement::Bearer => OutboundCredential::Bearer(secret),
            CredentialPlacement::Query { name } => OutboundCredential::Query {
                name: name.clone(),
                value: secret,
            },
        }
    }
}

/// Why a credential could not be had. Messages must not contain the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The vault (or a token endpoint it calls) cannot answer now; the call is refused.
    #[error("the credential store cannot answer right now: {0}")]
    Unavailable(String),
    /// The vault refuses: e.g. a token exchange rejected the caller's token.
    #[error("{0}")]
    Refused(String),
}

impl CredentialError {
    pub fn code(&self) -> ErrorCode {
        match self {
            CredentialError::Unavailable(_) => ErrorCode::Unavailable,
            CredentialError::Refused(_) => ErrorCode::Forbidden,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            CredentialError::Unavailable(_) => "credential_unavailable",
            CredentialError::Refused(_) => "credential_refused",
        }
    }
}

/// The future of a credential lookup.
pub type CredentialFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<OutboundCredential>, CredentialError>> + Send + 'a>>;

/// Where tenants' outbound credentials come from (the vault). Object-safe so the server can
/// hold an `Arc<dyn CredentialSource>`.
pub trait CredentialSource: Send + Sync + std::fmt::Debug {
    /// The credential of `caller` (its tenant, or the user where the flow is per user) for
    /// `target`; `Ok(None)` when none is configured. Called only for targets whose `credential`
    /// placement is set, within the target's timeout. It should cache tokens it obtains
    /// (OAuth2 client credentials, RFC 8693 exchanges): it is on the path of every call.
    fn credential_for<'a>(
        &'a self,
        caller: &'a CallerIdentity,
        target: &'a TargetSpec,
    ) -> CredentialFuture<'a>;
}

/// A source with no credentials at all: targets that need one are hidden and refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCredentials;

impl CredentialSource for NoCredentials {
    fn credential_for<'a>(
        &'a self,
        _caller: &'a CallerIdentity,
        _target: &'a TargetSpec,
    ) -> CredentialFuture<'a> {
        Box::pin(async { Ok(None) })
    }
}
