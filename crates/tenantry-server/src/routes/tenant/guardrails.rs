//! The standalone guardrail check for tenants (`POST /v1/guardrails/apply`, also reachable by
//! agents through the bridge with their workload token). The tenant comes from the credential,
//! and only a profile that tenant may use (its tier's) can be named.

use crate::auth::{CallerTier, TenantCaller};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::ErrorCode;
use tenantry_guardrails::{Outcome, Stage};

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/guardrails/apply", post(apply))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::admission::admit,
        ))
}
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Source {
    Input,
    Output,
    ToolInput,
    ToolResult,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyRequest {
    text: String,
    source: Source,
    /// A named profile the caller's tenant may use (its tier's); default: the one that applies
    /// to the caller's traffic.
    #[serde(default)]
    profile: Option<String>,
}

/// The standalone check: the decision, the categories found, and the text as masked.
async fn apply(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    CallerTier(tier): CallerTier,
    ApiJson(req): ApiJson<ApplyRequest>,
) -> ApiResult<Json<Value>> {
    let tier = tier.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("the tier {} of the caller does not exist", ctx.tier),
        )
    })?;
    let applied = match &req.profile {
        // Only the tier's profile may be named: any other name is as absent as a profile that
        // was never created (no enumeration of other tiers' or tenants' profiles).
        Some(name) if tier.guardrail_profile.as_deref() == Some(name.as_str()) => state
            .guardrails
            .named(name)
            .ok_or_else(|| ApiError::not_found("guardrail profile"))?,
        Some(_) => return Err(ApiError::not_found("guardrail profile")),
        None => match state.guardrails.applied(&ctx.tenant_id, &tier)? {
            Some(a) => a,
            None => {
                return Ok(Json(json!({
                    "decision": "pass", "categories": [], "text": req.text, "profile": null,
                })));
            }
        },
    };
    let stage = match req.source {
        Source::Input => Stage::ModelInput,
        Source::Output => Stage::ModelOutput,
        Source::ToolInput => Stage::ToolInput,
        Source::ToolResult => Stage::ToolResult,
    };
    let guard = &applied.guard;
    let check_ctx = state.guardrails.context(&ctx.tenant_id, &applied.leak);
    let verdict = guard.check(stage, &req.text, &check_ctx).await;
    state
        .guardrails
        .record(&ctx.tenant_id, stage, guard, &verdict.findings);
    let categories: Vec<Value> = verdict
        .findings
        .iter()
        .map(|f| json!({"category": f.category, "action": f.action}))
        .collect();
    let (decision, text) = match verdict.outcome {
        Outcome::Pass => ("pass", Some(req.text)),
        Outcome::Masked(m) => ("masked", Some(m)),
        Outcome::Blocked { .. } => ("blocked", None),
    };
    Ok(Json(json!({
        "decision": decision,
        "categories": categories,
        "text": text,
        "profile": {"source": guard.source, "version": guard.version},
    })))
}
