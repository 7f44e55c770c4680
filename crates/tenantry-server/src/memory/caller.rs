//! Who calls memory, made only from verified identities: a tenant caller's `TenantContext`
//! (JWT, API key or workload token) or the operator's grant.

use tenantry_core::{
    CredentialKind, OperatorGrant, RuntimeName, TenantContext, TenantId, TenantScope,
};
use tenantry_memory::ActorId;
use tenantry_memory::namespace::Reach;

use super::MemoryServiceError;
use crate::state::AppState;

/// The tier's event expiry when neither the request nor the tier names one.
pub const DEFAULT_EVENT_EXPIRY_DAYS: u32 = 90;

/// A verified caller of memory: its tenant's scope, what it reaches, whether it administers
/// the tenant's memories, and (for tenant callers) the context extraction is billed to.
#[derive(Debug, Clone)]
pub struct MemoryCaller {
    scope: TenantScope,
    reach: Reach,
    admin: bool,
    default_expiry_days: u32,
    context: Option<TenantContext>,
}

impl MemoryCaller {
    /// A tenant caller. A workload token reaches only its session's user as actor, unless its
    /// runtime has `memory.tenant_wide = true`, and administers memories when its runtime has
    /// `memory.manage_memories = true`; other callers administer them with `tenant-admin`.
    pub async fn of_tenant(
        state: &AppState,
        ctx: &TenantContext,
    ) -> Result<Self, MemoryServiceError> {
        // Only a workload token is limited to one actor; every other credential (JWT, API
        // key, and credential kinds added later) reaches the whole tenant, as its backend does.
        let (reach, admin) = if let CredentialKind::Workload { runtime, .. } = &ctx.credential {
            let memory = match RuntimeName::new(runtime.as_str()) {
                Ok(name) => state
                    .registry
                    .runtime(&state.store, &name)
                    .await
                    .map_err(MemoryServiceError::Unavailable)?
                    .map(|r| r.spec.memory.clone())
                    .unwrap_or_default(),
                Err(_) => crate::runtimes::RuntimeMemory::default(),
            };
            let reach = if memory.tenant_wide {
                Reach::TenantWide
            } else {
                Reach::Actor(ActorId::of_user(&ctx.user_id)?)
            };
            (reach, memory.manage_memories)
        } else {
            (Reach::TenantWide, ctx.has_role("tenant-admin"))
        };
        let default_expiry_days = state
            .registry
            .tier(&state.store, &ctx.tier)
            .await?
            .map_or(DEFAULT_EVENT_EXPIRY_DAYS, |t| t.memory_event_expiry_days);
        Ok(Self {
            scope: ctx.scope(),
            reach,
            admin,
            default_expiry_days,
            context: Some(ctx.clone()),
        })
    }

    /// The operator acting on one tenant's memory (tenant-wide, administering). The tenant
    /// must exist; `default_expiry_days` is its tier's.
    pub fn operator(grant: OperatorGrant, tenant: TenantId, default_expiry_days: u32) -> Self {
        Self {
            scope: TenantScope::for_operator(grant, tenant),
            reach: Reach::TenantWide,
            admin: true,
            default_expiry_days,
            context: None,
        }
    }

    /// A caller for tests of code that takes one.
    pub fn for_tests(scope: TenantScope, reach: Reach, admin: bool) -> Self {
        Self {
            scope,
            reach,
            admin,
            default_expiry_days: DEFAULT_EVENT_EXPIRY_DAYS,
            context: None,
        }
    }

    pub fn scope(&self) -> &TenantScope {
        &self.scope
    }

    pub fn tenant(&self) -> &TenantId {
        self.scope.tenant()
    }

    pub fn reach(&self) -> &Reach {
        &self.reach
    }

    pub fn is_admin(&self) -> bool {
        self.admin
    }

    pub fn default_expiry_days(&self) -> u32 {
        self.default_expiry_days
    }

    /// The verified context of a tenant caller (`None` for the operator).
    pub fn context(&self) -> Option<&TenantContext> {
        self.context.as_ref()
    }
}
