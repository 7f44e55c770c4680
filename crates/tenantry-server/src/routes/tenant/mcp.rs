//! The tool gateway's endpoint for tenant callers and their agents: `/mcp` (MCP streamable
//! HTTP), behind authentication and the ingress rate check (`admission::admit`).
//!
//! `identify` turns the verified caller into the `CallerIdentity` the gateway reads from the
//! request's extensions: tenant, user, tier and roles from the tenant context; claims from the
//! verified JWT (the payload of the very token the auth layer just verified); the tokens a
//! token exchange sends: the caller's user JWT as subject (for an agent, the JWT its session
//! was last invoked with) and, for an agent's workload token, an actor token naming the agent
//! (`agent:RUNTIME`); and the caller's `TenantScope`, which the vault and the ledger use.
//! Nothing here reads identity from the MCP messages or from a client-sent header.

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use tenantry_core::{CredentialKind, TenantContext};
use tenantry_tools::{CallerIdentity, Secret};

use crate::auth::authenticate;
use crate::state::AppState;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/mcp", tenantry_tools::mcp_route(state.tools.gateway()))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            identify,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::admission::admit,
        ))
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The claims of a JWT that has already been verified (its payload, decoded).
fn verified_claims(jwt: &str) -> Map<String, Value> {
    jwt.split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
        .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
        .unwrap_or_default()
}

/// The gateway's view of a verified caller whose bearer credential is `token`.
pub fn caller_identity(state: &AppState, ctx: &TenantContext, token: &str) -> CallerIdentity {
    let mut caller = CallerIdentity::new(
        ctx.scope(),
        ctx.user_id.clone(),
        ctx.tier.clone(),
        ctx.credential.clone(),
    );
    caller.roles = ctx.roles.clone();
    match &ctx.credential {
        CredentialKind::Jwt { .. } => {
            caller.claims = verified_claims(token);
            caller.subject_token = Some(Secret::new(token));
        }
        CredentialKind::Workload {
            session_id,
            runtime,
        } => {
            caller.subject_token = state
                .sessions
                .subject_token(&ctx.tenant_uid, session_id)
                .map(Secret::new);
            caller.actor_token = state
                .tools
                .actor_token(&ctx.tenant_id, &ctx.user_id, session_id, runtime)
                .map(Secret::new);
        }
        CredentialKind::ApiKey { .. } | CredentialKind::AccessKey { .. } => {}
    }
    caller
}

async fn identify(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let ctx = match authenticate(&mut parts, &state).await {
        Ok(c) => c.0,
        Err(e) => return e.into_response(),
    };
    let mut req = Request::from_parts(parts, body);
    let token = bearer(&req).unwrap_or_default().to_owned();
    let caller = caller_identity(&state, &ctx, &token);
    req.extensions_mut().insert(caller);
    next.run(req).await
}
