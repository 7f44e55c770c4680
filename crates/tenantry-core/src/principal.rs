//! Who is calling: the verified `Principal`, the `TenantContext` derived from it and the
//! tenant registry, and the `TenantScope` that store methods for tenant data require.
//!
//! A `TenantScope` can be made in exactly two ways: from a `TenantContext` (which the identity
//! layer builds only after verifying a credential), or by the operator's admin code through
//! `TenantScope::for_operator`, whose `OperatorGrant` is minted only when the admin key has been
//! checked. Neither takes a tenant id from a request body, query or header.

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

/// Proof that the operator's admin key was verified. Only the admin authentication code
/// constructs it (through `OperatorGrant::verified`), and only admin handlers receive it.
#[derive(Debug, Clone, Copy)]
pub struct OperatorGrant {
    _private: (),
}

impl OperatorGrant {
    /// Call only after the admin credential has been checked.
    pub fn verified() -> Self {
        Self { _private: () }
    }
}

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
    /// The operator's access to one tenant's data, for admin endpoints.
    pub fn for_operator(_grant: OperatorGrant, tenant: TenantId) -> Self {
        Self { tenant }
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }
}
