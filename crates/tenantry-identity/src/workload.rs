//! Workload tokens: the short-lived credentials Tenantry gives an agent for one session.
//!
//! A workload token names the tenant (its id and its immutable uid), the user on whose behalf
//! the agent runs, the session, the sandbox instance it was minted for, and the runtime. It is
//! an HS256 JWT signed with a platform secret that never leaves Tenantry (`keys/workload.key`
//! in the state directory), with issuer `tenantry:workload`, so it can never be confused with a
//! user's token from an identity provider. Verifying one proves only that Tenantry minted it;
//! the caller must still check that this very sandbox instance of the session is running (a
//! token dies with its sandbox, whatever happens to the session later) and that the tenant is
//! still the one of that uid (a tenant deleted and created again is another tenant).
//!
//! This module must never accept a token signed with anything but the platform secret, and
//! never log a token or the secret.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tenantry_core::{TenantId, TenantUid, UserId};

use crate::{AuthError, IdentityError};

/// The `iss` of every workload token.
pub const WORKLOAD_ISSUER: &str = "tenantry:workload";
const WORKLOAD_AUDIENCE: &str = "tenantry";

/// Whom a workload token is minted for: one sandbox instance of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSubject {
    pub tenant: TenantId,
    pub tenant_uid: TenantUid,
    pub user: UserId,
    pub session: String,
    /// The sandbox instance (a fresh id each time the session's sandbox starts).
    pub instance: String,
    pub runtime: String,
}

/// What a verified workload token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadIdentity {
    pub subject: WorkloadSubject,
    pub expires_at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    tenant_id: String,
    tuid: String,
    sid: String,
    sbx: String,
    rt: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Mints and verifies workload tokens with the platform secret.
#[derive(Clone)]
pub struct WorkloadIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl fmt::Debug for WorkloadIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkloadIssuer { .. }")
    }
}

impl WorkloadIssuer {
    /// Writes a fresh 256-bit secret (base64url, one line) with mode 0600; refuses to overwrite.
    pub fn generate_key(path: &Path) -> Result<(), IdentityError> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| IdentityError::Io {
                action: "create the workload secret",
                path: path.to_path_buf(),
                source: e,
            })?;
        writeln!(f, "{}", URL_SAFE_NO_PAD.encode(secret)).map_err(|e| IdentityError::Io {
            action: "write the workload secret",
            path: path.to_path_buf(),
            source: e,
        })
    }

    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let text = std::fs::read_to_string(path).map_err(|e| IdentityError::Io {
            action: "read the workload secret",
            path: path.to_path_buf(),
            source: e,
        })?;
        let secret = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| {
            IdentityError::Key(format!("{} is not a workload secret", path.display()))
        })?;
        Self::from_secret(&secret)
    }

    pub fn from_secret(secret: &[u8]) -> Result<Self, IdentityError> {
        if secret.len() < 32 {
            return Err(IdentityError::Key(
                "a workload secret must be at least 32 bytes".into(),
            ));
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        })
    }

    pub fn mint(&self, subject: &WorkloadSubject, ttl: Duration) -> Result<String, IdentityError> {
        let now = tenantry_core::unix_now();
        let mut jti = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut jti);
        let claims = Claims {
            iss: WORKLOAD_ISSUER.into(),
            aud: WORKLOAD_AUDIENCE.into(),
            sub: subject.user.as_str().into(),
            tenant_id: subject.tenant.as_str().into(),
            tuid: subject.tenant_uid.as_str().into(),
            sid: subject.session.clone(),
            sbx: subject.instance.clone(),
            rt: subject.runtime.clone(),
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            jti: URL_SAFE_NO_PAD.encode(jti),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| IdentityError::Key(format!("cannot sign a workload token: {e}")))
    }

    // jsonwebtoken's ErrorKind is another crate's non-exhaustive enum: a wildcard arm is
    // unavoidable, and everything it catches is a refusal.
    #[allow(clippy::wildcard_enum_match_arm)]
    pub fn verify(&self, token: &str) -> Result<WorkloadIdentity, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[WORKLOAD_ISSUER]);
        validation.set_audience(&[WORKLOAD_AUDIENCE]);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // A token of an earlier build (no `tuid` or `sbx`) fails to decode: refused.
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::InvalidSignature => AuthError::BadSignature,
                    ErrorKind::InvalidAlgorithm => AuthError::AlgorithmNotAllowed {
                        issuer: WORKLOAD_ISSUER.into(),
                        alg: "other than HS256".into(),
                    },
                    ErrorKind::InvalidAudience => AuthError::WrongAudience {
                        issuer: WORKLOAD_ISSUER.into(),
                    },
                    ErrorKind::InvalidIssuer => AuthError::UnknownIssuer,
                    ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                    _ => AuthError::Malformed("not a valid workload token"),
                }
            })?;
        let c = data.claims;
        let invalid = |claim: &str, problem: String| AuthError::InvalidClaim {
            claim: claim.into(),
            problem,
        };
        Ok(WorkloadIdentity {
            subject: WorkloadSubject {
                tenant: TenantId::new(c.tenant_id)
                    .map_err(|e| invalid("tenant_id", e.to_string()))?,
                tenant_uid: TenantUid::new(c.tuid).map_err(|e| invalid("tuid", e.to_string()))?,
                user: UserId::new(c.sub).map_err(|e| invalid("sub", e.to_string()))?,
                session: c.sid,
                instance: c.sbx,
                runtime: c.rt,
            },
            expires_at: c.exp,
        })
    }
}

/// The `iss` claim of a JWT, read without verifying anything: only to route the token to the
/// verifier that can check it.
pub fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn subject(session: &str) -> WorkloadSubject {
        WorkloadSubject {
            tenant: TenantId::new("acme").unwrap(),
            tenant_uid: TenantUid::generate(),
            user: UserId::new("alice").unwrap(),
            session: session.into(),
            instance: "sbx-1".into(),
            runtime: "echo".into(),
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let issuer = WorkloadIssuer::from_secret(&[7u8; 32]).unwrap();
        let other = WorkloadIssuer::from_secret(&[8u8; 32]).unwrap();
        let subject = subject("s-1");
        let token = issuer.mint(&subject, Duration::from_secs(60)).unwrap();
        assert_eq!(unverified_issuer(&token).as_deref(), Some(WORKLOAD_ISSUER));
        let id = issuer.verify(&token).unwrap();
        assert_eq!(id.subject, subject);
        assert!(matches!(other.verify(&token), Err(AuthError::BadSignature)));
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["tenant_id"] = "globex".into();
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert!(issuer.verify(&parts.join(".")).is_err());
        assert!(WorkloadIssuer::from_secret(&[1u8; 8]).is_err());
    }

    #[test]
    fn key_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workload.key");
        WorkloadIssuer::generate_key(&path).unwrap();
        assert!(
            WorkloadIssuer::generate_key(&path).is_err(),
            "must not overwrite"
        );
        let issuer = WorkloadIssuer::load(&path).unwrap();
        let t = issuer.mint(&subject("s"), Duration::from_secs(5)).unwrap();
        assert!(issuer.verify(&t).is_ok());
    }
}
