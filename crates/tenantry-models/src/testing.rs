//! Test doubles of the upstreams we do not own (feature `test-util`): a local HTTP server on
//! an ephemeral port that answers each request with a scripted [`Reply`], and a ready-made
//! OpenAI-compatible upstream backed by the mock provider.
//!
//! It records every request it receives (through `tenantry_core::testing`) so tests can
//! assert on the exact wire format. It is for tests and benchmarks only and must never be
//! started by the server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use futures_util::{StreamExt, stream};
use serde_json::Value;
pub use tenantry_core::testing::Recorded;
use tenantry_core::testing::{RecordingServer, response};

use crate::config::MockConfig;
use crate::providers::MockProvider;
use crate::wire::{ChatRequest, EmbeddingsRequest};

/// How the mock upstream answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A JSON body with a status.
    Json(u16, Value),
    /// A raw body with a status and content type.
    Raw {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
    /// `200 text/event-stream`; each element is sent as one write, with `pause` between writes.
    Stream {
        content_type: String,
        parts: Vec<Vec<u8>>,
        pause: Duration,
    },
    /// `200` with the given bytes, then the connection is broken mid-body.
    CutAfter { content_type: String, body: Vec<u8> },
    /// `200` with the given bytes, then silence forever (the connection stays open).
    StallAfter { content_type: String, body: Vec<u8> },
    /// No response at all, ever.
    Hang,
}

impl Reply {
    /// Server-sent events from `data` payloads (each becomes `data: ...\n\n`).
    pub fn sse_data<I: IntoIterator<Item = String>>(data: I) -> Self {
        Reply::Stream {
            content_type: "text/event-stream".into(),
            parts: data
                .into_iter()
                .map(|d| format!("data: {d}\n\n").into_bytes())
                .collect(),
            pause: Duration::ZERO,
        }
    }

    /// Named server-sent events (`event: NAME\ndata: JSON\n\n`), as Anthropic sends them.
    pub fn sse_events<I: IntoIterator<Item = (String, Value)>>(events: I) -> Self {
        Reply::Stream {
            content_type: "text/event-stream".into(),
            parts: events
                .into_iter()
                .map(|(e, d)| format!("event: {e}\ndata: {d}\n\n").into_bytes())
                .collect(),
            pause: Duration::ZERO,
        }
    }
}

/// A scripted upstream on `127.0.0.1:0`. Stops when dropped.
#[derive(Debug)]
pub struct MockUpstream {
    pub addr: SocketAddr,
    server: RecordingServer,
    parts_sent: Arc<AtomicUsize>,
}

fn respond(reply: Reply, parts_sent: &Arc<AtomicUsize>) -> Response {
    let build = |status: u16, ct: &str, body: Body| {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        response(status, ct, body)
    };
    match reply {
        Reply::Json(status, v) => build(status, "application/json", Body::from(v.to_string())),
        Reply::Raw {
            status,
            content_type,
            body,
        } => build(status, &content_type, Body::from(body)),
        Reply::Stream {
            content_type,
            parts,
            pause,
        } => {
            let sent = parts_sent.clone();
            let s = stream::iter(parts).then(move |p| {
                let sent = sent.clone();
                async move {
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(Bytes::from(p))
                }
            });
            build(200, &content_type, Body::from_stream(s))
        }
        Reply::CutAfter { content_type, body } => {
            // The pause lets the headers and the first bytes reach the client before the cut.
            let s = stream::iter(vec![Ok(Bytes::from(body))]).chain(stream::once(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::other("connection cut by the mock upstream"))
            }));
            build(200, &content_type, Body::from_stream(s))
        }
        Reply::StallAfter { content_type, body } => {
            let s =
                stream::iter(vec![Ok::<_, Infallible>(Bytes::from(body))]).chain(stream::pending());
            build(200, &content_type, Body::from_stream(s))
        }
        Reply::Hang => build(200, "text/plain", Body::empty()),
    }
}

impl MockUpstream {
    /// Starts a server answering every request with `handler(request)`.
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let parts_sent = Arc::new(AtomicUsize::new(0));
        let sent = parts_sent.clone();
        let server = RecordingServer::start(move |r, _| {
            let reply = handler(&r);
            let sent = sent.clone();
            async move {
                if matches!(reply, Reply::Hang) {
                    std::future::pending::<()>().await;
                }
                respond(reply, &sent)
            }
        })
        .await;
        Self {
            addr: server.addr,
            server,
            parts_sent,
        }
    }

    /// An OpenAI-compatible upstream (`/v1/chat/completions`, streaming or not, and
    /// `/v1/embeddings`) that answers like the `mock` provider with `config`.
    pub async fn openai_compatible(config: MockConfig) -> Self {
        let provider = Arc::new(MockProvider::new(config));
        let server = RecordingServer::start(move |r, uri| {
            let provider = provider.clone();
            async move { openai_answer(&provider, uri.path(), &r.body).await }
        })
        .await;
        Self {
            addr: server.addr,
            server,
            parts_sent: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// How many parts of [`Reply::Stream`] bodies have been written so far.
    pub fn stream_parts_sent(&self) -> usize {
        self.parts_sent.load(Ordering::SeqCst)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }
}

async fn openai_answer(provider: &MockProvider, path: &str, body: &[u8]) -> Response {
    let none = Arc::new(AtomicUsize::new(0));
    let respond = |r: Reply| respond(r, &none);
    let error = |status: u16, msg: String| {
        respond(Reply::Json(
            status,
            serde_json::json!({"error": {"message": msg, "type": "invalid_request_error"}}),
        ))
    };
    match path.trim_end_matches('/') {
        "/v1/chat/completions" => {
            let req: ChatRequest = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return error(400, e.to_string()),
            };
            if !req.is_stream() {
                return match provider.chat(&req).await {
                    Ok(r) => respond(Reply::Json(
                        200,
                        serde_json::to_value(r).unwrap_or_default(),
                    )),
                    Err(e) => error(500, e.to_string()),
                };
            }
            let include_usage = req.wants_stream_usage();
            let s = match provider.chat_stream(&req).await {
                Ok(s) => s,
                Err(e) => return error(500, e.to_string()),
            };
            let events = s
                .filter_map(move |c| async move {
                    match c {
                        Ok(c) if c.usage.is_some() && !include_usage => None,
                        Ok(c) => Some(format!(
                            "data: {}\n\n",
                            serde_json::to_string(&c).unwrap_or_default()
                        )),
                        Err(e) => Some(format!(
                            "data: {}\n\n",
                            serde_json::json!({"error": {"message": e.to_string()}})
                        )),
                    }
                })
                .chain(stream::iter(vec!["data: [DONE]\n\n".to_owned()]))
                .map(|s| Ok::<_, Infallible>(Bytes::from(s)));
            Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::from_stream(events))
                .unwrap_or_default()
        }
        "/v1/embeddings" => {
            let req: EmbeddingsRequest = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return error(400, e.to_string()),
            };
            match provider.embeddings(&req).await {
                Ok(r) => respond(Reply::Json(
                    200,
                    serde_json::to_value(r).unwrap_or_default(),
                )),
                Err(e) => error(400, e.to_string()),
            }
        }
        other => error(404, format!("no route {other}")),
    }
}
