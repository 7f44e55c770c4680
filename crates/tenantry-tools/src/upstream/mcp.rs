//! The client side of MCP streamable HTTP, towards an upstream MCP server: `initialize` (with
//! `notifications/initialized`), `tools/list` (all pages, cached for a while) and `tools/call`,
//! each answered as `application/json` or as a `text/event-stream` that carries the response.
//!
//! Upstream sessions are kept per credential (keyed by a hash of it, never by the value), so a
//! session opened with tenant A's credential is never used for tenant B's call, and a tool
//! list is only ever what that credential was shown. A session the upstream forgot (404) is
//! re-opened once. Deadlines are the caller's: every method here is cancel-safe and runs under
//! the target's timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use crate::credentials::OutboundCredential;
use crate::error::UpstreamError;
use crate::jsonrpc;
use crate::protocol::{SESSION_HEADER, SUPPORTED_PROTOCOL_VERSIONS, VERSION_HEADER};
use crate::sse::SseDecoder;
use crate::upstream::http::{
    MAX_BODY, apply_credential, error_message, is_media_type, read_limited, transport_error,
};

/// The version offered in `initialize`; the upstream may answer any of ours.
pub(crate) const CLIENT_PROTOCOL_VERSION: &str = "2025-06-18";
/// Most `tools/list` pages followed.
const MAX_PAGES: usize = 100;
/// Most tools taken from one upstream.
const MAX_TOOLS: usize = 10_000;
/// Most upstream connections (distinct credentials) kept per target.
const MAX_CONNS: usize = 1024;
/// Largest error body read for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

type CredKey = [u8; 32];

fn credential_key(credential: Option<&OutboundCredential>) -> CredKey {
    let mut h = Sha256::new();
    match credential {
        None => h.update(b"none"),
        Some(OutboundCredential::Header { name, value }) => {
            h.update(b"header\0");
            h.update(name.to_ascii_lowercase().as_bytes());
            h.update(b"\0");
            h.update(value.expose().as_bytes());
        }
        Some(OutboundCredential::Bearer(token)) => {
            h.update(b"bearer\0");
            h.update(token.expose().as_bytes());
        }
        Some(OutboundCredential::Query { name, value }) => {
            h.update(b"query\0");
            h.update(name.as_bytes());
            h.update(b"\0");
            h.update(value.expose().as_bytes());
        }
    }
    h.finalize().into()
}

#[derive(Debug)]
struct UpSession {
    id: Option<String>,
    version: String,
}

#[derive(Debug)]
struct CachedTools {
    at: Instant,
    tools: Arc<Vec<Value>>,
}

/// The state kept for one credential at one upstream.
#[derive(Debug, Default)]
struct Conn {
    session: tokio::sync::Mutex<Option<Arc<UpSession>>>,
    tools: tokio::sync::Mutex<Option<CachedTools>>,
}

enum Failure {
    /// The upstream no longer knows our session (404 on a request that carried it).
    SessionGone,
    Up(UpstreamError),
}

impl From<UpstreamError> for Failure {
    fn from(e: UpstreamError) -> Self {
        Failure::Up(e)
    }
}

/// One upstream MCP server.
#[derive(Debug)]
pub(crate) struct McpUpstream {
    url: Url,
    http: reqwest::Client,
    tools_ttl: Duration,
    next_id: AtomicU64,
    conns: std::sync::Mutex<HashMap<CredKey, Arc<Conn>>>,
}

impl McpUpstream {
    pub(crate) fn new(url: Url, http: reqwest::Client, tools_ttl: Duration) -> Self {
        Self {
            url,
            http,
            tools_ttl,
            next_id: AtomicU64::new(1),
            conns: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn conn(&self, credential: Option<&OutboundCredential>) -> Arc<Conn> {
        let key = credential_key(credential);
        let mut conns = match self.conns.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = conns.get(&key) {
            return c.clone();
        }
        if conns.len() >= MAX_CONNS
            && let Some(evict) = conns.keys().next().copied()
        {
            conns.remove(&evict);
        }
        conns.entry(key).or_default().clone()
    }

    /// Forgets cached tool lists, so the next listing asks the upstream.
    pub(crate) fn invalidate(&self) {
        let mut conns = match self.conns.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        conns.clear();
    }

    /// The upstream's tools (MCP `Tool` objects), from the cache while it is fresh. When a
    /// refresh fails fast (refused, error status) and an older list exists, the older list is
    /// served. `on_fetch` sees every list fetched from the upstream before any caller does.
    pub(crate) async fn list_tools(
        &self,
        credential: Option<&OutboundCredential>,
        on_fetch: &(dyn Fn(&[Value]) + Sync),
    ) -> Result<Arc<Vec<Value>>, UpstreamError> {
        let conn = self.conn(credential);
        let mut cache = conn.tools.lock().await;
        if let Some(c) = &*cache
            && c.at.elapsed() < self.tools_ttl
        {
            return Ok(c.tools.clone());
        }
        match self.fetch_tools(&conn, credential).await {
            Ok(tools) => {
                on_fetch(&tools);
                let tools = Arc::new(tools);
                *cache = Some(CachedTools {
                    at: Instant::now(),
                    tools: tools.clone(),
                });
                Ok(tools)
            }
            Err(e) => match &*cache {
                Some(stale) => {
                    tracing::warn!(upstream = %self.url.host_str().unwrap_or(""), error = %e,
                        "refreshing an upstream's tools failed; serving the previous list");
                    Ok(stale.tools.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn fetch_tools(
        &self,
        conn: &Conn,
        credential: Option<&OutboundCredential>,
    ) -> Result<Vec<Value>, UpstreamError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let result = self.rpc(conn, credential, "tools/list", params).await?;
            let page = result
                .get("tools")
                .and_then(Value::as_array)
                .ok_or_else(|| UpstreamError::malformed("tools/list answered without `tools`"))?;
            for tool in page {
                if !tool.get("name").is_some_and(Value::is_string) {
                    return Err(UpstreamError::malformed("a listed tool has no `name`"));
                }
                if tools.len() >= MAX_TOOLS {
                    return Err(UpstreamError::malformed(format!(
                        "the upstream lists more than {MAX_TOOLS} tools"
                    )));
                }
                tools.push(tool.clone());
            }
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
                Some(_) | None => return Ok(tools),
            }
        }
        Err(UpstreamError::malformed(format!(
            "the upstream's tool list has more than {MAX_PAGES} pages"
        )))
    }

    /// Calls a tool; the answer is the upstream's `CallToolResult`, passed on as it is.
    pub(crate) async fn call_tool(
        &self,
        credential: Option<&OutboundCredential>,
        name: &str,
        arguments: &Value,
    ) -> Result<Value, UpstreamError> {
        let conn = self.conn(credential);
        let mut params = json!({ "name": name });
        if !arguments.is_null()
            && let Some(p) = params.as_object_mut()
        {
            p.insert("arguments".into(), arguments.clone());
        }
        let mut result = self.rpc(&conn, credential, "tools/call", params).await?;
        let Some(obj) = result.as_object_mut() else {
            return Err(UpstreamError::malformed(
                "tools/call answered a non-object result",
            ));
        };
        match obj.get("content") {
            Some(Value::Array(_)) => {}
            None => {
                obj.insert("content".into(), json!([]));
            }
            Some(_) => {
                return Err(UpstreamError::malformed(
                    "tools/call answered a `content` that is not an array",
                ));
            }
        }
        Ok(result)
    }

    /// One request within our session, re-opening the session once if the upstream forgot it.
    async fn rpc(
        &self,
        conn: &Conn,
        credential: Option<&OutboundCredential>,
        method: &str,
        params: Value,
    ) -> Result<Value, UpstreamError> {
        let mut reopened = false;
        loop {
            let session = self.session(conn, credential).await?;
            match self
                .request(Some(&session), credential, method, params.clone())
                .await
            {
                Ok((result, _)) => return Ok(result),
                Err(Failure::Up(e)) => return Err(e),
                Err(Failure::SessionGone) if !reopened => {
                    reopened = true;
                    let mut current = conn.session.lock().await;
                    if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, &session)) {
                        *current = None;
                    }
                }
                Err(Failure::SessionGone) => {
                    return Err(UpstreamError::status(
                        404,
                        "the upstream does not know the session it just opened",
                    ));
                }
            }
        }
    }

    async fn session(
        &self,
        conn: &Conn,
        credential: Option<&OutboundCredential>,
    ) -> Result<Arc<UpSession>, UpstreamError> {
        let mut slot = conn.session.lock().await;
        if let Some(s) = &*slot {
            return Ok(s.clone());
        }
        let params = json!({
            "protocolVersion": CLIENT_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "tenantry", "version": env!("CARGO_PKG_VERSION")},
        });
        let (result, id) = match self.request(None, credential, "initialize", params).await {
            Ok(r) => r,
            Err(Failure::Up(e)) => return Err(e),
            Err(Failure::SessionGone) => {
                return Err(UpstreamError::status(404, "initialize was not found"));
            }
        };
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                UpstreamError::malformed("initialize answered without a protocolVersion")
            })?;
        if !SUPPORTED_PROTOCOL_VERSIONS.contains(&version) {
            return Err(UpstreamError::malformed(format!(
                "the upstream speaks MCP {version}, which Tenantry does not support ({})",
                SUPPORTED_PROTOCOL_VERSIONS.join(", ")
            )));
        }
        if result.pointer("/capabilities/tools").is_none() {
            return Err(UpstreamError::malformed(
                "the upstream does not offer tools (no `tools` capability)",
            ));
        }
        let session = Arc::new(UpSession {
            id,
            version: version.to_owned(),
        });
        self.notify(&session, credential, "notifications/initialized")
            .await?;
        *slot = Some(session.clone());
        Ok(session)
    }

    fn headers(&self, session: Option<&UpSession>) -> Result<HeaderMap, UpstreamError> {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        if let Some(s) = session {
            if let Some(id) = &s.id {
                let v = HeaderValue::from_str(id).map_err(|_| {
                    UpstreamError::malformed("the upstream's session id is not a header value")
                })?;
                h.insert(SESSION_HEADER, v);
            }
            if let Ok(v) = HeaderValue::from_str(&s.version) {
                h.insert(VERSION_HEADER, v);
            }
        }
        Ok(h)
    }

    async fn post(
        &self,
        session: Option<&UpSession>,
        credential: Option<&OutboundCredential>,
        body: &Value,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut url = self.url.clone();
        let mut headers = self.headers(session)?;
        apply_credential(&mut url, &mut headers, credential)?;
        self.http
            .post(url)
            .headers(headers)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| transport_error(&e))
    }

    async fn notify(
        &self,
        session: &UpSession,
        credential: Option<&OutboundCredential>,
        method: &str,
    ) -> Result<(), UpstreamError> {
        let body = json!({"jsonrpc": "2.0", "method": method});
        let resp = self.post(Some(session), credential, &body).await?;
        let status = resp.status();
        if !status.is_success() {
            let body = read_limited(resp, MAX_ERROR_BODY).await.unwrap_or_default();
            return Err(UpstreamError::status(status.as_u16(), error_message(&body)));
        }
        Ok(())
    }

    /// Sends one request and waits for its response, whichever way the upstream sends it.
    /// Returns the result and the session id header, if the answer carried one.
    async fn request(
        &self,
        session: Option<&UpSession>,
        credential: Option<&OutboundCredential>,
        method: &str,
        params: Value,
    ) -> Result<(Value, Option<String>), Failure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self.post(session, credential, &body).await?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND && session.is_some_and(|s| s.id.is_some()) {
            return Err(Failure::SessionGone);
        }
        if !status.is_success() {
            let body = read_limited(resp, MAX_ERROR_BODY).await.unwrap_or_default();
            let message = error_message(&body);
            let message = if message.is_empty() {
                status.canonical_reason().unwrap_or("no message").to_owned()
            } else {
                message
            };
            return Err(UpstreamError::status(status.as_u16(), message).into());
        }
        let session_id = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let want = json!(id);
        let message = if is_media_type(resp.headers(), "application/json") {
            let body = read_limited(resp, MAX_BODY).await?;
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| UpstreamError::malformed(format!("the answer is not JSON: {e}")))?;
            match v {
                Value::Array(items) => items.into_iter().find(|m| is_response_to(m, &want)),
                other if is_response_to(&other, &want) => Some(other),
                Value::Null
                | Value::Bool(_)
                | Value::Number(_)
                | Value::String(_)
                | Value::Object(_) => None,
            }
            .ok_or_else(|| {
                UpstreamError::malformed("the JSON answer is not our request's response")
            })?
        } else if is_media_type(resp.headers(), "text/event-stream") {
            read_sse_response(resp, &want).await?
        } else if status == reqwest::StatusCode::ACCEPTED {
            return Err(
                UpstreamError::malformed("the upstream answered a request with 202").into(),
            );
        } else {
            let ct = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned();
            return Err(UpstreamError::malformed(format!("unexpected content type {ct}")).into());
        };
        if let Some(err) = message.get("error") {
            let code = err
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or(jsonrpc::INTERNAL_ERROR);
            let text = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            return Err(UpstreamError::rpc(code, text).into());
        }
        match message.get("result") {
            Some(r) => Ok((r.clone(), session_id)),
            None => {
                Err(UpstreamError::malformed("the response has neither result nor error").into())
            }
        }
    }
}

fn is_response_to(message: &Value, id: &Value) -> bool {
    message.get("id") == Some(id)
        && message.get("method").is_none()
        && (message.get("result").is_some() || message.get("error").is_some())
}

/// Reads server-sent events until the response to our request arrives. Notifications and
/// requests the upstream interleaves are skipped.
async fn read_sse_response(
    mut resp: reqwest::Response,
    id: &Value,
) -> Result<Value, UpstreamError> {
    let mut decoder = SseDecoder::default();
    let mut total = 0usize;
    let check = |data: &str| -> Result<Option<Value>, UpstreamError> {
        if data.trim().is_empty() {
            return Ok(None);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| UpstreamError::malformed(format!("an event is not JSON: {e}")))?;
        Ok(is_response_to(&v, id).then_some(v))
    };
    loop {
        while let Some(ev) = decoder.next_event().map_err(UpstreamError::malformed)? {
            if ev.event.as_deref().is_none_or(|e| e == "message")
                && let Some(v) = check(&ev.data)?
            {
                return Ok(v);
            }
        }
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                total += bytes.len();
                if total > MAX_BODY {
                    return Err(UpstreamError::malformed(format!(
                        "the event stream is larger than {MAX_BODY} bytes"
                    )));
                }
                decoder.push(&bytes).map_err(UpstreamError::malformed)?;
            }
            Ok(None) => {
                if let Some(ev) = decoder.finish().map_err(UpstreamError::malformed)?
                    && let Some(v) = check(&ev.data)?
                {
                    return Ok(v);
                }
                return Err(UpstreamError::malformed(
                    "the event stream ended without the response",
                ));
            }
            Err(e) => return Err(transport_error(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Secret;

    #[test]
    fn credentials_get_distinct_connections() {
        let a = OutboundCredential::Bearer(Secret::new("a"));
        let b = OutboundCredential::Bearer(Secret::new("b"));
        let h = OutboundCredential::Header {
            name: "Authorization".into(),
            value: Secret::new("a"),
        };
        assert_ne!(credential_key(Some(&a)), credential_key(Some(&b)));
        assert_ne!(credential_key(Some(&a)), credential_key(Some(&h)));
        assert_ne!(credential_key(Some(&a)), credential_key(None));
        assert_eq!(credential_key(Some(&a)), credential_key(Some(&a.clone())));
    }
}
