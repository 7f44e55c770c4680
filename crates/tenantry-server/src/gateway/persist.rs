//! Where the control plane's model routes are kept. TEMPORARY: in process memory until the
//! store has its model-routes tables.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tenantry_core::{TenantId, TierName};
use tenantry_models::{TenantModels, TierRoutes};
use tenantry_store::{Store, StoreError};

static TIERS: Mutex<BTreeMap<String, BTreeMap<TierName, TierRoutes>>> =
    Mutex::new(BTreeMap::new());
static TENANTS: Mutex<BTreeMap<String, BTreeMap<TenantId, TenantModels>>> =
    Mutex::new(BTreeMap::new());

fn key(store: &Store) -> String {
    format!("{store:p}")
}

pub async fn load_tier_routes(store: &Store) -> Result<BTreeMap<TierName, TierRoutes>, StoreError> {
    Ok(TIERS
        .lock()
        .map(|m| m.get(&key(store)).cloned().unwrap_or_default())
        .unwrap_or_default())
}

pub async fn save_tier_routes(
    store: &Store,
    tier: &TierName,
    routes: Option<&TierRoutes>,
) -> Result<bool, StoreError> {
    let mut m = TIERS.lock().map_err(|_| StoreError::Database("poisoned".into()))?;
    let e = m.entry(key(store)).or_default();
    Ok(match routes {
        Some(r) => e.insert(tier.clone(), r.clone()).is_some(),
        None => e.remove(tier).is_some(),
    })
}

pub async fn load_tenant_models(
    store: &Store,
    tenant: &TenantId,
) -> Result<Option<TenantModels>, StoreError> {
    Ok(TENANTS
        .lock()
        .ok()
        .and_then(|m| m.get(&key(store)).and_then(|t| t.get(tenant).cloned())))
}

pub async fn save_tenant_models(
    store: &Store,
    tenant: &TenantId,
    models: Option<&TenantModels>,
) -> Result<bool, StoreError> {
    let mut m = TENANTS
        .lock()
        .map_err(|_| StoreError::Database("poisoned".into()))?;
    let e = m.entry(key(store)).or_default();
    Ok(match models {
        Some(r) => e.insert(tenant.clone(), r.clone()).is_some(),
        None => e.remove(tenant).is_some(),
    })
}
