//! Runtime-hosted tool targets on this server's session manager: the tool gateway's
//! `HostedRuntimes`.
//!
//! A message for a hosted server becomes an invocation of the runtime (protocol `mcp`, so it
//! goes to `POST /mcp` in the sandbox) in the runtime session the gateway named for the
//! caller. The caller's tenant context is resolved again from the registry, exactly as for an
//! HTTP caller (a suspended tenant is refused), and the session belongs to the caller's tenant
//! and user, so the runtime's own rules apply: a dedicated runtime serves its tenant only, the
//! tier's sandbox resources and session limits hold, and compute goes to the ledger under the
//! caller's tenant, user, runtime and session.

use std::sync::Weak;

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use tenantry_core::{ErrorCode, RuntimeName, SessionId};
use tenantry_tools::{CallerIdentity, EndFuture, HostedFuture, HostedRuntimes, UpstreamError};

use crate::auth::{Claimed, tenant_context};
use crate::error::ApiError;
use crate::runtimes::{Protocol, Runtime};
use crate::sessions::Invocation;
use crate::state::{AppState, Inner};

/// The headers of an MCP message that the sandboxed server needs; any other header the gateway
/// set is the target's credential.
const MCP_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
];

/// Why a session ends when the gateway stops it.
const END_REASON: &str = "ended_by_tool_gateway";

#[derive(Debug)]
pub struct HostedSessions {
    state: Weak<Inner>,
}

impl HostedSessions {
    pub fn new(state: Weak<Inner>) -> Self {
        Self { state }
    }

    fn state(&self) -> Result<AppState, UpstreamError> {
        self.state
            .upgrade()
            .map(|inner| AppState { inner })
            .ok_or_else(|| refused(ErrorCode::Unavailable, "the server is shutting down"))
    }
}

fn refused(code: ErrorCode, message: impl Into<String>) -> UpstreamError {
    UpstreamError::Runtime {
        code,
        message: message.into(),
    }
}

fn from_api(e: ApiError) -> UpstreamError {
    refused(e.code, e.message)
}

impl HostedRuntimes for HostedSessions {
    fn post<'a>(
        &'a self,
        caller: &'a CallerIdentity,
        runtime: &'a RuntimeName,
        session: &'a str,
        headers: HeaderMap,
        body: Bytes,
    ) -> HostedFuture<'a> {
        Box::pin(async move {
            let state = self.state()?;
            let claimed = Claimed {
                tenant: caller.tenant().clone(),
                tenant_uid: None,
                user: caller.user.clone(),
                roles: caller.roles.clone(),
                credential: caller.credential.clone(),
            };
            let (ctx, tier) = tenant_context(&state, claimed).await.map_err(from_api)?;
            let tier = tier.ok_or_else(|| {
                refused(ErrorCode::Unavailable, "the tenant's tier does not exist")
            })?;
            let found = state
                .registry
                .runtime(&state.store, runtime)
                .await
                .map_err(|e| refused(ErrorCode::Internal, format!("reading a runtime: {e}")))?
                .filter(|r| r.visible_to(&ctx.tenant_id))
                .ok_or_else(|| {
                    refused(
                        ErrorCode::UpstreamError,
                        format!("runtime {runtime} does not exist for this tenant"),
                    )
                })?;
            if found.spec.protocol != Protocol::Mcp {
                return Err(refused(
                    ErrorCode::UpstreamError,
                    format!("runtime {runtime} is not an MCP server (its protocol is not mcp)"),
                ));
            }
            let (mcp, credential): (HeaderMap, HeaderMap) = headers
                .into_iter()
                .filter_map(|(name, value)| name.map(|n| (n, value)))
                .partition(|(name, _)| MCP_HEADERS.contains(&name.as_str()));
            let invocation = Invocation {
                runtime: Runtime::clone(&found),
                session_id: SessionId::new(session)
                    .map_err(|e| refused(ErrorCode::InvalidRequest, e.to_string()))?,
                caller_headers: &mcp,
                platform_headers: credential,
                subject: caller.subject_token.as_ref().map(|t| t.expose().to_owned()),
                body: Body::from(body),
                permit: None,
            };
            state
                .sessions
                .invoke(&ctx, &tier, invocation)
                .await
                .map_err(|e| from_api(ApiError::from(e)))
        })
    }

    fn end<'a>(&'a self, caller: &'a CallerIdentity, session: &'a str) -> EndFuture<'a> {
        Box::pin(async move {
            let Ok(state) = self.state() else { return };
            let scope = caller.scope();
            let Ok(Some(tenant)) = state.registry.tenant(&state.store, caller.tenant()).await
            else {
                return;
            };
            match state.store.get_session(scope, session).await {
                Ok(Some(record)) if record.user_id == caller.user => {
                    state
                        .sessions
                        .stop(&tenant.uid, &record.id, END_REASON)
                        .await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read a hosted tool session to stop it");
                }
            }
        })
    }
}
