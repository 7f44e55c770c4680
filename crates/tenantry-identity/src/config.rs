//! Configuration of trusted token issuers, as it appears under `[[identity.issuers]]` in the
//! server's TOML file, and its validation.
//!
//! Validation happens once, at start-up, and its messages name the setting and the fix. This
//! module never performs I/O and its `Debug` output never shows a shared secret.

use std::fmt;

use serde::Deserialize;

use crate::keys::{Alg, JwksError, KeySet};

/// One trusted OIDC/JWT issuer.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// A short label for logs and `CredentialKind::Jwt { issuer }`, e.g. `corp-auth0`.
    pub name: String,
    /// The expected `iss` claim, exactly as the issuer writes it.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one of them.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// OIDC discovery document (`.../.well-known/openid-configuration`); its `jwks_uri` is used.
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// The issuer's JWKS, when there is no discovery document.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// An inline JWKS (`{"keys": [...]}`), for issuers whose keys are fixed.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// A shared HMAC secret (HS256/384/512 only). Exactly one key source must be given.
    #[serde(default)]
    pub shared_secret: Option<String>,
    /// Allowed signature algorithms. Empty means the default for the key source:
    /// `["RS256", "ES256", "EdDSA"]` for public keys, `["HS256"]` for a shared secret.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Which claims carry the tenant, the user and the roles.
    #[serde(default)]
    pub claims: ClaimMapping,
    /// Allowed clock skew for `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

/// Claim names, taken literally (a name such as `custom:tenant_id` is one flat claim).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMapping {
    /// Holds the tenant id (a slug such as `acme`). Required in every token.
    #[serde(default = "default_tenant_claim")]
    pub tenant: String,
    /// Holds the user id. Required in every token.
    #[serde(default = "default_user_claim")]
    pub user: String,
    /// Holds the roles: an array of strings, or one space-separated string (like `scope`).
    /// Optional in tokens: absent means no roles.
    #[serde(default = "default_roles_claim")]
    pub roles: String,
}

fn default_leeway() -> u64 {
    30
}
fn default_tenant_claim() -> String {
    "tenant_id".into()
}
fn default_user_claim() -> String {
    "sub".into()
}
fn default_roles_claim() -> String {
    "roles".into()
}

/// The algorithms allowed when the configuration names none and keys are public keys.
pub const DEFAULT_ALGORITHMS: [&str; 3] = ["RS256", "ES256", "EdDSA"];
/// The largest clock skew we accept in configuration.
const MAX_LEEWAY_SECONDS: u64 = 300;
/// Below this many bytes an HMAC secret can be brute-forced offline from a single token.
const MIN_SHARED_SECRET_BYTES: usize = 32;

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            tenant: default_tenant_claim(),
            user: default_user_claim(),
            roles: default_roles_claim(),
        }
    }
}

impl Default for IssuerConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            issuer: String::new(),
            audiences: Vec::new(),
            discovery_url: None,
            jwks_url: None,
            jwks: None,
            shared_secret: None,
            algorithms: Vec::new(),
            claims: ClaimMapping::default(),
            leeway_seconds: default_leeway(),
        }
    }
}

impl fmt::Debug for IssuerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerConfig")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("discovery_url", &self.discovery_url)
            .field("jwks_url", &self.jwks_url)
            .field("jwks", &self.jwks.as_ref().map(|_| "<inline>"))
            .field(
                "shared_secret",
                &self.shared_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("algorithms", &self.algorithms)
            .field("claims", &self.claims)
            .field("leeway_seconds", &self.leeway_seconds)
            .finish()
    }
}

/// Why an issuer's configuration cannot be used; the message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerConfigError {
    #[error(
        "name must be 1 to 64 characters of letters, digits, '-', '_' or '.' (it labels the issuer in logs)"
    )]
    BadName,
    #[error("name \"dev\" is reserved for the built-in development issuer; choose another name")]
    ReservedName,
    #[error(
        "issuer must be the exact `iss` value of the issuer's tokens (non-empty, no surrounding spaces)"
    )]
    BadIssuer,
    #[error(
        "audiences must list at least one accepted `aud` value (e.g. your API's identifier at the identity provider)"
    )]
    NoAudience,
    #[error("audiences must not contain empty values")]
    EmptyAudience,
    #[error("no key source: set one of discovery_url, jwks_url, jwks or shared_secret")]
    NoKeySource,
    #[error("set exactly one of discovery_url, jwks_url, jwks or shared_secret, not several")]
    SeveralKeySources,
    #[error(
        "{field} must be an absolute http(s) URL such as https://login.example.com/.well-known/openid-configuration"
    )]
    BadUrl { field: &'static str },
    #[error(
        "shared_secret must be at least {} bytes; generate one with `openssl rand -base64 48`",
        MIN_SHARED_SECRET_BYTES
    )]
    ShortSecret,
    #[error("algorithms: \"none\" (unsigned tokens) is never allowed; remove it")]
    AlgNone,
    #[error(
        "algorithms: unknown algorithm {0:?}; use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, or HS256/HS384/HS512 with shared_secret"
    )]
    UnknownAlgorithm(String),
    #[error("algorithms: {0} needs shared_secret; with public keys use RS256, ES256 or EdDSA")]
    HmacWithoutSecret(&'static str),
    #[error(
        "algorithms: {0} cannot be verified with shared_secret; allow only HS256, HS384 or HS512"
    )]
    PublicKeyWithSecret(&'static str),
    #[error("jwks: {0}")]
    Jwks(#[from] JwksError),
    #[error("jwks holds no usable signing key (supported: RSA, EC P-256/P-384, OKP Ed25519)")]
    NoUsableKey,
    #[error("{0} must name a claim")]
    EmptyClaim(&'static str),
    #[error(
        "leeway_seconds must be at most {}; fix the clocks instead of widening the window",
        MAX_LEEWAY_SECONDS
    )]
    LeewayTooLarge,
}

impl IssuerConfig {
    /// Checks what serde cannot. The message names the field and says how to fix it.
    pub fn validate(&self) -> Result<(), IssuerConfigError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(IssuerConfigError::BadName);
        }
        if self.name == crate::dev::DEV_ISSUER_NAME {
            return Err(IssuerConfigError::ReservedName);
        }
        if self.issuer.trim().is_empty() || self.issuer.trim() != self.issuer {
            return Err(IssuerConfigError::BadIssuer);
        }
        if self.audiences.is_empty() {
            return Err(IssuerConfigError::NoAudience);
        }
        if self.audiences.iter().any(|a| a.trim().is_empty()) {
            return Err(IssuerConfigError::EmptyAudience);
        }

        let sources = [
            self.discovery_url.is_some(),
            self.jwks_url.is_some(),
            self.jwks.is_some(),
            self.shared_secret.is_some(),
        ];
        match sources.iter().filter(|s| **s).count() {
            0 => {
                return Err(IssuerConfigError::NoKeySource);
            }
            1 => {}
            _ => {
                return Err(IssuerConfigError::SeveralKeySources);
            }
        }
        if let Some(u) = &self.discovery_url {
            check_url("discovery_url", u)?;
        }
        if let Some(u) = &self.jwks_url {
            check_url("jwks_url", u)?;
        }
        if let Some(secret) = &self.shared_secret
            && secret.len() < MIN_SHARED_SECRET_BYTES
        {
            return Err(IssuerConfigError::ShortSecret);
        }

        let algorithms = self.effective_algorithms()?;
        let symmetric = self.shared_secret.is_some();
        for alg in &algorithms {
            if alg.is_hmac() && !symmetric {
                return Err(IssuerConfigError::HmacWithoutSecret(alg.as_str()));
            }
            if !alg.is_hmac() && symmetric {
                return Err(IssuerConfigError::PublicKeyWithSecret(alg.as_str()));
            }
        }

        if let Some(jwks) = &self.jwks
            && KeySet::from_jwks(jwks)?.is_empty()
        {
            return Err(IssuerConfigError::NoUsableKey);
        }

        for (field, value) in [
            ("claims.tenant", &self.claims.tenant),
            ("claims.user", &self.claims.user),
            ("claims.roles", &self.claims.roles),
        ] {
            if value.trim().is_empty() {
                return Err(IssuerConfigError::EmptyClaim(field));
            }
        }
        if self.leeway_seconds > MAX_LEEWAY_SECONDS {
            return Err(IssuerConfigError::LeewayTooLarge);
        }
        Ok(())
    }

    /// The allowlist in force: the configured algorithms, or the default for the key source.
    pub(crate) fn effective_algorithms(&self) -> Result<Vec<Alg>, IssuerConfigError> {
        if self.algorithms.is_empty() {
            return Ok(if self.shared_secret.is_some() {
                vec![Alg::HS256]
            } else {
                DEFAULT_ALGORITHMS
                    .iter()
                    .filter_map(|a| Alg::parse(a))
                    .collect()
            });
        }
        let mut out = Vec::with_capacity(self.algorithms.len());
        for a in &self.algorithms {
            if a.eq_ignore_ascii_case("none") {
                return Err(IssuerConfigError::AlgNone);
            }
            let alg =
                Alg::parse(a).ok_or_else(|| IssuerConfigError::UnknownAlgorithm(a.clone()))?;
            if !out.contains(&alg) {
                out.push(alg);
            }
        }
        Ok(out)
    }
}

fn check_url(field: &'static str, value: &str) -> Result<(), IssuerConfigError> {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => Ok(()),
        Ok(_) | Err(_) => Err(IssuerConfigError::BadUrl { field }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn base() -> IssuerConfig {
        IssuerConfig {
            name: "corp".into(),
            issuer: "https://login.example.com/".into(),
            audiences: vec!["tenantry".into()],
            discovery_url: Some(
                "https://login.example.com/.well-known/openid-configuration".into(),
            ),
            ..IssuerConfig::default()
        }
    }

    #[test]
    fn parses_from_toml_with_defaults() {
        let cfg: IssuerConfig = serde_json::from_value(serde_json::json!({
            "name": "corp",
            "issuer": "https://login.example.com/",
            "audiences": ["api"],
            "jwks_url": "https://login.example.com/jwks"
        }))
        .unwrap();
        assert_eq!(cfg.leeway_seconds, 30);
        assert_eq!(cfg.claims, ClaimMapping::default());
        assert!(cfg.validate().is_ok());
        assert_eq!(
            cfg.effective_algorithms().unwrap(),
            vec![Alg::RS256, Alg::ES256, Alg::EdDSA]
        );
        let unknown = serde_json::from_value::<IssuerConfig>(serde_json::json!({
            "name": "corp", "issuer": "x", "audience": "api"
        }));
        assert!(unknown.is_err(), "unknown fields are refused");
    }

    #[test]
    fn refuses_none_and_hmac_without_secret() {
        let mut c = base();
        c.algorithms = vec!["none".into()];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("never allowed")
        );
        c.algorithms = vec!["HS256".into()];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("shared_secret")
        );
        c.algorithms = vec!["RS1".into()];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("unknown algorithm")
        );
    }

    #[test]
    fn shared_secret_means_hmac_only() {
        let mut c = base();
        c.discovery_url = None;
        c.shared_secret = Some("short".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("at least 32 bytes")
        );
        c.shared_secret = Some("x".repeat(40));
        assert!(c.validate().is_ok());
        assert_eq!(c.effective_algorithms().unwrap(), vec![Alg::HS256]);
        c.algorithms = vec!["HS256".into(), "RS256".into()];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("cannot be verified")
        );
    }

    #[test]
    fn exactly_one_key_source() {
        let mut c = base();
        c.jwks_url = Some("https://login.example.com/jwks".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("exactly one")
        );
        c.jwks_url = None;
        c.discovery_url = None;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("no key source")
        );
        c.discovery_url = Some("ftp://x".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("discovery_url")
        );
    }

    #[test]
    fn names_audiences_and_leeway_are_checked() {
        let mut c = base();
        c.audiences.clear();
        assert!(c.validate().unwrap_err().to_string().contains("audiences"));
        let mut c = base();
        c.name = "dev".into();
        assert!(c.validate().unwrap_err().to_string().contains("reserved"));
        let mut c = base();
        c.name = "bad name".into();
        assert!(c.validate().unwrap_err().to_string().starts_with("name"));
        let mut c = base();
        c.leeway_seconds = 3600;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("leeway_seconds")
        );
    }

    #[test]
    fn debug_hides_the_shared_secret() {
        let mut c = base();
        c.discovery_url = None;
        c.shared_secret = Some("super-secret-value-that-must-not-leak".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("super-secret"));
        assert!(shown.contains("<redacted>"));
    }
}
