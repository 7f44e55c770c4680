//! The lifecycle of tenants across the server's components: what suspending or deleting a
//! tenant does on this replica at once, and how every other replica learns of it. Each replica
//! compares the registry with what it saw two seconds before (`watch`) and applies the same
//! changes to what it holds in memory, so a tenant deleted through one replica has no session,
//! warm sandbox, session storage, cached credential, remembered token or budget state left on
//! any replica within that time.
//!
//! A tenant's runtime state is keyed by its immutable uid, so even within those two seconds a
//! tenant created again under the same id meets nothing of the old one: its sessions, storage
//! and warm pools are other keys, and the old one's workload tokens name the old uid.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use tenantry_core::{TenantId, TenantStatus, TenantUid, unix_now};
use tenantry_store::TenantDeletion;

use crate::error::ApiResult;
use crate::sessions::SessionsRemoved;
use crate::state::AppState;

/// How often every replica compares the registry with what it saw before.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// What deleting a tenant removed.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub tenant: TenantId,
    pub uid: TenantUid,
    /// Store rows, by table; the usage ledger only when purged.
    pub rows: TenantDeletion,
    /// On this replica (the others stop theirs within `WATCH_EVERY`).
    pub sessions: SessionsRemoved,
    pub usage_purged: bool,
}

/// Deletes a tenant and everything of it; `None` if there is no such tenant. The tenant is
/// suspended first, so no new request of it is admitted here (nor elsewhere, within the
/// registry's cache time) while its sessions stop and their last compute reaches the ledger;
/// then its rows go (the usage ledger is kept for billing unless `purge_usage`).
pub async fn delete(
    state: &AppState,
    id: &TenantId,
    purge_usage: bool,
) -> ApiResult<Option<Removed>> {
    let Some(mut tenant) = state.store.get_tenant(id).await? else {
        return Ok(None);
    };
    if tenant.status != TenantStatus::Suspended {
        tenant.status = TenantStatus::Suspended;
        tenant.updated_at = unix_now();
        state.store.update_tenant(&tenant).await?;
    }
    state.registry.forget_tenant(id);
    let sessions = state.sessions.forget_tenant(&tenant.uid).await;
    if !state.ledger.flush(Duration::from_secs(10)).await {
        tracing::warn!(tenant.id = %id, "the ledger did not flush within 10 s while deleting a tenant");
    }
    let Some(rows) = state.store.delete_tenant(id, purge_usage).await? else {
        return Ok(None);
    };
    forget_in_memory(state, id, true).await;
    state.knowledge.forget_tenant(id);
    state.tools.reload_now().await;
    tracing::info!(tenant.id = %id, tenant.uid = %tenant.uid, purge_usage,
        sessions_stopped = sessions.sessions_stopped, "tenant deleted");
    Ok(Some(Removed {
        tenant: id.clone(),
        uid: tenant.uid,
        rows,
        sessions,
        usage_purged: purge_usage,
    }))
}

/// A tenant was suspended: its sessions on this replica stop (their storage is kept, and they
/// resume on the next call after reactivation) and its remembered tokens are forgotten.
pub async fn suspended(state: &AppState, id: &TenantId, uid: &TenantUid) -> usize {
    state.registry.forget_tenant(id);
    state.verifier.forget_tenant(id);
    state.api_keys.forget_tenant(id);
    let (stopped, _) = state.sessions.stop_tenant(uid, "tenant_suspended").await;
    if stopped > 0 {
        tracing::info!(tenant.id = %id, sessions_stopped = stopped, "suspended tenant's sessions stopped");
    }
    stopped
}

/// What this replica keeps in memory of a deleted tenant, beyond its sessions: the registry
/// entry, remembered token and API-key verifications, the vault's data key, credentials and tokens, the
/// model gateway's cached routes and limit overrides, and the limiter's rate and budget state. A shared limiter (Redis) is cleared once, by the
/// replica that deleted the tenant (`shared_limits`): clearing it again on another replica
/// could erase what a tenant created again since has spent.
async fn forget_in_memory(state: &AppState, id: &TenantId, shared_limits: bool) {
    state.registry.forget_tenant(id);
    state.verifier.forget_tenant(id);
    state.api_keys.forget_tenant(id);
    state.tools.vault().forget_tenant(id);
    state.models.forget_tenant(id);
    if (shared_limits || state.limiter.backend() == "memory")
        && let Err(e) = state.limiter.forget_tenant(id).await
    {
        tracing::warn!(tenant.id = %id, error = %e, "cannot clear a deleted tenant's limits");
    }
}

/// What a replica saw of the registry at its last look.
pub type Seen = HashMap<TenantId, (TenantUid, TenantStatus)>;

/// One look at the registry: tenants deleted (or deleted and created again) since the last
/// look are forgotten here, suspended ones have their sessions stopped, and sessions of a
/// tenant uid the registry no longer has are stopped and their storage removed.
pub async fn watch(state: &AppState, seen: &mut Seen) {
    let tenants = match state.store.list_tenants().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the tenant registry to follow its changes");
            return;
        }
    };
    let now: Seen = tenants
        .into_iter()
        .map(|t| (t.id, (t.uid, t.status)))
        .collect();
    for (id, (uid, status)) in seen.iter() {
        match now.get(id) {
            Some((new_uid, _)) if new_uid != uid => {
                state.sessions.forget_tenant(uid).await;
                forget_in_memory(state, id, false).await;
            }
            None => {
                state.sessions.forget_tenant(uid).await;
                forget_in_memory(state, id, false).await;
            }
            Some((_, TenantStatus::Suspended)) if *status == TenantStatus::Active => {
                suspended(state, id, uid).await;
            }
            Some(_) => {}
        }
    }
    let by_uid: HashMap<&TenantUid, TenantStatus> =
        now.values().map(|(uid, status)| (uid, *status)).collect();
    for uid in state.sessions.tenants_in_use() {
        match by_uid.get(&uid) {
            None => {
                state.sessions.forget_tenant(&uid).await;
            }
            Some(TenantStatus::Suspended) => {
                state.sessions.stop_tenant(&uid, "tenant_suspended").await;
            }
            Some(TenantStatus::Active) => {}
        }
    }
    *seen = now;
}

/// Starts the watch loop of this replica.
pub fn start_watch(state: &AppState) {
    let weak = std::sync::Arc::downgrade(&state.inner);
    tokio::spawn(async move {
        let mut seen = Seen::new();
        loop {
            let Some(inner) = weak.upgrade() else { return };
            watch(&AppState { inner }, &mut seen).await;
            tokio::time::sleep(WATCH_EVERY).await;
        }
    });
}
