//! Verification keys: the algorithms Tenantry accepts, JWK parsing, and key sets looked up by
//! `kid`.
//!
//! Only public signature keys come from a JWKS (RSA, EC P-256/P-384, OKP Ed25519); symmetric
//! (`oct`) keys there are ignored, so a shared secret can only come from configuration. A key is
//! bound to one key type, and to one algorithm when its JWK says so, which is what stops
//! algorithm confusion (an RSA public key used as an HMAC secret). This module does no I/O.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// The signature algorithms Tenantry knows. `none` is deliberately absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

/// What kind of key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
    Secret,
}

impl Alg {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "EdDSA" => Alg::EdDSA,
            "HS256" => Alg::HS256,
            "HS384" => Alg::HS384,
            "HS512" => Alg::HS512,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
        }
    }

    pub(crate) fn to_jwt(self) -> Algorithm {
        match self {
            Alg::RS256 => Algorithm::RS256,
            Alg::RS384 => Algorithm::RS384,
            Alg::RS512 => Algorithm::RS512,
            Alg::PS256 => Algorithm::PS256,
            Alg::PS384 => Algorithm::PS384,
            Alg::PS512 => Algorithm::PS512,
            Alg::ES256 => Algorithm::ES256,
            Alg::ES384 => Algorithm::ES384,
            Alg::EdDSA => Algorithm::EdDSA,
            Alg::HS256 => Algorithm::HS256,
            Alg::HS384 => Algorithm::HS384,
            Alg::HS512 => Algorithm::HS512,
        }
    }

    pub(crate) fn key_type(self) -> KeyType {
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                KeyType::Rsa
            }
            Alg::ES256 => KeyType::P256,
            Alg::ES384 => KeyType::P384,
            Alg::EdDSA => KeyType::Ed25519,
            Alg::HS256 | Alg::HS384 | Alg::HS512 => KeyType::Secret,
        }
    }

    pub(crate) fn is_hmac(self) -> bool {
        self.key_type() == KeyType::Secret
    }
}

/// One key able to verify signatures.
pub(crate) struct VerifyKey {
    pub(crate) kid: Option<String>,
    pub(crate) key_type: KeyType,
    /// The algorithm the JWK pins (`alg`), if any.
    pub(crate) alg: Option<Alg>,
    pub(crate) key: DecodingKey,
}

impl VerifyKey {
    pub(crate) fn accepts(&self, alg: Alg) -> bool {
        alg.key_type() == self.key_type && self.alg.is_none_or(|pinned| pinned == alg)
    }
}

/// Why `KeySet::find` found nothing usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FindError {
    /// No key has the token's kid.
    NoKey,
    /// A key has the kid, but not for this algorithm.
    Mismatch,
}

/// Why a document is not a JWKS at all (keys it holds that cannot be used are skipped, not
/// errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("a JWKS must be a JSON object with a \"keys\" array")]
    NotAJwks,
}

/// The verification keys of one issuer at one moment.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: Vec<Arc<VerifyKey>>,
}

/// More keys than any real issuer publishes; the rest of a JWKS is ignored.
const MAX_KEYS: usize = 64;
/// Smaller RSA moduli are refused outright.
const MIN_RSA_BITS: usize = 2048;

impl KeySet {
    pub(crate) fn new(keys: Vec<VerifyKey>) -> Self {
        Self {
            keys: keys.into_iter().map(Arc::new).collect(),
        }
    }

    /// A set holding one HMAC secret.
    pub(crate) fn shared_secret(secret: &[u8]) -> Self {
        Self::new(vec![VerifyKey {
            kid: None,
            key_type: KeyType::Secret,
            alg: None,
            key: DecodingKey::from_secret(secret),
        }])
    }

    /// Parses a JWKS document. Keys Tenantry cannot use (encryption keys, `oct` keys, unknown
    /// types or curves, short RSA moduli, malformed members) are skipped; only a document that
    /// is not a JWKS at all is an error.
    pub(crate) fn from_jwks(doc: &Value) -> Result<Self, JwksError> {
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NotAJwks)?;
        let mut out = Vec::new();
        let mut skipped = 0usize;
        for jwk in keys.iter().take(MAX_KEYS) {
            match parse_jwk(jwk) {
                Ok(key) => out.push(key),
                Err(why) => {
                    skipped += 1;
                    tracing::debug!(reason = why, "skipping a JWK that cannot verify signatures");
                }
            }
        }
        if skipped > 0 {
            tracing::debug!(usable = out.len(), skipped, "parsed JWKS");
        }
        Ok(Self::new(out))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key for a token with this `kid` and algorithm. A token without a kid, or a set whose
    /// only key has no kid, uses the only key there is.
    pub(crate) fn find(&self, kid: Option<&str>, alg: Alg) -> Result<Arc<VerifyKey>, FindError> {
        let lone = match self.keys.as_slice() {
            [only] if kid.is_none() || only.kid.is_none() => Some(only),
            _ => None,
        };
        let candidates: Vec<&Arc<VerifyKey>> = match (kid, lone) {
            (_, Some(only)) => vec![only],
            (Some(kid), None) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            (None, None) => Vec::new(),
        };
        if candidates.is_empty() {
            return Err(FindError::NoKey);
        }
        candidates
            .into_iter()
            .find(|k| k.accepts(alg))
            .cloned()
            .ok_or(FindError::Mismatch)
    }

    /// Whether a key with this kid exists (for deciding whether a refresh could help).
    pub(crate) fn has_kid(&self, kid: Option<&str>) -> bool {
        match kid {
            Some(kid) => {
                self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
                    || matches!(self.keys.as_slice(), [only] if only.kid.is_none())
            }
            None => self.keys.len() == 1,
        }
    }
}

/// Decodes base64url, tolerating the padding some issuers add.
pub(crate) fn b64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

fn member<'a>(jwk: &'a Value, name: &'static str) -> Result<&'a str, &'static str> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or("a required member is missing or not a string")
}

fn bytes_member(jwk: &Value, name: &'static str) -> Result<Vec<u8>, &'static str> {
    b64url(member(jwk, name)?).ok_or("a member is not valid base64url")
}

fn parse_jwk(jwk: &Value) -> Result<VerifyKey, &'static str> {
    if !jwk.is_object() {
        return Err("not a JSON object");
    }
    if let Some(usage) = jwk.get("use")
        && usage.as_str() != Some("sig")
    {
        return Err("not a signature key (use)");
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o.as_str() == Some("verify")));
        if !verifies {
            return Err("not a verification key (key_ops)");
        }
    }
    let alg = match jwk.get("alg") {
        None => None,
        Some(a) => Some(
            a.as_str()
                .and_then(Alg::parse)
                .ok_or("unsupported or non-signature algorithm")?,
        ),
    };
    let kid = match jwk.get("kid") {
        None => None,
        Some(k) => Some(k.as_str().ok_or("kid is not a string")?.to_string()),
    };
    let (key_type, key) = match member(jwk, "kty")? {
        "RSA" => {
            let n = bytes_member(jwk, "n")?;
            let e = bytes_member(jwk, "e")?;
            let n_bits = n.iter().position(|b| *b != 0).map_or(0, |first| {
                (n.len() - first) * 8 - n[first].leading_zeros() as usize
            });
            if n_bits < MIN_RSA_BITS {
                return Err("RSA modulus shorter than 2048 bits");
            }
            if e.is_empty() || e.len() > 8 {
                return Err("RSA exponent out of range");
            }
            (KeyType::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        "EC" => {
            let (key_type, len) = match member(jwk, "crv")? {
                "P-256" => (KeyType::P256, 32),
                "P-384" => (KeyType::P384, 48),
                _ => return Err("unsupported EC curve"),
            };
            let x = bytes_member(jwk, "x")?;
            let y = bytes_member(jwk, "y")?;
            if x.len() != len || y.len() != len {
                return Err("EC coordinates of the wrong length");
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (key_type, DecodingKey::from_ec_der(&point))
        }
        "OKP" => {
            if member(jwk, "crv")? != "Ed25519" {
                return Err("unsupported OKP curve");
            }
            let x = bytes_member(jwk, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 key of the wrong length");
            }
            (KeyType::Ed25519, DecodingKey::from_ed_der(&x))
        }
        _ => return Err("unsupported key type"),
    };
    if let Some(alg) = alg
        && alg.key_type() != key_type
    {
        return Err("alg does not match the key type");
    }
    Ok(VerifyKey {
        kid,
        key_type,
        alg,
        key,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn okp(kid: &str) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([7u8; 32]), "kid": kid})
    }

    #[test]
    fn skips_keys_it_cannot_use() {
        let doc = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xffu8; 64]), "e": "AQAB", "kid": "short"},
            {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xffu8; 256]), "e": "AQAB", "kid": "enc", "use": "enc"},
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "short-ed"},
            {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xffu8; 256]), "e": "AQAB", "kid": "rsa", "alg": "RS256"},
            okp("ed"),
        ]});
        let set = KeySet::from_jwks(&doc).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.find(Some("hmac"), Alg::HS256).is_err());
        assert!(set.find(Some("rsa"), Alg::RS256).is_ok());
        assert_eq!(
            set.find(Some("rsa"), Alg::PS256).err(),
            Some(FindError::Mismatch),
            "the JWK pins RS256"
        );
        assert_eq!(
            set.find(Some("rsa"), Alg::HS256).err(),
            Some(FindError::Mismatch),
            "an RSA key is never an HMAC secret"
        );
        assert_eq!(
            set.find(Some("nope"), Alg::EdDSA).err(),
            Some(FindError::NoKey)
        );
        assert_eq!(set.find(None, Alg::EdDSA).err(), Some(FindError::NoKey));
        assert!(KeySet::from_jwks(&json!({"nokeys": []})).is_err());
    }

    #[test]
    fn a_lone_key_serves_tokens_without_kid() {
        let set = KeySet::from_jwks(&json!({"keys": [okp("a")]})).unwrap();
        assert!(set.find(None, Alg::EdDSA).is_ok());
        assert!(set.has_kid(None));
        assert!(!set.has_kid(Some("b")));
        let mut unnamed = okp("x");
        unnamed.as_object_mut().unwrap().remove("kid");
        let set = KeySet::from_jwks(&json!({"keys": [unnamed]})).unwrap();
        assert!(set.find(Some("whatever"), Alg::EdDSA).is_ok());
    }
}
