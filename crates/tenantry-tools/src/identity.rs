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
    pub tenant: TenantId,
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
    /// The caller's tenant-data scope, from the server's verified tenant context: what the
    /// server's vault and ledger adapters read and write with. `None` when the server did not
    /// set one (those adapters then refuse: fail closed). It must name `tenant`.
    pub scope: Option<TenantScope>,
}

impl CallerIdentity {
    /// An identity with no roles, claims or tokens.
    pub fn new(tenant: TenantId, user: UserId, tier: TierName, credential: CredentialKind) -> Self {
        Self {
            tenant,
            user,
            tier,
            roles: Vec::new(),
            claims: Map::new(),
            credential,
            subject_token: None,
            actor_token: None,
            scope: None,
        }
    }

    /// The caller's scope, if the server set one for the caller's own tenant.
    pub fn scope(&self) -> Option<&TenantScope> {
        self.scope.as_ref().filter(|s| s.tenant() == &self.tenant)
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
