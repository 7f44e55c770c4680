//! The model gateway's state in the server: the live model router, the tenants' own routing,
//! and a handle on the server's usage ledger (`crate::ledger`); the calls themselves are in `call`, the HTTP surface in
//! `routes::tenant::models` and `routes::admin::models`.
//!
//! Routing changes at run time without a restart. The router built from `[models]` at start-up
//! is the base; tier routes set through the control plane are kept in the store and win over
//! the file's, and a new router (sharing the provider clients) is swapped in when they change.
//! Every replica re-reads them from the store every `REGISTRY_TTL`, so a change made through
//! one replica reaches the others within that time; a tenant's own routing is cached per
//! tenant for the same time. Routes in the store that no longer fit the catalogue (the file
//! changed) are skipped with an error in the log, never half-applied.

pub mod call;
pub mod limits;
pub mod metering;
mod persist;
pub mod queues;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, Weak};
use std::time::Instant;

use tenantry_core::{TenantId, TierName};
use tenantry_models::{ConfigError, ModelsConfig, Router, TenantModels, TierRoutes};
use tenantry_store::{Store, StoreError};

use crate::ledger::Ledger;
use crate::registry::REGISTRY_TTL;

pub use limits::LimitOverrides;

/// Where the routes of a tier come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteSource {
    /// Set through the control plane (kept in the store).
    ControlPlane,
    /// From `[models.tiers]` or `[models.tenants]` of the configuration file.
    Config,
    /// Nowhere: the tier has no routes (the tenant has no routing of its own).
    None,
}

/// What the control plane set for one tenant, as the gateway uses it.
#[derive(Debug, Clone, Default)]
pub struct TenantSettings {
    /// Its own routing: the control plane's, else the configuration file's.
    pub models: Option<Arc<TenantModels>>,
    /// Its overrides of the tier's model limits.
    pub limits: Option<LimitOverrides>,
}

type TenantCache = RwLock<HashMap<TenantId, (Arc<TenantSettings>, Instant)>>;

#[derive(Debug)]
struct Shared {
    store: Store,
    /// Built from the configuration file; never changes.
    base: Arc<Router>,
    config_tiers: BTreeMap<TierName, TierRoutes>,
    /// The base with the effective tier routes; swapped when they change.
    current: RwLock<Arc<Router>>,
    /// The tier routes of the store as last applied.
    stored_tiers: RwLock<BTreeMap<TierName, TierRoutes>>,
    tenants: TenantCache,
    ledger: Ledger,
    queues: queues::Queues,
}

/// Cheap to clone; clones share the state.
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl Gateway {
    /// Builds the router from `[models]` (credentials through `env`), applies the tier routes
    /// kept in the store, and starts the refresh of routes; calls are metered into `ledger`.
    /// Must be called within a Tokio runtime.
    pub async fn start(
        config: &ModelsConfig,
        env: &dyn Fn(&str) -> Option<String>,
        store: Store,
        ledger: Ledger,
    ) -> Result<Self, GatewayStartError> {
        let base = Arc::new(Router::new(config, env)?);
        let shared = Arc::new(Shared {
            ledger,
            store,
            current: RwLock::new(base.clone()),
            base,
            config_tiers: config.tiers.clone(),
            stored_tiers: RwLock::new(BTreeMap::new()),
            tenants: RwLock::new(HashMap::new()),
            queues: queues::Queues::new(&config.queues),
        });
        let stored = persist::load_tier_routes(&shared.store).await?;
        shared.apply(stored);
        tokio::spawn(refresh(Arc::downgrade(&shared)));
        Ok(Self { shared })
    }

    /// The router to use for one request.
    pub fn router(&self) -> Arc<Router> {
        self.shared.router()
    }

    pub fn ledger(&self) -> &Ledger {
        &self.shared.ledger
    }

    /// The fair queues in front of providers.
    pub fn queues(&self) -> &queues::Queues {
        &self.shared.queues
    }

    /// The tenant's routing and limit overrides, cached for `REGISTRY_TTL`.
    pub async fn tenant_settings(
        &self,
        tenant: &TenantId,
    ) -> Result<Arc<TenantSettings>, StoreError> {
        let s = &self.shared;
        if let Ok(map) = s.tenants.read()
            && let Some((value, at)) = map.get(tenant)
            && at.elapsed() < REGISTRY_TTL
        {
            return Ok(value.clone());
        }
        let models = match persist::load_tenant_models(&s.store, tenant).await? {
            Some(m) => Some(Arc::new(m)),
            None => s.base.config_tenant_models(tenant).cloned().map(Arc::new),
        };
        let limits = persist::load_tenant_limits(&s.store, tenant).await?;
        let value = Arc::new(TenantSettings { models, limits });
        if let Ok(mut map) = s.tenants.write() {
            if map.len() > 100_000 {
                map.clear();
            }
            map.insert(tenant.clone(), (value.clone(), Instant::now()));
        }
        Ok(value)
    }

    /// Forgets the tenant's cached routing and limit overrides (it was deleted: a tenant created
    /// again under its id must not get them).
    pub fn forget_tenant(&self, tenant: &TenantId) {
        if let Ok(mut map) = self.shared.tenants.write() {
            map.remove(tenant);
        }
    }

    /// The tenant's own routing: the control plane's if set, else the configuration file's.
    pub async fn tenant_models(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<Arc<TenantModels>>, StoreError> {
        Ok(self.tenant_settings(tenant).await?.models.clone())
    }

    /// The tenant's limit overrides as the control plane set them.
    pub async fn stored_tenant_limits(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<LimitOverrides>, StoreError> {
        persist::load_tenant_limits(&self.shared.store, tenant).await
    }

    /// Stores a tenant's limit overrides (`None`: the tier's limits) and applies them on this
    /// replica at once; `true` if it had overrides before. Validate first.
    pub async fn set_tenant_limits(
        &self,
        tenant: &TenantId,
        limits: Option<&LimitOverrides>,
    ) -> Result<bool, StoreError> {
        let s = &self.shared;
        let existed = persist::save_tenant_limits(&s.store, tenant, limits).await?;
        if let Ok(mut map) = s.tenants.write() {
            map.remove(tenant);
        }
        Ok(existed)
    }

    /// The effective routes of a tier and where they come from.
    pub fn tier_routes(&self, tier: &TierName) -> (Option<TierRoutes>, RouteSource) {
        let stored = self
            .shared
            .stored_tiers
            .read()
            .map(|m| m.contains_key(tier))
            .unwrap_or(false);
        let routes = self.router().tier_routes(tier).cloned();
        let source = match (&routes, stored) {
            (None, _) => RouteSource::None,
            (Some(_), true) => RouteSource::ControlPlane,
            (Some(_), false) => RouteSource::Config,
        };
        (routes, source)
    }

    /// Checks tier routes against the catalogue; the error names the key.
    pub fn validate_tier_routes(
        &self,
        tier: &TierName,
        routes: &TierRoutes,
    ) -> Result<(), ConfigError> {
        self.shared
            .base
            .with_tier_routes(BTreeMap::from([(tier.clone(), routes.clone())]))
            .map(drop)
    }

    /// Stores a tier's routes (`None`: back to the configuration file's) and applies them on
    /// this replica at once. Validate first.
    pub async fn set_tier_routes(
        &self,
        tier: &TierName,
        routes: Option<&TierRoutes>,
    ) -> Result<bool, StoreError> {
        let s = &self.shared;
        let existed = persist::save_tier_routes(&s.store, tier, routes).await?;
        let stored = persist::load_tier_routes(&s.store).await?;
        s.apply(stored);
        Ok(existed)
    }

    /// The tenant's routing as the control plane set it, without the file's fallback.
    pub async fn stored_tenant_models(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<TenantModels>, StoreError> {
        persist::load_tenant_models(&self.shared.store, tenant).await
    }

    /// The tenant's routing from the configuration file.
    pub fn config_tenant_models(&self, tenant: &TenantId) -> Option<TenantModels> {
        self.shared.base.config_tenant_models(tenant).cloned()
    }

    /// Stores a tenant's own routing (`None`: back to the file's) and applies it on this
    /// replica at once; `true` if the tenant had stored routing before. Validate first.
    pub async fn set_tenant_models(
        &self,
        tenant: &TenantId,
        models: Option<&TenantModels>,
    ) -> Result<bool, StoreError> {
        let s = &self.shared;
        let existed = persist::save_tenant_models(&s.store, tenant, models).await?;
        if let Ok(mut map) = s.tenants.write() {
            map.remove(tenant);
        }
        Ok(existed)
    }
}

impl Shared {
    fn router(&self) -> Arc<Router> {
        match self.current.read() {
            Ok(r) => r.clone(),
            // A writer panicked mid-swap; the base router is always valid.
            Err(_) => self.base.clone(),
        }
    }

    /// Makes `stored` (the store's tier routes) effective on top of the file's.
    fn apply(&self, stored: BTreeMap<TierName, TierRoutes>) {
        let mut merged = self.config_tiers.clone();
        for (tier, routes) in &stored {
            match self
                .base
                .with_tier_routes(BTreeMap::from([(tier.clone(), routes.clone())]))
            {
                Ok(_) => {
                    merged.insert(tier.clone(), routes.clone());
                }
                Err(e) => tracing::error!(
                    tier = %tier,
                    error = %e,
                    "the stored model routes of this tier do not fit the configured catalogue; \
                     using the configuration file's routes for it"
                ),
            }
        }
        match self.base.with_tier_routes(merged) {
            Ok(router) => {
                if let Ok(mut current) = self.current.write() {
                    *current = Arc::new(router);
                }
                if let Ok(mut s) = self.stored_tiers.write() {
                    *s = stored;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot apply the model routes"),
        }
    }
}

/// Re-reads the store's tier routes every `REGISTRY_TTL` and applies them when they changed,
/// until the gateway is dropped.
async fn refresh(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(REGISTRY_TTL).await;
        let Some(s) = shared.upgrade() else {
            return;
        };
        match persist::load_tier_routes(&s.store).await {
            Ok(stored) => {
                let changed = s.stored_tiers.read().map(|c| *c != stored).unwrap_or(true);
                if changed {
                    tracing::info!("model routes changed in the store; applying them");
                    s.apply(stored);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot re-read the model routes"),
        }
    }
}

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayStartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read the model routes from the store: {0}")]
    Store(#[from] StoreError),
}
