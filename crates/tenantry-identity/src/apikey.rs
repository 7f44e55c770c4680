//! Tenant API keys and the operator (admin) key: generation, parsing and comparison.
//!
//! An API key reads `tk_{tenant}_{key_id}_{secret}`. The tenant is a slug (never contains `_`)
//! and the key id has a fixed length, so the key parses from the left even though the
//! base64url secret may itself contain `_` or `-`. Only SHA-256 of the whole key is ever stored;
//! the key itself is shown once, at creation. This module never logs or stores a key, and its
//! `Debug` output never shows one.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tenantry_core::TenantId;

const API_KEY_PREFIX: &str = "tk_";
const ADMIN_KEY_PREFIX: &str = "tadm_";
/// Lowercase RFC 4648 base32 alphabet: unambiguous and safe in URLs and logs.
const KEY_ID_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const KEY_ID_LEN: usize = 12;
const SECRET_BYTES: usize = 32;
/// base64url without padding of 32 bytes.
const SECRET_LEN: usize = 43;
/// How much of a key is shown in listings to help people recognise it.
const DISPLAY_PREFIX_LEN: usize = 16;
/// Longer inputs are not API keys; refuse before hashing anything.
const MAX_API_KEY_LEN: usize = API_KEY_PREFIX.len() + 63 + 1 + KEY_ID_LEN + 1 + SECRET_LEN;

/// A newly created API key. `full_key` is shown to the caller once and never stored.
#[derive(Clone)]
pub struct ApiKeySecret {
    /// The public id, unique per tenant; names the key in listings and `CredentialKind::ApiKey`.
    pub key_id: String,
    pub full_key: String,
    /// The first characters of the key, safe to display.
    pub prefix: String,
    /// SHA-256 of `full_key`; what the store keeps.
    pub secret_hash: Vec<u8>,
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeySecret")
            .field("key_id", &self.key_id)
            .field("prefix", &self.prefix)
            .field("full_key", &"<redacted>")
            .finish()
    }
}

fn sha256(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// Creates a new API key for a tenant.
pub fn generate_api_key(tenant: &TenantId) -> ApiKeySecret {
    let key_id: String = random_bytes::<KEY_ID_LEN>()
        .iter()
        .map(|b| char::from(KEY_ID_ALPHABET[usize::from(b & 31)]))
        .collect();
    let secret = URL_SAFE_NO_PAD.encode(random_bytes::<SECRET_BYTES>());
    let full_key = format!("{API_KEY_PREFIX}{tenant}_{key_id}_{secret}");
    ApiKeySecret {
        prefix: full_key.chars().take(DISPLAY_PREFIX_LEN).collect(),
        secret_hash: sha256(&full_key),
        key_id,
        full_key,
    }
}

/// Splits a presented API key into tenant, key id and the SHA-256 of the whole key, or `None`
/// if the string is not shaped like a Tenantry API key. Says nothing about validity: the caller
/// compares the hash with the stored one.
pub fn parse_api_key(s: &str) -> Option<(TenantId, String, Vec<u8>)> {
    if s.len() > MAX_API_KEY_LEN {
        return None;
    }
    let rest = s.strip_prefix(API_KEY_PREFIX)?;
    let (tenant, rest) = rest.split_once('_')?;
    let tenant = TenantId::new(tenant).ok()?;
    let key_id = rest.get(..KEY_ID_LEN)?;
    if !key_id.bytes().all(|b| KEY_ID_ALPHABET.contains(&b)) {
        return None;
    }
    let secret = rest.get(KEY_ID_LEN..)?.strip_prefix('_')?;
    let secret_ok = secret.len() == SECRET_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !secret_ok {
        return None;
    }
    Some((tenant, key_id.to_string(), sha256(s)))
}

/// Creates an operator key: `tadm_` and 32 random bytes in base64url.
pub fn generate_admin_key() -> String {
    format!(
        "{ADMIN_KEY_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<SECRET_BYTES>())
    )
}

/// Checks presented operator keys against the configured one: the core's `OperatorKey`,
/// the one place an `OperatorGrant` is minted. Holds only the key's SHA-256 and compares in
/// constant time (hashing first also hides the key's length).
pub use tenantry_core::OperatorKey as AdminKeyCheck;

/// Whether a bearer credential is shaped like a compact JWS: three dot-separated base64url
/// parts, of which only the signature may be empty (so an unsigned token still reaches the
/// verifier and is refused with a precise reason).
pub fn looks_like_jwt(s: &str) -> bool {
    let b64url = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let mut parts = s.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(sig), None) => {
            !h.is_empty() && !p.is_empty() && b64url(h) && b64url(p) && b64url(sig)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn acme() -> TenantId {
        TenantId::new("acme-corp").unwrap()
    }

    #[test]
    fn api_keys_round_trip() {
        for _ in 0..200 {
            let key = generate_api_key(&acme());
            assert!(key.full_key.starts_with("tk_acme-corp_"));
            assert_eq!(key.key_id.len(), KEY_ID_LEN);
            assert_eq!(key.prefix.len(), DISPLAY_PREFIX_LEN);
            assert!(key.full_key.starts_with(&key.prefix));
            let (tenant, key_id, hash) = parse_api_key(&key.full_key).unwrap();
            assert_eq!(tenant, acme());
            assert_eq!(key_id, key.key_id);
            assert_eq!(hash, key.secret_hash);
            assert!(!looks_like_jwt(&key.full_key));
        }
    }

    #[test]
    fn a_secret_full_of_underscores_still_parses() {
        let key = format!("tk_acme_abcdefghijkl_{}", "_".repeat(SECRET_LEN));
        let (tenant, key_id, _) = parse_api_key(&key).unwrap();
        assert_eq!(tenant.as_str(), "acme");
        assert_eq!(key_id, "abcdefghijkl");
    }

    #[test]
    fn garbage_is_not_an_api_key() {
        let good = generate_api_key(&acme()).full_key;
        let secret = &good[good.len() - SECRET_LEN..];
        for bad in [
            String::new(),
            "tk_".into(),
            "tk_acme".into(),
            "tadm_abc".into(),
            format!("tk_ACME_abcdefghijkl_{secret}"),
            format!("tk_acme_abcdefghijk_{secret}"),
            format!("tk_acme_abcdefghijk1_{secret}"),
            format!("tk_acme_abcdefghijkl{secret}"),
            format!("tk_acme_abcdefghijkl_{secret}x"),
            format!("tk_acme_abcdefghijkl_{}", &secret[1..]),
            format!("tk_acme_abcdefghijkl_{}!", &secret[1..]),
            format!("tk_../x_abcdefghijkl_{secret}"),
            format!("{good}{}", "a".repeat(500)),
        ] {
            assert!(parse_api_key(&bad).is_none(), "{bad:?} must not parse");
        }
        let key = generate_api_key(&acme());
        let secret = &key.full_key[key.full_key.len() - SECRET_LEN..];
        assert!(!format!("{key:?}").contains(secret));
    }

    #[test]
    fn admin_keys_compare_by_hash() {
        let key = generate_admin_key();
        assert!(key.starts_with("tadm_"));
        assert_eq!(key.len(), ADMIN_KEY_PREFIX.len() + SECRET_LEN);
        let check = AdminKeyCheck::new(&key);
        assert!(check.matches(&key));
        assert!(!check.matches(&key[..key.len() - 1]));
        assert!(!check.matches(""));
        assert!(!check.matches(&generate_admin_key()));
        assert!(!format!("{check:?}").contains(&key));
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(
            looks_like_jwt("eyJh.eyJz."),
            "unsigned tokens reach the verifier"
        );
        assert!(!looks_like_jwt("eyJh.eyJz"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt(".b.c"));
        assert!(!looks_like_jwt("a b.c.d"));
    }
}
