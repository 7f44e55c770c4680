//! What both upstream kinds share: the HTTP client (no redirects: a redirect could carry an
//! injected credential to another host), credential injection, transport-error
//! classification without URLs (a query may carry a credential), and bounded body reads.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use url::Url;

use crate::credentials::OutboundCredential;
use crate::error::{TargetError, UpstreamError, trim_message};

/// Largest answer read from an upstream, in bytes.
pub(crate) const MAX_BODY: usize = 16 * 1024 * 1024;

pub(crate) fn client() -> Result<reqwest::Client, TargetError> {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| TargetError::Client(e.to_string()))
}

/// Puts the credential on the request: a header or `Authorization` replaces any value of the
/// same name, a query parameter replaces any parameter of the same name.
pub(crate) fn apply_credential(
    url: &mut Url,
    headers: &mut HeaderMap,
    credential: Option<&OutboundCredential>,
) -> Result<(), UpstreamError> {
    let bad_value =
        || UpstreamError::Request("the credential is not a valid HTTP header value".into());
    match credential {
        None => {}
        Some(OutboundCredential::Header { name, value }) => {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                UpstreamError::Request(format!("{name:?} is not a valid header name"))
            })?;
            let mut v = HeaderValue::from_str(value.expose()).map_err(|_| bad_value())?;
            v.set_sensitive(true);
            headers.insert(name, v);
        }
        Some(OutboundCredential::Bearer(token)) => {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| bad_value())?;
            v.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, v);
        }
        Some(OutboundCredential::Query { name, value }) => {
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != name)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let mut pairs = url.query_pairs_mut();
            pairs.clear();
            for (k, v) in &kept {
                pairs.append_pair(k, v);
            }
            pairs.append_pair(name, value.expose());
        }
    }
    Ok(())
}

/// A transport failure, described by its innermost cause (refused, reset, DNS) and never by
/// the URL.
pub(crate) fn transport_error(e: &reqwest::Error) -> UpstreamError {
    let mut s = String::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(e) = cur {
        s = e.to_string();
        cur = e.source();
    }
    UpstreamError::Connect(trim_message(s))
}

/// Reads a whole body, refusing one larger than `max`.
pub(crate) async fn read_limited(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, UpstreamError> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(b)) => {
                if out.len() + b.len() > max {
                    return Err(UpstreamError::malformed(format!(
                        "the answer is larger than {max} bytes"
                    )));
                }
                out.extend_from_slice(&b);
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                let UpstreamError::Connect(cause) = transport_error(&e) else {
                    return Err(UpstreamError::malformed("the answer was cut off"));
                };
                return Err(UpstreamError::Connect(format!(
                    "the answer was cut off: {cause}"
                )));
            }
        }
    }
}

/// Whether a `Content-Type` names this media type (parameters and case ignored).
pub(crate) fn is_media_type(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(media))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::identity::Secret;

    #[test]
    fn credentials_replace_what_was_there() {
        let mut url = Url::parse("http://x/p?a=1&key=old").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("caller"));
        apply_credential(
            &mut url,
            &mut headers,
            Some(&OutboundCredential::Query {
                name: "key".into(),
                value: Secret::new("s e&cret"),
            }),
        )
        .unwrap();
        assert_eq!(url.query(), Some("a=1&key=s+e%26cret"));
        apply_credential(
            &mut url,
            &mut headers,
            Some(&OutboundCredential::Header {
                name: "X-Api-Key".into(),
                value: Secret::new("tenant"),
            }),
        )
        .unwrap();
        assert_eq!(headers.get_all("x-api-key").iter().count(), 1);
        assert_eq!(headers["x-api-key"], "tenant");
        assert!(headers["x-api-key"].is_sensitive());
        let err = apply_credential(
            &mut url,
            &mut headers,
            Some(&OutboundCredential::Bearer(Secret::new("bad\nvalue"))),
        )
        .unwrap_err();
        assert!(!err.to_string().contains("bad"));
    }
}
