//! Fair queues in front of model providers (`[models.queues.PROVIDER]`, DESIGN.md §10): a
//! provider's concurrency is shared among tenants. While slots are free a call takes one at
//! once; when all are taken, waiting calls are served tenant by tenant in proportion to their
//! tiers' `fair_share_weight`, so a tenant flooding a provider waits behind its own calls and
//! not in front of another tenant's. A call that waits longer than `max_wait_ms` is refused
//! with 503 and `Retry-After`; a tenant with `max_waiting_per_tenant` calls already waiting is
//! refused at once with 429. The queue is per server process (as the provider's connection
//! pool is); the `Limiter` enforces quotas across replicas.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tenantry_core::{ErrorCode, TenantId};
use tenantry_limits::{FairPermit, FairQueue};
use tenantry_models::QueueConfig;

use super::limits::Refusal;
use crate::error::ApiError;

/// The queues of the providers that have one.
#[derive(Debug, Default)]
pub struct Queues {
    by_provider: HashMap<String, (FairQueue, Duration)>,
}

impl Queues {
    pub fn new(config: &BTreeMap<String, QueueConfig>) -> Self {
        let by_provider = config
            .iter()
            .map(|(provider, q)| {
                let queue = FairQueue::new(q.max_concurrency.max(1), q.max_waiting_per_tenant);
                (
                    provider.clone(),
                    (queue, Duration::from_millis(q.max_wait_ms)),
                )
            })
            .collect();
        Self { by_provider }
    }

    /// A slot on `provider` for a call of `tenant`, whose tier's share is `weight`: `None`
    /// when the provider has no queue. Hold the permit for as long as the call uses the
    /// provider.
    pub async fn admit(
        &self,
        provider: &str,
        tenant: &TenantId,
        weight: u32,
    ) -> Result<Option<FairPermit>, Refusal> {
        let Some((queue, max_wait)) = self.by_provider.get(provider) else {
            return Ok(None);
        };
        match tokio::time::timeout(*max_wait, queue.acquire(tenant, weight)).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            Ok(Err(e)) => Err(Refusal::from(ApiError::from(e))),
            Err(_) => {
                let mut e = ApiError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "the model provider is busy: no slot within {} ms; retry shortly",
                        max_wait.as_millis()
                    ),
                );
                e.retry_after = Some(max_wait.as_secs().max(1));
                Err(Refusal::from(e))
            }
        }
    }
}
