//! The client side of MCP streamable HTTP, towards an upstream MCP server: `initialize` (with
//! `notifications/initialized`), `tools/list` (all pages, cached for a while) and `tools/call`,
//! each answered as `application/json` or as a `text/event-stream` that carries the response.
//! The server is reached over HTTP at its URL, or, for a runtime-hosted server, through the
//! platform's runtimes ([`HostedRuntimes`]) in the caller's runtime session.
//!
//! Upstream sessions are kept per tenant and credential (keyed by a hash of both, never by the
//! credential's value) or, for a hosted server, per tenant and runtime session, so a session
//! opened for tenant A (with A's credential, with no credential at all, or in A's sandbox) is
//! never used for tenant B's call, and a tool list is only ever what that tenant and credential
//! or session was shown. An upstream keeps state per session (what earlier calls did), so one
//! shared between tenants would let one tenant's calls see another's. A session the upstream forgot (404) is
//! re-opened once. Deadlines are the caller's: every method here is cancel-safe and runs under
//! the target's timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tenantry_core::sse::{SseDecoder, SseError};
use tenantry_core::upstream::error_message;
use tenantry_core::{ErrorCode, RuntimeName, TenantId};
use url::Url;

use crate::credentials::OutboundCredential;
use crate::error::UpstreamError;
use crate::hosted::HostedRuntimes;
use crate::identity::CallerIdentity;
use crate::jsonrpc;
use crate::protocol::{SESSION_HEADER, SUPPORTED_PROTOCOL_VERSIONS, VERSION_HEADER};
use crate::upstream::http::{MAX_BODY, apply_credential, is_media_type, transport_error};

/// The version offered in `initialize`; the upstream may answer any of ours.
pub(crate) const CLIENT_PROTOCOL_VERSION: &str = "2025-06-18";
/// Most `tools/list` pages followed.
const MAX_PAGES: usize = 100;
/// Most tools taken from one upstream.
const MAX_TOOLS: usize = 10_000;
/// Most upstream connections (distinct tenants and credentials) kept per target.
const MAX_CONNS: usize = 1024;
/// Largest error body read for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

type CredKey = [u8; 32];

/// For whom a message is sent: the tenant it is sent for, the credential put on it and, for a
/// runtime-hosted server, the caller and the runtime session that serves the caller.
#[derive(Debug, Clone, Default)]
pub(crate) struct Route<'a> {
    /// The caller's tenant; `None` only for the platform's own discovery of a target's tools
    /// (no caller), whose session no tenant's call ever uses.
    pub(crate) tenant: Option<&'a TenantId>,
    pub(crate) credential: Option<&'a OutboundCredential>,
    pub(crate) hosted: Option<(&'a CallerIdentity, String)>,
}

impl<'a> Route<'a> {
    pub(crate) fn new(
        tenant: Option<&'a TenantId>,
        credential: Option<&'a OutboundCredential>,
    ) -> Self {
        Self {
            tenant,
            credential,
            hosted: None,
        }
    }
}

/// The key of a route's upstream state: a hosted server's (tenant, runtime session), whose
/// sandbox is that tenant's alone whatever credential it is sent; otherwise the tenant and the
/// credential together, so tenants never share an upstream session, even without credentials.
fn route_key(route: &Route<'_>) -> CredKey {
    let mut h = Sha256::new();
    if let Some((caller, session)) = &route.hosted {
        h.update(b"hosted\0");
        h.update(caller.tenant().as_str().as_bytes());
        h.update(b"\0");
        h.update(session.as_bytes());
        return h.finalize().into();
    }
    match route.tenant {
        // Tenant ids are slugs: no NUL, so the fields cannot run into each other.
        Some(tenant) => {
            h.update(b"tenant\0");
            h.update(tenant.as_str().as_bytes());
            h.update(b"\0");
        }
        None => h.update(b"platform\0"),
    }
    match route.credential {
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

/// The platform's runtimes, once the server has set them (shared by the catalogue's targets).
pub(crate) type HostSlot = Arc<OnceLock<Arc<dyn HostedRuntimes>>>;

/// How messages reach an upstream MCP server.
#[derive(Debug)]
pub(crate) enum Transport {
    /// Streamable HTTP at a URL.
    Http { url: Url, http: reqwest::Client },
    /// A runtime-hosted server, in the caller's runtime session.
    Hosted {
        runtime: RuntimeName,
        host: HostSlot,
    },
}

/// An answer's body, read the same way whatever carried it.
enum ReplyBody {
    Http(reqwest::Response),
    Hosted(axum::body::BodyDataStream),
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: ReplyBody,
}

impl Reply {
    async fn chunk(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        match &mut self.body {
            ReplyBody::Http(resp) => resp.chunk().await.map_err(|e| transport_error(&e)),
            ReplyBody::Hosted(stream) => match stream.next().await {
                None => Ok(None),
                Some(Ok(b)) => Ok(Some(b)),
                Some(Err(e)) => Err(UpstreamError::Connect(format!(
                    "the hosted server's answer was cut off: {e}"
                ))),
            },
        }
    }

    /// The whole body, refusing one larger than `max`.
    async fn read_limited(mut self, max: usize) -> Result<Vec<u8>, UpstreamError> {
        let mut out = Vec::new();
        while let Some(b) = self.chunk().await? {
            if out.len() + b.len() > max {
                return Err(UpstreamError::malformed(format!(
                    "the answer is larger than {max} bytes"
                )));
            }
            out.extend_from_slice(&b);
        }
        Ok(out)
    }
}

/// One upstream MCP server.
#[derive(Debug)]
pub(crate) struct McpUpstream {
    transport: Transport,
    tools_ttl: Duration,
    next_id: AtomicU64,
    conns: std::sync::Mutex<HashMap<CredKey, Arc<Conn>>>,
}

impl McpUpstream {
    pub(crate) fn new(transport: Transport, tools_ttl: Duration) -> Self {
        Self {
            transport,
            tools_ttl,
            next_id: AtomicU64::new(1),
            conns: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The runtime, for a runtime-hosted server.
    pub(crate) fn hosted_runtime(&self) -> Option<&RuntimeName> {
        match &self.transport {
            Transport::Hosted { runtime, .. } => Some(runtime),
            Transport::Http { .. } => None,
        }
    }

    /// The platform's runtimes, for a runtime-hosted server whose host is set.
    pub(crate) fn host(&self) -> Option<&Arc<dyn HostedRuntimes>> {
        match &self.transport {
            Transport::Hosted { host, .. } => host.get(),
            Transport::Http { .. } => None,
        }
    }

    /// What the log may say about this upstream: its host or its runtime, never a query.
    fn describe(&self) -> String {
        match &self.transport {
            Transport::Http { url, .. } => url.host_str().unwrap_or("").to_owned(),
            Transport::Hosted { runtime, .. } => format!("runtime {runtime}"),
        }
    }

    /// Forgets the state kept for `route` (its upstream session and tool list).
    pub(crate) fn forget(&self, route: &Route<'_>) {
        let key = route_key(route);
        let mut conns = match self.conns.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        conns.remove(&key);
    }

    fn conn(&self, route: &Route<'_>) -> Arc<Conn> {
        let key = route_key(route);
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
        route: &Route<'_>,
        on_fetch: &(dyn Fn(&[Value]) + Sync),
    ) -> Result<Arc<Vec<Value>>, UpstreamError> {
        let conn = self.conn(route);
        let mut cache = conn.tools.lock().await;
        if let Some(c) = &*cache
            && c.at.elapsed() < self.tools_ttl
        {
            return Ok(c.tools.clone());
        }
        match self.fetch_tools(&conn, route).await {
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
                    tracing::warn!(upstream = %self.describe(), error = %e,
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
        route: &Route<'_>,
    ) -> Result<Vec<Value>, UpstreamError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let result = self.rpc(conn, route, "tools/list", params).await?;
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
        route: &Route<'_>,
        name: &str,
        arguments: &Value,
    ) -> Result<Value, UpstreamError> {
        let conn = self.conn(route);
        let mut params = json!({ "name": name });
        if !arguments.is_null()
            && let Some(p) = params.as_object_mut()
        {
            p.insert("arguments".into(), arguments.clone());
        }
        let mut result = self.rpc(&conn, route, "tools/call", params).await?;
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
        route: &Route<'_>,
        method: &str,
        params: Value,
    ) -> Result<Value, UpstreamError> {
        let mut reopened = false;
        loop {
            let session = self.session(conn, route).await?;
            match self
                .request(Some(&session), route, method, params.clone())
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
        route: &Route<'_>,
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
        let (result, id) = match self.request(None, route, "initialize", params).await {
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
        self.notify(&session, route, "notifications/initialized")
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
        route: &Route<'_>,
        body: &Value,
    ) -> Result<Reply, UpstreamError> {
        let mut headers = self.headers(session)?;
        match &self.transport {
            Transport::Http { url, http } => {
                let mut url = url.clone();
                apply_credential(&mut url, &mut headers, route.credential)?;
                let resp = http
                    .post(url)
                    .headers(headers)
                    .body(body.to_string())
                    .send()
                    .await
                    .map_err(|e| transport_error(&e))?;
                Ok(Reply {
                    status: resp.status(),
                    headers: resp.headers().clone(),
                    body: ReplyBody::Http(resp),
                })
            }
            Transport::Hosted { runtime, host } => {
                let host = host.get().ok_or_else(|| UpstreamError::Runtime {
                    code: ErrorCode::Unavailable,
                    message: "this gateway has no runtimes to host MCP servers in".into(),
                })?;
                let (caller, runtime_session) = route.hosted.as_ref().ok_or_else(|| {
                    UpstreamError::Request(
                        "a runtime-hosted server is called within a session; none was given".into(),
                    )
                })?;
                // Validation keeps query credentials off hosted targets; the URL is unused.
                let mut unused = Url::parse("http://hosted/mcp")
                    .map_err(|e| UpstreamError::Request(e.to_string()))?;
                apply_credential(&mut unused, &mut headers, route.credential)?;
                let resp = host
                    .post(
                        caller,
                        runtime,
                        runtime_session,
                        headers,
                        Bytes::from(body.to_string()),
                    )
                    .await?;
                let (parts, body) = resp.into_parts();
                Ok(Reply {
                    status: parts.status,
                    headers: parts.headers,
                    body: ReplyBody::Hosted(body.into_data_stream()),
                })
            }
        }
    }

    async fn notify(
        &self,
        session: &UpSession,
        route: &Route<'_>,
        method: &str,
    ) -> Result<(), UpstreamError> {
        let body = json!({"jsonrpc": "2.0", "method": method});
        let resp = self.post(Some(session), route, &body).await?;
        let status = resp.status;
        if !status.is_success() {
            let body = resp.read_limited(MAX_ERROR_BODY).await.unwrap_or_default();
            return Err(UpstreamError::status(status.as_u16(), error_message(&body)));
        }
        Ok(())
    }

    /// Sends one request and waits for its response, whichever way the upstream sends it.
    /// Returns the result and the session id header, if the answer carried one.
    async fn request(
        &self,
        session: Option<&UpSession>,
        route: &Route<'_>,
        method: &str,
        params: Value,
    ) -> Result<(Value, Option<String>), Failure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self.post(session, route, &body).await?;
        let status = resp.status;
        if status == StatusCode::NOT_FOUND && session.is_some_and(|s| s.id.is_some()) {
            return Err(Failure::SessionGone);
        }
        if !status.is_success() {
            let body = resp.read_limited(MAX_ERROR_BODY).await.unwrap_or_default();
            let message = error_message(&body);
            let message = if message.is_empty() {
                status.canonical_reason().unwrap_or("no message").to_owned()
            } else {
                message
            };
            return Err(UpstreamError::status(status.as_u16(), message).into());
        }
        let session_id = resp
            .headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let want = json!(id);
        let message = if is_media_type(&resp.headers, "application/json") {
            let body = resp.read_limited(MAX_BODY).await?;
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
        } else if is_media_type(&resp.headers, "text/event-stream") {
            read_sse_response(resp, &want).await?
        } else if status == StatusCode::ACCEPTED {
            return Err(
                UpstreamError::malformed("the upstream answered a request with 202").into(),
            );
        } else {
            let ct = resp
                .headers
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

/// Longest event-stream line accepted, in bytes.
const MAX_SSE_LINE: usize = 8 * 1024 * 1024;

fn sse_malformed(e: SseError) -> UpstreamError {
    UpstreamError::malformed(e.to_string())
}

/// Reads server-sent events until the response to our request arrives. Notifications and
/// requests the upstream interleaves are skipped.
async fn read_sse_response(mut resp: Reply, id: &Value) -> Result<Value, UpstreamError> {
    let mut decoder = SseDecoder::new(MAX_SSE_LINE);
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
        while let Some(ev) = decoder.next_event().map_err(sse_malformed)? {
            if ev.event.as_deref().is_none_or(|e| e == "message")
                && let Some(v) = check(&ev.data)?
            {
                return Ok(v);
            }
        }
        match resp.chunk().await? {
            Some(bytes) => {
                total += bytes.len();
                if total > MAX_BODY {
                    return Err(UpstreamError::malformed(format!(
                        "the event stream is larger than {MAX_BODY} bytes"
                    )));
                }
                decoder.push(&bytes).map_err(sse_malformed)?;
            }
            None => {
                if let Some(ev) = decoder.finish().map_err(sse_malformed)?
                    && let Some(v) = check(&ev.data)?
                {
                    return Ok(v);
                }
                return Err(UpstreamError::malformed(
                    "the event stream ended without the response",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Secret;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn credentials_get_distinct_connections() {
        let a = OutboundCredential::Bearer(Secret::new("a"));
        let b = OutboundCredential::Bearer(Secret::new("b"));
        let h = OutboundCredential::Header {
            name: "Authorization".into(),
            value: Secret::new("a"),
        };
        let acme = TenantId::new("acme").unwrap();
        let globex = TenantId::new("globex").unwrap();
        let key = |c: Option<&OutboundCredential>| route_key(&Route::new(Some(&acme), c));
        assert_ne!(key(Some(&a)), key(Some(&b)));
        assert_ne!(key(Some(&a)), key(Some(&h)));
        assert_ne!(key(Some(&a)), key(None));
        assert_eq!(key(Some(&a)), key(Some(&a.clone())));
        // Tenants never share one, with or without a credential; nor with the platform.
        assert_ne!(key(None), route_key(&Route::new(Some(&globex), None)));
        assert_ne!(
            key(Some(&a)),
            route_key(&Route::new(Some(&globex), Some(&a)))
        );
        assert_ne!(key(None), route_key(&Route::new(None, None)));
        // A hosted server's sessions are kept per tenant and runtime session.
        let caller = |t: &str| {
            CallerIdentity::new(
                tenantry_core::TenantScope::for_tests(tenantry_core::TenantId::new(t).unwrap()),
                tenantry_core::UserId::new("u").unwrap(),
                tenantry_core::TierName::new("basic").unwrap(),
                tenantry_core::CredentialKind::ApiKey { key_id: "k".into() },
            )
        };
        let (ca, cb) = (caller("acme"), caller("globex"));
        let hosted = |c, s: &str| {
            route_key(&Route {
                tenant: None,
                credential: None,
                hosted: Some((c, s.to_owned())),
            })
        };
        assert_ne!(hosted(&ca, "s1"), hosted(&cb, "s1"));
        assert_ne!(hosted(&ca, "s1"), hosted(&ca, "s2"));
        assert_ne!(hosted(&ca, "s1"), key(None));
        assert_eq!(hosted(&ca, "s1"), hosted(&ca, "s1"));
        // ...whatever credential goes with it, so forgetting a session finds its state.
        let with_credential = route_key(&Route {
            tenant: Some(&acme),
            credential: Some(&a),
            hosted: Some((&ca, "s1".to_owned())),
        });
        assert_eq!(with_credential, hosted(&ca, "s1"));
    }
}
