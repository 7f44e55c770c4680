//! The expiry job: deletes events stored longer ago than their memory's `eventExpiryDays`.
//!
//! It runs in every server every `memory.expiry_interval_seconds` (a delete that another
//! replica already made finds nothing). For each memory it deletes, tenant by tenant in the
//! tenant's own scope, the events of that memory stored before the cut-off: a tenant's own
//! memory for its tenant, a shared memory for every tenant. `tick` is one pass at a given
//! time, which tests call with a fixed clock.

use std::time::Duration;

use tenantry_core::{SystemGrant, TenantScope};
use tenantry_memory::types::MemoryOwner;
use tenantry_store::{Store, StoreError};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// One pass at `now_ms`: the number of events deleted.
pub async fn tick(store: &Store, grant: SystemGrant, now_ms: i64) -> Result<u64, StoreError> {
    let memories = store.list_all_memories(&grant).await?;
    let tenants = store.list_tenants().await?;
    let mut deleted = 0;
    for m in &memories {
        let cutoff = now_ms.saturating_sub(i64::from(m.event_expiry_days).saturating_mul(DAY_MS));
        let owners: Vec<_> = match &m.owner {
            MemoryOwner::Tenant(t) => vec![t.clone()],
            MemoryOwner::Shared => tenants.iter().map(|t| t.id.clone()).collect(),
        };
        for tenant in owners {
            let scope = TenantScope::for_operator(grant, tenant);
            deleted += store
                .delete_expired_memory_events(&scope, &m.id, cutoff)
                .await?;
        }
    }
    Ok(deleted)
}

/// Runs `tick` every `every` until the store's last handle is dropped (a server's lifetime).
pub fn spawn(store: Store, grant: SystemGrant, every: Duration) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every.max(Duration::from_secs(1)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let now = tenantry_core::unix_now().saturating_mul(1000);
            match tick(&store, grant, now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "expired memory events deleted"),
                Err(e) => {
                    tracing::warn!(error = %e, "the memory expiry job failed; retrying later")
                }
            }
        }
    });
}
