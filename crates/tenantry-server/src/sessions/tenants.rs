//! What the session manager does when a tenant's lifecycle changes: suspension stops its
//! sessions (storage kept), deletion also discards its warm sandboxes and removes its session
//! storage from this host. Also the start-up reconciliation: sessions a previous process of
//! this node left `active` are marked stopped (reason `crash`), storage of tenants that no
//! longer exist is removed, and storage kept under a tenant's id by earlier builds moves under
//! its uid.

use serde::Serialize;

use super::*;

/// What deleting a tenant removed on this replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SessionsRemoved {
    pub sessions_stopped: usize,
    pub warm_sandboxes: usize,
    pub storage_removed: bool,
}

impl SessionManager {
    /// Stops every session of the tenant on this replica and discards its warm sandboxes (the
    /// tenant was suspended or deleted); the number of sessions stopped.
    pub async fn stop_tenant(&self, tenant: &TenantUid, reason: &str) -> (usize, usize) {
        let keys: Vec<LiveKey> = self
            .inner
            .sessions
            .lock()
            .map(|m| m.keys().filter(|k| &k.0 == tenant).cloned().collect())
            .unwrap_or_default();
        let mut stopped = 0;
        for key in keys {
            if self.stop_key(&key, reason).await {
                stopped += 1;
            }
        }
        let warm: Vec<Sandboxed> = self
            .inner
            .warm
            .lock()
            .map(|mut w| {
                let keys: Vec<_> = w.keys().filter(|(_, t)| t == tenant).cloned().collect();
                keys.into_iter()
                    .flat_map(|k| w.remove(&k).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        let discarded = warm.len();
        for s in warm {
            s.discard().await;
        }
        (stopped, discarded)
    }

    /// Everything of a deleted tenant on this replica: its sessions stopped, its warm
    /// sandboxes discarded, its session storage removed from disk.
    pub async fn forget_tenant(&self, tenant: &TenantUid) -> SessionsRemoved {
        let (sessions_stopped, warm_sandboxes) = self.stop_tenant(tenant, "tenant_deleted").await;
        let dir = self.tenant_storage(tenant);
        let storage_removed = match std::fs::remove_dir_all(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                tracing::error!(error = %e, dir = %dir.display(),
                    "cannot remove a deleted tenant's session storage; the storage sweep retries");
                false
            }
        };
        SessionsRemoved {
            sessions_stopped,
            warm_sandboxes,
            storage_removed,
        }
    }

    /// The tenants (by uid) that have sessions or warm sandboxes on this replica.
    pub fn tenants_in_use(&self) -> Vec<TenantUid> {
        let mut uids: Vec<TenantUid> = self
            .inner
            .sessions
            .lock()
            .map(|m| m.keys().map(|k| k.0.clone()).collect())
            .unwrap_or_default();
        if let Ok(w) = self.inner.warm.lock() {
            uids.extend(w.keys().map(|(_, t)| t.clone()));
        }
        uids.sort();
        uids.dedup();
        uids
    }

    /// At start: sessions this node's previous process left `active` are stopped (their
    /// sandboxes died with it; their compute is in the ledger up to the last sample), and
    /// session storage is tidied (see `sweep_orphaned_storage`).
    pub(super) async fn reconcile(&self) {
        let grant = self.inner.system;
        let store = &self.inner.store;
        loop {
            let left = match store.sessions_active_on(grant, &self.inner.node, 500).await {
                Ok(left) => left,
                Err(e) => {
                    tracing::error!(error = %e, "cannot list the sessions a previous process left active");
                    break;
                }
            };
            if left.is_empty() {
                break;
            }
            let n = left.len();
            for (tenant, session) in left {
                let scope = TenantScope::for_operator(grant, tenant.clone());
                self.record_stopped(&scope, &session, "crash").await;
                tracing::info!(tenant.id = %tenant, session.id = %session,
                    "a session of a previous process of this node was left active: marked stopped");
            }
            if n < 500 {
                break;
            }
        }
        self.adopt_legacy_storage().await;
        self.sweep_orphaned_storage().await;
        self.reap_leftovers().await;
    }

    /// What platform processes of this node that are gone (killed without cleaning up) left
    /// on the host: what the backend keeps of their sandboxes (the process backend's cgroups),
    /// their run directories (bridge sockets, sandbox
    /// run files) and the storage of their warm sandboxes (never bound to a session). Those of
    /// a platform process still running beside this one are left alone.
    async fn reap_leftovers(&self) {
        let manager = self.clone();
        let reaped = tokio::task::spawn_blocking(move || {
            let inner = &manager.inner;
            let sandboxes = inner.backend.reap_leftovers();
            let mut run_dirs = tenantry_runtime::reap::reap_run_dirs(&inner.run_root);
            // Earlier builds kept every process's run files in these two directories.
            for legacy in ["sandboxes", "bridges"] {
                if std::fs::remove_dir_all(inner.run_root.join(legacy)).is_ok() {
                    run_dirs += 1;
                }
            }
            let mut warm = 0;
            if let Ok(entries) = std::fs::read_dir(inner.storage_root.join(".warm")) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    warm += usize::from(removed.is_ok());
                }
            }
            (sandboxes, run_dirs, warm)
        })
        .await;
        if let Ok((sandboxes, run_dirs, warm)) = reaped
            && sandboxes + run_dirs + warm > 0
        {
            tracing::info!(
                sandboxes,
                run_dirs,
                warm_storage = warm,
                "removed what platform processes that are gone left behind"
            );
        }
    }

    /// Earlier builds kept a tenant's session storage under its id; it moves under its uid.
    async fn adopt_legacy_storage(&self) {
        let Ok(tenants) = self.inner.store.list_tenants().await else {
            return;
        };
        for tenant in tenants {
            let old = self.inner.storage_root.join(tenant.id.as_str());
            let new = self.tenant_storage(&tenant.uid);
            if old != new && old.is_dir() && !new.exists() {
                match std::fs::rename(&old, &new) {
                    Ok(()) => {
                        tracing::info!(tenant.id = %tenant.id, "session storage moved under the tenant's uid")
                    }
                    Err(e) => {
                        tracing::warn!(tenant.id = %tenant.id, error = %e, "cannot move session storage under the tenant's uid")
                    }
                }
            }
        }
    }

    /// Removes the session storage of tenants that no longer exist (deleted through another
    /// replica, or while this one was down). Only directories named like a uid are touched.
    pub(super) async fn sweep_orphaned_storage(&self) {
        let Ok(tenants) = self.inner.store.list_tenants().await else {
            return;
        };
        let known: std::collections::HashSet<TenantUid> =
            tenants.into_iter().map(|t| t.uid).collect();
        let Ok(dirs) = std::fs::read_dir(&self.inner.storage_root) else {
            return;
        };
        for dir in dirs.flatten() {
            let name = dir.file_name();
            let Some(uid) = name.to_str().and_then(|n| TenantUid::new(n).ok()) else {
                continue;
            };
            if known.contains(&uid) || self.tenants_in_use().contains(&uid) {
                continue;
            }
            match std::fs::remove_dir_all(dir.path()) {
                Ok(()) => {
                    tracing::info!(tenant.uid = %uid, "removed the session storage of a deleted tenant")
                }
                Err(e) => {
                    tracing::warn!(tenant.uid = %uid, error = %e, "cannot remove the session storage of a deleted tenant")
                }
            }
        }
    }
}
