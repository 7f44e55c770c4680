//! Who is calling: the verified `Principal`, the `TenantContext` derived from it and the
//! tenant registry, and the `TenantScope` that store methods for tenant data require.
//!
//! A `TenantScope` can be made in exactly two ways: from a `TenantContext` (which the identity
//! layer builds only after verifying a credential), or by the operator's admin code through
//! `TenantScope::for_operator`, whose `OperatorGrant` is minted only by `OperatorKey::verify`
//! (or, for the platform's own background work, a `SystemGrant` minted once at start). Neither
//! takes a tenant id from a request body, query or header.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{IsolationSettings, TenantId, TenantUid, TierName, UserId};

/// How a tenant principal proved who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CredentialKind {
    /// A JWT from a configured issuer (including the built-in development issuer).
    Jwt { issuer: String },
    /// A tenant API key, by its public id.
    ApiKey { key_id: String },
    /// An AWS SigV4 signature made with a tenant access key pair, by its access key id.
    AccessKey { key_id: String },
    /// A workload token minted by Tenantry for an agent session of a runtime.
    Workload { session_id: String, runtime: String },
}

/// The verified identity of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The platform operator, authenticated by the admin key.
    Operator,
    /// A user (or service) of one tenant.
    TenantUser {
        tenant: TenantId,
        user: UserId,
        roles: Vec<String>,
        credential: CredentialKind,
    },
}

/// Proof that the operator's admin key was verified. The only way to get one is
/// `OperatorKey::verify` with the right key, and only admin handlers receive it; code that acts
/// for no caller (sweepers, start-up) holds a `SystemGrant` instead.
#[derive(Debug, Clone, Copy)]
pub struct OperatorGrant {
    _private: (),
}

impl OperatorGrant {
    /// A grant without a key, for tests of code that takes one.
    #[cfg(feature = "test-util")]
    pub fn for_tests() -> Self {
        Self { _private: () }
    }
}

/// The operator's admin key, kept as its SHA-256 digest; `verify` is the one place an
/// `OperatorGrant` is minted.
pub struct OperatorKey {
    digest: [u8; 32],
}

impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorKey(<redacted>)")
    }
}

impl OperatorKey {
    pub fn new(key: &str) -> Self {
        use sha2::Digest;
        Self {
            digest: sha2::Sha256::digest(key.as_bytes()).into(),
        }
    }

    /// Whether `presented` is the admin key (compared in constant time, digest to digest).
    pub fn matches(&self, presented: &str) -> bool {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let presented: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
        presented.ct_eq(&self.digest).into()
    }

    /// The operator's grant, when `presented` is the admin key.
    pub fn verify(&self, presented: &str) -> Option<OperatorGrant> {
        self.matches(presented)
            .then_some(OperatorGrant { _private: () })
    }
}

/// The platform's own authority over every tenant, for the work no caller asked for: expiring
/// idle sessions, sweeping storage, seeding budgets from the ledger at start. Minted once when
/// the server's state is built (`SystemGrant::at_start`) and handed to the parts that need it,
/// so a handler can never reach for it: handlers pass on the grant they received.
#[derive(Debug, Clone, Copy)]
pub struct SystemGrant {
    _private: (),
}

impl SystemGrant {
    /// Call only where the server's state is built, once per server.
    pub fn at_start() -> Self {
        Self { _private: () }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::OperatorGrant {}
    impl Sealed for super::SystemGrant {}
}

/// Either authority that may reach more than one tenant's data: the operator's
/// (`OperatorGrant`) or the platform's own (`SystemGrant`). Sealed: no other type can claim it.
pub trait CrossTenantGrant: sealed::Sealed + Copy + Send + Sync + std::fmt::Debug {}

impl CrossTenantGrant for OperatorGrant {}

impl CrossTenantGrant for SystemGrant {}

/// Everything Tenantry knows about the caller's tenant for this request, resolved from the
/// verified principal and the tenant registry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantContext {
    pub tenant_id: TenantId,
    /// The tenant's immutable identity, from the registry (never from the credential).
    pub tenant_uid: TenantUid,
    pub tenant_name: String,
    pub user_id: UserId,
    pub tier: TierName,
    pub roles: Vec<String>,
    pub region: String,
    pub features: BTreeMap<String, bool>,
    pub entitlements: serde_json::Map<String, serde_json::Value>,
    pub isolation: IsolationSettings,
    pub credential: CredentialKind,
}

impl TenantContext {
    /// The scope for this caller's tenant data.
    pub fn scope(&self) -> TenantScope {
        TenantScope {
            tenant: self.tenant_id.clone(),
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// The tenant whose data a store call may touch. Every store method for tenant data takes one,
/// and the PostgreSQL store also sets it as the row-level-security key of the transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantScope {
    tenant: TenantId,
}

impl TenantScope {
    /// Access to one tenant's data by the operator (admin endpoints) or the platform itself
    /// (background work), never by a tenant caller.
    pub fn for_operator(_grant: impl CrossTenantGrant, tenant: TenantId) -> Self {
        Self { tenant }
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// A scope without a verified caller, for tests of code that takes one.
    #[cfg(feature = "test-util")]
    pub fn for_tests(tenant: TenantId) -> Self {
        Self { tenant }
    }
}
