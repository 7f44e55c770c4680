//! Verifying AWS Signature Version 4 on requests that arrive signed.
//!
//! The signature is recomputed with the `aws-sigv4` crate (the AWS SDKs' own canonicalisation:
//! path normalisation and double encoding, query sorting, header folding) over exactly the
//! headers the client says it signed, at the time of its `x-amz-date`, and compared with the
//! presented one in constant time. The date must be within 15 minutes of ours and the
//! credential scope must name one of the services the platform answers for.
//!
//! Nothing here knows tenants, keys or routes: the caller finds the secret for the access key
//! id and decides what a verified request may do. It must never log or return a secret.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{self, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

/// The scheme of a SigV4 `Authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// How far a request's `x-amz-date` may be from our clock (AWS's own limit).
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The signing names of the AWS services the platform serves: `bedrock-agentcore` (both
/// AgentCore planes) and `bedrock` (the knowledge-base Retrieve of `bedrock-agent-runtime`).
pub const SERVICES: &[&str] = &["bedrock-agentcore", "bedrock"];

/// Whether an `Authorization` value is a SigV4 signature (rather than a bearer credential).
pub fn is_sigv4(value: &str) -> bool {
    value
        .get(..ALGORITHM.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(ALGORITHM))
        && value.as_bytes().get(ALGORITHM.len()) == Some(&b' ')
}

/// The parts of a SigV4 `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// `YYYYMMDD` of the credential scope.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lower-case names, as listed.
    pub signed_headers: Vec<String>,
    /// Lower-case hex.
    pub signature: String,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization")
            .field("access_key_id", &self.access_key_id)
            .field("scope", &(&self.date, &self.region, &self.service))
            .field("signed_headers", &self.signed_headers)
            .finish_non_exhaustive()
    }
}

/// Why a signed request is refused. Each maps to the AWS error a client expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// The header or a required part is missing or malformed (`IncompleteSignatureException`).
    #[error("{0}")]
    Incomplete(String),
    /// The date is too far from ours (`InvalidSignatureException`, "Signature expired").
    #[error(
        "Signature expired or not yet valid: the request's x-amz-date is more than 15 minutes \
         from the server's time"
    )]
    Skewed,
    /// The credential scope names a service this platform does not answer for.
    #[error("Credential should be scoped to a valid service: one of {}", SERVICES.join(", "))]
    WrongService,
    /// The recomputed signature differs (`InvalidSignatureException`).
    #[error(
        "The request signature we calculated does not match the signature you provided. Check \
         your AWS Secret Access Key and signing method."
    )]
    Mismatch,
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
/// SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(value: &str) -> Result<Authorization, SigV4Error> {
    let incomplete = |what: &str| SigV4Error::Incomplete(format!("Authorization header {what}"));
    if !is_sigv4(value) || value.len() > 8192 {
        return Err(incomplete("is not an AWS4-HMAC-SHA256 signature"));
    }
    let rest = &value[ALGORITHM.len()..];
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            return Err(incomplete("has a part without '='"));
        };
        match k.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => return Err(incomplete("has an unknown part")),
        }
    }
    let credential = credential.ok_or_else(|| incomplete("lacks Credential"))?;
    let signed = signed.ok_or_else(|| incomplete("lacks SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("lacks Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, terminator] = scope.as_slice() else {
        return Err(incomplete(
            "has a Credential that is not KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    let date_ok = date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit());
    if key.is_empty() || !date_ok || region.is_empty() || *terminator != "aws4_request" {
        return Err(incomplete(
            "has a Credential that is not KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    }
    let hex_ok = signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex_ok {
        return Err(incomplete("has a Signature that is not 64 hex digits"));
    }
    let signed_headers: Vec<String> = signed.split(';').map(str::to_ascii_lowercase).collect();
    if signed_headers.iter().any(String::is_empty) {
        return Err(incomplete("has an empty name in SignedHeaders"));
    }
    for required in ["host", "x-amz-date"] {
        if !signed_headers.iter().any(|h| h == required) {
            return Err(SigV4Error::Incomplete(format!(
                "SignedHeaders must include {required}"
            )));
        }
    }
    Ok(Authorization {
        access_key_id: (*key).to_string(),
        date: (*date).to_string(),
        region: (*region).to_string(),
        service: (*service).to_string(),
        signed_headers,
        signature: signature.to_ascii_lowercase(),
    })
}

/// A request as it arrived: method, the path and query exactly as sent, headers and body.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Verifies `auth` over `req` with `secret` at `now`.
pub fn verify(
    req: &Received<'_>,
    auth: &Authorization,
    secret: &str,
    now: SystemTime,
) -> Result<(), SigV4Error> {
    if !SERVICES.contains(&auth.service.as_str()) {
        return Err(SigV4Error::WrongService);
    }
    let amz_date = req
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| SigV4Error::Incomplete("the request has no x-amz-date header".into()))?;
    let at = tenantry_models::sigv4::parse_amz_date(amz_date).ok_or_else(|| {
        SigV4Error::Incomplete("x-amz-date is not of the form YYYYMMDDTHHMMSSZ".into())
    })?;
    if !amz_date.starts_with(&auth.date) {
        return Err(SigV4Error::Mismatch);
    }
    let skew = now.duration_since(at).unwrap_or_else(|e| e.duration());
    if skew > MAX_SKEW {
        return Err(SigV4Error::Skewed);
    }
    let expected = recompute(req, auth, secret, at)?;
    if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        Ok(())
    } else {
        Err(SigV4Error::Mismatch)
    }
}

/// The signature `auth`'s client should have computed over `req` with `secret` at `at`.
fn recompute(
    req: &Received<'_>,
    auth: &Authorization,
    secret: &str,
    at: SystemTime,
) -> Result<String, SigV4Error> {
    let mut headers: Vec<(&str, String)> = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        let mut values = req.headers.get_all(name.as_str()).iter().peekable();
        if values.peek().is_none() {
            return Err(SigV4Error::Incomplete(format!(
                "the signed header {name} is not in the request"
            )));
        }
        let mut joined = String::new();
        for v in values {
            let text = v.to_str().map_err(|_| SigV4Error::Mismatch)?;
            if !joined.is_empty() {
                joined.push(',');
            }
            joined.push_str(text);
        }
        headers.push((name.as_str(), joined));
    }
    // Our headers are exactly the signed ones: nothing else may be left out or added.
    let mut settings = SigningSettings::default();
    settings.excluded_headers = None;
    let identity = aws_credential_types::Credentials::new(
        &auth.access_key_id,
        secret,
        None,
        None,
        "tenantry-verifier",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&auth.region)
        .name(&auth.service)
        .time(at)
        .settings(settings)
        .build()
        .map_err(|_| SigV4Error::Mismatch)?
        .into();
    let request = SignableRequest::new(
        req.method,
        req.path_and_query,
        headers.iter().map(|(k, v)| (*k, v.as_str())),
        SignableBody::Bytes(req.body),
    )
    .map_err(|_| SigV4Error::Mismatch)?;
    let output = http_request::sign(request, &params).map_err(|_| SigV4Error::Mismatch)?;
    Ok(output.signature().to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tenantry_models::Secret;
    use tenantry_models::sigv4::{Credentials, SignableRequest as Outbound, parse_amz_date, sign};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn signed(uri: &str, body: &[u8], date: &str, secret: &str) -> (HeaderMap, Authorization) {
        let headers = [
            ("content-type", "application/json"),
            ("host", "127.0.0.1:8080"),
        ];
        let creds = Credentials {
            access_key_id: "tka_acme_abcdefghijkl".into(),
            secret_access_key: Secret::new(secret),
            session_token: None,
        };
        let req = Outbound {
            method: "POST",
            uri,
            headers: &headers,
            payload: body,
        };
        let s = sign(
            &req,
            &creds,
            "us-east-1",
            "bedrock-agentcore",
            parse_amz_date(date).unwrap(),
        )
        .unwrap();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(k, v.parse().unwrap());
        }
        map.insert("x-amz-date", s.amz_date.parse().unwrap());
        map.insert("user-agent", "Boto3/1.0".parse().unwrap());
        (map, parse_authorization(&s.authorization).unwrap())
    }

    fn received<'a>(uri: &'a str, headers: &'a HeaderMap, body: &'a [u8]) -> Received<'a> {
        Received {
            method: "POST",
            path_and_query: uri,
            headers,
            body,
        }
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let uri = "/aws/bedrock-agentcore/memories/mem-1/events";
        let body = br#"{"actorId":"alice"}"#;
        let date = "20260102T030405Z";
        let now = parse_amz_date(date).unwrap() + Duration::from_secs(60);
        let (headers, auth) = signed(uri, body, date, SECRET);
        assert_eq!(auth.access_key_id, "tka_acme_abcdefghijkl");
        assert_eq!(auth.service, "bedrock-agentcore");
        verify(&received(uri, &headers, body), &auth, SECRET, now).unwrap();

        let other_body = br#"{"actorId":"mallory"}"#;
        assert_eq!(
            verify(&received(uri, &headers, other_body), &auth, SECRET, now),
            Err(SigV4Error::Mismatch)
        );
        let other_uri = "/aws/bedrock-agentcore/memories/mem-2/events";
        assert_eq!(
            verify(&received(other_uri, &headers, body), &auth, SECRET, now),
            Err(SigV4Error::Mismatch)
        );
        assert_eq!(
            verify(&received(uri, &headers, body), &auth, "another secret", now),
            Err(SigV4Error::Mismatch)
        );
        let mut moved = headers.clone();
        moved.insert("host", "evil.example".parse().unwrap());
        assert_eq!(
            verify(&received(uri, &moved, body), &auth, SECRET, now),
            Err(SigV4Error::Mismatch)
        );
        // An unsigned header may change (a proxy's user agent).
        let mut agent = headers.clone();
        agent.insert("user-agent", "other".parse().unwrap());
        verify(&received(uri, &agent, body), &auth, SECRET, now).unwrap();
    }

    #[test]
    fn dates_beyond_fifteen_minutes_are_refused() {
        let uri = "/x";
        let date = "20260102T030405Z";
        let (headers, auth) = signed(uri, b"", date, SECRET);
        let at = parse_amz_date(date).unwrap();
        for now in [
            at + Duration::from_secs(16 * 60),
            at - Duration::from_secs(16 * 60),
        ] {
            assert_eq!(
                verify(&received(uri, &headers, b""), &auth, SECRET, now),
                Err(SigV4Error::Skewed)
            );
        }
        verify(
            &received(uri, &headers, b""),
            &auth,
            SECRET,
            at - Duration::from_secs(14 * 60),
        )
        .unwrap();
    }

    #[test]
    fn a_foreign_service_scope_is_refused() {
        let uri = "/x";
        let date = "20260102T030405Z";
        let (headers, mut auth) = signed(uri, b"", date, SECRET);
        auth.service = "s3".into();
        let now = parse_amz_date(date).unwrap();
        assert_eq!(
            verify(&received(uri, &headers, b""), &auth, SECRET, now),
            Err(SigV4Error::WrongService)
        );
    }

    #[test]
    fn malformed_headers_are_incomplete() {
        for bad in [
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 Credential=a/20260101/r/s/aws4_request",
            "AWS4-HMAC-SHA256 Credential=a/2026/r/s/aws4_request, SignedHeaders=host;x-amz-date, \
             Signature=00",
            "AWS4-HMAC-SHA256 Credential=a/20260101/r/s/aws4_request, SignedHeaders=content-type, \
             Signature=0000000000000000000000000000000000000000000000000000000000000000",
            "Bearer x",
        ] {
            assert!(
                matches!(parse_authorization(bad), Err(SigV4Error::Incomplete(_))),
                "{bad}"
            );
        }
        assert!(is_sigv4("AWS4-HMAC-SHA256 Credential=x"));
        assert!(!is_sigv4("Bearer AWS4-HMAC-SHA256"));
    }
}
