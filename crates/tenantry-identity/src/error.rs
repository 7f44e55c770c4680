//! The two main error types of this crate: `IdentityError` for set-up (configuration, key
//! files, the HTTP client) and `AuthError` for a refused credential. The details they wrap are
//! typed where they arise: `IssuerConfigError` (config), `JwksError` (keys) and the fetch errors
//! of remote keys.
//!
//! `AuthError` is the verdict on one request. It maps without a wildcard arm to an `ErrorCode`
//! and a stable reason for metrics. Its messages say what is wrong in plain words and must never
//! contain a token, a signature, a key or a shared secret.

use std::path::PathBuf;

use tenantry_core::ErrorCode;

/// A problem setting up identity: invalid issuer configuration, an unreadable or invalid key
/// file, a key file that already exists. Reported at start-up or by the CLI, never per request.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// An issuer or development-issuer setting is invalid; the message names the setting and the fix.
    #[error("invalid identity configuration: {0}")]
    Config(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A key file exists but does not hold a usable key, or a key operation failed.
    #[error("{0}")]
    Key(String),
}

/// Why a bearer token was refused. One variant per reason; see [`AuthError::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not a compact JWS: wrong number of parts, bad base64url, a header or payload that is not
    /// a JSON object, or a header Tenantry does not accept.
    #[error("the token is not a well-formed JWT: {0}")]
    Malformed(&'static str),
    /// The header says `alg: none`: the token is unsigned.
    #[error("the token is unsigned (alg \"none\"); only signed tokens are accepted")]
    AlgNone,
    /// The header's algorithm is not in the issuer's allowlist (or not one Tenantry knows).
    #[error("the token is signed with {alg}, which issuer {issuer} does not allow")]
    AlgorithmNotAllowed { issuer: String, alg: String },
    /// The key named by the token cannot be used with the token's algorithm (e.g. an RSA key
    /// with HS256, or a key published for ES256 used with RS256).
    #[error("the signing key of issuer {issuer} cannot be used with {alg}")]
    KeyMismatch { issuer: String, alg: String },
    /// The `iss` claim names no configured issuer.
    #[error("the token's issuer (iss) is not trusted by this server")]
    UnknownIssuer,
    /// The issuer does not publish the key the token names (even after refreshing its keys).
    #[error("issuer {issuer} publishes no key matching the token's key id (kid)")]
    UnknownKey { issuer: String },
    /// The signature does not verify: the token was altered or signed by someone else.
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the allowed clock skew).
    #[error("the token is not valid yet (nbf is in the future)")]
    NotYetValid,
    /// `aud` names none of the audiences this server accepts for the issuer.
    #[error("the token's audience (aud) is not accepted for issuer {issuer}")]
    WrongAudience { issuer: String },
    /// A claim the issuer's mapping requires is absent.
    #[error("the token has no {claim:?} claim")]
    MissingClaim { claim: String },
    /// A claim is present but unusable (wrong type, or not a valid tenant or user id).
    #[error("the token's {claim:?} claim is not valid: {problem}")]
    InvalidClaim { claim: String, problem: String },
    /// The issuer's keys could not be fetched and none are cached: we cannot decide, so we
    /// refuse (fail closed). Retryable.
    #[error("the signing keys of issuer {issuer} are unavailable: {detail}")]
    KeysUnavailable { issuer: String, detail: String },
}

impl AuthError {
    /// The platform error code: every refusal is `InvalidToken` (401) except when the keys
    /// cannot be obtained, which is `Unavailable` (503): the token may well be valid.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Malformed(_)
            | AuthError::AlgNone
            | AuthError::AlgorithmNotAllowed { .. }
            | AuthError::KeyMismatch { .. }
            | AuthError::UnknownIssuer
            | AuthError::UnknownKey { .. }
            | AuthError::BadSignature
            | AuthError::Expired
            | AuthError::NotYetValid
            | AuthError::WrongAudience { .. }
            | AuthError::MissingClaim { .. }
            | AuthError::InvalidClaim { .. } => ErrorCode::InvalidToken,
            AuthError::KeysUnavailable { .. } => ErrorCode::Unavailable,
        }
    }

    /// A stable snake_case reason, for metrics labels and audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Malformed(_) => "malformed",
            AuthError::AlgNone => "alg_none",
            AuthError::AlgorithmNotAllowed { .. } => "algorithm_not_allowed",
            AuthError::KeyMismatch { .. } => "key_algorithm_mismatch",
            AuthError::UnknownIssuer => "unknown_issuer",
            AuthError::UnknownKey { .. } => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongAudience { .. } => "wrong_audience",
            AuthError::MissingClaim { .. } => "missing_claim",
            AuthError::InvalidClaim { .. } => "invalid_claim",
            AuthError::KeysUnavailable { .. } => "keys_unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_keys_are_retryable() {
        let unavailable = AuthError::KeysUnavailable {
            issuer: "corp".into(),
            detail: "HTTP 500".into(),
        };
        assert_eq!(unavailable.code(), ErrorCode::Unavailable);
        assert_eq!(unavailable.code().http_status(), 503);
        assert_eq!(AuthError::Expired.code(), ErrorCode::InvalidToken);
        assert_eq!(AuthError::Expired.reason(), "expired");
        assert_eq!(AuthError::BadSignature.code().http_status(), 401);
    }
}
