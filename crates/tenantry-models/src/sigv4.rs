//! AWS Signature Version 4 for requests with a body in memory, as Bedrock needs them, computed
//! by the `aws-sigv4` crate (the AWS SDK's own signer).
//!
//! It owns the mapping from our credentials and requests to the crate's, and the `x-amz-date`
//! format. The same [`sign`] recomputes the signature of a request that arrived signed, which is
//! what a verifier compares. It must never log or return the secret key, and never sign headers
//! that a proxy may rewrite (only those the caller lists).

use std::time::SystemTime;

use aws_sigv4::http_request::{self, SignableBody, SigningSettings};
use aws_sigv4::sign::v4;
use time::macros::format_description;

use crate::config::Secret;

/// AWS credentials: long-lived keys, or temporary ones with a session token.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// What is signed of a request.
#[derive(Debug, Clone, Copy)]
pub struct SignableRequest<'a> {
    pub method: &'a str,
    /// The path and query exactly as sent (path segments already percent-encoded once).
    pub uri: &'a str,
    /// Headers to sign; must include `host`. `x-amz-date` is set from the signing time, and
    /// `x-amz-security-token` from the credentials' session token when they have one.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

/// Why a request cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// Without `host` the signer would take it from the URI, which here has none.
    #[error("the request to sign has no host header")]
    NoHost,
    /// The signer refused the request (a header value or the URI it cannot canonicalize).
    #[error("cannot sign the request: {0}")]
    Rejected(String),
}

/// The headers a signature adds to its request.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature {
    /// `YYYYMMDDTHHMMSSZ`, the value of `x-amz-date`.
    pub amz_date: String,
    /// The `Authorization` header value.
    pub authorization: String,
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signature")
            .field("amz_date", &self.amz_date)
            .finish_non_exhaustive()
    }
}

/// Signs `req` at `time` for `region` and `service`.
pub fn sign(
    req: &SignableRequest<'_>,
    creds: &Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<Signature, SignError> {
    if !req
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("host"))
    {
        return Err(SignError::NoHost);
    }
    let rejected = |e: &dyn std::fmt::Display| SignError::Rejected(e.to_string());
    let identity = aws_credential_types::Credentials::new(
        &creds.access_key_id,
        creds.secret_access_key.expose(),
        creds.session_token.as_ref().map(|t| t.expose().to_owned()),
        None,
        "tenantry",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| rejected(&e))?
        .into();
    let request = http_request::SignableRequest::new(
        req.method,
        req.uri,
        req.headers.iter().copied(),
        SignableBody::Bytes(req.payload),
    )
    .map_err(|e| rejected(&e))?;
    let (instructions, _) = http_request::sign(request, &params)
        .map_err(|e| rejected(&e))?
        .into_parts();
    let header = |name: &str| {
        instructions
            .headers()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_owned())
            .ok_or_else(|| SignError::Rejected(format!("the signer set no {name}")))
    };
    Ok(Signature {
        amz_date: header("x-amz-date")?,
        authorization: header("authorization")?,
    })
}

/// The time of an `x-amz-date` value (`YYYYMMDDTHHMMSSZ`, UTC).
pub fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(value, format)
        .ok()
        .map(|t| t.assume_utc().into())
}

/// Percent-encodes per SigV4: everything but `A-Z a-z 0-9 - _ . ~` (and `/` if `keep_slash`).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn at(amz_date: &str) -> SystemTime {
        parse_amz_date(amz_date).unwrap()
    }

    #[test]
    fn iam_list_users_example_signs_as_documented() {
        // The GET ListUsers example of the AWS SigV4 documentation (2015-08-30, IAM).
        let headers = [
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("Host", "iam.amazonaws.com"),
        ];
        let req = SignableRequest {
            method: "GET",
            uri: "/?Version=2010-05-08&Action=ListUsers",
            headers: &headers,
            payload: b"",
        };
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new(SECRET),
            session_token: None,
        };
        let s = sign(&req, &creds, "us-east-1", "iam", at("20150830T123600Z")).unwrap();
        assert_eq!(s.amz_date, "20150830T123600Z");
        assert_eq!(
            s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    /// Bedrock requests as the signer written before `aws-sigv4` signed them (it matched the
    /// AWS documentation's examples): model ids encoded twice in the canonical URI, the session
    /// token signed, a non-default port kept in `host`.
    #[test]
    fn bedrock_requests_sign_as_before() {
        let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
        let cases = [
            (
                "bedrock-runtime.us-east-1.amazonaws.com",
                "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
                "20240102T030405Z",
                Some("session-token-test"),
                "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, \
                 Signature=30ee3b604f9de97811609058a3a0aa4b5efd53167c271384a980c867a46adbc2",
            ),
            (
                "127.0.0.1:8123",
                "/model/amazon.nova-lite-v1%3A0/converse-stream",
                "20250630T235959Z",
                None,
                "SignedHeaders=content-type;host;x-amz-date, \
                 Signature=3fd8685d77d044396648747aafc74aef217d40c40b046d55e2e474a07eab42d0",
            ),
        ];
        for (host, uri, date, token, expected) in cases {
            let headers = [("content-type", "application/json"), ("host", host)];
            let req = SignableRequest {
                method: "POST",
                uri,
                headers: &headers,
                payload: body,
            };
            let creds = Credentials {
                access_key_id: "AKIDTEST".into(),
                secret_access_key: Secret::new("secret/test/key"),
                session_token: token.map(Secret::new),
            };
            let s = sign(&req, &creds, "us-east-1", "bedrock", at(date)).unwrap();
            assert_eq!(
                s.authorization,
                format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDTEST/{}/us-east-1/bedrock/aws4_request, \
                     {expected}",
                    &date[..8]
                )
            );
        }
    }

    #[test]
    fn a_request_without_host_is_refused() {
        let req = SignableRequest {
            method: "GET",
            uri: "/",
            headers: &[],
            payload: b"",
        };
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new(SECRET),
            session_token: None,
        };
        let now = SystemTime::now();
        assert_eq!(
            sign(&req, &creds, "us-east-1", "iam", now),
            Err(SignError::NoHost)
        );
    }

    #[test]
    fn dates_parse_in_utc() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(t));
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(parse_amz_date("20000229T000000Z"), Some(t));
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
    }
}
