//! Warm pools: sandboxes started ahead of need, per (runtime, tenant), handed to new sessions
//! once each.

use super::*;

impl SessionManager {
    /// A pre-started sandbox of this runtime for this tenant, moved onto the session's
    /// storage. Only new sessions take one: a resumed session needs its own storage mounted.
    pub(super) fn take_warm(
        &self,
        runtime: &Runtime,
        tenant: &TenantUid,
        storage: &Path,
        resumed: bool,
    ) -> Option<Sandboxed> {
        if resumed || runtime.spec.warm_pool == 0 || storage.exists() || image_of(storage).exists()
        {
            return None;
        }
        let mut warm = self.inner.warm.lock().ok()?;
        let pool = warm.get_mut(&(runtime.name.clone(), tenant.clone()))?;
        while let Some(mut candidate) = pool.pop() {
            if !matches!(candidate.handle.status(), SandboxStatus::Running) {
                continue;
            }
            if let Some(parent) = storage.parent()
                && tenantry_runtime::storage::create_private_dir(parent).is_err()
            {
                pool.push(candidate);
                return None;
            }
            // The sandbox has the warm directory (or image) mounted; renaming it keeps the
            // mount, so it becomes this session's storage without touching the sandbox.
            let image = candidate
                .image
                .as_ref()
                .map(|i| (i.clone(), image_of(storage)));
            if let Some((from, to)) = &image
                && std::fs::rename(from, to).is_err()
            {
                continue;
            }
            if std::fs::rename(&candidate.storage_dir, storage).is_err() {
                if let Some((from, to)) = &image {
                    let _ = std::fs::rename(to, from);
                }
                continue;
            }
            candidate.storage_dir = storage.to_path_buf();
            candidate.image = image.map(|(_, to)| to);
            return Some(candidate);
        }
        None
    }

    /// Warm sandboxes waiting now in the pool of `runtime` for `tenant`.
    pub fn warm_sandboxes(&self, runtime: &RuntimeName, tenant: &TenantUid) -> usize {
        self.inner
            .warm
            .lock()
            .map(|w| {
                w.get(&(runtime.clone(), tenant.clone()))
                    .map_or(0, Vec::len)
            })
            .unwrap_or(0)
    }

    /// Fills the pool of `runtime` for `tenant` up to the runtime's `warm_pool`, in the
    /// background: after a session took a sandbox from it, or for a runtime dedicated to that
    /// tenant when it is created or changed, so that even its first session finds one.
    pub fn fill_warm_pool(&self, runtime: Runtime, tenant: TenantId, uid: TenantUid, tier: Tier) {
        let want = runtime.spec.warm_pool as usize;
        if want == 0 {
            return;
        }
        let manager = self.clone();
        tokio::spawn(async move {
            let key = (runtime.name.clone(), uid.clone());
            loop {
                let have = manager
                    .inner
                    .warm
                    .lock()
                    .map(|w| w.get(&key).map_or(0, Vec::len))
                    .unwrap_or(want);
                if have >= want {
                    return;
                }
                let label = format!("warm-{}", uuid::Uuid::new_v4().simple());
                let dir = manager.inner.storage_root.join(".warm").join(&label);
                match manager.launch(&runtime, &tenant, &tier, &label, &dir).await {
                    Ok(mut s) => {
                        s.primed = ping(&s.handle).await.map(|(sender, _)| sender);
                        // The runtime may have been changed or deleted while this sandbox
                        // started: a sandbox of an old spec must never be handed out. Nor one
                        // of a tenant deleted (or suspended) meanwhile.
                        let current = manager.inner.store.get_runtime(&runtime.name).await;
                        let unchanged =
                            matches!(&current, Ok(Some(r)) if r.updated_at == runtime.updated_at);
                        let owner = manager.inner.store.get_tenant(&tenant).await;
                        let tenant_active = matches!(&owner, Ok(Some(t))
                            if t.uid == uid && t.status == tenantry_core::TenantStatus::Active);
                        if !unchanged || !tenant_active {
                            s.discard().await;
                            return;
                        }
                        if let Ok(mut w) = manager.inner.warm.lock() {
                            w.entry(key.clone()).or_default().push(s);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(runtime = %runtime.name, error = %e, "cannot fill the warm pool");
                        return;
                    }
                }
            }
        });
    }

    /// Stops the warm sandboxes of a runtime whose spec changed: new sessions get the new spec.
    pub async fn runtime_changed(&self, name: &RuntimeName) {
        let warm: Vec<Sandboxed> = self
            .inner
            .warm
            .lock()
            .map(|mut w| {
                let keys: Vec<_> = w.keys().filter(|(r, _)| r == name).cloned().collect();
                keys.into_iter()
                    .flat_map(|k| w.remove(&k).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        for s in warm {
            s.discard().await;
        }
    }

    /// Stops everything of a deleted runtime.
    pub async fn runtime_deleted(&self, name: &RuntimeName) {
        self.runtime_changed(name).await;
        for (key, live) in self.live_sessions() {
            if &live.runtime.name == name {
                self.stop_key(&key, "runtime_deleted").await;
            }
        }
    }
}
