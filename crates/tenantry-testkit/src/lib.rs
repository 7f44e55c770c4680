//! Test harness for Tenantry: start the real server on an ephemeral port with a temporary
//! state directory, mint tokens, and stand in for upstreams we do not own (OIDC issuers...).
//!
//! Mocks live here and only here, at the edges of the system; nothing in this crate is used
//! by the production binary.

#![forbid(unsafe_code)]

pub mod mcp;
pub mod oidc;
pub mod server;

pub use server::{Response, TestServer, TestServerBuilder};

pub use server::{RequestBody, postgres_url_or_skip};

/// Installs the TLS crypto provider for HTTP clients (idempotent).
pub fn install_crypto() {
    // An Err only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
