//! Tenant API keys, shared by the operator's endpoints (`/v1/admin/tenants/{id}/api-keys`) and
//! the tenant's own (`/v1/api-keys`). Every store call here is scoped to one tenant.

use serde::{Deserialize, Serialize};
use tenantry_core::{TenantScope, UserId, unix_now};
use tenantry_identity::generate_api_key;
use tenantry_store::{ApiKeyRecord, Store};

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    #[serde(default)]
    pub name: Option<String>,
    /// The user the key acts as; defaults to `apikey:{key id}`.
    #[serde(default)]
    pub user: Option<UserId>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
}

/// The answer to a create: the record plus the key itself, shown this once.
#[derive(Debug, Serialize)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub record: ApiKeyRecord,
    pub key: String,
}

fn check_roles(roles: &[String]) -> ApiResult<()> {
    if roles.len() > 32 {
        return Err(ApiError::invalid("at most 32 roles per key"));
    }
    for r in roles {
        if r.is_empty() || r.len() > 64 || !r.chars().all(|c| c.is_ascii_graphic()) {
            return Err(ApiError::invalid(format!(
                "role {r:?} is not valid: use 1 to 64 printable ASCII characters without spaces"
            )));
        }
    }
    Ok(())
}

pub async fn create(
    store: &Store,
    scope: &TenantScope,
    req: CreateApiKey,
) -> ApiResult<CreatedApiKey> {
    let name = req.name.unwrap_or_else(|| "default".to_string());
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name must be 1 to 100 characters without control characters",
        ));
    }
    check_roles(&req.roles)?;
    let expires_at = match req.expires_in_seconds {
        None => None,
        Some(s) if (60..=10 * 365 * 24 * 3600).contains(&s) => Some(unix_now() + s as i64),
        Some(_) => {
            return Err(ApiError::invalid(
                "expires_in_seconds must be between 60 and 315360000 (ten years)",
            ));
        }
    };
    let secret = generate_api_key(scope.tenant());
    let user = match req.user {
        Some(u) => u,
        None => UserId::new(format!("apikey:{}", secret.key_id))
            .map_err(|e| ApiError::internal("naming the key's user", e))?,
    };
    let record = ApiKeyRecord {
        id: secret.key_id.clone(),
        tenant_id: scope.tenant().clone(),
        name,
        user_id: user,
        roles: req.roles,
        prefix: secret.prefix.clone(),
        secret_hash: secret.secret_hash.clone(),
        created_at: unix_now(),
        revoked_at: None,
        expires_at,
    };
    store.insert_api_key(scope, &record).await?;
    tracing::info!(tenant.id = %scope.tenant(), key.id = %record.id, "api key created");
    Ok(CreatedApiKey {
        record,
        key: secret.full_key,
    })
}

pub async fn get(store: &Store, scope: &TenantScope, key_id: &str) -> ApiResult<ApiKeyRecord> {
    store
        .get_api_key(scope, key_id)
        .await?
        .ok_or_else(|| ApiError::not_found("api key"))
}

pub async fn revoke(store: &Store, scope: &TenantScope, key_id: &str) -> ApiResult<ApiKeyRecord> {
    let record = store
        .revoke_api_key(scope, key_id, unix_now())
        .await?
        .ok_or_else(|| ApiError::not_found("api key"))?;
    tracing::info!(tenant.id = %scope.tenant(), key.id = %key_id, "api key revoked");
    Ok(record)
}
