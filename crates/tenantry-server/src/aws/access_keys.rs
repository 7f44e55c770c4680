//! Tenant access key pairs for SigV4: the operator's endpoints
//! (`/v1/admin/tenants/{id}/access-keys`) and a tenant-admin's (`/v1/access-keys`).
//!
//! A pair is bound to a user and roles by the same rules as an API key (`routes::api_keys`):
//! the operator may bind any user, a tenant principal only itself, otherwise the key is the
//! service principal `svc:NAME`. The secret access key is shown once, in the answer to the
//! create, and stored only sealed by the tenant's vault data key. Revoking (or deleting) a key
//! takes effect at once on every replica: a signature is checked against the store each time.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tenantry_core::{ErrorCode, TenantScope, unix_now};
use tenantry_store::AccessKeyRecord;

use super::keys::{self, SEAL_PURPOSE};
use crate::audit::AuditNote;
use crate::auth::{Operator, TenantCaller};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::json::ApiJson;
use crate::routes::admin::scope_of;
use crate::routes::api_keys::{Creator, Grant, TENANT_ADMIN_ROLE};
use crate::state::AppState;

pub fn admin_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/admin/tenants/{id}/access-keys",
            get(admin_list).post(admin_create),
        )
        .route(
            "/v1/admin/tenants/{id}/access-keys/{key_id}",
            get(admin_get).delete(admin_revoke),
        )
}

pub fn tenant_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/access-keys", get(tenant_list).post(tenant_create))
        .route(
            "/v1/access-keys/{key_id}",
            get(tenant_get).delete(tenant_revoke),
        )
}

/// An access key pair is asked for like an API key: name, user, roles, lifetime.
pub type CreateAccessKey = crate::routes::api_keys::CreateApiKey;

/// The answer to a create: the record plus the secret access key, shown this once.
#[derive(Debug, Serialize)]
pub struct CreatedAccessKey {
    #[serde(flatten)]
    pub record: AccessKeyRecord,
    pub access_key_id: String,
    pub secret_access_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeQuery {
    /// Delete the key for good instead of marking it revoked.
    #[serde(default)]
    purge: bool,
}

async fn create(
    state: &AppState,
    scope: &TenantScope,
    creator: Creator<'_>,
    req: CreateAccessKey,
) -> ApiResult<CreatedAccessKey> {
    let Grant {
        name,
        roles,
        user,
        expires_at,
    } = req.grant(creator)?;
    let new = keys::generate(scope.tenant());
    let sealed = state
        .access_keys
        .vault()
        .seal_secret(scope, SEAL_PURPOSE, &new.access_key_id, &new.secret)
        .await
        .map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    let record = AccessKeyRecord {
        id: new.access_key_id.clone(),
        tenant_id: scope.tenant().clone(),
        name,
        user_id: user,
        roles,
        sealed_secret: sealed,
        created_at: unix_now(),
        revoked_at: None,
        expires_at,
    };
    state.store.insert_access_key(scope, &record).await?;
    tracing::info!(tenant.id = %scope.tenant(), key.id = %record.id, user.id = %record.user_id,
        "access key created");
    Ok(CreatedAccessKey {
        record,
        access_key_id: new.access_key_id,
        secret_access_key: new.secret.expose().to_string(),
    })
}

async fn get_one(
    state: &AppState,
    scope: &TenantScope,
    key_id: &str,
) -> ApiResult<AccessKeyRecord> {
    state
        .store
        .get_access_key(scope, key_id)
        .await?
        .ok_or_else(|| ApiError::not_found("access key"))
}

async fn revoke(
    state: &AppState,
    scope: &TenantScope,
    key_id: &str,
    purge: bool,
) -> ApiResult<(Extension<AuditNote>, Json<Value>)> {
    let record = if purge {
        let record = get_one(state, scope, key_id).await?;
        if !state.store.delete_access_key(scope, key_id).await? {
            return Err(ApiError::not_found("access key"));
        }
        record
    } else {
        state
            .store
            .revoke_access_key(scope, key_id, unix_now())
            .await?
            .ok_or_else(|| ApiError::not_found("access key"))?
    };
    tracing::info!(tenant.id = %scope.tenant(), key.id = %key_id, purge, "access key revoked");
    let note = AuditNote {
        tenant: Some(scope.tenant().clone()),
        target: Some(key_id.to_string()),
        detail: json!({ "purged": purge }),
    };
    let mut body = serde_json::to_value(&record)
        .map_err(|e| ApiError::internal("rendering an access key", e))?;
    body["purged"] = json!(purge);
    Ok((Extension(note), Json(body)))
}

// ---- the operator's endpoints

async fn admin_list(
    op: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let scope = scope_of(&state, op, &id).await?;
    let keys = state.store.list_access_keys(&scope).await?;
    Ok(Json(json!({ "access_keys": keys })))
}

async fn admin_create(
    op: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<CreateAccessKey>,
) -> ApiResult<(StatusCode, Json<CreatedAccessKey>)> {
    let scope = scope_of(&state, op, &id).await?;
    let created = create(&state, &scope, Creator::Operator, req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn admin_get(
    op: Operator,
    State(state): State<AppState>,
    ApiPath((id, key_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<AccessKeyRecord>> {
    let scope = scope_of(&state, op, &id).await?;
    get_one(&state, &scope, &key_id).await.map(Json)
}

async fn admin_revoke(
    op: Operator,
    State(state): State<AppState>,
    ApiPath((id, key_id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<RevokeQuery>,
) -> ApiResult<(Extension<AuditNote>, Json<Value>)> {
    let scope = scope_of(&state, op, &id).await?;
    revoke(&state, &scope, &key_id, q.purge).await
}

// ---- a tenant-admin's endpoints

fn require_tenant_admin(ctx: &tenantry_core::TenantContext) -> ApiResult<()> {
    if ctx.has_role(TENANT_ADMIN_ROLE) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("managing access keys needs the `{TENANT_ADMIN_ROLE}` role"),
        ))
    }
}

async fn tenant_list(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
) -> ApiResult<Json<Value>> {
    require_tenant_admin(&ctx)?;
    let keys = state.store.list_access_keys(&ctx.scope()).await?;
    Ok(Json(json!({ "access_keys": keys })))
}

async fn tenant_create(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiJson(req): ApiJson<CreateAccessKey>,
) -> ApiResult<(StatusCode, Json<CreatedAccessKey>)> {
    require_tenant_admin(&ctx)?;
    let created = create(&state, &ctx.scope(), Creator::Tenant(&ctx), req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn tenant_get(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(key_id): ApiPath<String>,
) -> ApiResult<Json<AccessKeyRecord>> {
    let record = get_one(&state, &ctx.scope(), &key_id).await?;
    require_tenant_admin(&ctx)?;
    Ok(Json(record))
}

async fn tenant_revoke(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    ApiPath(key_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RevokeQuery>,
) -> ApiResult<(Extension<AuditNote>, Json<Value>)> {
    // Looked up before the role check, so a non-admin learns nothing more than a 404.
    get_one(&state, &ctx.scope(), &key_id).await?;
    require_tenant_admin(&ctx)?;
    revoke(&state, &ctx.scope(), &key_id, q.purge).await
}
