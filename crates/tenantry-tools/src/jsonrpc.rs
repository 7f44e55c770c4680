//! JSON-RPC 2.0 as MCP uses it: telling requests, notifications and responses apart, the
//! standard error codes, the codes Tenantry adds in the server range, and the one exhaustive
//! mapping from an [`ErrorCode`] to a JSON-RPC code.
//!
//! It owns only framing; what a method means is `crate::endpoint`'s business.

use serde_json::{Value, json};
use tenantry_core::ErrorCode;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Also what MCP answers for an unknown tool.
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// Tenantry: refused by policy, or no credential for the target. `data.code` says which.
pub const FORBIDDEN: i64 = -32010;
/// Tenantry: a dependency (upstream, policy engine, vault) cannot answer now; retry later.
pub const UNAVAILABLE: i64 = -32011;
/// Tenantry: over a rate limit or budget; `data.retry_after_secs` when known.
pub const LIMITED: i64 = -32012;
/// Tenantry: the upstream failed or answered something malformed.
pub const UPSTREAM_FAILED: i64 = -32013;

/// The JSON-RPC code of a platform error code. Exhaustive, so a new `ErrorCode` must be placed.
pub const fn rpc_code(code: ErrorCode) -> i64 {
    match code {
        ErrorCode::InvalidRequest
        | ErrorCode::InvalidJson
        | ErrorCode::NotFound
        | ErrorCode::GuardrailBlocked => INVALID_PARAMS,
        ErrorCode::PayloadTooLarge
        | ErrorCode::UnsupportedMediaType
        | ErrorCode::MethodNotAllowed
        | ErrorCode::Conflict => INVALID_REQUEST,
        ErrorCode::Unauthenticated
        | ErrorCode::InvalidToken
        | ErrorCode::Forbidden
        | ErrorCode::ModelNotEntitled
        | ErrorCode::TenantSuspended => FORBIDDEN,
        ErrorCode::RateLimited | ErrorCode::BudgetExceeded | ErrorCode::StorageExceeded => LIMITED,
        ErrorCode::Unavailable | ErrorCode::AgentUnavailable => UNAVAILABLE,
        ErrorCode::UpstreamError | ErrorCode::AgentError | ErrorCode::SandboxOom => UPSTREAM_FAILED,
        ErrorCode::Internal => INTERNAL_ERROR,
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(INVALID_REQUEST, message)
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    /// An error carrying a platform code: `data` holds its stable name, retryability and
    /// reason, so clients can classify without parsing the message.
    pub fn platform(code: ErrorCode, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code: rpc_code(code),
            message: message.into(),
            data: Some(json!({
                "code": code.as_str(),
                "reason": reason,
                "retryable": code.retryable(),
            })),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let (Some(data), Some(obj)) = (&self.data, e.as_object_mut()) {
            obj.insert("data".into(), data.clone());
        }
        e
    }
}

/// A message a client sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Request {
        id: Value,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// A response to a request of ours; we send none, so it is accepted and ignored.
    Response,
}

impl Incoming {
    /// Classifies one message. On error, the request id when one could be read, for the reply.
    #[allow(
        clippy::result_large_err,
        reason = "built once per malformed message and consumed at once; with serde_json's \
                  preserve_order (enabled by Cedar in the workspace) a Value is large"
    )]
    pub fn parse(v: Value) -> Result<Incoming, (Value, RpcError)> {
        let Value::Object(mut obj) = v else {
            return Err((
                Value::Null,
                RpcError::invalid_request("a JSON-RPC message must be a JSON object"),
            ));
        };
        let id = obj.remove("id");
        let reply_id = match &id {
            Some(v @ (Value::String(_) | Value::Number(_))) => v.clone(),
            Some(_) | None => Value::Null,
        };
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err((
                reply_id,
                RpcError::invalid_request("`jsonrpc` must be \"2.0\""),
            ));
        }
        let params = obj.remove("params");
        if let Some(p) = &params
            && !(p.is_object() || p.is_array())
        {
            return Err((
                reply_id,
                RpcError::invalid_request("`params` must be an object"),
            ));
        }
        match obj.remove("method") {
            Some(Value::String(method)) => match id {
                None => Ok(Incoming::Notification { method, params }),
                Some(Value::String(_) | Value::Number(_)) => Ok(Incoming::Request {
                    id: reply_id,
                    method,
                    params,
                }),
                Some(_) => Err((
                    Value::Null,
                    RpcError::invalid_request("`id` must be a string or a number"),
                )),
            },
            Some(_) => Err((
                reply_id,
                RpcError::invalid_request("`method` must be a string"),
            )),
            None if obj.contains_key("result") || obj.contains_key("error") => {
                Ok(Incoming::Response)
            }
            None => Err((
                reply_id,
                RpcError::invalid_request("a request needs a `method`"),
            )),
        }
    }
}

pub fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

pub fn error(id: &Value, error: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": error.to_json()})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn classifies_messages() {
        assert!(matches!(
            Incoming::parse(json!({"jsonrpc":"2.0","id":1,"method":"ping"})),
            Ok(Incoming::Request { .. })
        ));
        assert!(matches!(
            Incoming::parse(json!({"jsonrpc":"2.0","method":"notifications/initialized"})),
            Ok(Incoming::Notification { .. })
        ));
        assert!(matches!(
            Incoming::parse(json!({"jsonrpc":"2.0","id":1,"result":{}})),
            Ok(Incoming::Response)
        ));
        let (id, e) = Incoming::parse(json!({"jsonrpc":"1.0","id":"a","method":"x"})).unwrap_err();
        assert_eq!((id, e.code), (json!("a"), INVALID_REQUEST));
        let (id, e) = Incoming::parse(json!({"jsonrpc":"2.0","id":null,"method":"x"})).unwrap_err();
        assert_eq!((id, e.code), (Value::Null, INVALID_REQUEST));
        assert!(Incoming::parse(json!([1])).is_err());
        assert!(Incoming::parse(json!({"jsonrpc":"2.0","id":1,"method":"x","params":3})).is_err());
    }

    #[test]
    fn platform_errors_carry_their_code() {
        let e = RpcError::platform(ErrorCode::Forbidden, "policy_denied", "no");
        let j = error(&json!(7), &e);
        assert_eq!(j["error"]["code"], json!(FORBIDDEN));
        assert_eq!(j["error"]["data"]["code"], json!("forbidden"));
        assert_eq!(rpc_code(ErrorCode::NotFound), INVALID_PARAMS);
    }
}
