//! The header contract between callers, the platform and agents (the AgentCore names
//! included): session ids, the tenant context the agent receives, what passes through.

use super::*;
use crate::runtimes::CUSTOM_HEADER_PREFIXES;

pub const SESSION_HEADER: &str = "x-tenantry-session-id";
/// The MCP session of a runtime-hosted MCP server, passed both ways.
pub(super) const MCP_SESSION_HEADER: &str = "mcp-session-id";
pub const AGENTCORE_SESSION_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-session-id";

/// The user JWT a caller presented, for `Invocation::subject`: only a JWT caller has one.
pub fn subject_of(ctx: &TenantContext, headers: &HeaderMap) -> Option<String> {
    match &ctx.credential {
        tenantry_core::CredentialKind::Jwt { .. } => headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_string()),
        tenantry_core::CredentialKind::ApiKey { .. }
        | tenantry_core::CredentialKind::AccessKey { .. }
        | tenantry_core::CredentialKind::Workload { .. } => None,
    }
}

/// Headers the agent receives: the tenant context from the verified caller and the registry,
/// the workload token, trace context, and only the custom headers the runtime allows.
pub(super) fn agent_headers(
    ctx: &TenantContext,
    runtime: &Runtime,
    session: &str,
    token: &str,
    caller: &HeaderMap,
) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    set("x-tenantry-tenant-id", ctx.tenant_id.as_str());
    set("x-tenantry-tier", ctx.tier.as_str());
    set("x-tenantry-user-id", ctx.user_id.as_str());
    set("x-tenantry-session-id", session);
    set(AGENTCORE_SESSION_HEADER, session);
    set("x-tenantry-region", &ctx.region);
    set(
        "x-tenantry-features",
        &serde_json::to_string(&ctx.features).unwrap_or_default(),
    );
    set(
        "x-tenantry-entitlements",
        &serde_json::to_string(&ctx.entitlements).unwrap_or_default(),
    );
    set("x-tenantry-workload-token", token);
    set(
        "x-amzn-bedrock-agentcore-runtime-workload-accesstoken",
        token,
    );
    set("workloadaccesstoken", token);
    for (name, value) in caller {
        let n = name.as_str();
        let pass = matches!(
            n,
            "content-type" | "accept" | "traceparent" | "tracestate" | "baggage" | "content-length"
        ) || (runtime.spec.protocol == Protocol::Mcp
            && matches!(
                n,
                MCP_SESSION_HEADER | "mcp-protocol-version" | "last-event-id"
            ))
            || (CUSTOM_HEADER_PREFIXES.iter().any(|p| n.starts_with(p))
                && runtime.spec.allows_header(n));
        if pass {
            h.append(name.clone(), value.clone());
        }
    }
    if !h.contains_key("traceparent") {
        let trace = uuid::Uuid::new_v4().simple().to_string();
        let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
        if let Ok(v) = HeaderValue::from_str(&format!("00-{trace}-{span}-01")) {
            h.insert("traceparent", v);
        }
    }
    // The agent listens on the sandbox's loopback; servers that check `Host` (MCP servers
    // guarding against DNS rebinding do) expect that address.
    h.insert(
        axum::http::header::HOST,
        HeaderValue::from_static(match runtime.spec.protocol {
            Protocol::Http => "127.0.0.1:8080",
            Protocol::Mcp => "127.0.0.1:8000",
        }),
    );
    h
}
