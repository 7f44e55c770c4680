//! The key cache of an issuer whose keys live at a URL (OIDC discovery or a JWKS URL).
//!
//! Keys are fetched lazily on first use, kept for `ttl`, and refreshed early when a token names
//! a kid we do not have, but at most once per `min_refresh_interval`, so a flood of tokens with
//! made-up kids cannot turn us into a load generator against the identity provider. A fetch is
//! single-flight: concurrent requests wait on one fetch instead of starting their own. Failed
//! fetches back off exponentially (doubling from `min_refresh_interval` up to `max_backoff`).
//! A failed refresh keeps serving the keys we had; if we never had any, the request is refused
//! with `KeysUnavailable` (fail closed). Only URLs from configuration (and the discovery
//! document they point to) are ever fetched, never a URL taken from a token (`jku`, `x5u`).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::AuthError;
use crate::keys::{Alg, FindError, JwksError, KeySet, VerifyKey};

/// How the remote key caches behave; shared by all issuers of a `Verifier`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefreshPolicy {
    pub(crate) ttl: Duration,
    pub(crate) min_refresh_interval: Duration,
    pub(crate) max_backoff: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            min_refresh_interval: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Response bodies larger than this are refused; real JWKS documents are a few KiB.
const MAX_BODY_BYTES: usize = 512 * 1024;

/// Why an issuer's keys could not be fetched; the message goes to the log and to
/// `AuthError::KeysUnavailable`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum FetchError {
    #[error("no JWKS or discovery URL is configured")]
    NoUrl,
    /// The request failed before a status arrived; `detail` is the chain of causes.
    #[error("GET {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("GET {url}: HTTP {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("GET {url}: the response is larger than {} bytes", MAX_BODY_BYTES)]
    TooLarge { url: String },
    #[error("GET {url}: the response is not JSON")]
    NotJson { url: String },
    #[error("{url}: {source}")]
    NotAJwks { url: String, source: JwksError },
    #[error("{url}: the JWKS holds no usable signing key")]
    NoUsableKey { url: String },
    #[error(
        "{discovery}: the discovery document names issuer {found:?}, but the configuration expects {expected:?}"
    )]
    WrongIssuer {
        discovery: String,
        found: String,
        expected: String,
    },
    #[error("{discovery}: the discovery document has no jwks_uri")]
    NoJwksUri { discovery: String },
    #[error("{discovery}: jwks_uri is not an http(s) URL")]
    BadJwksUri { discovery: String },
}

#[derive(Clone)]
struct Snapshot {
    keys: Arc<KeySet>,
    fetched_at: Instant,
}

#[derive(Default)]
struct RefreshState {
    /// The `jwks_uri` found through discovery, kept until a fetch from it fails.
    discovered_jwks_url: Option<String>,
    last_attempt: Option<Instant>,
    failures: u32,
    retry_after: Option<Instant>,
    last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    NeverFetched,
    Stale,
    UnknownKid,
}

pub(crate) struct RemoteKeys {
    issuer_name: String,
    expected_issuer: String,
    discovery_url: Option<String>,
    jwks_url: Option<String>,
    snapshot: RwLock<Option<Snapshot>>,
    refresh: tokio::sync::Mutex<RefreshState>,
}

impl RemoteKeys {
    pub(crate) fn new(
        issuer_name: String,
        expected_issuer: String,
        discovery_url: Option<String>,
        jwks_url: Option<String>,
    ) -> Self {
        Self {
            issuer_name,
            expected_issuer,
            discovery_url,
            jwks_url,
            snapshot: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
        }
    }

    fn snapshot(&self) -> Option<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn install(&self, keys: KeySet) {
        *self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Snapshot {
            keys: Arc::new(keys),
            fetched_at: Instant::now(),
        });
    }

    /// The key for a token's kid and algorithm, fetching or refreshing keys as the policy allows.
    pub(crate) async fn key(
        &self,
        http: &reqwest::Client,
        policy: &RefreshPolicy,
        kid: Option<&str>,
        alg: Alg,
    ) -> Result<Arc<VerifyKey>, AuthError> {
        if let Some(snap) = self.snapshot()
            && snap.keys.has_kid(kid)
        {
            if snap.fetched_at.elapsed() < policy.ttl {
                return self.find(&snap.keys, kid, alg);
            }
            // Stale but usable: refresh if nobody else is doing it, otherwise serve what we have.
            if let Ok(mut state) = self.refresh.try_lock() {
                let still_stale = self
                    .snapshot()
                    .is_none_or(|s| s.fetched_at.elapsed() >= policy.ttl);
                if still_stale {
                    self.maybe_fetch(&mut state, http, policy, Why::Stale).await;
                }
            }
            let latest = self.snapshot().unwrap_or(snap);
            return self.find(&latest.keys, kid, alg);
        }

        let mut state = self.refresh.lock().await;
        let why = match self.snapshot() {
            // Another request fetched while we waited for the lock.
            Some(snap) if snap.keys.has_kid(kid) => return self.find(&snap.keys, kid, alg),
            Some(_) => Why::UnknownKid,
            None => Why::NeverFetched,
        };
        self.maybe_fetch(&mut state, http, policy, why).await;
        match self.snapshot() {
            Some(snap) => self.find(&snap.keys, kid, alg),
            None => Err(AuthError::KeysUnavailable {
                issuer: self.issuer_name.clone(),
                detail: state
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "the keys have not been fetched yet".into()),
            }),
        }
    }

    fn find(
        &self,
        keys: &KeySet,
        kid: Option<&str>,
        alg: Alg,
    ) -> Result<Arc<VerifyKey>, AuthError> {
        keys.find(kid, alg).map_err(|e| match e {
            FindError::NoKey => AuthError::UnknownKey {
                issuer: self.issuer_name.clone(),
            },
            FindError::Mismatch => AuthError::KeyMismatch {
                issuer: self.issuer_name.clone(),
                alg: alg.as_str().to_string(),
            },
        })
    }

    async fn maybe_fetch(
        &self,
        state: &mut RefreshState,
        http: &reqwest::Client,
        policy: &RefreshPolicy,
        why: Why,
    ) {
        let now = Instant::now();
        if state.retry_after.is_some_and(|t| now < t) {
            return;
        }
        if why == Why::UnknownKid
            && state
                .last_attempt
                .is_some_and(|t| now.duration_since(t) < policy.min_refresh_interval)
        {
            return;
        }
        state.last_attempt = Some(now);
        match self.fetch(state, http).await {
            Ok(keys) => {
                tracing::info!(
                    issuer = %self.issuer_name,
                    keys = keys.len(),
                    reason = ?why,
                    "fetched issuer signing keys"
                );
                self.install(keys);
                state.failures = 0;
                state.retry_after = None;
                state.last_error = None;
            }
            Err(detail) => {
                state.failures = state.failures.saturating_add(1);
                let factor = 1u32 << (state.failures - 1).min(16);
                let backoff = policy
                    .min_refresh_interval
                    .saturating_mul(factor)
                    .min(policy.max_backoff);
                state.retry_after = Some(now + backoff);
                tracing::warn!(
                    issuer = %self.issuer_name,
                    error = %detail,
                    failures = state.failures,
                    retry_in_ms = backoff.as_millis() as u64,
                    keeping_cached_keys = self.snapshot().is_some(),
                    "cannot fetch issuer signing keys"
                );
                state.last_error = Some(detail.to_string());
            }
        }
    }

    async fn fetch(
        &self,
        state: &mut RefreshState,
        http: &reqwest::Client,
    ) -> Result<KeySet, FetchError> {
        let url = match (
            &self.jwks_url,
            &state.discovered_jwks_url,
            &self.discovery_url,
        ) {
            (Some(url), _, _) | (None, Some(url), _) => url.clone(),
            (None, None, Some(discovery)) => {
                let url = self.discover(http, discovery).await?;
                state.discovered_jwks_url = Some(url.clone());
                url
            }
            (None, None, None) => return Err(FetchError::NoUrl),
        };
        let result = get_json(http, &url).await.and_then(|doc| {
            let keys = KeySet::from_jwks(&doc).map_err(|source| FetchError::NotAJwks {
                url: url.clone(),
                source,
            })?;
            if keys.is_empty() {
                return Err(FetchError::NoUsableKey { url: url.clone() });
            }
            Ok(keys)
        });
        if result.is_err() {
            // The jwks_uri may have moved; ask the discovery document again next time.
            state.discovered_jwks_url = None;
        }
        result
    }

    async fn discover(
        &self,
        http: &reqwest::Client,
        discovery: &str,
    ) -> Result<String, FetchError> {
        let doc = get_json(http, discovery).await?;
        let issuer = doc.get("issuer").and_then(Value::as_str);
        if issuer != Some(self.expected_issuer.as_str()) {
            return Err(FetchError::WrongIssuer {
                discovery: discovery.to_owned(),
                found: issuer.unwrap_or("(none)").to_owned(),
                expected: self.expected_issuer.clone(),
            });
        }
        let jwks_uri =
            doc.get("jwks_uri")
                .and_then(Value::as_str)
                .ok_or_else(|| FetchError::NoJwksUri {
                    discovery: discovery.to_owned(),
                })?;
        match url::Url::parse(jwks_uri) {
            Ok(u) if matches!(u.scheme(), "https" | "http") => Ok(jwks_uri.to_string()),
            Ok(_) | Err(_) => Err(FetchError::BadJwksUri {
                discovery: discovery.to_owned(),
            }),
        }
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, FetchError> {
    let transport = |e: reqwest::Error| FetchError::Transport {
        url: url.to_owned(),
        detail: error_chain(&e),
    };
    let mut response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(FetchError::TooLarge {
                url: url.to_owned(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|_| FetchError::NotJson {
        url: url.to_owned(),
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
