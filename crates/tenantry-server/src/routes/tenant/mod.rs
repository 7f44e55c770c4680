//! Endpoints for tenant callers, one module per resource. Each handler takes a `TenantCaller`
//! (or an agent's workload identity) and reaches tenant data only through the caller's own
//! `TenantScope`: another tenant's resource is simply not found. Every route passes admission
//! (the tenant's rate and concurrency limits) first.

pub mod api_keys;
pub mod bedrock_kb;
pub mod guardrails;
pub mod invocations;
pub mod knowledge;
pub mod mcp;
pub mod me;
pub mod memory;
pub mod models;
pub mod sessions;

use axum::Router;

use crate::state::AppState;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .merge(me::routes())
        .merge(api_keys::routes())
        .merge(crate::aws::access_keys::tenant_routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::admission::admit,
        ))
        .merge(invocations::routes(state.clone()))
        .merge(sessions::routes(state.clone()))
        .merge(models::routes(state.clone()))
        .merge(mcp::routes(state.clone()))
        .merge(memory::routes(state.clone()))
        .merge(guardrails::routes(state.clone()))
        .merge(knowledge::routes(state.clone()))
        .merge(bedrock_kb::routes(state))
}
