//! Tenantry's credential vault: the long-lived credentials tenants' tools need upstream, kept
//! outside every sandbox (tenancy law 6) and injected by the tool gateway.
//!
//! It owns the credential kinds ([`Credential`]: API keys, OAuth2 client credentials, RFC 8693
//! token exchange), their encryption at rest, and turning a stored credential into the secret
//! a call carries ([`Vault::resolve`]), with tokens cached until shortly before they expire.
//!
//! Envelope encryption: each tenant has a random 256-bit data key, stored only wrapped by the
//! platform's [`MasterKey`] (XChaCha20-Poly1305), which is read from a 0600 file
//! (`keys/vault-master.key`) or `TENANTRY_VAULT_MASTER_KEY` and never enters the database.
//! Each credential version's secret fields are encrypted with the tenant's data key, bound to
//! the tenant, name, user and kind. The rows are tenant data in `tenantry-store` (scoped by
//! `TenantScope`, row-level security on PostgreSQL).
//!
//! Why a crate of its own rather than a module of `tenantry-identity` (where DESIGN.md puts
//! it): the vault needs the store, and identity (inbound authentication) does not and should
//! not; keeping the two apart keeps the verifier free of a database and puts the encryption
//! boundary where a reader looks for it.
//!
//! This crate must never return a secret through its management API (only [`CredentialInfo`]),
//! never log or print a secret, token or key (`Debug` redacts them), never use one tenant's
//! credential or token for another, and never answer with a credential it could not decrypt.

#![forbid(unsafe_code)]

mod credential;
mod error;
mod master;
mod sealed;
mod secret;
mod tokens;
mod vault;

pub use credential::{ClientAuth, Credential, CredentialInfo};
pub use error::VaultError;
pub use master::{MASTER_KEY_ENV, MASTER_KEY_FILE, MasterKey};
pub use secret::SecretString;
pub use tokens::{CallerTokens, TOKEN_EXCHANGE_GRANT, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT};
pub use vault::{DEFAULT_CREDENTIAL_TTL, DEFAULT_TOKEN_TIMEOUT, Vault};
