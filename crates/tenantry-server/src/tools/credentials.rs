//! The tool gateway's `CredentialSource`, over the vault of `tenantry-vault`.
//!
//! A target's credential is the caller's tenant's vault credential named like the target (a
//! user's own credential of that name first, where the flow is per user). It is resolved in
//! the caller's `TenantScope`, which only the server's authentication sets from the verified
//! tenant context: a caller without one is refused (fail closed), and tenant A's credential is
//! never looked up for tenant B. A token exchange sends the caller's user token as subject and
//! the agent's actor token as actor. Nothing here logs a secret.

use tenantry_core::Blame;
use tenantry_tools::{
    CallerIdentity, CredentialError, CredentialFuture, CredentialSource, Secret, TargetSpec,
};
use tenantry_vault::{CallerTokens, SecretString, Vault, VaultError};

/// `CredentialSource` over the vault.
#[derive(Debug, Clone)]
pub struct VaultCredentials {
    vault: Vault,
}

impl VaultCredentials {
    pub fn new(vault: Vault) -> Self {
        Self { vault }
    }
}

fn classify(target: &TargetSpec, e: &VaultError) -> CredentialError {
    let code = e.code();
    match code.blame() {
        // The token endpoint refused the caller's token, or there is none to exchange.
        Blame::Caller => CredentialError::Refused(e.to_string()),
        Blame::Upstream => {
            tracing::warn!(target_name = %target.name, reason = e.reason(), error = %e,
                "the vault cannot give a tool credential right now");
            CredentialError::Unavailable(e.to_string())
        }
        Blame::Internal => {
            // A wrong master key or damaged rows: the operator's problem, logged in full; the
            // caller learns only that it cannot be served.
            tracing::error!(target_name = %target.name, reason = e.reason(), error = %e,
                "the vault cannot decrypt or read a tool credential");
            CredentialError::Unavailable(format!(
                "the credential of target {} cannot be read ({})",
                target.name,
                e.reason()
            ))
        }
    }
}

impl CredentialSource for VaultCredentials {
    fn credential_for<'a>(
        &'a self,
        caller: &'a CallerIdentity,
        target: &'a TargetSpec,
    ) -> CredentialFuture<'a> {
        Box::pin(async move {
            let Some(placement) = &target.credential else {
                return Ok(None);
            };
            let scope = caller.scope();
            let tokens = CallerTokens::new(
                caller
                    .subject_token
                    .as_ref()
                    .map(|t| SecretString::new(t.expose())),
                caller
                    .actor_token
                    .as_ref()
                    .map(|t| SecretString::new(t.expose())),
            );
            let secret = self
                .vault
                .resolve(scope, target.name.as_str(), Some(&caller.user), &tokens)
                .await
                .map_err(|e| classify(target, &e))?;
            Ok(secret.map(|s| placement.place(Secret::new(s.expose()))))
        })
    }
}
