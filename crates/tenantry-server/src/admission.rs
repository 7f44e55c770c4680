//! Admission at ingress: after authentication, every tenant request is checked against its
//! tenant's request rate (GCRA, from the tier's `requests_per_second` and `burst`). The answer
//! is visible to the caller in `RateLimit-*` headers and, when refused, a 429 `rate_limited`
//! with `Retry-After`. If the limiter cannot decide, the request is refused (law 4).

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tenantry_core::ErrorCode;
use tenantry_limits::{Decision, Dimension, Rate, RateKey, Subject};

use crate::auth::{CallerTier, authenticate};
use crate::error::ApiError;
use crate::state::AppState;

/// Adds the decision's `RateLimit-*` headers, unless the handler already set its own: a
/// narrower limit checked by the endpoint (e.g. the model gateway's requests per minute) is
/// the one the caller must see.
fn with_headers(mut response: Response, decision: &Decision) -> Response {
    for (name, value) in decision.headers() {
        if response.headers().contains_key(name) {
            continue;
        }
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

pub async fn admit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let caller = match authenticate(&mut parts, &state).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let tier = match parts.extensions.get::<CallerTier>() {
        Some(CallerTier(Some(tier))) => tier.clone(),
        Some(CallerTier(None)) | None => {
            return ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "the limits of tenant {} cannot be decided: its tier {} does not exist",
                    caller.0.tenant_id, caller.0.tier
                ),
            )
            .into_response();
        }
    };
    let decision = match tier.limits.requests_per_second {
        None => None,
        Some(rps) => {
            let key = RateKey::new(
                Subject::tenant(caller.0.tenant_id.clone()),
                Dimension::Requests,
            );
            let burst = tier.limits.burst.unwrap_or(rps);
            match state
                .limiter
                .check_rate(&key, Rate::per_second(rps), burst)
                .await
            {
                Ok(d) => Some(d),
                Err(e) => return ApiError::from(e).into_response(),
            }
        }
    };
    if let Some(d) = &decision
        && !d.allowed
    {
        let mut err = ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "tenant {} is over its request rate ({} per second on tier {}); retry later",
                caller.0.tenant_id,
                tier.limits.requests_per_second.unwrap_or(0),
                tier.name
            ),
        );
        err.retry_after = d.retry_after.map(|r| r.as_secs().max(1));
        return with_headers(err.into_response(), d);
    }
    let response = next.run(Request::from_parts(parts, body)).await;
    match &decision {
        Some(d) => with_headers(response, d),
        None => response,
    }
}
