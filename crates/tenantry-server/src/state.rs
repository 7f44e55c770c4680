//! The shared state of a running server: what every handler reaches through `AppState`.
//!
//! It owns nothing of its own; each part (store, caches, gateways, sessions, ledger) is built in
//! `build_state` and documented in its module.

use std::sync::Arc;

use tenantry_identity::{ActorIssuer, AdminKeyCheck, DevIssuer, Verifier, WorkloadIssuer};
use tenantry_store::Store;

use crate::config::Config;
use crate::registry::RegistryCache;

#[derive(Debug, Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

#[derive(Debug)]
pub struct Inner {
    pub config: Config,
    pub public_url: String,
    pub store: Store,
    pub verifier: Verifier,
    pub admin: AdminKeyCheck,
    pub limiter: tenantry_limits::Limiter,
    pub workload: WorkloadIssuer,
    /// Signs actor tokens; its public key is in the JWKS.
    pub actor: ActorIssuer,
    pub dev_issuer: Option<Arc<DevIssuer>>,
    pub registry: Arc<RegistryCache>,
    /// Verified tenant API keys (see `key_cache`).
    pub api_keys: crate::key_cache::ApiKeyCache,
    /// Tenant SigV4 access keys' verifier (see `aws::auth`).
    pub access_keys: crate::aws::AccessKeys,
    /// This server's metrics (`/metrics`).
    pub metrics: Arc<tenantry_telemetry::Metrics>,
    /// The audit log's writer.
    pub audit: crate::audit::Audit,
    pub sessions: crate::sessions::SessionManager,
    pub models: crate::models::Gateway,
    pub tools: crate::tools::Tools,
    pub guardrails: crate::guardrails::Guardrails,
    /// The usage ledger's writer, shared by the gateways and the sessions.
    pub ledger: crate::ledger::Ledger,
    /// Memory: resources, events, records and their extraction.
    pub memory: crate::memory::MemoryService,
    /// Knowledge bases: ingestion, retrieval and the in-process vector index.
    pub knowledge: crate::knowledge::Knowledge,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}
