//! Inbound authentication for Tenantry.
//!
//! This crate owns how a request proves who it is: JWTs from configured OIDC issuers (discovery,
//! JWKS fetched, cached and refreshed with backoff), the built-in development issuer, tenant API
//! keys and the operator key. It turns a credential into a verified identity (tenant, user,
//! roles) or a classified refusal ([`AuthError`]).
//!
//! It must never take identity from anything but a verified credential, never accept an
//! unsigned token, never fail open when keys cannot be fetched, and never log or echo a token,
//! key or secret.

#![forbid(unsafe_code)]

mod actor;
mod apikey;
mod config;
mod dev;
mod error;
mod keys;
mod recent;
mod remote;
mod verifier;
mod workload;

pub use actor::{ACTOR_AUDIENCE, ACTOR_ISSUER, ACTOR_SUBJECT_PREFIX, ActorIssuer};
pub use apikey::{
    AdminKeyCheck, ApiKeySecret, generate_admin_key, generate_api_key, looks_like_jwt,
    parse_api_key,
};
pub use config::{ClaimMapping, DEFAULT_ALGORITHMS, IssuerConfig, IssuerConfigError};
pub use dev::{DEV_ISSUER_NAME, DevIssuer};
pub use error::{AuthError, IdentityError};
pub use keys::JwksError;
pub use verifier::{VerifiedToken, Verifier};
pub use workload::{
    WORKLOAD_ISSUER, WorkloadIdentity, WorkloadIssuer, WorkloadSubject, unverified_issuer,
};
