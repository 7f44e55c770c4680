//! Ingress middleware, outermost first (the order is the request path of docs/ARCHITECTURE.md):
//!
//! 1. `ingress`: assigns the request id (returned as `x-request-id` and in every error body),
//!    opens the request span that authentication later fills with tenant fields, strips
//!    client-sent `X-Tenantry-*` context headers, writes one access-log line and counts the
//!    request in the metrics (by tenant, route template, method, status and error code).
//! 2. `matched_route`, once routing chose a route: notes its template for the metrics.
//! 3. route-specific body limits and the authentication extractors (`crate::auth`).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::error::REQUEST_ID;
use crate::state::AppState;

/// What inner layers learn about a request for the ingress's metrics: the route template
/// (set by `matched_route`) and the tenant (set by authentication). Only these: a user or
/// session id is never a metric label.
#[derive(Debug, Clone, Default)]
pub struct Observed(Arc<ObservedInner>);

#[derive(Debug, Default)]
struct ObservedInner {
    route: OnceLock<String>,
    tenant: OnceLock<tenantry_core::TenantId>,
    actor: OnceLock<String>,
}

impl Observed {
    pub fn set_tenant(&self, tenant: &tenantry_core::TenantId) {
        let _ = self.0.tenant.set(tenant.clone());
    }

    /// Who the request authenticated as, for the audit log.
    pub fn set_actor(&self, actor: String) {
        let _ = self.0.actor.set(actor);
    }
}

/// Notes the matched route's template (`/v1/sessions/{id}`, never the raw path).
pub async fn matched_route(req: Request, next: Next) -> Response {
    if let (Some(observed), Some(path)) = (
        req.extensions().get::<Observed>(),
        req.extensions().get::<MatchedPath>(),
    ) {
        let _ = observed.0.route.set(path.as_str().to_string());
    }
    next.run(req).await
}

/// Caller headers in the `x-tenantry-` namespace that are requests, not claims of identity.
const CALLER_HEADERS: &[&str] = &["x-tenantry-session-id"];
const CALLER_HEADER_PREFIXES: &[&str] = &["x-tenantry-custom-"];
/// AgentCore names of context headers that Tenantry, not the caller, sets.
const AGENTCORE_CONTEXT_HEADERS: &[&str] = &[
    "x-amzn-bedrock-agentcore-runtime-workload-accesstoken",
    "workloadaccesstoken",
];

/// Whether a client-sent header claims tenant context and must be dropped.
pub fn is_context_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if AGENTCORE_CONTEXT_HEADERS.contains(&name.as_str()) {
        return true;
    }
    name.starts_with("x-tenantry-")
        && !CALLER_HEADERS.contains(&name.as_str())
        && !CALLER_HEADER_PREFIXES.iter().any(|p| name.starts_with(p))
}

fn new_request_id() -> String {
    format!("req_{}", uuid::Uuid::now_v7().simple())
}

pub async fn ingress(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let observed = Observed::default();
    req.extensions_mut().insert(observed.clone());
    let request_id = new_request_id();
    let stripped: Vec<HeaderName> = req
        .headers()
        .keys()
        .filter(|name| is_context_header(name.as_str()))
        .cloned()
        .collect();
    for name in &stripped {
        req.headers_mut().remove(name);
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!(
        "request",
        request.id = %request_id,
        http.method = %method,
        http.path = %path,
        tenant.id = tracing::field::Empty,
        tenant.tier = tracing::field::Empty,
        user.id = tracing::field::Empty,
        principal = tracing::field::Empty,
    );
    if !stripped.is_empty() {
        span.in_scope(|| {
            tracing::debug!(
                count = stripped.len(),
                "dropped client-sent context headers"
            )
        });
    }
    let mut response = REQUEST_ID
        .scope(request_id.clone(), next.run(req))
        .instrument(span.clone())
        .await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let micros = elapsed.as_micros() as u64;
    let tenant = observed.0.tenant.get().map(|t| t.as_str());
    let route = observed.0.route.get().map_or("unmatched", String::as_str);
    state
        .metrics
        .http_request(tenant, route, method.as_str(), status, elapsed);
    let code = response.extensions().get::<tenantry_core::ErrorCode>();
    if let Some(code) = code {
        state.metrics.http_error(tenant, code.as_str());
    }
    if crate::audit::is_audited(&method, route) {
        let note = response
            .extensions()
            .get::<crate::audit::AuditNote>()
            .cloned()
            .unwrap_or_default();
        let outcome = match code {
            Some(code) => code.as_str().to_string(),
            None if status < 400 => "ok".to_string(),
            None => status.to_string(),
        };
        let concerned = note
            .tenant
            .or_else(|| crate::audit::tenant_in_path(route, &path))
            .or_else(|| observed.0.tenant.get().cloned());
        let actor = observed
            .0
            .actor
            .get()
            .cloned()
            .unwrap_or_else(|| "unauthenticated".to_string());
        let mut detail = note.detail;
        if let Some(obj) = detail.as_object_mut() {
            obj.insert("status".into(), status.into());
        } else {
            detail = serde_json::json!({ "status": status });
        }
        let mut event = crate::audit::event(
            concerned,
            actor,
            crate::audit::action_of(&method, route),
            note.target.or_else(|| Some(path.clone())),
            outcome,
            detail,
        );
        // The response is out of the request id's task-local scope here.
        event.request_id = Some(request_id.clone());
        state.audit.record(event);
    }
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, latency_us = micros, "request finished");
        } else {
            tracing::info!(status, latency_us = micros, "request finished");
        }
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_headers_are_recognised() {
        for h in [
            "X-Tenantry-Tenant-Id",
            "x-tenantry-tier",
            "X-Tenantry-User-Id",
            "x-tenantry-entitlements",
            "x-tenantry-workload-token",
            "X-Amzn-Bedrock-AgentCore-Runtime-Workload-AccessToken",
        ] {
            assert!(is_context_header(h), "{h}");
        }
        for h in [
            "x-tenantry-session-id",
            "x-tenantry-custom-plan",
            "authorization",
            "x-request-id",
        ] {
            assert!(!is_context_header(h), "{h}");
        }
    }
}
