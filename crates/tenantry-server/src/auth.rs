//! Inbound authentication: turns the `Authorization` header into a verified principal.
//!
//! `TenantCaller` is the extractor of every tenant endpoint: it accepts a JWT from a configured
//! issuer (or the development issuer) or a tenant API key, resolves the tenant in the registry
//! (the registry, not the token, decides tier and status), refuses suspended tenants and
//! records the tenant on the request's span. A request signed with AWS SigV4 (a tenant access
//! key) was verified before routing, with its body, by `aws::auth::verify_signed`. `Operator` is the extractor of the control plane
//! and accepts only the operator key. Identity is never read from a body, query or client header.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tenantry_core::{
    CredentialKind, ErrorCode, OperatorGrant, TenantContext, TenantId, TenantStatus, TenantUid,
    Tier, UserId,
};
use tenantry_identity::{WORKLOAD_ISSUER, looks_like_jwt, parse_api_key, unverified_issuer};

use crate::error::ApiError;
use crate::key_cache::VerifiedKey;
use crate::state::AppState;

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "send a credential as `Authorization: Bearer <token or API key>`",
            )
        })?;
    let value = value.to_str().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidToken,
            "the Authorization header is not valid text",
        )
    })?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidToken,
            "use the form `Authorization: Bearer <credential>`",
        )
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidToken,
            "use the form `Authorization: Bearer <credential>`",
        ));
    }
    Ok(token.trim())
}

/// The verified caller of a tenant endpoint.
#[derive(Debug, Clone)]
pub struct TenantCaller(pub TenantContext);

/// Who a verified credential says the caller is, before the registry is asked.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub tenant: TenantId,
    /// The tenant's uid, when the credential names one (a workload token): the registry's
    /// tenant of that id must still be that tenant.
    pub tenant_uid: Option<TenantUid>,
    pub user: UserId,
    pub roles: Vec<String>,
    pub credential: CredentialKind,
}

async fn verify_credential(state: &AppState, token: &str) -> Result<Claimed, ApiError> {
    if let Some((tenant, key_id, hash)) = parse_api_key(token) {
        let key = match state.api_keys.get(&hash) {
            Some(key) => key,
            None => {
                let invalid = || {
                    ApiError::new(
                        ErrorCode::InvalidToken,
                        "the API key is not valid or has been revoked",
                    )
                };
                let epoch = state.api_keys.epoch();
                // The tenant's uid is read before the key: a key verified after its tenant was
                // deleted and created again is the new tenant's, or fails to match the old uid.
                let uid = state
                    .registry
                    .tenant(&state.store, &tenant)
                    .await?
                    .map(|t| t.uid.clone())
                    .ok_or_else(invalid)?;
                let record = state
                    .store
                    .authenticate_api_key(&tenant, &key_id, &hash)
                    .await?
                    .ok_or_else(invalid)?;
                let key = VerifiedKey {
                    tenant,
                    tenant_uid: uid,
                    key_id,
                    user: record.user_id,
                    roles: record.roles,
                    expires_at: record.expires_at,
                };
                state.api_keys.remember(hash, key.clone(), epoch);
                key
            }
        };
        if key
            .expires_at
            .is_some_and(|at| at <= tenantry_core::unix_now())
        {
            return Err(ApiError::new(
                ErrorCode::InvalidToken,
                "the API key has expired",
            ));
        }
        return Ok(Claimed {
            tenant: key.tenant,
            tenant_uid: Some(key.tenant_uid),
            user: key.user,
            roles: key.roles,
            credential: CredentialKind::ApiKey { key_id: key.key_id },
        });
    }
    if looks_like_jwt(token) && unverified_issuer(token).as_deref() == Some(WORKLOAD_ISSUER) {
        let id = state.workload.verify(token)?.subject;
        // A workload token is good only while the sandbox it was minted for runs: stopping a
        // session revokes it, and a resumed session's new sandbox does not revive it.
        if !state
            .sessions
            .is_live_instance(&id.tenant_uid, &id.session, &id.instance)
        {
            return Err(ApiError::new(
                ErrorCode::InvalidToken,
                "the workload token's session is not running",
            ));
        }
        return Ok(Claimed {
            tenant: id.tenant,
            tenant_uid: Some(id.tenant_uid),
            user: id.user,
            roles: Vec::new(),
            credential: CredentialKind::Workload {
                session_id: id.session,
                runtime: id.runtime,
            },
        });
    }
    if looks_like_jwt(token) {
        let verified = state.verifier.verify(token).await?;
        return Ok(Claimed {
            tenant: verified.tenant,
            tenant_uid: None,
            user: verified.user,
            roles: verified.roles,
            credential: CredentialKind::Jwt {
                issuer: verified.issuer_name,
            },
        });
    }
    if state.admin.matches(token) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the operator key is for /v1/admin endpoints; tenant endpoints take a tenant credential",
        ));
    }
    Err(ApiError::new(
        ErrorCode::InvalidToken,
        "the credential is neither a JWT nor a Tenantry API key",
    ))
}

/// The caller's tier, as the registry holds it (limits, entitlements...), set beside the
/// `TenantCaller` by authentication. Absent only if the tenant's tier was deleted.
#[derive(Debug, Clone)]
pub struct CallerTier(pub Option<Arc<Tier>>);

/// Verifies the request's credential and resolves the caller's tenant context. The result is
/// kept in the request's extensions, so later extractors do not verify twice.
pub async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<TenantCaller, ApiError> {
    if let Some(caller) = parts.extensions.get::<TenantCaller>() {
        return Ok(caller.clone());
    }
    // A SigV4 signature was verified (or refused) by `aws::auth::verify_signed` with the body.
    let claimed = match parts.extensions.get::<crate::aws::SigV4Outcome>() {
        Some(outcome) => outcome.claimed()?,
        None => verify_credential(state, bearer(parts)?).await?,
    };
    let (context, tier) = tenant_context(state, claimed).await?;
    let span = tracing::Span::current();
    span.record("tenant.id", context.tenant_id.as_str());
    span.record("tenant.tier", context.tier.as_str());
    span.record("user.id", context.user_id.as_str());
    if let Some(observed) = parts.extensions.get::<crate::middleware::Observed>() {
        observed.set_tenant(&context.tenant_id);
        observed.set_actor(crate::audit::actor_of(&context));
    }
    let caller = TenantCaller(context);
    parts.extensions.insert(caller.clone());
    parts.extensions.insert(CallerTier(tier));
    Ok(caller)
}

/// The tenant context of a verified caller, from the registry: refused when the tenant is
/// unknown (as invalid as a bad signature) or suspended. Also the tenant's tier, if it exists.
pub async fn tenant_context(
    state: &AppState,
    claimed: Claimed,
) -> Result<(TenantContext, Option<Arc<Tier>>), ApiError> {
    let tenant = state
        .registry
        .tenant(&state.store, &claimed.tenant)
        .await?
        .filter(|t| claimed.tenant_uid.as_ref().is_none_or(|uid| uid == &t.uid))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidToken,
                "the credential names an unknown tenant",
            )
        })?;
    match tenant.status {
        TenantStatus::Active => {}
        TenantStatus::Suspended => {
            return Err(ApiError::new(
                ErrorCode::TenantSuspended,
                format!(
                    "tenant {} is suspended; contact the platform operator",
                    tenant.id
                ),
            ));
        }
    }
    let tier = state.registry.tier(&state.store, &tenant.tier).await?;
    let tier_isolation = tier.as_ref().map(|t| t.isolation).unwrap_or_default();
    let context = TenantContext {
        tenant_id: tenant.id.clone(),
        tenant_uid: tenant.uid.clone(),
        tenant_name: tenant.name.clone(),
        user_id: claimed.user,
        tier: tenant.tier.clone(),
        roles: claimed.roles,
        region: tenant.region.clone(),
        features: tenant.features.clone(),
        entitlements: tenant.entitlements.clone(),
        isolation: tenant.isolation.resolve(tier_isolation),
        credential: claimed.credential,
    };
    Ok((context, tier))
}

impl FromRequestParts<AppState> for TenantCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(parts, state).await
    }
}

impl FromRequestParts<AppState> for CallerTier {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(parts, state).await?;
        Ok(parts
            .extensions
            .get::<CallerTier>()
            .cloned()
            .unwrap_or(CallerTier(None)))
    }
}

/// The verified operator, for `/v1/admin` endpoints.
#[derive(Debug, Clone, Copy)]
pub struct Operator(pub OperatorGrant);

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if let Some(grant) = state.admin.verify(token) {
            tracing::Span::current().record("principal", "operator");
            if let Some(observed) = parts.extensions.get::<crate::middleware::Observed>() {
                observed.set_actor("operator".to_string());
            }
            return Ok(Operator(grant));
        }
        if looks_like_jwt(token) || parse_api_key(token).is_some() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "the control plane takes only the operator key; tenant credentials are refused here",
            ));
        }
        Err(ApiError::new(
            ErrorCode::InvalidToken,
            "the operator key is not valid",
        ))
    }
}
