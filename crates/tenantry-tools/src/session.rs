//! MCP sessions of the endpoint: created by `initialize`, named by an unguessable
//! `Mcp-Session-Id`, bound to the tenant and user that created them. A session id presented by
//! anyone else is answered exactly like an unknown one (404), so ids cannot be probed across
//! tenants (tenancy law 3).
//!
//! Sessions live in this process's memory, expire after an idle time, and are capped per user
//! and per tenant (the least recently used one gives way), so no caller can grow this map
//! without bound.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tenantry_core::{TenantId, UserId};

use crate::identity::CallerIdentity;

#[derive(Debug, Clone)]
struct Session {
    tenant: TenantId,
    user: UserId,
    version: &'static str,
    last_used: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, Session>,
    by_tenant: HashMap<TenantId, Vec<String>>,
    created: u64,
}

impl Inner {
    fn drop_id(&mut self, id: &str) {
        if let Some(s) = self.by_id.remove(id)
            && let Some(ids) = self.by_tenant.get_mut(&s.tenant)
        {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.by_tenant.remove(&s.tenant);
            }
        }
    }

    fn sweep(&mut self, idle: Duration) {
        let expired: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, s)| s.last_used.elapsed() > idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.drop_id(&id);
        }
    }

    /// The least recently used of `ids`.
    fn oldest<'a>(&self, ids: impl Iterator<Item = &'a String>) -> Option<String> {
        ids.filter_map(|id| self.by_id.get(id).map(|s| (id, s.last_used)))
            .min_by_key(|(_, t)| *t)
            .map(|(id, _)| id.clone())
    }
}

/// The endpoint's sessions.
#[derive(Debug)]
pub(crate) struct Sessions {
    inner: Mutex<Inner>,
    idle: Duration,
    per_user: usize,
    per_tenant: usize,
}

impl Sessions {
    pub(crate) fn new(idle: Duration, per_user: usize, per_tenant: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            idle,
            per_user: per_user.max(1),
            per_tenant: per_tenant.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A new session for `caller`, speaking `version`.
    pub(crate) fn create(&self, caller: &CallerIdentity, version: &'static str) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut inner = self.lock();
        inner.created += 1;
        if inner.created.is_multiple_of(64) {
            inner.sweep(self.idle);
        }
        let mine: Vec<String> = inner
            .by_tenant
            .get(caller.tenant())
            .cloned()
            .unwrap_or_default();
        let of_user: Vec<&String> = mine
            .iter()
            .filter(|i| inner.by_id.get(*i).is_some_and(|s| s.user == caller.user))
            .collect();
        let evict = if of_user.len() >= self.per_user {
            inner.oldest(of_user.into_iter())
        } else if mine.len() >= self.per_tenant {
            inner.oldest(mine.iter())
        } else {
            None
        };
        if let Some(old) = evict {
            inner.drop_id(&old);
        }
        inner.by_id.insert(
            id.clone(),
            Session {
                tenant: caller.tenant().clone(),
                user: caller.user.clone(),
                version,
                last_used: Instant::now(),
            },
        );
        inner
            .by_tenant
            .entry(caller.tenant().clone())
            .or_default()
            .push(id.clone());
        id
    }

    /// The negotiated version of `caller`'s live session `id`; `None` if it does not exist, has
    /// expired, or belongs to someone else.
    pub(crate) fn get(&self, id: &str, caller: &CallerIdentity) -> Option<&'static str> {
        let mut inner = self.lock();
        let s = inner.by_id.get_mut(id)?;
        if &s.tenant != caller.tenant() || s.user != caller.user {
            return None;
        }
        if s.last_used.elapsed() > self.idle {
            inner.drop_id(id);
            return None;
        }
        s.last_used = Instant::now();
        Some(s.version)
    }

    /// Ends `caller`'s session `id`; false if there is no such session of theirs.
    pub(crate) fn remove(&self, id: &str, caller: &CallerIdentity) -> bool {
        if self.get(id, caller).is_none() {
            return false;
        }
        self.lock().drop_id(id);
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tenantry_core::{CredentialKind, TierName};

    fn caller(t: &str, u: &str) -> CallerIdentity {
        CallerIdentity::new(
            tenantry_core::TenantScope::for_tests(TenantId::new(t).unwrap()),
            UserId::new(u).unwrap(),
            TierName::new("basic").unwrap(),
            CredentialKind::ApiKey { key_id: "k".into() },
        )
    }

    #[test]
    fn sessions_belong_to_their_creator() {
        let s = Sessions::new(Duration::from_secs(60), 2, 3);
        let (a, a2, b) = (
            caller("acme", "ann"),
            caller("acme", "bob"),
            caller("bolt", "ann"),
        );
        let id = s.create(&a, "2025-06-18");
        assert_eq!(s.get(&id, &a), Some("2025-06-18"));
        assert_eq!(s.get(&id, &a2), None);
        assert_eq!(s.get(&id, &b), None);
        assert!(!s.remove(&id, &b));
        assert!(s.remove(&id, &a));
        assert_eq!(s.get(&id, &a), None);
    }

    #[test]
    fn caps_evict_the_least_recently_used() {
        let s = Sessions::new(Duration::from_secs(60), 2, 3);
        let a = caller("acme", "ann");
        let first = s.create(&a, "2025-06-18");
        let second = s.create(&a, "2025-06-18");
        s.get(&first, &a);
        let third = s.create(&a, "2025-06-18");
        assert!(s.get(&second, &a).is_none(), "the idle one is evicted");
        assert!(s.get(&first, &a).is_some() && s.get(&third, &a).is_some());
        let other = s.create(&caller("acme", "cy"), "2025-06-18");
        let _ = s.create(&caller("acme", "dee"), "2025-06-18");
        assert_eq!(
            [&first, &third, &other]
                .iter()
                .filter(|id| s.lock().by_id.contains_key(id.as_str()))
                .count(),
            2,
            "the tenant keeps at most 3"
        );
    }

    #[test]
    fn idle_sessions_expire() {
        let s = Sessions::new(Duration::from_millis(1), 8, 8);
        let a = caller("acme", "ann");
        let id = s.create(&a, "2025-06-18");
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.get(&id, &a).is_none());
    }
}
