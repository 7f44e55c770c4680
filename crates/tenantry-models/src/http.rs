//! What every HTTP provider shares: the client, deadlines, classification of transport
//! failures and upstream error bodies, bounded body reads, and the driver that turns a
//! response body into a stream of chunks as the bytes arrive.
//!
//! Nothing here waits without a deadline: a whole answer has the request timeout, a stream
//! has the request timeout for its headers and the idle timeout between reads. Nothing here
//! logs a request's headers, which carry credentials.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use serde::de::DeserializeOwned;
use tenantry_core::upstream::error_message;

use crate::config::{ConfigError, Timeouts, invalid};
use crate::error::ProviderError;
use crate::providers::ChatStream;
use crate::wire::ChatChunk;

/// Largest whole answer accepted, in bytes.
pub(crate) const MAX_BODY: usize = 32 * 1024 * 1024;
/// Largest error body read for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub(crate) fn client(key: &str, t: &Timeouts) -> Result<reqwest::Client, ConfigError> {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(t.connect)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| invalid(key, format!("cannot build the HTTP client: {e}")))
}

fn transport_error(e: &reqwest::Error, t: &Timeouts) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout {
            what: "connect",
            after: t.connect,
        }
    } else {
        // Without the URL: it may carry a key in its query for some endpoints.
        ProviderError::Connect(crate::error::trim_message(e.without_url_string()))
    }
}

trait WithoutUrl {
    fn without_url_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_string(&self) -> String {
        let mut s = String::new();
        let mut cur: Option<&dyn std::error::Error> = Some(self);
        // The innermost cause says what happened (refused, reset, DNS); the outer ones repeat it.
        while let Some(e) = cur {
            s = e.to_string();
            cur = e.source();
        }
        s
    }
}

/// Sends a request and waits for its response headers within `limit`. A non-success status
/// becomes `ProviderError::Upstream` with the upstream's own message.
pub(crate) async fn send(
    rb: reqwest::RequestBuilder,
    t: &Timeouts,
    limit: Duration,
) -> Result<reqwest::Response, ProviderError> {
    let resp = match tokio::time::timeout(limit, rb.send()).await {
        Err(_) => {
            return Err(ProviderError::Timeout {
                what: "response",
                after: limit,
            });
        }
        Ok(Err(e)) => return Err(transport_error(&e, t)),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = tokio::time::timeout(Duration::from_secs(2), read_limited(resp, MAX_ERROR_BODY))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let message = error_message(&body);
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_owned()
    } else {
        message
    };
    Err(ProviderError::Upstream {
        status: status.as_u16(),
        message: crate::error::trim_message(message),
        retry_after,
    })
}

async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, ProviderError> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(b)) => {
                if out.len() + b.len() > max {
                    return Err(ProviderError::malformed(format!(
                        "the answer is larger than {max} bytes"
                    )));
                }
                out.extend_from_slice(&b);
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                return Err(ProviderError::broken(format!(
                    "the answer was cut off: {}",
                    e.without_url_string()
                )));
            }
        }
    }
}

/// Sends a request and reads its whole JSON answer, all within the request timeout.
pub(crate) async fn call_json<T: DeserializeOwned>(
    rb: reqwest::RequestBuilder,
    t: &Timeouts,
) -> Result<T, ProviderError> {
    let whole = async {
        let resp = send(rb, t, t.request).await?;
        let body = read_limited(resp, MAX_BODY).await?;
        serde_json::from_slice::<T>(&body).map_err(|e| {
            ProviderError::malformed(format!("the answer is not the expected JSON: {e}"))
        })
    };
    match tokio::time::timeout(t.request, whole).await {
        Ok(r) => r,
        Err(_) => Err(ProviderError::Timeout {
            what: "response",
            after: t.request,
        }),
    }
}

/// A response body read piece by piece, each read bounded by the idle timeout.
#[derive(Debug)]
pub(crate) struct Body {
    resp: reqwest::Response,
    idle: Duration,
}

impl Body {
    pub(crate) fn new(resp: reqwest::Response, idle: Duration) -> Self {
        Self { resp, idle }
    }

    async fn next(&mut self) -> Result<Option<Bytes>, ProviderError> {
        match tokio::time::timeout(self.idle, self.resp.chunk()).await {
            Err(_) => Err(ProviderError::Timeout {
                what: "stream idle",
                after: self.idle,
            }),
            Ok(Err(e)) => Err(ProviderError::broken(format!(
                "the connection failed mid-stream: {}",
                e.without_url_string()
            ))),
            Ok(Ok(b)) => Ok(b),
        }
    }
}

/// Splits a byte stream into protocol events (server-sent events, AWS event-stream frames).
pub(crate) trait Decoder: Send + 'static {
    type Event: Send;
    fn push(&mut self, bytes: &[u8]) -> Result<(), ProviderError>;
    /// The next complete event buffered, if any.
    fn next_event(&mut self) -> Result<Option<Self::Event>, ProviderError>;
    /// At the end of the body: an event left without its terminator, if the framing allows one.
    fn finish(&mut self) -> Result<Option<Self::Event>, ProviderError>;
}

/// Whether the stream goes on after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// The end-of-answer marker: stop reading (the rest of the body is not awaited).
    Done,
}

/// Turns a provider's events into OpenAI chunks.
pub(crate) trait Translator<E>: Send + 'static {
    fn on_event(&mut self, event: E, out: &mut VecDeque<ChatChunk>) -> Result<Flow, ProviderError>;
    /// The body ended without `Flow::Done`; an error unless the protocol allows that.
    fn on_eof(&mut self, out: &mut VecDeque<ChatChunk>) -> Result<(), ProviderError>;
}

struct Drive<D, T> {
    body: Option<Body>,
    decoder: D,
    translator: T,
    out: VecDeque<ChatChunk>,
    error: Option<ProviderError>,
    finished: bool,
}

impl<D, T> Drive<D, T>
where
    D: Decoder,
    T: Translator<D::Event>,
{
    fn fail(&mut self, e: ProviderError) {
        self.error = Some(e);
        self.finished = true;
        self.body = None;
    }

    fn handle(&mut self, ev: D::Event) {
        match self.translator.on_event(ev, &mut self.out) {
            Ok(Flow::Continue) => {}
            Ok(Flow::Done) => {
                self.finished = true;
                self.body = None;
            }
            Err(e) => self.fail(e),
        }
    }
}

/// A stream of chunks, yielded as the upstream's bytes arrive. Dropping it drops the response,
/// which closes the upstream connection and so cancels the generation.
pub(crate) fn drive<D, T>(body: Body, decoder: D, translator: T) -> ChatStream
where
    D: Decoder,
    T: Translator<D::Event>,
{
    let state = Drive {
        body: Some(body),
        decoder,
        translator,
        out: VecDeque::new(),
        error: None,
        finished: false,
    };
    Box::pin(stream::unfold(state, |mut s| async move {
        loop {
            if let Some(c) = s.out.pop_front() {
                return Some((Ok(c), s));
            }
            if let Some(e) = s.error.take() {
                return Some((Err(e), s));
            }
            if s.finished {
                return None;
            }
            match s.decoder.next_event() {
                Err(e) => {
                    s.fail(e);
                    continue;
                }
                Ok(Some(ev)) => {
                    s.handle(ev);
                    continue;
                }
                Ok(None) => {}
            }
            let Some(body) = s.body.as_mut() else {
                s.finished = true;
                continue;
            };
            match body.next().await {
                Ok(Some(bytes)) => {
                    if let Err(e) = s.decoder.push(&bytes) {
                        s.fail(e);
                    }
                }
                Ok(None) => {
                    s.body = None;
                    match s.decoder.finish() {
                        Err(e) => s.fail(e),
                        Ok(Some(ev)) => s.handle(ev),
                        Ok(None) => {}
                    }
                    if !s.finished {
                        s.finished = true;
                        if let Err(e) = s.translator.on_eof(&mut s.out) {
                            s.error = Some(e);
                        }
                    }
                }
                Err(e) => s.fail(e),
            }
        }
    }))
}

/// Joins a base URL and a path without doubling or dropping the slash.
pub(crate) fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_join_with_one_slash() {
        assert_eq!(join("http://x/v1/", "/chat"), "http://x/v1/chat");
    }
}
