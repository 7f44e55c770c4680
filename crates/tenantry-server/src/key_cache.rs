//! Verified tenant API keys, remembered so an API-key request does not cost a store round trip.
//!
//! An entry is keyed by the SHA-256 of the whole presented key (what the store compares), so
//! only the exact secret that was verified finds it; a wrong secret for a known key id misses
//! and goes to the store as before. Failures are never remembered: a flood of bad keys cannot
//! fill the map. Revocation and tenant deletion through this replica forget the entries at
//! once; another replica's revocation takes effect here within `REGISTRY_TTL`, the same
//! propagation time as every other registry change. Expiry is checked on every use.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tenantry_core::{TenantId, TenantUid, UserId};

use crate::registry::REGISTRY_TTL;

/// The most keys remembered at once; past it the map starts again empty (a burst of distinct
/// valid keys beyond this is served by the store, as without the cache).
const CAPACITY: usize = 100_000;

/// What a verified key says about its caller.
#[derive(Debug, Clone)]
pub struct VerifiedKey {
    pub tenant: TenantId,
    /// The tenant as it was when the key was verified: a tenant deleted and created again
    /// under the same id is another tenant, which this key does not open.
    pub tenant_uid: TenantUid,
    pub key_id: String,
    pub user: UserId,
    pub roles: Vec<String>,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Default)]
pub struct ApiKeyCache {
    entries: RwLock<HashMap<Vec<u8>, (VerifiedKey, Instant)>>,
    /// Counts forgets: a verification that started before a revocation must not be
    /// remembered after it (see `remember`).
    forgets: AtomicU64,
}

impl ApiKeyCache {
    /// The key verified under this hash within the last `REGISTRY_TTL`, if any.
    pub fn get(&self, hash: &[u8]) -> Option<VerifiedKey> {
        let guard = self.entries.read().ok()?;
        let (key, at) = guard.get(hash)?;
        (at.elapsed() < REGISTRY_TTL).then(|| key.clone())
    }

    /// Where a verification starts: pass it to `remember`.
    pub fn epoch(&self) -> u64 {
        self.forgets.load(Ordering::Acquire)
    }

    /// Remembers a key verified against the store, unless something was forgotten since
    /// `epoch` (the store may have answered just before a revocation this replica then made).
    pub fn remember(&self, hash: Vec<u8>, key: VerifiedKey, epoch: u64) {
        if let Ok(mut guard) = self.entries.write() {
            if self.forgets.load(Ordering::Acquire) != epoch {
                return;
            }
            if guard.len() >= CAPACITY {
                guard.retain(|_, (_, at)| at.elapsed() < REGISTRY_TTL);
                if guard.len() >= CAPACITY {
                    guard.clear();
                }
            }
            guard.insert(hash, (key, Instant::now()));
        }
    }

    /// A key was revoked: no request may pass with it from now on.
    pub fn forget_key(&self, tenant: &TenantId, key_id: &str) {
        if let Ok(mut guard) = self.entries.write() {
            self.forgets.fetch_add(1, Ordering::AcqRel);
            guard.retain(|_, (k, _)| !(k.tenant == *tenant && k.key_id == key_id));
        }
    }

    /// A tenant was deleted or suspended: none of its keys is remembered.
    pub fn forget_tenant(&self, tenant: &TenantId) {
        if let Ok(mut guard) = self.entries.write() {
            self.forgets.fetch_add(1, Ordering::AcqRel);
            guard.retain(|_, (k, _)| k.tenant != *tenant);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.read().map(|g| g.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(tenant: &str, id: &str) -> VerifiedKey {
        VerifiedKey {
            tenant: TenantId::new(tenant).unwrap(),
            tenant_uid: TenantUid::generate(),
            key_id: id.into(),
            user: UserId::new("u").unwrap(),
            roles: vec![],
            expires_at: None,
        }
    }

    #[test]
    fn only_the_exact_hash_finds_a_key_and_forgetting_is_precise() {
        let cache = ApiKeyCache::default();
        cache.remember(vec![1; 32], key("acme", "k1"), cache.epoch());
        cache.remember(vec![2; 32], key("acme", "k2"), cache.epoch());
        cache.remember(vec![3; 32], key("globex", "k1"), cache.epoch());
        assert!(cache.get(&[9; 32]).is_none());
        assert_eq!(cache.get(&[1; 32]).unwrap().key_id, "k1");

        cache.forget_key(&TenantId::new("acme").unwrap(), "k1");
        assert!(cache.get(&[1; 32]).is_none());
        assert!(cache.get(&[2; 32]).is_some());
        assert!(cache.get(&[3; 32]).is_some(), "same key id, other tenant");

        cache.forget_tenant(&TenantId::new("acme").unwrap());
        assert!(cache.get(&[2; 32]).is_none());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_verification_that_raced_a_revocation_is_not_remembered() {
        let cache = ApiKeyCache::default();
        let started = cache.epoch();
        cache.forget_key(&TenantId::new("acme").unwrap(), "k1");
        cache.remember(vec![1; 32], key("acme", "k1"), started);
        assert!(cache.get(&[1; 32]).is_none());
    }
}
