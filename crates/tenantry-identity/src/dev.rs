//! The built-in development issuer: Ed25519 keys kept in the state directory, tokens minted by
//! the CLI (`tenantry token`) and verified in-process like any other issuer's.
//!
//! It exists so a laptop install works without an identity provider. It must never be the only
//! thing standing between the internet and tenant data in production: the operator turns it
//! off (or keeps its keys as secret as any signing key). Its `Debug` output and errors never
//! show key material.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey};
use jsonwebtoken::DecodingKey;
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use tenantry_core::{TenantId, UserId};

use crate::IdentityError;
use crate::keys::{Alg, KeySet, KeyType, VerifyKey};

/// The issuer name the development issuer has in logs and `CredentialKind::Jwt`.
pub const DEV_ISSUER_NAME: &str = "dev";

/// The development issuer. The first key signs; all keys are published, so a new key can be put
/// first while tokens signed by the old one stay valid until they expire.
#[derive(Clone)]
pub struct DevIssuer {
    issuer: String,
    audience: String,
    keys: Vec<DevKey>,
}

#[derive(Clone)]
struct DevKey {
    kid: String,
    signing: SigningKey,
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field(
                "kids",
                &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// kid = the first 16 characters of base64url(SHA-256(public key)): stable across restarts and
/// different for every key.
fn kid_of(signing: &SigningKey) -> String {
    let digest = Sha256::digest(signing.verifying_key().as_bytes());
    let mut kid = URL_SAFE_NO_PAD.encode(digest);
    kid.truncate(16);
    kid
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> IdentityError {
    IdentityError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl DevIssuer {
    /// Writes a new Ed25519 private key (PKCS#8 PEM) readable only by the owner. Refuses to
    /// overwrite an existing file: replacing a key would invalidate every token it signed.
    pub fn generate_key(path: &Path) -> Result<(), IdentityError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| io_error("cannot create directory", parent, e))?;
        }
        let signing = SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| IdentityError::Key(format!("cannot encode the new key: {e}")))?;

        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                IdentityError::Key(format!(
                    "{} already exists; refusing to overwrite a signing key (move it away first to rotate)",
                    path.display()
                ))
            } else {
                io_error("cannot create key file", path, e)
            }
        })?;
        file.write_all(pem.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error("cannot write key file", path, e))
    }

    /// Loads the keys; the first one signs, all are published in the JWKS.
    pub fn load(
        key_paths: &[PathBuf],
        issuer: String,
        audience: String,
    ) -> Result<Self, IdentityError> {
        if key_paths.is_empty() {
            return Err(IdentityError::Config(
                "the development issuer needs at least one key file (run `tenantry init`)".into(),
            ));
        }
        if issuer.trim().is_empty() {
            return Err(IdentityError::Config(
                "the development issuer needs an issuer (iss), e.g. the server's public URL".into(),
            ));
        }
        if audience.trim().is_empty() {
            return Err(IdentityError::Config(
                "the development issuer needs an audience (aud)".into(),
            ));
        }
        let mut keys: Vec<DevKey> = Vec::with_capacity(key_paths.len());
        for path in key_paths {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| io_error("cannot read key file", path, e))?;
            let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|_| {
                IdentityError::Key(format!(
                    "{} is not a PKCS#8 PEM Ed25519 private key (create one with `tenantry init`)",
                    path.display()
                ))
            })?;
            warn_if_readable_by_others(path);
            let kid = kid_of(&signing);
            if keys.iter().any(|k| k.kid == kid) {
                tracing::warn!(path = %path.display(), "the same development key is listed twice; ignoring the repeat");
                continue;
            }
            keys.push(DevKey { kid, signing });
        }
        Ok(Self {
            issuer,
            audience,
            keys,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The kid of the key that signs new tokens.
    pub fn signing_kid(&self) -> &str {
        self.keys.first().map_or("", |k| k.kid.as_str())
    }

    /// Mints a token for a tenant user. Claims: iss, aud, sub, tenant_id, roles, iat, nbf, exp, jti.
    pub fn mint(
        &self,
        tenant: &TenantId,
        user: &UserId,
        roles: &[String],
        ttl: Duration,
    ) -> Result<String, IdentityError> {
        let key = self.keys.first().ok_or_else(|| {
            IdentityError::Config("the development issuer has no signing key".into())
        })?;
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        if ttl < 1 {
            return Err(IdentityError::Config(
                "a token's lifetime must be at least one second".into(),
            ));
        }
        let now = tenantry_core::unix_now();
        let mut jti = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut jti);
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid});
        let claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user.as_str(),
            "tenant_id": tenant.as_str(),
            "roles": roles,
            "iat": now,
            "nbf": now,
            "exp": now.saturating_add(ttl),
            "jti": URL_SAFE_NO_PAD.encode(jti),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = key.signing.sign(signing_input.as_bytes());
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }

    /// The public keys as a JWKS, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .keys
            .iter()
            .map(|k| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(k.signing.verifying_key().as_bytes()),
                    "kid": k.kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        json!({ "keys": keys })
    }

    /// An OIDC discovery document, for `/.well-known/openid-configuration`.
    pub fn discovery_document(&self, base_url: &str) -> serde_json::Value {
        let base = base_url.trim_end_matches('/');
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "claims_supported": ["iss", "aud", "sub", "tenant_id", "roles", "iat", "nbf", "exp", "jti"],
        })
    }

    /// The verification keys, for the in-process verifier.
    pub(crate) fn key_set(&self) -> KeySet {
        KeySet::new(
            self.keys
                .iter()
                .map(|k| VerifyKey {
                    kid: Some(k.kid.clone()),
                    key_type: KeyType::Ed25519,
                    alg: Some(Alg::EdDSA),
                    key: DecodingKey::from_ed_der(k.signing.verifying_key().as_bytes()),
                })
                .collect(),
        )
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the development signing key is readable by other users; run `chmod 600` on it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_keys_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/dev-1.pem");
        DevIssuer::generate_key(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let before = std::fs::read(&path).unwrap();
        let err = DevIssuer::generate_key(&path).unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn first_key_signs_and_all_are_published() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.pem");
        let b = dir.path().join("b.pem");
        DevIssuer::generate_key(&a).unwrap();
        DevIssuer::generate_key(&b).unwrap();
        let dev = DevIssuer::load(
            &[b.clone(), a.clone()],
            "http://localhost:7070".into(),
            "tenantry".into(),
        )
        .unwrap();
        let jwks = dev.jwks();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0]["kid"], dev.signing_kid());
        assert_eq!(dev.signing_kid().len(), 16);
        assert_eq!(keys[0]["kty"], "OKP");
        assert_eq!(keys[0]["alg"], "EdDSA");
        let doc = dev.discovery_document("http://localhost:7070/");
        assert_eq!(
            doc["jwks_uri"],
            "http://localhost:7070/.well-known/jwks.json"
        );
        assert_eq!(doc["issuer"], "http://localhost:7070");
        assert!(!format!("{dev:?}").contains("PRIVATE"));
    }

    #[test]
    fn load_explains_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a key").unwrap();
        let err = DevIssuer::load(&[bad], "iss".into(), "aud".into()).unwrap_err();
        assert!(err.to_string().contains("PKCS#8 PEM Ed25519"));
        let err = DevIssuer::load(
            &[dir.path().join("missing.pem")],
            "iss".into(),
            "aud".into(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("cannot read key file"));
        assert!(DevIssuer::load(&[], "iss".into(), "aud".into()).is_err());
    }
}
