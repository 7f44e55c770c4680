//! The vault's closed error enum and its classification into `ErrorCode`.
//!
//! No message may contain a secret, a token or a key: they name credentials, tenants, key
//! fingerprints and token endpoints' error codes only.

use tenantry_core::ErrorCode;
use tenantry_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The master key cannot be loaded (missing, unreadable, too open, not 32 bytes).
    #[error("vault master key: {0}")]
    MasterKey(String),
    /// A tenant's data key was wrapped by another master key than the one loaded.
    #[error(
        "the vault data key of tenant {tenant} was wrapped by master key {stored_id}, but the \
         loaded master key is {loaded_id}: start with the master key the data was written with \
         (keys/vault-master.key or TENANTRY_VAULT_MASTER_KEY)"
    )]
    WrongMasterKey {
        tenant: String,
        stored_id: String,
        loaded_id: String,
    },
    /// A stored key or credential does not decrypt or decode (tampered, moved between rows or
    /// tenants, or damaged).
    #[error("vault data is corrupt: {0}")]
    Corrupt(String),
    /// What the call works on was deleted while it ran (the tenant, with its credentials
    /// and data key, by a concurrent deletion).
    #[error("{0}")]
    Gone(String),
    /// The credential to store is not acceptable (name, URL, empty secret...).
    #[error("invalid credential: {0}")]
    InvalidCredential(String),
    /// The credential is a token exchange, and the call has no user token to exchange.
    #[error("credential {name} exchanges the caller's token, but this call has no user token")]
    SubjectTokenRequired { name: String },
    /// The token endpoint refused (HTTP 4xx): wrong client credentials, a rejected subject
    /// token, a scope or audience it does not grant.
    #[error("the token endpoint of credential {name} refused: HTTP {status}{}", error_suffix(.error))]
    TokenRefused {
        name: String,
        status: u16,
        /// The OAuth2 `error` code (e.g. `invalid_grant`), if the endpoint sent one.
        error: Option<String>,
    },
    /// The token endpoint cannot be reached, timed out, failed (HTTP 5xx) or answered
    /// something that is not a token response.
    #[error("the token endpoint of credential {name} is unavailable: {detail}")]
    TokenEndpointUnavailable { name: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn error_suffix(error: &Option<String>) -> String {
    error
        .as_ref()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default()
}

impl VaultError {
    pub fn code(&self) -> ErrorCode {
        match self {
            VaultError::MasterKey(_)
            | VaultError::WrongMasterKey { .. }
            | VaultError::Corrupt(_) => ErrorCode::Internal,
            VaultError::InvalidCredential(_) => ErrorCode::InvalidRequest,
            VaultError::Gone(_) => ErrorCode::NotFound,
            VaultError::SubjectTokenRequired { .. } | VaultError::TokenRefused { .. } => {
                ErrorCode::Forbidden
            }
            VaultError::TokenEndpointUnavailable { .. } => ErrorCode::Unavailable,
            VaultError::Store(e) => e.code(),
        }
    }

    /// A stable snake_case reason, for metrics labels and audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            VaultError::MasterKey(_) => "master_key",
            VaultError::WrongMasterKey { .. } => "wrong_master_key",
            VaultError::Corrupt(_) => "corrupt",
            VaultError::InvalidCredential(_) => "invalid_credential",
            VaultError::Gone(_) => "gone",
            VaultError::SubjectTokenRequired { .. } => "subject_token_required",
            VaultError::TokenRefused { .. } => "token_refused",
            VaultError::TokenEndpointUnavailable { .. } => "token_endpoint_unavailable",
            VaultError::Store(_) => "store",
        }
    }
}
