//! The control plane of the model gateway, for the operator: routes per tier, a tenant's own
//! models and overrides, a tenant's limit overrides, and the usage report of the ledger.
//!
//! Every change is validated against the configured catalogue before it is stored, kept in the
//! store, and applied to the live router without a restart (on this replica at once, on the
//! others within `REGISTRY_TTL`). Every handler takes an `Operator`.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::{Money, TenantId, TierName};
use tenantry_models::{ConfigError, TenantModels, TierRoutes};
use tenantry_store::{UsageGroup, UsageQuery, UsageRow};

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::gateway::LimitOverrides;
use crate::gateway::limits::{ModelLimits, SubjectLimits};
use crate::json::ApiJson;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/models", get(overview))
        .route(
            "/v1/admin/models/tiers/{tier}",
            get(get_tier_routes)
                .put(put_tier_routes)
                .delete(delete_tier_routes),
        )
        .route(
            "/v1/admin/tenants/{id}/models",
            get(get_tenant_models)
                .put(put_tenant_models)
                .delete(delete_tenant_models),
        )
        .route(
            "/v1/admin/tenants/{id}/limits",
            get(get_tenant_limits)
                .put(put_tenant_limits)
                .delete(delete_tenant_limits),
        )
        .route("/v1/admin/usage", get(usage))
}

fn parse_tier(raw: &str) -> ApiResult<TierName> {
    TierName::new(raw).map_err(|e| ApiError::invalid(e.to_string()))
}

fn parse_tenant(raw: &str) -> ApiResult<TenantId> {
    TenantId::new(raw).map_err(|e| ApiError::invalid(e.to_string()))
}

/// A routing error of the body, with the key relative to the body (`aliases.fast`).
fn invalid_routes(e: &ConfigError, prefix: &str) -> ApiError {
    let key = e.key.strip_prefix(prefix).unwrap_or(&e.key);
    ApiError::invalid(format!("`{key}` is not valid: {}", e.message))
}

async fn require_tier(state: &AppState, tier: &TierName) -> ApiResult<()> {
    match state.store.get_tier(tier).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found("tier")),
    }
}

async fn require_tenant(state: &AppState, tenant: &TenantId) -> ApiResult<tenantry_core::Tenant> {
    state
        .store
        .get_tenant(tenant)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))
}

// ---- overview and tier routes

async fn overview(_: Operator, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let models = &state.config.models;
    let providers: BTreeMap<&String, &str> = models
        .providers
        .iter()
        .map(|(name, p)| (name, p.kind().as_str()))
        .collect();
    let mut tiers = serde_json::Map::new();
    for tier in state.store.list_tiers().await? {
        let (routes, source) = state.gateway.tier_routes(&tier.name);
        tiers.insert(
            tier.name.to_string(),
            json!({
                "source": source,
                "routes": routes,
                "allowed_models": tier.allowed_models,
            }),
        );
    }
    Ok(Json(json!({
        "providers": providers,
        "catalog": models.catalog,
        "default_max_tokens": models.default_max_tokens,
        "tiers": tiers,
    })))
}

fn tier_view(state: &AppState, tier: &TierName) -> Value {
    let (routes, source) = state.gateway.tier_routes(tier);
    json!({ "tier": tier, "source": source, "routes": routes })
}

async fn get_tier_routes(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(tier): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let tier = parse_tier(&tier)?;
    require_tier(&state, &tier).await?;
    Ok(Json(tier_view(&state, &tier)))
}

/// Replaces the routes of a tier (`default`, `aliases`, `fallback`, `default_max_tokens`).
async fn put_tier_routes(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(tier): ApiPath<String>,
    ApiJson(routes): ApiJson<TierRoutes>,
) -> ApiResult<Json<Value>> {
    let tier = parse_tier(&tier)?;
    require_tier(&state, &tier).await?;
    state
        .gateway
        .validate_tier_routes(&tier, &routes)
        .map_err(|e| invalid_routes(&e, &format!("tiers.{tier}.")))?;
    state.gateway.set_tier_routes(&tier, Some(&routes)).await?;
    tracing::info!(tier = %tier, "model routes of the tier set through the control plane");
    Ok(Json(tier_view(&state, &tier)))
}

/// Drops the control plane's routes of a tier: the configuration file's apply again.
async fn delete_tier_routes(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(tier): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let tier = parse_tier(&tier)?;
    require_tier(&state, &tier).await?;
    if !state.gateway.set_tier_routes(&tier, None).await? {
        return Err(ApiError::not_found(
            "model routes set through the control plane",
        ));
    }
    tracing::info!(tier = %tier, "model routes of the tier reset to the configuration file's");
    Ok(Json(tier_view(&state, &tier)))
}

// ---- a tenant's own models

async fn tenant_models_view(state: &AppState, tenant: &tenantry_core::Tenant) -> ApiResult<Value> {
    let stored = state.gateway.stored_tenant_models(&tenant.id).await?;
    let (models, source) = match stored {
        Some(m) => (Some(m), crate::gateway::RouteSource::ControlPlane),
        None => match state.gateway.config_tenant_models(&tenant.id) {
            Some(m) => (Some(m), crate::gateway::RouteSource::Config),
            None => (None, crate::gateway::RouteSource::None),
        },
    };
    // What the tenant's callers see in GET /v1/models with this routing.
    let available = match state.registry.tier(&state.store, &tenant.tier).await? {
        Some(tier) => state
            .gateway
            .router()
            .models_for(&tier, models.as_ref())
            .data
            .into_iter()
            .map(|m| m.id)
            .collect(),
        None => Vec::new(),
    };
    Ok(json!({
        "tenant": tenant.id,
        "tier": tenant.tier,
        "source": source,
        "models": models,
        "available": available,
    }))
}

async fn get_tenant_models(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let tenant = require_tenant(&state, &parse_tenant(&id)?).await?;
    Ok(Json(tenant_models_view(&state, &tenant).await?))
}

/// Replaces a tenant's own routing: its private models (e.g. fine-tuned), overrides of the
/// tier's `default` and aliases, and fallback chains.
async fn put_tenant_models(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(models): ApiJson<TenantModels>,
) -> ApiResult<Json<Value>> {
    let tenant = require_tenant(&state, &parse_tenant(&id)?).await?;
    state
        .gateway
        .router()
        .validate_tenant_models(&models)
        .map_err(|e| invalid_routes(&e, "tenant."))?;
    state
        .gateway
        .set_tenant_models(&tenant.id, Some(&models))
        .await?;
    tracing::info!(tenant.id = %tenant.id, "tenant model routing set through the control plane");
    Ok(Json(tenant_models_view(&state, &tenant).await?))
}

async fn delete_tenant_models(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let tenant = require_tenant(&state, &parse_tenant(&id)?).await?;
    if !state.gateway.set_tenant_models(&tenant.id, None).await? {
        return Err(ApiError::not_found(
            "model routing set through the control plane",
        ));
    }
    tracing::info!(tenant.id = %tenant.id, "tenant model routing removed");
    Ok(Json(tenant_models_view(&state, &tenant).await?))
}

// ---- a tenant's limit overrides

fn subject_json(l: &SubjectLimits) -> Value {
    json!({
        "model_requests_per_minute": l.requests_per_minute,
        "tokens_per_minute": l.tokens_per_minute,
        "budget_per_month": l.budget_per_month,
    })
}

async fn tenant_limits_view(state: &AppState, tenant: &tenantry_core::Tenant) -> ApiResult<Value> {
    let overrides = state.gateway.stored_tenant_limits(&tenant.id).await?;
    let effective = match state.registry.tier(&state.store, &tenant.tier).await? {
        Some(tier) => {
            let l = ModelLimits::of(&tier, overrides.as_ref());
            json!({"tenant": subject_json(&l.tenant), "per_user": subject_json(&l.user)})
        }
        None => Value::Null,
    };
    Ok(json!({
        "tenant": tenant.id,
        "tier": tenant.tier,
        "overrides": overrides,
        "effective": effective,
    }))
}

async fn get_tenant_limits(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let tenant = require_tenant(&state, &parse_tenant(&id)?).await?;
    Ok(Json(tenant_limits_view(&state, &tenant).await?))
}

/// Replaces a tenant's overrides of its tier's model limits.
async fn put_tenant_limits(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(overrides): ApiJson<LimitOverrides>,
) -> ApiResult<Json<Value>> {
    let tenant = require_tenant(&state, &parse_tenant(&id)?).await?;
    overrides.validate().map_err(ApiError::invalid)?;
    state
        .gateway
        .set_tenant_limits(&tenant.id, Some(&overrides))
        .await?;
    tracing::info!(tenant.id = %tenant.id, "tenant limit overrides set");
    Ok(Json(tenant_limits_view(&state, &tenant).await?))
}

async fn delete_tenant_limits(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let tenant = require_tenant(&state, &parse_tenant(&id)?).await?;
    if !state.gateway.set_tenant_limits(&tenant.id, None).await? {
        return Err(ApiError::not_found("limit overrides"));
    }
    tracing::info!(tenant.id = %tenant.id, "tenant limit overrides removed");
    Ok(Json(tenant_limits_view(&state, &tenant).await?))
}

// ---- usage

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageParams {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    group_by: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

fn parse_group(raw: &str) -> ApiResult<UsageGroup> {
    match raw {
        "tenant" => Ok(UsageGroup::Tenant),
        "user" => Ok(UsageGroup::User),
        "model" => Ok(UsageGroup::Model),
        "runtime" => Ok(UsageGroup::Runtime),
        "day" => Ok(UsageGroup::Day),
        "kind" => Ok(UsageGroup::Kind),
        other => Err(ApiError::invalid(format!(
            "group_by {other:?} is not known: use tenant, user, model, runtime, day or kind"
        ))),
    }
}

/// The usage report of the ledger: exact sums per tenant and group over `[from, to)`.
///
/// `from` and `to` are unix seconds, RFC 3339 UTC times (`2026-11-01T00:00:00Z`) or dates
/// (`2026-11-01`); a date as `to` includes that whole day. By default: from the start of the
/// current UTC month until now, grouped by model.
async fn usage(
    _: Operator,
    State(state): State<AppState>,
    params: Result<Query<UsageParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(p) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    let now = tenantry_core::unix_now();
    let tenant = p.tenant.as_deref().map(parse_tenant).transpose()?;
    let group_by = parse_group(p.group_by.as_deref().unwrap_or("model"))?;
    let from = match p.from.as_deref() {
        Some(raw) => {
            time::parse(raw, false).map_err(|m| ApiError::invalid(format!("from: {m}")))?
        }
        None => time::month_start(now),
    };
    let to = match p.to.as_deref() {
        Some(raw) => time::parse(raw, true).map_err(|m| ApiError::invalid(format!("to: {m}")))?,
        None => now + 1,
    };
    if to <= from {
        return Err(ApiError::invalid("`to` must be after `from`"));
    }
    if let Some(t) = &tenant {
        require_tenant(&state, t).await?;
    }
    // This replica's pending ledger entries first, so the operator reads their own calls.
    if !state.ledger.flush(std::time::Duration::from_secs(5)).await {
        tracing::warn!("the usage report does not wait longer for the ledger writer");
    }
    let query = UsageQuery {
        tenant: tenant.clone(),
        from,
        to,
        group_by,
    };
    let grant = tenantry_core::OperatorGrant::verified();
    let rows = state.store.usage_report(grant, &query).await?;
    Ok(Json(json!({
        "tenant": tenant,
        "group_by": group_by,
        "from": from,
        "to": to,
        "rows": rows,
        "totals": totals(&rows),
    })))
}

fn totals(rows: &[UsageRow]) -> Value {
    let sum = |f: fn(&UsageRow) -> i64| rows.iter().map(f).fold(0i64, i64::saturating_add);
    let cost = rows
        .iter()
        .map(|r| r.cost.micros())
        .fold(0i64, i64::saturating_add);
    json!({
        "calls": sum(|r| r.calls),
        "input_tokens": sum(|r| r.input_tokens),
        "output_tokens": sum(|r| r.output_tokens),
        "cpu_ms": sum(|r| r.cpu_ms),
        "memory_mb_ms": sum(|r| r.memory_mb_ms),
        "cost": Money::from_micros(cost),
        "records": sum(|r| r.records),
    })
}

/// UTC calendar arithmetic for the report's window, without a date library.
mod time {
    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// (year, month) of a day count since 1970-01-01.
    fn civil_from_days(z: i64) -> (i64, i64) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(m <= 2), m)
    }

    /// Unix seconds at the start of the UTC month of `now`.
    pub fn month_start(now: i64) -> i64 {
        let (y, m) = civil_from_days(now.div_euclid(86_400));
        days_from_civil(y, m, 1) * 86_400
    }

    fn number(s: &str, what: &str) -> Result<i64, String> {
        s.parse()
            .map_err(|_| format!("{what} {s:?} is not a number"))
    }

    fn date(s: &str) -> Result<i64, String> {
        let parts: Vec<&str> = s.split('-').collect();
        let [y, m, d] = parts.as_slice() else {
            return Err(format!("{s:?} is not a date: write YYYY-MM-DD"));
        };
        let (y, m, d) = (number(y, "year")?, number(m, "month")?, number(d, "day")?);
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
            return Err(format!("{s:?} is not a date: write YYYY-MM-DD"));
        }
        Ok(days_from_civil(y, m, d))
    }

    /// Unix seconds from unix seconds, `YYYY-MM-DD` (with `end_of_day`, the next midnight),
    /// or `YYYY-MM-DDTHH:MM:SS[Z]` (UTC).
    pub fn parse(raw: &str, end_of_day: bool) -> Result<i64, String> {
        let raw = raw.trim();
        if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
            return number(raw, "time");
        }
        if let Some((day, clock)) = raw.split_once('T') {
            let clock = clock.strip_suffix('Z').unwrap_or(clock);
            let hms: Vec<&str> = clock.split(':').collect();
            let [h, mi, s] = hms.as_slice() else {
                return Err(format!("{raw:?}: write the time as HH:MM:SS in UTC"));
            };
            let (h, mi, s) = (
                number(h, "hour")?,
                number(mi, "minute")?,
                number(s, "second")?,
            );
            if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..61).contains(&s) {
                return Err(format!("{raw:?}: write the time as HH:MM:SS in UTC"));
            }
            return Ok(date(day)? * 86_400 + h * 3600 + mi * 60 + s);
        }
        let days = date(raw)?;
        Ok((days + i64::from(end_of_day)) * 86_400)
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used)]
        use super::*;

        #[test]
        fn dates_and_times() {
            assert_eq!(parse("1970-01-01", false).unwrap(), 0);
            assert_eq!(parse("1970-01-01", true).unwrap(), 86_400);
            assert_eq!(parse("2026-11-26", false).unwrap(), 1_795_651_200);
            assert_eq!(parse("2026-11-26T05:00:00Z", false).unwrap(), 1_795_669_200);
            assert_eq!(parse("1795651200", true).unwrap(), 1_795_651_200);
            assert_eq!(parse("2024-02-29", false).unwrap(), 1_709_164_800);
            assert!(parse("2026-13-01", false).is_err());
            assert!(parse("yesterday", false).is_err());
            assert_eq!(
                month_start(1_795_669_200),
                parse("2026-11-01", false).unwrap()
            );
            assert_eq!(month_start(0), 0);
            assert_eq!(
                month_start(parse("2024-03-01", false).unwrap() - 1),
                parse("2024-02-01", false).unwrap()
            );
        }
    }
}
