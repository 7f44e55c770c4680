//! Who is calling the tool gateway, as the server's authentication layer verified it, and the
//! [`Secret`] wrapper (tenantry-core's) for every credential this crate holds.
//!
//! The gateway never builds a [`CallerIdentity`] itself and never reads identity from a JSON-RPC
//! body, a query or a client header: the server inserts it as a request extension after
//! verifying the caller's token (tenancy law 1). Without it, the endpoint answers 401.

use serde_json::{Map, Value};
use tenantry_core::{CredentialKind, TenantId, TenantScope, TierName, UserId};

/// A secret string (a token, an API key). Its `Debug` never shows the value, and it has no
/// `Serialize`, so it cannot reach a log line or an API response by accident.
pub use tenantry_core::Secret;

/// The verified caller of `/mcp`, inserted into the request's extensions by the server's
/// authentication layer.
#[derive(Debug, Clone)]
pub struct CallerIdentity {
    /// The caller's tenant-data scope, from the server's verified tenant context (or the
    /// operator's grant, for a stand-in): what the server's vault and ledger adapters read and
    /// write with. The caller's tenant is the scope's, so the two can never disagree.
    scope: TenantScope,
    pub user: UserId,
    /// The tenant's tier, from the registry (not from the token).
    pub tier: TierName,
    pub roles: Vec<String>,
    /// The verified token's claims (empty for API keys), for policy conditions.
    pub claims: Map<String, Value>,
    /// How the caller proved who it is: a user JWT, a tenant API key, or an agent's workload
    /// token (which names the runtime and session: the actor in a token exchange).
    pub credential: CredentialKind,
    /// The end user's token, for an RFC 8693 exchange's `subject_token`: the JWT a user called
    /// with, or the one the agent's session was started with. `None` when the server has none.
    pub subject_token: Option<Secret>,
    /// The agent's own token (its workload token), for the exchange's `actor_token`, so the
    /// upstream's token names the agent in its `act` claim. `None` for a direct user call.
    pub actor_token: Option<Secret>,
}

impl CallerIdentity {
    /// An identity with no roles, claims or tokens.
    pub fn new(
        scope: TenantScope,
        user: UserId,
        tier: TierName,
        credential: CredentialKind,
    ) -> Self {
        Self {
            scope,
            user,
            tier,
            roles: Vec::new(),
            claims: Map::new(),
            credential,
            subject_token: None,
            actor_token: None,
        }
    }

    /// The caller's tenant.
    pub fn tenant(&self) -> &TenantId {
        self.scope.tenant()
    }

    /// The caller's tenant-data scope.
    pub fn scope(&self) -> &TenantScope {
        &self.scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("sk-very-secret");
        assert!(!format!("{s:?}").contains("very"));
        assert_eq!(s.expose(), "sk-very-secret");
    }
}
