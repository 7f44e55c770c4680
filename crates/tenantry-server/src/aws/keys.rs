//! The shape of tenant access key pairs: `tka_{tenant}_{key id}` and a 40-character secret.
//!
//! The access key id names its tenant (a slug without `_`) so that a signed request is looked
//! up within that one tenant, as API keys are. The secret is random, shown once, and kept only
//! sealed by the tenant's vault data key. This module never logs or stores a secret.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use tenantry_core::TenantId;
use tenantry_vault::SecretString;

const PREFIX: &str = "tka_";
/// Lowercase RFC 4648 base32: unambiguous, safe in a SigV4 credential scope.
const ID_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const ID_LEN: usize = 16;
/// 30 random bytes in base64url: 40 characters, like an AWS secret access key.
const SECRET_BYTES: usize = 30;

/// The access key id the platform sets in every sandbox (`AWS_ACCESS_KEY_ID`); on a sandbox's
/// bridge it is verified with that sandbox's own secret, and means nothing anywhere else.
pub const SANDBOX_ACCESS_KEY_ID: &str = "tenantry-sandbox";

/// What the vault binds a sealed secret access key to.
pub const SEAL_PURPOSE: &str = "sigv4-access-key";

/// A new key pair: the id, and the secret shown once.
pub struct NewAccessKey {
    pub access_key_id: String,
    pub key_id: String,
    pub secret: SecretString,
}

impl std::fmt::Debug for NewAccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccessKey")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Makes a key pair for `tenant`.
pub fn generate(tenant: &TenantId) -> NewAccessKey {
    let mut id = [0u8; ID_LEN];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let key_id: String = id
        .iter()
        .map(|b| char::from(ID_ALPHABET[usize::from(b & 31)]))
        .collect();
    let mut secret = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    NewAccessKey {
        access_key_id: format!("{PREFIX}{tenant}_{key_id}"),
        key_id,
        secret: SecretString::new(URL_SAFE_NO_PAD.encode(secret)),
    }
}

/// The tenant an access key id names, or `None` if it is not one of ours.
pub fn tenant_of(access_key_id: &str) -> Option<TenantId> {
    if access_key_id.len() > PREFIX.len() + 63 + 1 + ID_LEN {
        return None;
    }
    let rest = access_key_id.strip_prefix(PREFIX)?;
    let (tenant, id) = rest.split_once('_')?;
    let id_ok = id.len() == ID_LEN && id.bytes().all(|b| ID_ALPHABET.contains(&b));
    if !id_ok {
        return None;
    }
    TenantId::new(tenant).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_name_their_tenant_and_secrets_look_like_aws_ones() {
        let acme = TenantId::new("acme-corp").unwrap();
        for _ in 0..100 {
            let k = generate(&acme);
            assert_eq!(tenant_of(&k.access_key_id), Some(acme.clone()));
            assert!(k.access_key_id.ends_with(&k.key_id));
            assert_eq!(k.secret.expose().len(), 40);
            assert!(!format!("{k:?}").contains(k.secret.expose()));
        }
        for bad in [
            "",
            "AKIDEXAMPLE",
            "tka_acme",
            "tka_acme_short",
            "tka_ACME_abcdefghijklmnop",
            "tka_acme_abcdefghijklmnop1",
            "tka_../x_abcdefghijklmnop",
            SANDBOX_ACCESS_KEY_ID,
        ] {
            assert_eq!(tenant_of(bad), None, "{bad}");
        }
    }
}
