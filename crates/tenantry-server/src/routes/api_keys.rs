//! Tenant API keys, shared by the operator's endpoints (`/v1/admin/tenants/{id}/api-keys`) and
//! the tenant's own (`/v1/api-keys`). Every store call here is scoped to one tenant.
//!
//! A key never lets its creator act as someone else: it is bound to a user only by that user
//! (or by the operator); otherwise it is a service principal `svc:NAME`, which no identity
//! provider's token can name and which therefore shares no user's sessions. Its roles are the
//! tenant roles the platform defines, and a tenant caller grants only roles it holds.

use serde::{Deserialize, Serialize};
use tenantry_core::{ErrorCode, TenantContext, TenantScope, UserId, unix_now};
use tenantry_identity::generate_api_key;
use tenantry_store::{ApiKeyRecord, Store};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The role a tenant principal needs to manage its tenant's API keys.
pub const TENANT_ADMIN_ROLE: &str = "tenant-admin";

/// Every role the platform gives meaning to within a tenant; a key carries no other. (A JWT's
/// roles are the identity provider's and are passed on as they are, e.g. to Cedar policies.)
pub const TENANT_ROLES: &[&str] = &[TENANT_ADMIN_ROLE];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    #[serde(default)]
    pub name: Option<String>,
    /// The user the key acts as: the caller themself, or any user when the operator asks;
    /// left out, the key is the service principal `svc:{name}`.
    #[serde(default)]
    pub user: Option<UserId>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
}

/// What a new credential (an API key, or an access key pair) is granted, checked.
pub(crate) struct Grant {
    pub name: String,
    pub roles: Vec<String>,
    pub user: UserId,
    pub expires_at: Option<i64>,
}

impl CreateApiKey {
    /// Checks the request against what `creator` may grant: the name, the roles (no more than
    /// the creator holds), the user (see `key_user`) and the lifetime.
    pub(crate) fn grant(self, creator: Creator<'_>) -> ApiResult<Grant> {
        let name = self.name.unwrap_or_else(|| "default".to_string());
        // ':' is kept for the platform's own service principals (`PLATFORM_STAND_IN`).
        if name.is_empty()
            || name.chars().count() > 100
            || name.chars().any(|c| c.is_control() || c == ':')
        {
            return Err(ApiError::invalid(
                "name must be 1 to 100 characters without control characters or ':'",
            ));
        }
        let roles = check_roles(creator, &self.roles)?;
        let user = key_user(creator, self.user, &name)?;
        let expires_at = match self.expires_in_seconds {
            None => None,
            Some(s) if (60..=10 * 365 * 24 * 3600).contains(&s) => Some(unix_now() + s as i64),
            Some(_) => {
                return Err(ApiError::invalid(
                    "expires_in_seconds must be between 60 and 315360000 (ten years)",
                ));
            }
        };
        Ok(Grant {
            name,
            roles,
            user,
            expires_at,
        })
    }
}

/// Who asks for a key.
#[derive(Debug, Clone, Copy)]
pub enum Creator<'a> {
    /// The operator (admin key): may bind a key to any user of the tenant.
    Operator,
    /// A principal of the tenant: may bind a key only to itself, with roles it holds.
    Tenant(&'a TenantContext),
}

/// The answer to a create: the record plus the key itself, shown this once.
#[derive(Debug, Serialize)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub record: ApiKeyRecord,
    pub key: String,
}

pub(crate) fn check_roles(creator: Creator<'_>, roles: &[String]) -> ApiResult<Vec<String>> {
    let mut granted: Vec<String> = Vec::new();
    for r in roles {
        if !TENANT_ROLES.contains(&r.as_str()) {
            let shown: String = r.chars().take(64).collect();
            return Err(ApiError::invalid(format!(
                "role {shown:?} does not exist; a key may carry: {}",
                TENANT_ROLES.join(", ")
            )));
        }
        if let Creator::Tenant(ctx) = creator
            && !ctx.has_role(r)
        {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("a key can carry only roles its creator holds; you do not hold {r:?}"),
            ));
        }
        if !granted.contains(r) {
            granted.push(r.clone());
        }
    }
    Ok(granted)
}

/// The user the key acts as: the one asked for if the creator may bind it, else the service
/// principal named like the key.
pub(crate) fn key_user(
    creator: Creator<'_>,
    asked: Option<UserId>,
    name: &str,
) -> ApiResult<UserId> {
    match (asked, creator) {
        (None, _) => UserId::service(name).map_err(|e| ApiError::invalid(e.to_string())),
        (Some(user), Creator::Operator) => Ok(user),
        (Some(user), Creator::Tenant(ctx)) if user == ctx.user_id => Ok(user),
        (Some(_), Creator::Tenant(ctx)) => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "a key can be bound only to its creator's own user ({}) or by the operator; \
                 leave `user` out for a service key (svc:NAME)",
                ctx.user_id
            ),
        )),
    }
}

pub async fn create(
    store: &Store,
    scope: &TenantScope,
    creator: Creator<'_>,
    req: CreateApiKey,
) -> ApiResult<CreatedApiKey> {
    let Grant {
        name,
        roles,
        user,
        expires_at,
    } = req.grant(creator)?;
    let secret = generate_api_key(scope.tenant());
    let record = ApiKeyRecord {
        id: secret.key_id.clone(),
        tenant_id: scope.tenant().clone(),
        name,
        user_id: user,
        roles,
        prefix: secret.prefix.clone(),
        secret_hash: secret.secret_hash.clone(),
        created_at: unix_now(),
        revoked_at: None,
        expires_at,
    };
    store.insert_api_key(scope, &record).await?;
    tracing::info!(tenant.id = %scope.tenant(), key.id = %record.id, user.id = %record.user_id,
        "api key created");
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

/// Revokes a key in the store and forgets it here at once (other replicas within
/// `REGISTRY_TTL`).
pub async fn revoke(
    state: &AppState,
    scope: &TenantScope,
    key_id: &str,
) -> ApiResult<ApiKeyRecord> {
    let record = state
        .store
        .revoke_api_key(scope, key_id, unix_now())
        .await?
        .ok_or_else(|| ApiError::not_found("api key"))?;
    state.api_keys.forget_key(scope.tenant(), key_id);
    tracing::info!(tenant.id = %scope.tenant(), key.id = %key_id, "api key revoked");
    Ok(record)
}
