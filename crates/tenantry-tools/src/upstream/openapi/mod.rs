//! OpenAPI 3 documents as tool sets: each operation becomes a tool named by its `operationId`
//! (or `method_path`), whose input schema gathers its path, query and header parameters and
//! its JSON request body (as `body`), with every local `$ref` inlined so clients need not
//! resolve the document. A call becomes the HTTP request: path parameters substituted and
//! percent-encoded, query and header parameters set, the body sent as JSON; the answer is the
//! response body as text (JSON pretty-printed), `isError` for a non-2xx status.
//!
//! Only JSON documents are read (YAML needs a parser this workspace does not carry). Cookie
//! parameters and non-JSON request bodies are not supported: an operation that requires one is
//! left out and named in the catalogue's warnings. A caller can never set the header or query
//! parameter that carries the target's credential: it is not in the schema and is overwritten.
//!
//! Making one operation into a tool is `operation`'s; this module loads the document and calls.

mod operation;

use std::collections::HashMap;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use serde_json::{Map, Value, json};
use url::Url;

use crate::credentials::OutboundCredential;
use crate::error::{TargetError, UpstreamError};
use crate::target::CredentialPlacement;
use crate::upstream::http::{apply_credential, read_limited, transport_error};
use operation::{Loc, Operation, Piece, compile_operation, resolve};

/// Largest document accepted, in bytes.
pub(crate) const MAX_SPEC_BYTES: usize = 8 * 1024 * 1024;
/// Most operations taken from one document.
const MAX_OPERATIONS: usize = 2000;
/// Largest answer returned as text, in bytes.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Why an OpenAPI call produced no result.
#[derive(Debug)]
pub(crate) enum CallError {
    InvalidArguments(String),
    Upstream(UpstreamError),
}

/// An OpenAPI document compiled into operations.
#[derive(Debug)]
pub(crate) struct OpenApiTarget {
    base: String,
    http: reqwest::Client,
    ops: Vec<Operation>,
    index: HashMap<String, usize>,
    /// Operations left out, and why.
    pub(crate) warnings: Vec<String>,
}

impl OpenApiTarget {
    pub(crate) fn operations(&self) -> &[Operation] {
        &self.ops
    }

    pub(crate) fn operation(&self, name: &str) -> Option<&Operation> {
        self.index.get(name).and_then(|i| self.ops.get(*i))
    }

    /// Compiles `text` (an OpenAPI 3 JSON document) for calls at `base_url`.
    pub(crate) fn compile(
        text: &str,
        base_url: &str,
        http: reqwest::Client,
        credential: Option<&CredentialPlacement>,
    ) -> Result<Self, TargetError> {
        if text.len() > MAX_SPEC_BYTES {
            return Err(TargetError::InvalidSpec(format!(
                "the document is larger than {MAX_SPEC_BYTES} bytes"
            )));
        }
        let doc: Value = serde_json::from_str(text).map_err(|e| {
            let hint = if text.trim_start().starts_with('{') {
                String::new()
            } else {
                " (YAML documents are not supported: convert it to JSON first, e.g. with `yq -o=json`)"
                    .to_owned()
            };
            TargetError::InvalidSpec(format!("it is not JSON: {e}{hint}"))
        })?;
        match doc.get("openapi").and_then(Value::as_str) {
            Some(v) if v.starts_with("3.") => {}
            Some(v) => {
                return Err(TargetError::InvalidSpec(format!(
                    "OpenAPI {v} is not supported; use an OpenAPI 3.x document"
                )));
            }
            None if doc.get("swagger").is_some() => {
                return Err(TargetError::InvalidSpec(
                    "Swagger 2.0 is not supported; convert the document to OpenAPI 3".into(),
                ));
            }
            None => {
                return Err(TargetError::InvalidSpec(
                    "it has no `openapi` version field; is it an OpenAPI 3 document?".into(),
                ));
            }
        }
        let paths = doc
            .get("paths")
            .and_then(Value::as_object)
            .ok_or_else(|| TargetError::InvalidSpec("it has no `paths`".into()))?;
        let mut ops = Vec::new();
        let mut warnings = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        // In path order, whatever order the JSON map keeps (serde_json's `preserve_order` may
        // be on in the build), so operation names and their `_2` suffixes are deterministic.
        let mut paths: Vec<(&String, &Value)> = paths.iter().collect();
        paths.sort_by(|a, b| a.0.cmp(b.0));
        for (path, item) in paths {
            if !path.starts_with('/') {
                warnings.push(format!("path {path:?} does not start with '/'; skipped"));
                continue;
            }
            let item = resolve(&doc, item);
            let shared_params = item.get("parameters").and_then(Value::as_array);
            for method in METHODS {
                let Some(op) = item.get(*method).filter(|o| o.is_object()) else {
                    continue;
                };
                if ops.len() >= MAX_OPERATIONS {
                    return Err(TargetError::InvalidSpec(format!(
                        "it has more than {MAX_OPERATIONS} operations"
                    )));
                }
                match compile_operation(&doc, path, method, op, shared_params, credential) {
                    Ok(mut operation) => {
                        let n = names.entry(operation.name.clone()).or_insert(0);
                        *n += 1;
                        if *n > 1 {
                            operation.name = format!("{}_{}", operation.name, n);
                            if let Some(t) = operation.tool.as_object_mut() {
                                t.insert("name".into(), json!(operation.name));
                            }
                        }
                        ops.push(operation);
                    }
                    Err(why) => warnings.push(format!(
                        "{} {path} skipped: {why}",
                        method.to_ascii_uppercase()
                    )),
                }
            }
        }
        if ops.is_empty() {
            return Err(TargetError::InvalidSpec(format!(
                "it has no operation that can be called{}",
                if warnings.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", warnings.join("; "))
                }
            )));
        }
        let index = ops
            .iter()
            .enumerate()
            .map(|(i, o)| (o.name.clone(), i))
            .collect();
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
            ops,
            index,
            warnings,
        })
    }

    /// Makes the operation's HTTP request and returns a `CallToolResult`.
    pub(crate) async fn call(
        &self,
        op: &Operation,
        arguments: &Value,
        credential: Option<&OutboundCredential>,
    ) -> Result<Value, CallError> {
        let empty = Map::new();
        let args = match arguments {
            Value::Object(m) => m,
            Value::Null => &empty,
            Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Array(_) => {
                return Err(CallError::InvalidArguments(
                    "`arguments` must be an object".into(),
                ));
            }
        };
        let mut values: HashMap<&str, &Value> = HashMap::new();
        for p in &op.params {
            match args.get(&p.arg) {
                None | Some(Value::Null) if p.required => {
                    return Err(CallError::InvalidArguments(format!(
                        "`{}` ({} parameter) is required",
                        p.arg,
                        p.loc.as_str()
                    )));
                }
                None | Some(Value::Null) => {}
                Some(v) => {
                    values.insert(p.arg.as_str(), v);
                }
            }
        }
        let mut path = String::new();
        for piece in &op.path {
            match piece {
                Piece::Lit(s) => path.push_str(s),
                Piece::Var(name) => {
                    let p = op
                        .params
                        .iter()
                        .find(|p| p.loc == Loc::Path && p.wire == *name);
                    let v = p.and_then(|p| values.get(p.arg.as_str()));
                    let (Some(p), Some(v)) = (p, v) else {
                        return Err(CallError::InvalidArguments(format!(
                            "path parameter `{name}` is required"
                        )));
                    };
                    let s = scalar(v).ok_or_else(|| {
                        CallError::InvalidArguments(format!(
                            "`{}` must be a string, number or boolean",
                            p.arg
                        ))
                    })?;
                    if s.is_empty() || s == "." || s == ".." {
                        return Err(CallError::InvalidArguments(format!(
                            "`{}` must not be empty, `.` or `..`",
                            p.arg
                        )));
                    }
                    path.push_str(&encode_path_value(&s));
                }
            }
        }
        let mut url = Url::parse(&format!("{}{}", self.base, path)).map_err(|e| {
            CallError::InvalidArguments(format!("the arguments do not make a valid URL: {e}"))
        })?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, */*;q=0.5"),
        );
        {
            let mut query = url.query_pairs_mut();
            for p in op.params.iter().filter(|p| p.loc == Loc::Query) {
                let Some(v) = values.get(p.arg.as_str()) else {
                    continue;
                };
                let items = match v.as_array() {
                    Some(items) => items.iter().collect(),
                    None => vec![*v],
                };
                for item in items {
                    query.append_pair(&p.wire, &scalar(item).unwrap_or_else(|| item.to_string()));
                }
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        for p in op.params.iter().filter(|p| p.loc == Loc::Header) {
            let Some(v) = values.get(p.arg.as_str()) else {
                continue;
            };
            let text = scalar(v).unwrap_or_else(|| v.to_string());
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(p.wire.as_bytes()),
                HeaderValue::from_str(&text),
            ) else {
                return Err(CallError::InvalidArguments(format!(
                    "`{}` is not a valid header value",
                    p.arg
                )));
            };
            headers.insert(name, value);
        }
        let body = match &op.body {
            Some(b) => match args.get(&b.arg) {
                None | Some(Value::Null) if b.required => {
                    return Err(CallError::InvalidArguments(format!(
                        "`{}` (the request body) is required",
                        b.arg
                    )));
                }
                None | Some(Value::Null) => None,
                Some(v) => {
                    if let Ok(ct) = HeaderValue::from_str(&b.content_type) {
                        headers.insert(header::CONTENT_TYPE, ct);
                    }
                    Some(v.to_string())
                }
            },
            None => None,
        };
        apply_credential(&mut url, &mut headers, credential).map_err(CallError::Upstream)?;
        let mut rb = self.http.request(op.method.clone(), url).headers(headers);
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| CallError::Upstream(transport_error(&e)))?;
        let status = resp.status();
        let is_json = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
        let bytes = read_limited(resp, MAX_ANSWER)
            .await
            .map_err(CallError::Upstream)?;
        let text = if bytes.is_empty() {
            "(empty body)".to_owned()
        } else if is_json {
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned())
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let ok = status.is_success();
        let text = if ok {
            text
        } else {
            format!(
                "HTTP {} {}\n{text}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
        };
        Ok(json!({
            "content": [{"type": "text", "text": text}],
            "isError": !ok,
        }))
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a value stays inside its
/// path segment (`/` becomes `%2F`).
fn encode_path_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::operation::parse_template;
    use super::*;

    fn compile(doc: Value, cred: Option<&CredentialPlacement>) -> OpenApiTarget {
        OpenApiTarget::compile(
            &doc.to_string(),
            "http://127.0.0.1:1/api/",
            crate::upstream::http::client().unwrap(),
            cred,
        )
        .unwrap()
    }

    #[test]
    fn operations_become_tools_with_inlined_schemas() {
        let doc = json!({
            "openapi": "3.0.3",
            "components": {
                "schemas": {
                    "Pet": {"type": "object", "properties": {
                        "name": {"type": "string"},
                        "parent": {"$ref": "#/components/schemas/Pet"}
                    }, "required": ["name"]}
                },
                "parameters": {"Limit": {"name": "limit", "in": "query", "schema": {"type": "integer"}}}
            },
            "paths": {
                "/pets/{petId}": {
                    "parameters": [{"name": "petId", "in": "path", "required": true, "schema": {"type": "string"}, "description": "the pet"}],
                    "get": {"operationId": "getPet", "summary": "One pet",
                            "parameters": [{"name": "X-Api-Key", "in": "header", "schema": {"type": "string"}},
                                           {"name": "Authorization", "in": "header"},
                                           {"name": "verbose", "in": "query", "schema": {"type": "boolean"}}]},
                    "put": {"requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}}
                },
                "/pets": {"get": {"operationId": "list pets!", "parameters": [{"$ref": "#/components/parameters/Limit"}]}},
                "/upload": {"post": {"operationId": "upload", "requestBody": {"required": true, "content": {"multipart/form-data": {}}}}}
            }
        });
        let cred = CredentialPlacement::Header {
            name: "x-api-key".into(),
        };
        let t = compile(doc, Some(&cred));
        let names: Vec<&str> = t.operations().iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, vec!["list_pets", "getPet", "put_pets_petId"]);
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
        assert!(t.warnings[0].contains("POST /upload"));
        let get = &t.operation("getPet").unwrap().tool;
        assert_eq!(
            get["inputSchema"],
            json!({"type": "object", "properties": {
                "petId": {"type": "string", "description": "the pet"},
                "verbose": {"type": "boolean"}
            }, "required": ["petId"]})
        );
        assert_eq!(get["annotations"]["readOnlyHint"], json!(true));
        let put = &t.operation("put_pets_petId").unwrap().tool;
        assert_eq!(put["inputSchema"]["required"], json!(["petId", "body"]));
        assert_eq!(
            put["inputSchema"]["properties"]["body"],
            json!({"type": "object", "properties": {"name": {"type": "string"}, "parent": {}}, "required": ["name"]})
        );
        let list = &t.operation("list_pets").unwrap().tool;
        assert_eq!(
            list["inputSchema"]["properties"]["limit"],
            json!({"type": "integer"})
        );
    }

    #[test]
    fn refuses_documents_it_cannot_use() {
        let err = |text: &str| {
            OpenApiTarget::compile(
                text,
                "http://x",
                crate::upstream::http::client().unwrap(),
                None,
            )
            .unwrap_err()
            .to_string()
        };
        assert!(err("openapi: 3.0.0\npaths: {}").contains("YAML"));
        assert!(err(r#"{"swagger": "2.0", "paths": {}}"#).contains("Swagger 2.0"));
        assert!(err(r#"{"openapi": "3.1.0"}"#).contains("paths"));
        assert!(err(r#"{"openapi": "3.1.0", "paths": {}}"#).contains("no operation"));
    }

    #[test]
    fn path_values_stay_in_their_segment() {
        assert_eq!(encode_path_value("a/b c?d#e%f"), "a%2Fb%20c%3Fd%23e%25f");
        assert_eq!(encode_path_value("é"), "%C3%A9");
        assert_eq!(
            parse_template("/files/{dir}/{name}.json").unwrap(),
            vec![
                Piece::Lit("/files/".into()),
                Piece::Var("dir".into()),
                Piece::Lit("/".into()),
                Piece::Var("name".into()),
                Piece::Lit(".json".into())
            ]
        );
        assert!(parse_template("/a/{b").is_err());
    }

    #[tokio::test]
    async fn dot_segments_are_refused_before_any_request() {
        let t = compile(
            json!({"openapi": "3.0.0", "paths": {"/files/{name}": {"get": {"operationId": "read"}}}}),
            None,
        );
        let op = t.operation("read").unwrap();
        for bad in [
            json!({"name": ".."}),
            json!({"name": "."}),
            json!({"name": ""}),
            json!({}),
            json!({"name": {"a": 1}}),
        ] {
            assert!(matches!(
                t.call(op, &bad, None).await,
                Err(CallError::InvalidArguments(_))
            ));
        }
    }
}
