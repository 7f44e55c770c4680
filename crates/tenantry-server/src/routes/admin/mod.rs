//! The operator's control plane (`/v1/admin/...`), one module per resource. Every handler takes
//! an `Operator`, which only the operator key yields; tenant credentials are refused with 403.
//!
//! Changes are stored and applied without a restart: on this replica at once, on the others
//! within `REGISTRY_TTL`.

pub mod credentials;
pub mod guardrails;
pub mod knowledge;
pub mod memories;
pub mod models;
pub mod policies;
pub mod runtimes;
pub mod tenants;
pub mod tiers;
pub mod tool_targets;
pub mod usage;

use axum::Router;
use tenantry_core::{Tenant, TenantId, TenantScope, TierName};

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(tiers::routes())
        .merge(tenants::routes())
        .merge(runtimes::routes())
        .merge(models::routes())
        .merge(usage::routes())
        .merge(tool_targets::routes())
        .merge(policies::routes())
        .merge(credentials::routes())
        .merge(guardrails::routes())
        .merge(memories::routes())
        .merge(crate::aws::access_keys::admin_routes())
        .merge(knowledge::routes())
}

/// A tenant id from a path, refused as invalid input when malformed.
pub(crate) fn parse_tenant(raw: &str) -> ApiResult<TenantId> {
    TenantId::new(raw).map_err(|e| ApiError::invalid(e.to_string()))
}

/// A tier name from a path, refused as invalid input when malformed.
pub(crate) fn parse_tier(raw: &str) -> ApiResult<TierName> {
    TierName::new(raw).map_err(|e| ApiError::invalid(e.to_string()))
}

/// The tenant `id`, or `not_found` when there is none.
pub(crate) async fn require_tenant(state: &AppState, id: &TenantId) -> ApiResult<Tenant> {
    state
        .store
        .get_tenant(id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))
}

/// `not_found` unless the tier `name` exists.
pub(crate) async fn require_tier(state: &AppState, name: &TierName) -> ApiResult<()> {
    match state.store.get_tier(name).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found("tier")),
    }
}

/// The operator's scope on the tenant named in a path: invalid when malformed, `not_found`
/// when there is no such tenant.
pub(crate) async fn scope_of(
    state: &AppState,
    op: Operator,
    raw_id: &str,
) -> ApiResult<TenantScope> {
    let tenant = require_tenant(state, &parse_tenant(raw_id)?).await?;
    Ok(TenantScope::for_operator(op.0, tenant.id))
}

/// What a rollback of a versioned document (policy set, guardrail profile) activates: the
/// newest version older than the active one. `versions` are (version, active) pairs.
pub(crate) fn previous_version(
    scope: &impl std::fmt::Display,
    versions: impl Iterator<Item = (i64, bool)> + Clone,
    no_active: impl FnOnce() -> ApiError,
) -> ApiResult<i64> {
    let active = versions
        .clone()
        .find(|(_, active)| *active)
        .map(|(v, _)| v)
        .ok_or_else(no_active)?;
    versions
        .map(|(v, _)| v)
        .filter(|v| *v < active)
        .max()
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "{scope} has no version before {active} to roll back to"
            ))
        })
}
