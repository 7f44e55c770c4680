//! Ingress middleware, outermost first (the order is the request path of docs/ARCHITECTURE.md):
//!
//! 1. `ingress`: assigns the request id (returned as `x-request-id` and in every error body),
//!    opens the request span that authentication later fills with tenant fields, strips
//!    client-sent `X-Tenantry-*` context headers, and writes one access-log line.
//! 2. route-specific body limits and the authentication extractors (`crate::auth`).

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::error::REQUEST_ID;

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

pub async fn ingress(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
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
    let micros = started.elapsed().as_micros() as u64;
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
