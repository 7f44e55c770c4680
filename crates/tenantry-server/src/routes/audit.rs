//! The audit log, read: `GET /v1/admin/audit` (the operator, any tenant or all) and
//! `GET /v1/audit` (a tenant-admin, its own tenant's events only). Newest first, in pages:
//! pass the last id of a page as `before` for the next.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::{ErrorCode, TenantId, TenantScope};
use tenantry_store::{AuditEvent, AuditQuery};

use crate::auth::{Operator, TenantCaller};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::routes::api_keys::TENANT_ADMIN_ROLE;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/audit", get(operator_audit))
        .route("/v1/audit", get(tenant_audit))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The operator's filter on one tenant.
    #[serde(default)]
    tenant: Option<String>,
    /// Unix seconds: only events at or after.
    #[serde(default)]
    since: Option<i64>,
    /// Only actions starting with this (`tool.decision`, `PATCH tenants`...).
    #[serde(default)]
    action: Option<String>,
    /// The last id of the previous page.
    #[serde(default)]
    before: Option<String>,
    /// Events per page, 1 to 1,000 (default 100).
    #[serde(default)]
    limit: Option<u32>,
}

impl Params {
    fn query(&self) -> ApiResult<AuditQuery> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::invalid("`limit` must be between 1 and 1000"));
        }
        Ok(AuditQuery {
            since: self.since,
            action_prefix: self.action.clone(),
            before: self.before.clone(),
            limit,
        })
    }
}

fn page(events: Vec<AuditEvent>, limit: u32) -> Json<Value> {
    let next = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.id.clone()))
        .flatten();
    Json(json!({ "events": events, "next_before": next }))
}

async fn operator_audit(
    op: Operator,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<Params>,
) -> ApiResult<Json<Value>> {
    let q = params.query()?;
    let events = match &params.tenant {
        Some(raw) => {
            let id = TenantId::new(raw.as_str()).map_err(|e| ApiError::invalid(e.to_string()))?;
            let scope = TenantScope::for_operator(op.0, id);
            state.store.list_audit_events(&scope, &q).await?
        }
        None => state.store.list_all_audit_events(&op.0, &q).await?,
    };
    Ok(page(events, q.limit))
}

async fn tenant_audit(
    TenantCaller(ctx): TenantCaller,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<Params>,
) -> ApiResult<Json<Value>> {
    if !ctx.has_role(TENANT_ADMIN_ROLE) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("reading the audit log needs the `{TENANT_ADMIN_ROLE}` role"),
        ));
    }
    if params.tenant.is_some() {
        return Err(ApiError::invalid(
            "`tenant` is the operator's filter; a tenant reads only its own events",
        ));
    }
    let q = params.query()?;
    let events = state.store.list_audit_events(&ctx.scope(), &q).await?;
    Ok(page(events, q.limit))
}
