//! Invoking agents (tenant callers): `POST /v1/runtimes/{runtime}/invocations`, in the session
//! the caller names or a new one (`sessions` lists, shows and stops them).

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Response};
use axum::routing::post;
use tenantry_core::{ErrorCode, RuntimeName, SessionId};
use tenantry_limits::{ConcurrencyKey, Dimension, Subject};

use crate::auth::{CallerTier, TenantCaller};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::runtimes::Protocol;
use crate::sessions::{AGENTCORE_SESSION_HEADER, Invocation, SESSION_HEADER, subject_of};
use crate::state::AppState;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/runtimes/{runtime}/invocations", post(invoke))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::admission::admit,
        ))
}

/// The session id the caller asked for, or a new one.
fn session_id(headers: &HeaderMap) -> ApiResult<SessionId> {
    let given = headers
        .get(SESSION_HEADER)
        .or_else(|| headers.get(AGENTCORE_SESSION_HEADER));
    let Some(v) = given else {
        return Ok(SessionId::generate());
    };
    let id = v
        .to_str()
        .map_err(|_| ApiError::invalid("the session id header is not valid text"))?;
    SessionId::new(id).map_err(|_| {
        ApiError::invalid(
            "a session id must be 33 to 256 characters of letters, digits, '-', '_' and '.'",
        )
    })
}

async fn invoke(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    CallerTier(tier): CallerTier,
    ApiPath(runtime): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response<Body>, ApiError> {
    let name = RuntimeName::new(&runtime).map_err(|_| ApiError::not_found("runtime"))?;
    let runtime = state
        .registry
        .runtime(&state.store, &name)
        .await
        .map_err(|e| ApiError::internal("reading a runtime", e))?
        .filter(|r| r.visible_to(&ctx.tenant_id))
        .ok_or_else(|| ApiError::not_found("runtime"))?;
    // An MCP server's tools are called through the tool gateway only, where the tenant's
    // policy, the tool-call rate and metering apply to every call: a direct invocation would
    // pass its JSON-RPC around all three.
    if runtime.spec.protocol == Protocol::Mcp {
        return Err(ApiError::invalid(format!(
            "runtime {name} is an MCP server: call its tools through /mcp (as the tool target \
             that names it), where policy, rate limits and metering apply"
        )));
    }
    let runtime = crate::runtimes::Runtime::clone(&runtime);
    let tier = tier
        .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "the tenant's tier does not exist"))?;
    let session = session_id(&headers)?;
    let permit = match tier.limits.concurrent_invocations {
        None => None,
        Some(max) => {
            let key = ConcurrencyKey::new(
                Subject::tenant(ctx.tenant_id.clone()),
                Dimension::Invocations,
            );
            Some(state.limiter.acquire(&key, max).await?)
        }
    };
    let subject = subject_of(&ctx, &headers);
    let invocation = Invocation {
        runtime,
        session_id: session,
        caller_headers: &headers,
        platform_headers: HeaderMap::new(),
        subject,
        body,
        permit,
    };
    Ok(state.sessions.invoke(&ctx, &tier, invocation).await?)
}
