//! Bearer tokens that verified recently.
//!
//! A client sends the same token on every request until it expires, and checking its signature
//! (tens of microseconds for EdDSA, more for RSA) is the largest part of authenticating a
//! request. A token that verified is remembered by the SHA-256 of its bytes, so only the very
//! same token is answered from here, and only while all of these hold:
//! * it was verified less than `FRESH_FOR` ago;
//! * its `exp` (with the issuer's leeway) has not passed;
//! * the key that verified it is still the issuer's current key for its `kid` (the caller
//!   checks this: a key refreshed away, or refreshed at all, sends the token through the full
//!   check again).
//!
//! Refusals are never remembered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::VerifiedToken;
use crate::keys::{Alg, VerifyKey};

/// The longest a verified token is answered without checking its signature again.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(60);
/// Tokens remembered at most; past this, expired entries go, then all of them.
const CAPACITY: usize = 10_000;

pub(crate) type TokenDigest = [u8; 32];

pub(crate) fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// What verified a remembered token, and what it proved.
#[derive(Clone)]
pub(crate) struct Remembered {
    pub verified: VerifiedToken,
    /// Index of the issuer in the verifier's list.
    pub issuer: usize,
    pub kid: Option<String>,
    pub alg: Alg,
    pub key: Arc<VerifyKey>,
    fresh_until: Instant,
    /// `exp` plus the issuer's leeway: from this second on the token is expired.
    expired_from: i64,
}

impl Remembered {
    pub(crate) fn new(
        verified: VerifiedToken,
        issuer: usize,
        kid: Option<&str>,
        alg: Alg,
        key: Arc<VerifyKey>,
        leeway: i64,
    ) -> Self {
        let expired_from = verified.expires_at.saturating_add(leeway);
        Self {
            verified,
            issuer,
            kid: kid.map(str::to_string),
            alg,
            key,
            fresh_until: Instant::now() + FRESH_FOR,
            expired_from,
        }
    }

    fn usable(&self, now: Instant, unix_now: i64) -> bool {
        now < self.fresh_until && unix_now < self.expired_from
    }
}

#[derive(Default)]
pub(crate) struct RecentTokens {
    map: Mutex<HashMap<TokenDigest, Remembered>>,
}

impl RecentTokens {
    /// The remembered verification of this token, if it is still usable.
    pub(crate) fn get(&self, digest: &TokenDigest) -> Option<Remembered> {
        let mut map = self.map.lock().ok()?;
        let entry = map.get(digest)?;
        if entry.usable(Instant::now(), tenantry_core::unix_now()) {
            return Some(entry.clone());
        }
        map.remove(digest);
        None
    }

    pub(crate) fn put(&self, digest: TokenDigest, remembered: Remembered) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= CAPACITY && !map.contains_key(&digest) {
            let (now, unix_now) = (Instant::now(), tenantry_core::unix_now());
            map.retain(|_, e| e.usable(now, unix_now));
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(digest, remembered);
    }

    /// Forgets one token (its key no longer verifies it as remembered).
    pub(crate) fn forget(&self, digest: &TokenDigest) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(digest);
        }
    }

    /// Forgets every remembered token of one tenant (it was deleted or suspended: its next
    /// request goes through the full check and the registry again).
    pub(crate) fn forget_tenant(&self, tenant: &tenantry_core::TenantId) {
        if let Ok(mut map) = self.map.lock() {
            map.retain(|_, e| &e.verified.tenant != tenant);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::keys::KeySet;
    use tenantry_core::{TenantId, UserId};

    fn remembered(exp: i64) -> Remembered {
        let key = KeySet::shared_secret(b"0123456789abcdef0123456789abcdef")
            .find(None, Alg::HS256)
            .unwrap();
        Remembered::new(
            VerifiedToken {
                issuer_name: "t".into(),
                tenant: TenantId::new("acme").unwrap(),
                user: UserId::new("alice").unwrap(),
                roles: Vec::new(),
                expires_at: exp,
            },
            0,
            None,
            Alg::HS256,
            key,
            0,
        )
    }

    #[test]
    fn only_the_same_token_and_only_before_it_expires() {
        let recent = RecentTokens::default();
        let now = tenantry_core::unix_now();
        recent.put(digest("a.b.c"), remembered(now + 100));
        assert!(recent.get(&digest("a.b.c")).is_some());
        assert!(recent.get(&digest("a.b.d")).is_none());
        recent.put(digest("x.y.z"), remembered(now));
        assert!(recent.get(&digest("x.y.z")).is_none(), "expired");
        assert_eq!(recent.len(), 1, "the expired entry is dropped when seen");
        recent.forget(&digest("a.b.c"));
        assert!(recent.get(&digest("a.b.c")).is_none());
    }

    #[test]
    fn capacity_is_bounded() {
        let recent = RecentTokens::default();
        let now = tenantry_core::unix_now();
        for i in 0..CAPACITY + 10 {
            recent.put(digest(&i.to_string()), remembered(now + 100));
        }
        assert!(recent.len() <= CAPACITY, "{}", recent.len());
    }
}
