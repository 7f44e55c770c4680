//! Tenants' vault credentials, for the operator (`/v1/admin/tenants/{id}/credentials`).
//! Credentials are write-only: a response shows their metadata and versions, never a secret,
//! and a refused credential body is described without echoing its values.

use super::scope_of;
use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::{ErrorCode, UserId};
use tenantry_vault::{Credential, VaultError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/tenants/{id}/credentials", get(list_credentials))
        .route(
            "/v1/admin/tenants/{id}/credentials/{name}",
            get(get_credential)
                .put(put_credential)
                .delete(delete_credential),
        )
}

fn vault_error(e: VaultError) -> ApiError {
    let code = e.code();
    match code.blame() {
        tenantry_core::Blame::Caller => ApiError::new(code, e.to_string()),
        tenantry_core::Blame::Upstream => {
            tracing::warn!(reason = e.reason(), error = %e, "vault unavailable");
            ApiError::new(code, "the vault is unavailable; retry shortly")
        }
        tenantry_core::Blame::Internal => ApiError::internal("using the vault", e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialQuery {
    /// One user's credential rather than the tenant's own.
    #[serde(default)]
    user: Option<UserId>,
    /// For deletion: one version only.
    #[serde(default)]
    version: Option<i64>,
}

fn query(q: Result<Query<CredentialQuery>, QueryRejection>) -> ApiResult<CredentialQuery> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::invalid(format!("bad query: {}", e.body_text())))
}

/// Parses a credential body without ever putting one of its values in the error message:
/// serde's messages can quote a value ("invalid type: string \"...\""), so only those that
/// name fields or kinds are passed on.
fn parse_credential(body: &[u8]) -> ApiResult<Credential> {
    serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        let names_only = ["unknown field", "missing field", "unknown variant", "missing field `kind`"]
            .iter()
            .any(|p| text.starts_with(p));
        let message = if names_only {
            format!("the body is not a credential: {text}")
        } else {
            format!(
                "the body is not a credential (line {}, column {}): expected {{\"kind\": \"api_key\", \"value\": \"...\"}}, \
                 {{\"kind\": \"oauth2_client_credentials\", ...}} or {{\"kind\": \"token_exchange\", ...}}",
                e.line(),
                e.column()
            )
        };
        ApiError::new(ErrorCode::InvalidJson, message)
    })
}

async fn list_credentials(
    op: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let scope = scope_of(&state, op, &id).await?;
    let list = state
        .tools
        .vault()
        .list(&scope)
        .await
        .map_err(vault_error)?;
    Ok(Json(json!({ "credentials": list })))
}

async fn get_credential(
    op: Operator,
    State(state): State<AppState>,
    ApiPath((id, name)): ApiPath<(String, String)>,
    q: Result<Query<CredentialQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    let scope = scope_of(&state, op, &id).await?;
    let info = state
        .tools
        .vault()
        .info(&scope, &name, q.user.as_ref())
        .await
        .map_err(vault_error)?
        .ok_or_else(|| ApiError::not_found("credential"))?;
    Ok(Json(json!(info)))
}

/// Stores a credential, or rotates it (a new version; older ones stay until deleted).
async fn put_credential(
    op: Operator,
    State(state): State<AppState>,
    ApiPath((id, name)): ApiPath<(String, String)>,
    q: Result<Query<CredentialQuery>, QueryRejection>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let q = query(q)?;
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !is_json {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the credential as JSON with `Content-Type: application/json`",
        ));
    }
    let credential = parse_credential(&body)?;
    let scope = scope_of(&state, op, &id).await?;
    let info = state
        .tools
        .vault()
        .put(&scope, &name, q.user.as_ref(), &credential)
        .await
        .map_err(vault_error)?;
    tracing::info!(target: "audit", event = "credential_stored", tenant = %scope.tenant(),
        credential = %info.name, user = info.user.as_ref().map(UserId::as_str).unwrap_or(""),
        kind = %info.kind, version = info.version, "credential stored");
    let status = if info.versions.len() > 1 {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(json!(info))))
}

async fn delete_credential(
    op: Operator,
    State(state): State<AppState>,
    ApiPath((id, name)): ApiPath<(String, String)>,
    q: Result<Query<CredentialQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    let scope = scope_of(&state, op, &id).await?;
    let deleted = state
        .tools
        .vault()
        .delete(&scope, &name, q.user.as_ref(), q.version)
        .await
        .map_err(vault_error)?;
    if deleted == 0 {
        return Err(ApiError::not_found("credential"));
    }
    tracing::info!(target: "audit", event = "credential_deleted", tenant = %scope.tenant(),
        credential = %name, versions = deleted, "credential deleted");
    Ok(Json(json!({ "deleted": deleted })))
}
