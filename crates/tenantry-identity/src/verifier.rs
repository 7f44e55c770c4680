//! JWT verification against the configured issuers and the development issuer.
//!
//! The issuer is chosen by the token's (unverified) `iss` claim; from then on everything is
//! checked against that issuer's configuration only: algorithm allowlist, key (by kid, bound to
//! its key type), signature, `exp` and `nbf` with leeway, `aud`, and the tenant, user and roles
//! claims. Claims are read only after the signature verifies. `alg: none` is always refused,
//! URLs in token headers are never followed, and nothing here logs a token.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use tenantry_core::{CredentialKind, Principal, SERVICE_PRINCIPAL_PREFIX, TenantId, UserId};

use crate::config::{ClaimMapping, IssuerConfig};
use crate::dev::{DEV_ISSUER_NAME, DevIssuer};
use crate::keys::{Alg, FindError, KeySet, VerifyKey};
use crate::recent::{self, RecentTokens, Remembered};
use crate::remote::{RefreshPolicy, RemoteKeys};
use crate::{AuthError, IdentityError};

/// Longer bearer tokens are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// A token with more roles than this is refused rather than truncated.
const MAX_ROLES: usize = 256;
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// What a verified token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The configured name of the issuer (`dev` for the development issuer).
    pub issuer_name: String,
    pub tenant: TenantId,
    pub user: UserId,
    pub roles: Vec<String>,
    /// `exp`, in seconds since the Unix epoch.
    pub expires_at: i64,
}

impl VerifiedToken {
    /// The principal this token proves.
    pub fn into_principal(self) -> Principal {
        Principal::TenantUser {
            tenant: self.tenant,
            user: self.user,
            roles: self.roles,
            credential: CredentialKind::Jwt {
                issuer: self.issuer_name,
            },
        }
    }
}

enum KeySource {
    Static(KeySet),
    Remote(Box<RemoteKeys>),
}

struct Issuer {
    name: String,
    audiences: Vec<String>,
    algorithms: Vec<Alg>,
    claims: ClaimMapping,
    leeway: i64,
    keys: KeySource,
}

/// Verifies bearer JWTs. Cheap to clone; all clones share the key caches.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    issuers: Vec<Arc<Issuer>>,
    /// `iss` value -> index into `issuers`.
    by_iss: HashMap<String, usize>,
    policy: RefreshPolicy,
    http: Option<reqwest::Client>,
    /// Tokens that verified recently (see `recent`).
    recent: Arc<RecentTokens>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field(
                "issuers",
                &self
                    .inner
                    .issuers
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("policy", &self.inner.policy)
            .finish()
    }
}

impl Verifier {
    /// Validates the issuers and sets up their key sources. Remote keys are fetched lazily, on
    /// the first token of each issuer, so start-up does not depend on the identity provider.
    pub fn new(issuers: Vec<IssuerConfig>, dev: Option<DevIssuer>) -> Result<Self, IdentityError> {
        let mut built: Vec<Arc<Issuer>> = Vec::with_capacity(issuers.len() + 1);
        let mut by_iss = HashMap::new();
        let mut needs_http = false;

        for (i, config) in issuers.into_iter().enumerate() {
            config.validate().map_err(|m| {
                IdentityError::Config(format!("issuers[{i}] ({}): {m}", config.name))
            })?;
            if built.iter().any(|b| b.name == config.name) {
                return Err(IdentityError::Config(format!(
                    "issuers[{i}]: the name {:?} is used twice; give each issuer its own name",
                    config.name
                )));
            }
            if by_iss.contains_key(&config.issuer) {
                return Err(IdentityError::Config(format!(
                    "issuers[{i}] ({}): issuer {:?} is configured twice; merge the entries (list several audiences instead)",
                    config.name, config.issuer
                )));
            }
            let algorithms = config.effective_algorithms().map_err(|m| {
                IdentityError::Config(format!("issuers[{i}] ({}): {m}", config.name))
            })?;
            let keys = if let Some(secret) = &config.shared_secret {
                KeySource::Static(KeySet::shared_secret(secret.as_bytes()))
            } else if let Some(jwks) = &config.jwks {
                KeySource::Static(KeySet::from_jwks(jwks).map_err(|m| {
                    IdentityError::Config(format!("issuers[{i}] ({}): jwks: {m}", config.name))
                })?)
            } else {
                needs_http = true;
                if config
                    .discovery_url
                    .iter()
                    .chain(config.jwks_url.iter())
                    .any(|u| u.starts_with("http://") && !is_loopback_url(u))
                {
                    tracing::warn!(
                        issuer = %config.name,
                        "the issuer's keys are fetched over plain http; use https outside development"
                    );
                }
                KeySource::Remote(Box::new(RemoteKeys::new(
                    config.name.clone(),
                    config.issuer.clone(),
                    config.discovery_url.clone(),
                    config.jwks_url.clone(),
                )))
            };
            by_iss.insert(config.issuer.clone(), built.len());
            built.push(Arc::new(Issuer {
                name: config.name,
                audiences: config.audiences,
                algorithms,
                claims: config.claims,
                leeway: i64::try_from(config.leeway_seconds).unwrap_or(i64::MAX),
                keys,
            }));
        }

        if let Some(dev) = dev {
            if by_iss.contains_key(dev.issuer()) {
                return Err(IdentityError::Config(format!(
                    "the development issuer's iss {:?} is also a configured issuer; give the development issuer another issuer value or disable it",
                    dev.issuer()
                )));
            }
            by_iss.insert(dev.issuer().to_string(), built.len());
            built.push(Arc::new(Issuer {
                name: DEV_ISSUER_NAME.to_string(),
                audiences: vec![dev.audience().to_string()],
                algorithms: vec![Alg::EdDSA],
                claims: ClaimMapping::default(),
                leeway: 30,
                keys: KeySource::Static(dev.key_set()),
            }));
        }

        let http = if needs_http {
            Some(http_client()?)
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                issuers: built,
                by_iss,
                policy: RefreshPolicy::default(),
                http,
                recent: Arc::default(),
            }),
        })
    }

    fn with_policy(self, change: impl FnOnce(&mut RefreshPolicy)) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        change(&mut inner.policy);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The least time between two key refreshes caused by unknown kids (default 10 s); also
    /// the first retry delay after a failed fetch.
    pub fn with_min_refresh_interval(self, interval: Duration) -> Self {
        self.with_policy(|p| p.min_refresh_interval = interval)
    }

    /// How long fetched keys are used before they are refreshed (default 1 h).
    pub fn with_jwks_ttl(self, ttl: Duration) -> Self {
        self.with_policy(|p| p.ttl = ttl)
    }

    /// The longest delay between retries of a failing key fetch (default 5 min).
    pub fn with_max_backoff(self, max: Duration) -> Self {
        self.with_policy(|p| p.max_backoff = max)
    }

    /// The configured issuer names, the development issuer (`dev`) included.
    pub fn issuer_names(&self) -> Vec<&str> {
        self.inner.issuers.iter().map(|i| i.name.as_str()).collect()
    }

    /// Forgets the remembered verifications of one tenant's tokens (see `verify`): called when
    /// the tenant is deleted or suspended.
    pub fn forget_tenant(&self, tenant: &TenantId) {
        self.inner.recent.forget_tenant(tenant);
    }

    /// Verifies a compact JWT and returns who it names. The same token verified again within a
    /// minute is answered without checking its signature, as long as it has not expired and
    /// the key that verified it is still the issuer's key for its `kid`.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed("it is longer than 16 KiB"));
        }
        let digest = recent::digest(token);
        if let Some(hit) = self.inner.recent.get(&digest) {
            if let Some(issuer) = self.inner.issuers.get(hit.issuer)
                && let Ok(key) = self.key(issuer, hit.kid.as_deref(), hit.alg).await
                && Arc::ptr_eq(&key, &hit.key)
            {
                return Ok(hit.verified);
            }
            self.inner.recent.forget(&digest);
        }
        let remembered = self.verify_signature_and_claims(token).await?;
        let verified = remembered.verified.clone();
        self.inner.recent.put(digest, remembered);
        Ok(verified)
    }

    async fn verify_signature_and_claims(&self, token: &str) -> Result<Remembered, AuthError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed(
                "it does not have three dot-separated parts",
            ));
        };
        let header = decode_object(header_b64).ok_or(AuthError::Malformed(
            "the header is not a base64url-encoded JSON object",
        ))?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(AuthError::Malformed("the header has no alg"))?;
        if alg_name.eq_ignore_ascii_case("none") {
            return Err(AuthError::AlgNone);
        }
        if header.contains_key("crit") {
            return Err(AuthError::Malformed(
                "critical header parameters (crit) are not supported",
            ));
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(AuthError::Malformed("the header's kid is not a string")),
        };
        let claims = decode_object(payload_b64).ok_or(AuthError::Malformed(
            "the payload is not a base64url-encoded JSON object",
        ))?;

        let iss = string_claim(&claims, "iss")?;
        let (issuer_index, issuer) = self
            .inner
            .by_iss
            .get(iss)
            .and_then(|i| Some((*i, self.inner.issuers.get(*i)?)))
            .ok_or(AuthError::UnknownIssuer)?;

        let alg = Alg::parse(alg_name)
            .filter(|a| issuer.algorithms.contains(a))
            .ok_or_else(|| AuthError::AlgorithmNotAllowed {
                issuer: issuer.name.clone(),
                alg: printable(alg_name),
            })?;
        let key = self.key(issuer, kid, alg).await?;

        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        let valid = jsonwebtoken::crypto::verify(
            signature_b64,
            signing_input.as_bytes(),
            &key.key,
            alg.to_jwt(),
        )
        .unwrap_or(false);
        if !valid {
            return Err(AuthError::BadSignature);
        }

        let verified = check_claims(issuer, &claims)?;
        Ok(Remembered::new(
            verified,
            issuer_index,
            kid,
            alg,
            key,
            issuer.leeway,
        ))
    }

    async fn key(
        &self,
        issuer: &Issuer,
        kid: Option<&str>,
        alg: Alg,
    ) -> Result<Arc<VerifyKey>, AuthError> {
        match &issuer.keys {
            KeySource::Static(set) => set.find(kid, alg).map_err(|e| match e {
                FindError::NoKey => AuthError::UnknownKey {
                    issuer: issuer.name.clone(),
                },
                FindError::Mismatch => AuthError::KeyMismatch {
                    issuer: issuer.name.clone(),
                    alg: alg.as_str().to_string(),
                },
            }),
            KeySource::Remote(remote) => {
                let http = self
                    .inner
                    .http
                    .as_ref()
                    .ok_or_else(|| AuthError::KeysUnavailable {
                        issuer: issuer.name.clone(),
                        detail: "no HTTP client".into(),
                    })?;
                remote.key(http, &self.inner.policy, kid, alg).await
            }
        }
    }
}

fn http_client() -> Result<reqwest::Client, IdentityError> {
    // reqwest is built without a default TLS crypto provider; install ours unless the process
    // already chose one (an Err here means exactly that).
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(HTTP_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("tenantry/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| IdentityError::Config(format!("cannot set up the HTTP client for JWKS: {e}")))
}

fn is_loopback_url(u: &str) -> bool {
    url::Url::parse(u).ok().is_some_and(|u| match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    })
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Array(_) => {
            None
        }
    }
}

/// An attacker-chosen string made safe to put in an error message.
fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(24)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    if s.chars().count() > 24 {
        out.push('…');
    }
    out
}

fn missing(claim: &str) -> AuthError {
    AuthError::MissingClaim {
        claim: claim.to_string(),
    }
}

fn invalid(claim: &str, problem: impl Into<String>) -> AuthError {
    AuthError::InvalidClaim {
        claim: claim.to_string(),
        problem: problem.into(),
    }
}

fn string_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<&'a str, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Err(missing(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(name, "it must be a string")),
    }
}

/// A NumericDate claim (seconds since the epoch; fractions are truncated).
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 1e15)
                    .map(|f| f.trunc() as i64)
            })
            .map(Some)
            .ok_or_else(|| invalid(name, "it is out of range")),
        Some(_) => Err(invalid(name, "it must be a number of seconds since 1970")),
    }
}

fn check_claims(issuer: &Issuer, claims: &Map<String, Value>) -> Result<VerifiedToken, AuthError> {
    let now = tenantry_core::unix_now();
    let exp = time_claim(claims, "exp")?.ok_or_else(|| missing("exp"))?;
    if now >= exp.saturating_add(issuer.leeway) {
        return Err(AuthError::Expired);
    }
    if let Some(nbf) = time_claim(claims, "nbf")?
        && nbf > now.saturating_add(issuer.leeway)
    {
        return Err(AuthError::NotYetValid);
    }

    let audiences: Vec<&str> = match claims.get("aud") {
        None | Some(Value::Null) => return Err(missing("aud")),
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|a| {
                a.as_str()
                    .ok_or_else(|| invalid("aud", "it must be a string or an array of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("aud", "it must be a string or an array of strings")),
    };
    if !audiences
        .iter()
        .any(|a| issuer.audiences.iter().any(|accepted| accepted == a))
    {
        return Err(AuthError::WrongAudience {
            issuer: issuer.name.clone(),
        });
    }

    let mapping = &issuer.claims;
    let tenant = TenantId::new(string_claim(claims, &mapping.tenant)?)
        .map_err(|e| invalid(&mapping.tenant, format!("not a tenant id ({})", e.rule)))?;
    let user = UserId::new(string_claim(claims, &mapping.user)?)
        .map_err(|e| invalid(&mapping.user, format!("not a user id ({})", e.rule)))?;
    if user.is_service() {
        // `svc:NAME` names a tenant's service principal (an API key no user bound); a person
        // named so by an identity provider would share its sessions.
        return Err(invalid(
            &mapping.user,
            format!("the prefix {SERVICE_PRINCIPAL_PREFIX:?} is reserved for service principals"),
        ));
    }
    let roles = roles_claim(claims, &mapping.roles)?;

    Ok(VerifiedToken {
        issuer_name: issuer.name.clone(),
        tenant,
        user,
        roles,
        expires_at: exp,
    })
}

fn roles_claim(claims: &Map<String, Value>, name: &str) -> Result<Vec<String>, AuthError> {
    let roles: Vec<String> = match claims.get(name) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|r| {
                r.as_str().map(str::to_string).ok_or_else(|| {
                    invalid(
                        name,
                        "it must be an array of strings or a space-separated string",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(invalid(
                name,
                "it must be an array of strings or a space-separated string",
            ));
        }
    };
    if roles.len() > MAX_ROLES {
        return Err(invalid(
            name,
            format!("it lists more than {MAX_ROLES} roles"),
        ));
    }
    if roles
        .iter()
        .any(|r| r.is_empty() || r.len() > 256 || r.chars().any(char::is_control))
    {
        return Err(invalid(
            name,
            "each role must be 1 to 256 characters without control characters",
        ));
    }
    Ok(roles)
}
