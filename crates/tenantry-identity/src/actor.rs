//! Actor tokens: the agent's identity in an RFC 8693 token exchange (`actor_token`), so the
//! token the exchange returns names the agent in its `act` claim.
//!
//! They are ES256 JWTs signed with a key of their own (`keys/actor.pem` in the state
//! directory, a P-256 key in PKCS#8), whose public half the platform publishes in its JWKS
//! (`/.well-known/jwks.json`) under its RFC 7638 thumbprint as `kid`. A token endpoint verifies
//! them with the JWKS alone. They are never signed with the workload secret: a party that can
//! verify an actor token must not thereby be able to mint a workload token.
//!
//! Their issuer and audience are `tenantry:actor`, so no verifier of Tenantry accepts one as a
//! credential. This module must never publish the private key or log a token.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rand::RngCore;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tenantry_core::{TenantId, UserId};

use crate::IdentityError;

/// The `iss` of actor tokens.
pub const ACTOR_ISSUER: &str = "tenantry:actor";
/// The `aud` of actor tokens: never `tenantry`, so no verifier of the platform accepts one.
pub const ACTOR_AUDIENCE: &str = "tenantry:actor";
/// The prefix of an actor token's `sub`: `agent:RUNTIME`.
pub const ACTOR_SUBJECT_PREFIX: &str = "agent:";

/// Signs actor tokens with the platform's actor key.
#[derive(Clone)]
pub struct ActorIssuer {
    encoding: EncodingKey,
    kid: String,
    /// The public key as a JWK (with `kid`, `alg`, `use`).
    jwk: Value,
}

impl fmt::Debug for ActorIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorIssuer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl ActorIssuer {
    /// Writes a fresh P-256 key (PKCS#8 PEM) with mode 0600; refuses to overwrite.
    pub fn generate_key(path: &Path) -> Result<(), IdentityError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |action: &'static str| {
            move |source: std::io::Error| IdentityError::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        };
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let pem = secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| IdentityError::Key(format!("cannot encode the actor key: {e}")))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io("create the actor key"))?;
        f.write_all(pem.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io("write the actor key"))
    }

    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let pem = std::fs::read_to_string(path).map_err(|source| IdentityError::Io {
            action: "read the actor key",
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_pem(&pem).map_err(|e| IdentityError::Key(format!("{}: {e}", path.display())))
    }

    /// From a PKCS#8 PEM P-256 private key.
    pub fn from_pem(pem: &str) -> Result<Self, IdentityError> {
        let secret = p256::SecretKey::from_pkcs8_pem(pem).map_err(|e| {
            IdentityError::Key(format!("not a P-256 private key in PKCS#8 PEM: {e}"))
        })?;
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|e| IdentityError::Key(format!("cannot use the actor key: {e}")))?;
        let point = secret.public_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(IdentityError::Key(
                "the actor key's public point is not affine".into(),
            ));
        };
        let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
        // RFC 7638: the SHA-256 of the required members in lexicographic order, no spaces.
        let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint.as_bytes()));
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y,
                         "kid": kid, "alg": "ES256", "use": "sig"});
        Ok(Self { encoding, kid, jwk })
    }

    /// The key id in every actor token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key, as a JWK for the platform's JWKS.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// Mints an actor token. Its `sub` is `agent:RUNTIME`; it also names the tenant, the session
    /// (`sid`) and the user it acts for (`on_behalf_of`).
    pub fn mint(
        &self,
        tenant: &TenantId,
        user: &UserId,
        session: &str,
        runtime: &str,
        ttl: Duration,
    ) -> Result<String, IdentityError> {
        #[derive(Serialize)]
        struct ActorClaims<'a> {
            iss: &'a str,
            aud: &'a str,
            sub: String,
            tenant_id: &'a str,
            sid: &'a str,
            rt: &'a str,
            on_behalf_of: &'a str,
            iat: i64,
            exp: i64,
            jti: String,
        }
        let now = tenantry_core::unix_now();
        let mut jti = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut jti);
        let claims = ActorClaims {
            iss: ACTOR_ISSUER,
            aud: ACTOR_AUDIENCE,
            sub: format!("{ACTOR_SUBJECT_PREFIX}{runtime}"),
            tenant_id: tenant.as_str(),
            sid: session,
            rt: runtime,
            on_behalf_of: user.as_str(),
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            jti: URL_SAFE_NO_PAD.encode(jti),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| IdentityError::Key(format!("cannot sign an actor token: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn claims_of(token: &str, part: usize) -> Value {
        let p = token.split('.').nth(part).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
    }

    #[test]
    fn actor_tokens_name_the_agent_and_verify_with_the_public_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("actor.pem");
        ActorIssuer::generate_key(&path).unwrap();
        assert!(
            ActorIssuer::generate_key(&path).is_err(),
            "must not overwrite"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let issuer = ActorIssuer::load(&path).unwrap();
        let token = issuer
            .mint(
                &TenantId::new("acme").unwrap(),
                &UserId::new("alice").unwrap(),
                "s-1",
                "support-bot",
                Duration::from_secs(60),
            )
            .unwrap();
        let header = claims_of(&token, 0);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], issuer.kid());
        let claims = claims_of(&token, 1);
        assert_eq!(claims["sub"], "agent:support-bot");
        assert_eq!(claims["aud"], ACTOR_AUDIENCE);
        assert_eq!(claims["on_behalf_of"], "alice");

        let jwk = issuer.jwk();
        assert!(jwk.get("d").is_none());
        let key = DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap()).unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[ACTOR_AUDIENCE]);
        v.set_issuer(&[ACTOR_ISSUER]);
        assert!(jsonwebtoken::decode::<Value>(&token, &key, &v).is_ok());

        // Another key's JWK does not verify it; the same file gives the same kid.
        let other_path = dir.path().join("other.pem");
        ActorIssuer::generate_key(&other_path).unwrap();
        let other = ActorIssuer::load(&other_path).unwrap();
        assert_ne!(other.kid(), issuer.kid());
        let wrong =
            DecodingKey::from_jwk(&serde_json::from_value(other.jwk().clone()).unwrap()).unwrap();
        assert!(jsonwebtoken::decode::<Value>(&token, &wrong, &v).is_err());
        assert_eq!(ActorIssuer::load(&path).unwrap().kid(), issuer.kid());
    }
}
