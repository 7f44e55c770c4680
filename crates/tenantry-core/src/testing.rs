//! The recording HTTP server under the mock upstreams of the crates above (feature
//! `test-util`): model providers in `tenantry-models`, MCP servers and OpenAPI services in
//! `tenantry-tools`.
//!
//! It owns listening on `127.0.0.1:0`, recording every request before it is answered (so tests
//! can check exactly what reached an upstream) and stopping when dropped; what to answer is the
//! caller's. It is for tests and benchmarks only: the server must never start one, and nothing
//! else in this crate may do I/O.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::Value;

/// A request a mock upstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, exactly as received (still percent-encoded).
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    /// The body as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The JSON-RPC method, for requests to an MCP mock.
    pub fn rpc_method(&self) -> Option<String> {
        self.json()
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

type Log = Arc<Mutex<Vec<Recorded>>>;

/// A server on `127.0.0.1:0` that records every request, then answers it with the caller's
/// function of the request and its URI. Stops when dropped.
#[derive(Debug)]
pub struct RecordingServer {
    pub addr: SocketAddr,
    requests: Log,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingServer {
    pub async fn start<F, Fut>(answer: F) -> Self
    where
        F: Fn(Recorded, Uri) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        let answer = Arc::new(answer);
        let requests: Log = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (answer, log) = (answer.clone(), log.clone());
                async move {
                    let r = Recorded {
                        method: method.to_string(),
                        path: uri
                            .path_and_query()
                            .map(|p| p.as_str().to_owned())
                            .unwrap_or_default(),
                        headers,
                        body,
                    };
                    if let Ok(mut v) = log.lock() {
                        v.push(r.clone());
                    }
                    answer(r, uri).await
                }
            },
        );
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("cannot bind a mock upstream: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("mock upstream has no address: {e}"),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// A response with a status, a content type (left out if it is not a valid header value) and
/// a body.
pub fn response(status: StatusCode, content_type: &str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}

pub fn json_response(status: StatusCode, v: &Value) -> Response {
    response(status, "application/json", v.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn requests_are_recorded_and_answered() {
        let server = RecordingServer::start(|r: Recorded, uri: Uri| async move {
            let query = uri.query().unwrap_or("").to_owned();
            response(
                StatusCode::CREATED,
                "text/plain",
                format!("{} {query}", r.method),
            )
        })
        .await;
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(
                b"POST /a%20b?x=1 HTTP/1.1\r\nhost: h\r\ncontent-length: 12\r\n\
                  connection: close\r\n\r\n{\"method\":1}",
            )
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
        assert!(answer.ends_with("POST x=1"), "{answer}");
        let got = server.requests();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "/a%20b?x=1");
        assert_eq!(got[0].header("host"), Some("h"));
        assert_eq!(got[0].json(), serde_json::json!({"method": 1}));
        assert_eq!(got[0].rpc_method(), None);
    }
}
