//! The registry cache: tenants, tiers and runtimes by name, in front of the store.
//!
//! It keeps authenticated requests off the store: a tenant or tier is read at most once per
//! `REGISTRY_TTL` per replica. Writes through this replica invalidate at once; other replicas see
//! a change within the TTL (suspension therefore takes effect everywhere within 2 seconds). It
//! must never serve an entry older than the TTL.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tenantry_core::{Tenant, TenantId, Tier, TierName};
use tenantry_store::{Store, StoreError};

pub const REGISTRY_TTL: Duration = Duration::from_secs(2);

type Cached<T> = RwLock<HashMap<String, (Option<Arc<T>>, Instant)>>;

/// Tenants and tiers by id, with a short TTL. Absent entries are cached too, so a flood of
/// tokens naming an unknown tenant does not reach the store on every request.
#[derive(Debug, Default)]
pub struct RegistryCache {
    tenants: Cached<Tenant>,
    tiers: Cached<Tier>,
    runtimes: Cached<crate::runtimes::Runtime>,
}

fn lookup<T>(map: &Cached<T>, key: &str) -> Option<Option<Arc<T>>> {
    let guard = map.read().ok()?;
    let (value, at) = guard.get(key)?;
    (at.elapsed() < REGISTRY_TTL).then(|| value.clone())
}

fn remember<T>(map: &Cached<T>, key: &str, value: Option<Arc<T>>) {
    if let Ok(mut guard) = map.write() {
        if guard.len() > 100_000 {
            guard.clear();
        }
        guard.insert(key.to_string(), (value, Instant::now()));
    }
}

fn forget<T>(map: &Cached<T>, key: &str) {
    if let Ok(mut guard) = map.write() {
        guard.remove(key);
    }
}

impl RegistryCache {
    pub async fn tenant(
        &self,
        store: &Store,
        id: &TenantId,
    ) -> Result<Option<Arc<Tenant>>, StoreError> {
        if let Some(hit) = lookup(&self.tenants, id.as_str()) {
            return Ok(hit);
        }
        let value = store.get_tenant(id).await?.map(Arc::new);
        remember(&self.tenants, id.as_str(), value.clone());
        Ok(value)
    }

    pub async fn tier(
        &self,
        store: &Store,
        name: &TierName,
    ) -> Result<Option<Arc<Tier>>, StoreError> {
        if let Some(hit) = lookup(&self.tiers, name.as_str()) {
            return Ok(hit);
        }
        let value = store.get_tier(name).await?.map(Arc::new);
        remember(&self.tiers, name.as_str(), value.clone());
        Ok(value)
    }

    /// A runtime by name, as invocations see it (cached like tenants and tiers).
    pub async fn runtime(
        &self,
        store: &Store,
        name: &tenantry_core::RuntimeName,
    ) -> Result<Option<Arc<crate::runtimes::Runtime>>, String> {
        if let Some(hit) = lookup(&self.runtimes, name.as_str()) {
            return Ok(hit);
        }
        let value = match store.get_runtime(name).await.map_err(|e| e.to_string())? {
            Some(record) => Some(Arc::new(crate::runtimes::Runtime::from_record(record)?)),
            None => None,
        };
        remember(&self.runtimes, name.as_str(), value.clone());
        Ok(value)
    }

    pub fn forget_runtime(&self, name: &tenantry_core::RuntimeName) {
        forget(&self.runtimes, name.as_str());
    }

    pub fn forget_tenant(&self, id: &TenantId) {
        forget(&self.tenants, id.as_str());
    }

    pub fn forget_tier(&self, name: &TierName) {
        forget(&self.tiers, name.as_str());
    }
}
