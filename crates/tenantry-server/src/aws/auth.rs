//! SigV4 as a credential of the common authentication.
//!
//! `verify_signed` is a layer of the whole application: a request whose `Authorization` is a
//! SigV4 signature has its body read (up to the largest body limit), its access key looked up
//! within the tenant the key id names, the secret opened by the vault, and the signature
//! recomputed. The outcome, a verified `Claimed` or the refusal, is left in the request's
//! extensions, where `auth::authenticate` takes it instead of a bearer credential; so every
//! tenant route accepts SigV4, and the AWS routes answer a refusal with the AWS error.
//!
//! On a sandbox's bridge (which leaves a `BridgeSigner` in the request), a signature made with
//! the sandbox's dummy key id is verified with the sandbox's secret, and the bound session's
//! workload token takes its place.

use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tenantry_core::{CredentialKind, ErrorCode, SystemGrant, TenantId, TenantScope};
use tenantry_store::{AccessKeyRecord, Store};
use tenantry_vault::{SecretString, Vault};

use super::error::{AwsError, AwsErrorKind};
use super::keys::{self, SANDBOX_ACCESS_KEY_ID, SEAL_PURPOSE};
use super::sigv4::{self, Authorization, Received};
use crate::auth::Claimed;
use crate::error::ApiError;
use crate::state::AppState;

/// The outcome of a request's SigV4 signature, set by `verify_signed`.
#[derive(Debug, Clone)]
pub enum SigV4Outcome {
    Verified(Claimed),
    Refused(AwsError),
}

impl SigV4Outcome {
    /// The claimed identity, or the refusal as our own error (for our own routes).
    pub fn claimed(&self) -> Result<Claimed, ApiError> {
        match self {
            Self::Verified(c) => Ok(c.clone()),
            Self::Refused(e) => Err(ApiError::new(e.code, e.message.clone())),
        }
    }
}

/// The access keys' verifier: the store and the vault, and the grant that lets it open the
/// key of the one tenant a presented key id names (before any caller of that tenant exists).
#[derive(Debug, Clone)]
pub struct AccessKeys {
    store: Store,
    vault: Vault,
    system: SystemGrant,
}

impl AccessKeys {
    pub fn new(store: Store, vault: Vault, system: SystemGrant) -> Self {
        Self {
            store,
            vault,
            system,
        }
    }

    /// The vault that seals new keys' secrets.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The usable key `access_key_id` names, with its secret; `None` for anything else.
    async fn lookup(
        &self,
        tenant: &TenantId,
        access_key_id: &str,
    ) -> Result<Option<(AccessKeyRecord, SecretString)>, AwsError> {
        let Some(record) = self.store.usable_access_key(tenant, access_key_id).await? else {
            return Ok(None);
        };
        let scope = TenantScope::for_operator(self.system, tenant.clone());
        let secret = self
            .vault
            .open_secret(&scope, SEAL_PURPOSE, &record.id, &record.sealed_secret)
            .await
            .map_err(|e| AwsError::from(ApiError::internal("opening an access key's secret", e)))?;
        Ok(Some((record, secret)))
    }
}

/// The largest body a signed request may have: the largest limit of any route.
fn body_limit(state: &AppState) -> usize {
    let server = &state.config.server;
    server.max_body_bytes.max(server.model_max_body_bytes)
}

fn authorization(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sigv4::is_sigv4(v))
}

/// Reads the body of a signed request; the answer to send instead if it is too large.
async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, Response> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        AwsError::new(
            AwsErrorKind::Validation,
            ErrorCode::PayloadTooLarge,
            format!("the signed request's body is larger than {limit} bytes"),
        )
        .into_response()
    })
}

fn received<'a>(parts: &'a Parts, body: &'a [u8]) -> Received<'a> {
    Received {
        method: parts.method.as_str(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
        headers: &parts.headers,
        body,
    }
}

/// Layer of the application: verifies SigV4-signed requests (see the module's doc).
pub async fn verify_signed(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let Some(value) = authorization(&parts).map(str::to_string) else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let body = match read_body(body, body_limit(&state)).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let sandbox = sigv4::parse_authorization(&value)
        .ok()
        .filter(|a| a.access_key_id == SANDBOX_ACCESS_KEY_ID);
    let outcome = match sandbox {
        Some(auth) => match bridge_signed(&mut parts, &auth, &body) {
            Ok(()) => None,
            Err(e) => Some(Err(e)),
        },
        None => Some(check(&state, &parts, &value, &body).await),
    };
    match outcome {
        None => {}
        Some(Ok(claimed)) => {
            parts.extensions.insert(SigV4Outcome::Verified(claimed));
        }
        Some(Err(e)) => {
            tracing::info!(reason = %e.message, "SigV4 signature refused");
            parts.extensions.insert(SigV4Outcome::Refused(e));
        }
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

async fn check(
    state: &AppState,
    parts: &Parts,
    value: &str,
    body: &[u8],
) -> Result<Claimed, AwsError> {
    let auth = sigv4::parse_authorization(value)?;
    let req = received(parts, body);
    let now = SystemTime::now();
    let found = match keys::tenant_of(&auth.access_key_id) {
        None => None,
        Some(tenant) => {
            // The tenant's uid is read before the key: a key checked after its tenant was
            // deleted and created again fails to match the old uid.
            match state.registry.tenant(&state.store, &tenant).await? {
                None => None,
                Some(t) => state
                    .access_keys
                    .lookup(&tenant, &auth.access_key_id)
                    .await?
                    .map(|found| (t.uid.clone(), found)),
            }
        }
    };
    let Some((uid, (record, secret))) = found else {
        // The same work for an unknown key, so timing does not tell which ids exist.
        let _ = sigv4::verify(&req, &auth, "unknown-key-secret-unknown-key-0000000", now);
        return Err(AwsError::unrecognized_client());
    };
    sigv4::verify(&req, &auth, secret.expose(), now)?;
    Ok(Claimed {
        tenant: record.tenant_id,
        tenant_uid: Some(uid),
        user: record.user_id,
        roles: record.roles,
        credential: CredentialKind::AccessKey { key_id: record.id },
    })
}

/// Set by a sandbox's bridge on a SigV4-signed request: the sandbox's secret, and the bound
/// session's workload token (`None` before the sandbox is bound).
#[derive(Clone)]
pub struct BridgeSigner {
    pub secret: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for BridgeSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BridgeSigner(<redacted>)")
    }
}

/// A request signed with the sandbox's key id on its bridge: verified with the sandbox's
/// secret, and then carrying the bound session's workload token instead of the signature
/// (`authenticate` verifies that token as usual). Anywhere else that key id is unknown.
fn bridge_signed(parts: &mut Parts, auth: &Authorization, body: &[u8]) -> Result<(), AwsError> {
    let Some(signer) = parts.extensions.remove::<BridgeSigner>() else {
        return Err(AwsError::unrecognized_client());
    };
    sigv4::verify(
        &received(parts, body),
        auth,
        &signer.secret,
        SystemTime::now(),
    )?;
    let bearer = signer
        .token
        .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
        .ok_or_else(|| {
            AwsError::new(
                AwsErrorKind::AccessDenied,
                ErrorCode::Unavailable,
                "this sandbox is not bound to a session yet",
            )
        })?;
    parts.headers.insert(AUTHORIZATION, bearer);
    Ok(())
}
