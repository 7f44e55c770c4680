//! Tokens from token endpoints: OAuth2 client credentials (RFC 6749 section 4.4) and token
//! exchange (RFC 8693), with a cache that keeps each token until shortly before it expires.
//!
//! Each cache entry has its own async lock, so concurrent calls that need the same token make
//! one request (no stampede on the token endpoint). Entries are keyed by tenant, credential,
//! user and credential version (a rotation starts afresh) and, for an exchange, by a hash of
//! the subject and actor tokens (another user's token never gets this user's exchange).
//!
//! This module must never log, cache unhashed, or put into an error a token or secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::credential::ClientAuth;
use crate::{SecretString, VaultError};

/// RFC 8693 grant type.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 token type of a JWT.
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 8693 token type of an OAuth2 access token.
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// How long a token without `expires_in` is kept.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// A token is refreshed this long before it expires (or a tenth of its lifetime, if shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// The largest token response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Past this many entries, expired ones are swept on insert.
const SWEEP_AT: usize = 10_000;

/// The caller's tokens for an exchange: the user's token (subject) and the agent's identity
/// (actor, e.g. its workload token). `Debug` redacts them.
#[derive(Debug, Clone)]
pub struct CallerTokens {
    pub subject_token: Option<SecretString>,
    /// `urn:ietf:params:oauth:token-type:jwt` unless set otherwise.
    pub subject_token_type: String,
    pub actor_token: Option<SecretString>,
    pub actor_token_type: String,
}

impl CallerTokens {
    /// No tokens: enough for API keys and client credentials.
    pub fn none() -> Self {
        Self::new(None, None)
    }

    /// JWTs for both.
    pub fn new(subject_token: Option<SecretString>, actor_token: Option<SecretString>) -> Self {
        Self {
            subject_token,
            subject_token_type: TOKEN_TYPE_JWT.to_owned(),
            actor_token,
            actor_token_type: TOKEN_TYPE_JWT.to_owned(),
        }
    }

    /// A hash of both tokens and their types, for cache keys.
    fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for (t, ty) in [
            (&self.subject_token, &self.subject_token_type),
            (&self.actor_token, &self.actor_token_type),
        ] {
            h.update(ty.as_bytes());
            h.update([0]);
            match t {
                Some(t) => {
                    h.update([1]);
                    h.update(t.expose().as_bytes());
                }
                None => h.update([0]),
            }
            h.update([0]);
        }
        h.finalize().into()
    }
}

/// What to ask a token endpoint for.
pub(crate) enum Grant<'a> {
    ClientCredentials {
        scopes: &'a [String],
        audience: Option<&'a str>,
    },
    Exchange {
        tokens: &'a CallerTokens,
        audience: Option<&'a str>,
        resource: Option<&'a str>,
        scopes: &'a [String],
        requested_token_type: Option<&'a str>,
    },
}

/// A token endpoint and the client that authenticates to it.
pub(crate) struct Endpoint<'a> {
    /// The credential's name, for errors.
    pub name: &'a str,
    pub token_url: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a SecretString,
    pub client_auth: ClientAuth,
}

/// Identifies one cached token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    pub tenant: String,
    pub name: String,
    pub user: String,
    pub version: i64,
    pub tokens: [u8; 32],
}

impl CacheKey {
    pub(crate) fn new(
        tenant: &str,
        name: &str,
        user: &str,
        version: i64,
        tokens: Option<&CallerTokens>,
    ) -> Self {
        Self {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            user: user.to_owned(),
            version,
            tokens: tokens.map(CallerTokens::fingerprint).unwrap_or([0; 32]),
        }
    }
}

#[derive(Debug)]
struct Cached {
    token: SecretString,
    refresh_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Tokens by cache key.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<CacheKey, Slot>>,
}

impl TokenCache {
    fn slot(&self, key: CacheKey) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.len() >= SWEEP_AT {
            let now = Instant::now();
            // Drop entries nobody waits on whose token is stale or missing.
            slots.retain(|_, slot| match slot.try_lock() {
                Ok(guard) => guard.as_ref().is_some_and(|c| c.refresh_at > now),
                Err(_) => true,
            });
        }
        Arc::clone(slots.entry(key).or_default())
    }

    /// The cached token for `key`, or a new one from `fetch` (one fetch at a time per key).
    pub(crate) async fn get_or_fetch<F, Fut>(
        &self,
        key: CacheKey,
        fetch: F,
    ) -> Result<SecretString, VaultError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(SecretString, Option<u64>), VaultError>>,
    {
        let slot = self.slot(key);
        let mut guard = slot.lock().await;
        if let Some(c) = guard.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let fetched_at = Instant::now();
        let (token, expires_in) = fetch().await?;
        let lifetime = expires_in.map_or(DEFAULT_LIFETIME, Duration::from_secs);
        let margin = REFRESH_MARGIN.min(lifetime / 10);
        *guard = Some(Cached {
            token: token.clone(),
            refresh_at: fetched_at + lifetime.saturating_sub(margin),
        });
        Ok(token)
    }

    /// Forgets every token of one tenant.
    pub(crate) fn forget_tenant(&self, tenant: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|k, _| k.tenant != tenant);
    }

    /// Forgets every token of one credential (after a rotation or deletion).
    pub(crate) fn forget(&self, tenant: &str, name: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|k, _| !(k.tenant == tenant && k.name == name));
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
}

/// The form body of a token request and its `Authorization` header, if any. Not async: the
/// form serializer must not live across an await (it is not `Send`).
fn request_parts(
    endpoint: &Endpoint<'_>,
    grant: &Grant<'_>,
) -> Result<(String, Option<Zeroizing<String>>), VaultError> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    match grant {
        Grant::ClientCredentials { scopes, audience } => {
            form.append_pair("grant_type", "client_credentials");
            if !scopes.is_empty() {
                form.append_pair("scope", &scopes.join(" "));
            }
            if let Some(a) = audience {
                form.append_pair("audience", a);
            }
        }
        Grant::Exchange {
            tokens,
            audience,
            resource,
            scopes,
            requested_token_type,
        } => {
            let Some(subject) = &tokens.subject_token else {
                return Err(VaultError::SubjectTokenRequired {
                    name: endpoint.name.to_owned(),
                });
            };
            form.append_pair("grant_type", TOKEN_EXCHANGE_GRANT);
            form.append_pair("subject_token", subject.expose());
            form.append_pair("subject_token_type", &tokens.subject_token_type);
            if let Some(actor) = &tokens.actor_token {
                form.append_pair("actor_token", actor.expose());
                form.append_pair("actor_token_type", &tokens.actor_token_type);
            }
            if let Some(a) = audience {
                form.append_pair("audience", a);
            }
            if let Some(r) = resource {
                form.append_pair("resource", r);
            }
            if !scopes.is_empty() {
                form.append_pair("scope", &scopes.join(" "));
            }
            if let Some(t) = requested_token_type {
                form.append_pair("requested_token_type", t);
            }
        }
    }
    let mut authorization = None;
    match endpoint.client_auth {
        ClientAuth::Basic => {
            // RFC 6749 2.3.1: the id and secret are form-encoded before Basic encoding.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = Zeroizing::new(format!(
                "{}:{}",
                enc(endpoint.client_id),
                enc(endpoint.client_secret.expose())
            ));
            let value = Zeroizing::new(format!("Basic {}", STANDARD.encode(pair.as_bytes())));
            authorization = Some(value);
        }
        ClientAuth::Post => {
            form.append_pair("client_id", endpoint.client_id);
            form.append_pair("client_secret", endpoint.client_secret.expose());
        }
    }
    Ok((form.finish(), authorization))
}

/// Asks the token endpoint for a token; returns it with its `expires_in`.
pub(crate) async fn request(
    http: &reqwest::Client,
    endpoint: &Endpoint<'_>,
    grant: &Grant<'_>,
) -> Result<(SecretString, Option<u64>), VaultError> {
    let unavailable = |detail: String| VaultError::TokenEndpointUnavailable {
        name: endpoint.name.to_owned(),
        detail,
    };
    let (body, authorization) = request_parts(endpoint, grant)?;
    let mut req = http
        .post(endpoint.token_url)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
    if let Some(value) = &authorization {
        req = req.header(reqwest::header::AUTHORIZATION, value.as_str());
    }
    let mut resp = req
        .body(body)
        .send()
        .await
        .map_err(|e| unavailable(describe(&e)))?;
    let status = resp.status();
    let mut bytes = Zeroizing::new(Vec::new());
    while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(describe(&e)))? {
        if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(unavailable(format!(
                "the response is larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    if status.is_success() {
        let parsed: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|_| unavailable("the response is not a token response".into()))?;
        if parsed.access_token.is_empty() {
            return Err(unavailable("the response has an empty access_token".into()));
        }
        return Ok((parsed.access_token, parsed.expires_in));
    }
    if status.is_client_error() {
        // Only a well-formed OAuth2 error code is repeated, never free text.
        let error = serde_json::from_slice::<ErrorResponse>(&bytes)
            .ok()
            .map(|e| e.error)
            .filter(|e| {
                !e.is_empty()
                    && e.len() <= 64
                    && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            });
        return Err(VaultError::TokenRefused {
            name: endpoint.name.to_owned(),
            status: status.as_u16(),
            error,
        });
    }
    Err(unavailable(format!("HTTP {}", status.as_u16())))
}

/// A reqwest error without anything but its kind and the URL (which holds no secret: secrets
/// travel in the body and the Authorization header).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "the request failed".to_owned()
    }
}
