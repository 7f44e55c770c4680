//! The MCP endpoint: the server side of streamable HTTP, as an axum route the server mounts at
//! `/mcp` behind its authentication.
//!
//! * `POST` carries one JSON-RPC message (or a batch, for 2025-03-26 clients). `initialize`
//!   opens a session and answers its id in `Mcp-Session-Id`; every other message must carry a
//!   live session of the same caller (absent: 400; unknown, expired or someone else's: 404).
//!   Requests are answered as `application/json` (or one `text/event-stream` event when the
//!   client accepts only that); notifications and responses alone get `202 Accepted`.
//! * `DELETE` ends the caller's session; `GET` (a server-to-client stream) is not offered: 405.
//!
//! The caller is the [`CallerIdentity`] the server's auth layer put in the request's
//! extensions; without it the answer is 401. A caller's mistake is always a 4xx or a JSON-RPC
//! error, never a 500.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::MethodRouter;
use serde_json::{Value, json};

use crate::error::ToolError;
use crate::gateway::ToolGateway;
use crate::identity::CallerIdentity;
use crate::jsonrpc::{self, Incoming, RpcError};
use crate::protocol::{self, SESSION_HEADER, SUPPORTED_PROTOCOL_VERSIONS, VERSION_HEADER};

/// The `/mcp` route: `POST`, `GET` and `DELETE`, with the gateway as its state. Mount it with
/// `Router::route("/mcp", tenantry_tools::mcp_route(gateway))` behind the auth layer.
pub fn mcp_route<S>(gateway: Arc<ToolGateway>) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let max_body = gateway.config.max_body_bytes;
    axum::routing::post(post_mcp)
        .get(get_mcp)
        .delete(delete_mcp)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(gateway)
}

/// A router with only `/mcp`, for tests and for servers that merge routers.
pub fn router(gateway: Arc<ToolGateway>) -> axum::Router {
    axum::Router::new().route("/mcp", mcp_route(gateway))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Sse,
}

/// What the client accepts: JSON unless it accepts only event streams; `None` if neither.
fn answer_format(headers: &HeaderMap) -> Option<Format> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(Format::Json);
    };
    let ranges: Vec<String> = accept
        .split(',')
        .map(|r| {
            r.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect();
    let any = |r: &[&str]| ranges.iter().any(|x| r.contains(&x.as_str()));
    if any(&["application/json", "application/*", "*/*"]) {
        Some(Format::Json)
    } else if any(&["text/event-stream", "text/*"]) {
        Some(Format::Sse)
    } else {
        None
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn respond(status: StatusCode, format: Format, body: &Value, session: Option<&str>) -> Response {
    let (ct, text) = match format {
        Format::Json => ("application/json", body.to_string()),
        Format::Sse => {
            let messages = match body.as_array() {
                Some(items) => items.clone(),
                None => vec![body.clone()],
            };
            let text: String = messages
                .iter()
                .map(|m| format!("event: message\ndata: {m}\n\n"))
                .collect();
            ("text/event-stream", text)
        }
    };
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if let Some(id) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        r.headers_mut().insert(SESSION_HEADER, id);
    }
    r
}

/// A transport-level refusal: an HTTP status with a JSON-RPC error body (id null).
fn refuse(status: StatusCode, error: RpcError) -> Response {
    refuse_request(status, &Value::Null, error)
}

/// A transport-level refusal of a request whose id is known.
fn refuse_request(status: StatusCode, id: &Value, error: RpcError) -> Response {
    let mut r = respond(status, Format::Json, &jsonrpc::error(id, &error), None);
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

fn unauthenticated() -> Response {
    refuse(
        StatusCode::UNAUTHORIZED,
        RpcError::platform(
            tenantry_core::ErrorCode::Unauthenticated,
            "unauthenticated",
            "send a credential as `Authorization: Bearer <token or API key>`",
        ),
    )
}

fn session_not_found(id: &Value) -> Response {
    refuse_request(
        StatusCode::NOT_FOUND,
        id,
        RpcError::invalid_request(
            "session not found: it ended or expired; send initialize to open a new one",
        ),
    )
}

async fn get_mcp() -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
    r
}

async fn delete_mcp(
    State(gw): State<Arc<ToolGateway>>,
    caller: Option<Extension<CallerIdentity>>,
    headers: HeaderMap,
) -> Response {
    let Some(Extension(caller)) = caller else {
        return unauthenticated();
    };
    let Some(id) = header_str(&headers, SESSION_HEADER) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            RpcError::invalid_request("send the session to end in Mcp-Session-Id"),
        );
    };
    if gw.sessions.remove(id, &caller) {
        gw.end_session(&caller, id).await;
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r
    } else {
        session_not_found(&Value::Null)
    }
}

async fn post_mcp(
    State(gw): State<Arc<ToolGateway>>,
    caller: Option<Extension<CallerIdentity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(Extension(caller)) = caller else {
        return unauthenticated();
    };
    let Some(format) = answer_format(&headers) else {
        return refuse(
            StatusCode::NOT_ACCEPTABLE,
            RpcError::invalid_request("accept application/json or text/event-stream"),
        );
    };
    let is_json = header_str(&headers, header::CONTENT_TYPE.as_str())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RpcError::invalid_request("send JSON-RPC messages as Content-Type: application/json"),
        );
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                RpcError::new(jsonrpc::PARSE_ERROR, format!("the body is not JSON: {e}")),
            );
        }
    };
    let batch = value.is_array();
    let messages = match value {
        Value::Array(items) => items,
        single @ (Value::Null
        | Value::Bool(_)
        | Value::Number(_)
        | Value::String(_)
        | Value::Object(_)) => vec![single],
    };
    if messages.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            RpcError::invalid_request("an empty batch"),
        );
    }
    let parsed: Vec<Result<Incoming, (Value, RpcError)>> =
        messages.into_iter().map(Incoming::parse).collect();

    let initialize = parsed.iter().find_map(|m| match m {
        Ok(Incoming::Request { id, method, params }) if method == "initialize" => {
            Some((id.clone(), params.clone()))
        }
        Ok(Incoming::Request { .. } | Incoming::Notification { .. } | Incoming::Response)
        | Err(_) => None,
    });
    if let Some((id, params)) = initialize {
        if batch {
            return refuse(
                StatusCode::BAD_REQUEST,
                RpcError::invalid_request("initialize must be sent alone, not in a batch"),
            );
        }
        return initialize_session(&gw, &caller, format, &id, params.as_ref());
    }

    // Transport refusals of a single request carry its id, so clients can match them.
    let single_id = match parsed.as_slice() {
        [Ok(Incoming::Request { id, .. })] if !batch => id.clone(),
        [Ok(Incoming::Request { .. } | Incoming::Notification { .. } | Incoming::Response)]
        | [Err(_)]
        | []
        | [_, _, ..] => Value::Null,
    };
    let Some(session_id) = header_str(&headers, SESSION_HEADER) else {
        return refuse_request(
            StatusCode::BAD_REQUEST,
            &single_id,
            RpcError::invalid_request(
                "no Mcp-Session-Id: send initialize first, then the session id it returns",
            ),
        );
    };
    let Some(version) = gw.sessions.get(session_id, &caller) else {
        return session_not_found(&single_id);
    };
    if let Some(v) = headers.get(VERSION_HEADER) {
        let v = v.to_str().unwrap_or("");
        if !SUPPORTED_PROTOCOL_VERSIONS.contains(&v) {
            return refuse_request(
                StatusCode::BAD_REQUEST,
                &single_id,
                RpcError::invalid_request(format!(
                    "unsupported MCP-Protocol-Version {v:?}; supported: {}",
                    SUPPORTED_PROTOCOL_VERSIONS.join(", ")
                )),
            );
        }
    }

    let mut answers = Vec::new();
    let mut malformed_single = false;
    for message in parsed {
        match message {
            Err((id, e)) => {
                malformed_single = !batch;
                answers.push(jsonrpc::error(&id, &e));
            }
            Ok(Incoming::Response) => {}
            Ok(Incoming::Notification { method, .. }) => {
                tracing::debug!(tenant = %caller.tenant(), method = %method, "MCP notification");
            }
            Ok(Incoming::Request { id, method, params }) => {
                let answer =
                    dispatch(&gw, &caller, session_id, version, &method, params.as_ref()).await;
                answers.push(match answer {
                    Ok(result) => jsonrpc::result(&id, result),
                    Err(e) => jsonrpc::error(&id, &e),
                });
            }
        }
    }
    match answers.len() {
        0 => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::ACCEPTED;
            r
        }
        _ if batch => respond(StatusCode::OK, format, &Value::Array(answers), None),
        _ => {
            let status = if malformed_single {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            let answer = answers.pop().unwrap_or(Value::Null);
            respond(status, format, &answer, None)
        }
    }
}

fn initialize_session(
    gw: &ToolGateway,
    caller: &CallerIdentity,
    format: Format,
    id: &Value,
    params: Option<&Value>,
) -> Response {
    let Some(requested) = params
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str)
    else {
        return respond(
            StatusCode::OK,
            format,
            &jsonrpc::error(
                id,
                &RpcError::invalid_params("initialize needs params.protocolVersion (a string)"),
            ),
            None,
        );
    };
    let version = protocol::negotiate(requested);
    let session = gw.sessions.create(caller, version);
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": gw.config.server_name, "version": env!("CARGO_PKG_VERSION")},
    });
    if let (Some(text), Some(obj)) = (&gw.config.instructions, result.as_object_mut()) {
        obj.insert("instructions".into(), json!(text));
    }
    tracing::debug!(tenant = %caller.tenant(), user = %caller.user, version, "MCP session opened");
    respond(
        StatusCode::OK,
        format,
        &jsonrpc::result(id, result),
        Some(&session),
    )
}

async fn dispatch(
    gw: &ToolGateway,
    caller: &CallerIdentity,
    session: &str,
    version: &str,
    method: &str,
    params: Option<&Value>,
) -> Result<Value, RpcError> {
    match method {
        "ping" => Ok(json!({})),
        "tools/list" => {
            if params
                .and_then(|p| p.get("cursor"))
                .is_some_and(|c| !c.is_null())
            {
                return Err(RpcError::invalid_params(
                    "unknown cursor: tools/list answers every tool on one page",
                ));
            }
            Ok(json!({ "tools": gw.list_tools(caller, Some(session)).await }))
        }
        "tools/call" => {
            let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
                return Err(RpcError::invalid_params(
                    "tools/call needs params.name (a string)",
                ));
            };
            let arguments = params
                .and_then(|p| p.get("arguments"))
                .cloned()
                .unwrap_or(Value::Null);
            match gw.call_tool(caller, name, &arguments, Some(session)).await {
                Ok(result) => Ok(result),
                Err(e @ ToolError::InvalidArguments { .. })
                    if protocol::invalid_arguments_as_result(version) =>
                {
                    Ok(json!({
                        "content": [{"type": "text", "text": e.to_string()}],
                        "isError": true,
                    }))
                }
                Err(e) => Err(tool_error(&e)),
            }
        }
        "initialize" => Err(RpcError::invalid_request(
            "the session is already initialized",
        )),
        other => Err(RpcError::new(
            jsonrpc::METHOD_NOT_FOUND,
            format!(
                "method {other:?} is not offered; this server has tools (tools/list, tools/call)"
            ),
        )),
    }
}

fn tool_error(e: &ToolError) -> RpcError {
    let mut err = RpcError::platform(e.code(), e.reason(), e.to_string());
    if let (Some(after), Some(Value::Object(data))) = (e.retry_after(), err.data.as_mut()) {
        data.insert("retry_after_secs".into(), json!(after.as_secs().max(1)));
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                header::ACCEPT,
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
            answer_format(&m)
        };
        assert_eq!(h("application/json, text/event-stream"), Some(Format::Json));
        assert_eq!(h("text/event-stream"), Some(Format::Sse));
        assert_eq!(h("*/*"), Some(Format::Json));
        assert_eq!(h("text/html"), None);
        assert_eq!(answer_format(&HeaderMap::new()), Some(Format::Json));
    }
}
