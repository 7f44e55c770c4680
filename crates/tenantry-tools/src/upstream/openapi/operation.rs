//! One operation of an OpenAPI document made into a tool and a request template: its path
//! template, its parameters (path-level ones first, an operation's own replacing them), its
//! JSON request body as `body`, its name and description, and its schemas with every local
//! `$ref` inlined within a budget.
//!
//! It never follows a `$ref` outside the document, never lets a caller's argument set the
//! parameter that carries the target's credential, and leaves out (with the reason) an
//! operation it cannot call.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::target::CredentialPlacement;

/// Longest tool name made from an operation.
const MAX_NAME: usize = 64;
/// Schema nodes produced per operation when inlining `$ref`s.
const INLINE_BUDGET: usize = 50_000;
/// Deepest chain of nested `$ref`s followed.
const MAX_REF_DEPTH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loc {
    Path,
    Query,
    Header,
}

impl Loc {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Loc::Path => "path",
            Loc::Query => "query",
            Loc::Header => "header",
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Param {
    /// The property name in the tool's input.
    pub(super) arg: String,
    /// The name on the wire.
    pub(super) wire: String,
    pub(super) loc: Loc,
    pub(super) required: bool,
}

#[derive(Debug, Clone)]
pub(super) struct BodySpec {
    pub(super) arg: String,
    pub(super) required: bool,
    pub(super) content_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    Lit(String),
    Var(String),
}

/// One operation, ready to be called.
#[derive(Debug)]
pub(crate) struct Operation {
    pub(crate) name: String,
    /// The MCP `Tool` object, named by the operation (the catalogue prefixes the target).
    pub(crate) tool: Value,
    pub(super) method: reqwest::Method,
    pub(super) path: Vec<Piece>,
    pub(super) params: Vec<Param>,
    pub(super) body: Option<BodySpec>,
}

/// Follows a chain of local `$ref`s to the object it names.
pub(super) fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..MAX_REF_DEPTH {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => match lookup(doc, r) {
                Some(t) => v = t,
                None => return v,
            },
            None => return v,
        }
    }
    v
}

fn lookup<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    reference.strip_prefix('#').and_then(|p| doc.pointer(p))
}

/// A deep copy of `v` with every local `$ref` replaced by what it names. Recursive references
/// and external ones become `{}` (any value); the copy is bounded by a node budget.
fn inline(doc: &Value, v: &Value, stack: &mut Vec<String>, budget: &mut usize) -> Value {
    if *budget == 0 {
        return json!({});
    }
    *budget -= 1;
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                if stack.iter().any(|s| s == r) || stack.len() >= MAX_REF_DEPTH {
                    return json!({});
                }
                let Some(target) = lookup(doc, r) else {
                    return json!({});
                };
                stack.push(r.to_owned());
                let out = inline(doc, target, stack, budget);
                stack.pop();
                return out;
            }
            Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), inline(doc, v, stack, budget)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| inline(doc, v, stack, budget)).collect()),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => v.clone(),
    }
}

fn sanitize(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
            c
        } else {
            '_'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    let out = out.trim_matches('_');
    out.chars().take(MAX_NAME).collect()
}

/// Why one operation of a document is skipped (the others are still offered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum OperationError {
    #[error("a `{{` in the path is not closed")]
    UnclosedVariable,
    #[error("the path has an empty `{{}}`")]
    EmptyVariable,
    #[error("a parameter has no `name` or `in`")]
    UnnamedParameter,
    #[error("it requires the cookie parameter {0}")]
    RequiredCookie(String),
    #[error("parameter {name} is in unknown location {location:?}")]
    UnknownLocation { name: String, location: String },
    #[error("its required request body is not JSON")]
    BodyNotJson,
    #[error("unknown method {0}")]
    UnknownMethod(String),
}

pub(super) fn parse_template(path: &str) -> Result<Vec<Piece>, OperationError> {
    let mut pieces = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Lit(rest[..open].to_owned()));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(OperationError::UnclosedVariable)?;
        let name = &after[..close];
        if name.is_empty() {
            return Err(OperationError::EmptyVariable);
        }
        pieces.push(Piece::Var(name.to_owned()));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Lit(rest.to_owned()));
    }
    Ok(pieces)
}

fn is_json_media(media: &str) -> bool {
    let m = media
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
}

pub(super) fn compile_operation(
    doc: &Value,
    path: &str,
    method: &str,
    op: &Value,
    shared_params: Option<&Vec<Value>>,
    credential: Option<&CredentialPlacement>,
) -> Result<Operation, OperationError> {
    let template = parse_template(path)?;
    // Path-level parameters first; an operation's own parameter of the same name and
    // location replaces it.
    let mut declared: BTreeMap<(String, String), &Value> = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for p in shared_params.into_iter().flatten().chain(
        op.get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten(),
    ) {
        let p = resolve(doc, p);
        let (Some(name), Some(loc)) = (
            p.get("name").and_then(Value::as_str),
            p.get("in").and_then(Value::as_str),
        ) else {
            return Err(OperationError::UnnamedParameter);
        };
        let key = (loc.to_owned(), name.to_owned());
        if declared.insert(key.clone(), p).is_none() {
            order.push(key);
        }
    }
    let mut properties = Map::new();
    let mut required: Vec<Value> = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    let mut budget = INLINE_BUDGET;
    for key in &order {
        let Some(p) = declared.get(key) else { continue };
        let (loc_name, wire) = key;
        let is_required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
        let loc = match loc_name.as_str() {
            "path" => Loc::Path,
            "query" => Loc::Query,
            "header" => Loc::Header,
            "cookie" => {
                if is_required {
                    return Err(OperationError::RequiredCookie(wire.clone()));
                }
                continue;
            }
            other => {
                return Err(OperationError::UnknownLocation {
                    name: wire.clone(),
                    location: other.to_owned(),
                });
            }
        };
        if loc == Loc::Header
            && ["authorization", "content-type", "accept"]
                .contains(&wire.to_ascii_lowercase().as_str())
        {
            continue;
        }
        let carries_credential = match credential {
            Some(CredentialPlacement::Header { name }) => {
                loc == Loc::Header && name.eq_ignore_ascii_case(wire)
            }
            Some(CredentialPlacement::Query { name }) => loc == Loc::Query && name == wire,
            Some(CredentialPlacement::Bearer) | None => false,
        };
        if carries_credential {
            continue;
        }
        let schema_src = p
            .get("schema")
            .or_else(|| {
                p.get("content")
                    .and_then(Value::as_object)
                    .and_then(|c| c.values().next())
                    .and_then(|m| m.get("schema"))
            })
            .cloned()
            .unwrap_or_else(|| json!({"type": "string"}));
        let mut schema = inline(doc, &schema_src, &mut Vec::new(), &mut budget);
        if let (Some(obj), Some(desc)) = (
            schema.as_object_mut(),
            p.get("description").and_then(Value::as_str),
        ) && !obj.contains_key("description")
        {
            obj.insert("description".into(), json!(desc));
        }
        let mut arg = wire.clone();
        if properties.contains_key(&arg) {
            arg = format!("{}_{}", loc.as_str(), wire);
        }
        let is_required = is_required || loc == Loc::Path;
        if is_required {
            required.push(json!(arg));
        }
        properties.insert(arg.clone(), schema);
        params.push(Param {
            arg,
            wire: wire.clone(),
            loc,
            required: is_required,
        });
    }
    // A path variable the document forgot to declare is still required, as a string.
    for piece in &template {
        if let Piece::Var(name) = piece
            && !params.iter().any(|p| p.loc == Loc::Path && p.wire == *name)
        {
            let mut arg = name.clone();
            if properties.contains_key(&arg) {
                arg = format!("path_{name}");
            }
            properties.insert(arg.clone(), json!({"type": "string"}));
            required.push(json!(arg));
            params.push(Param {
                arg,
                wire: name.clone(),
                loc: Loc::Path,
                required: true,
            });
        }
    }
    let mut body = None;
    if let Some(rb) = op.get("requestBody") {
        let rb = resolve(doc, rb);
        let body_required = rb.get("required").and_then(Value::as_bool).unwrap_or(false);
        let content = rb.get("content").and_then(Value::as_object);
        let json_media = content.and_then(|c| c.iter().find(|(m, _)| is_json_media(m)));
        match json_media {
            Some((media, m)) => {
                let schema = m
                    .get("schema")
                    .map(|s| inline(doc, s, &mut Vec::new(), &mut budget))
                    .unwrap_or_else(|| json!({}));
                let mut arg = "body".to_owned();
                while properties.contains_key(&arg) {
                    arg = format!("request_{arg}");
                }
                let mut schema = schema;
                if let (Some(obj), Some(desc)) = (
                    schema.as_object_mut(),
                    rb.get("description").and_then(Value::as_str),
                ) && !obj.contains_key("description")
                {
                    obj.insert("description".into(), json!(desc));
                }
                properties.insert(arg.clone(), schema);
                if body_required {
                    required.push(json!(arg));
                }
                body = Some(BodySpec {
                    arg,
                    required: body_required,
                    content_type: media.split(';').next().unwrap_or(media).trim().to_owned(),
                });
            }
            None if body_required => {
                return Err(OperationError::BodyNotJson);
            }
            None => {}
        }
    }
    let raw_name = match op.get("operationId").and_then(Value::as_str) {
        Some(id) if !sanitize(id).is_empty() => id.to_owned(),
        Some(_) | None => format!("{method}_{path}"),
    };
    let name = sanitize(&raw_name);
    let summary = op.get("summary").and_then(Value::as_str).map(str::trim);
    let details = op.get("description").and_then(Value::as_str).map(str::trim);
    let description = match (summary, details) {
        (Some(s), Some(d)) if !d.is_empty() && s != d => format!("{s}\n\n{d}"),
        (Some(s), Some(_) | None) if !s.is_empty() => s.to_owned(),
        (Some(_) | None, Some(d)) if !d.is_empty() => d.to_owned(),
        (Some(_) | None, Some(_) | None) => format!("{} {path}", method.to_ascii_uppercase()),
    };
    let mut input_schema = json!({"type": "object", "properties": properties});
    if !required.is_empty()
        && let Some(o) = input_schema.as_object_mut()
    {
        o.insert("required".into(), Value::Array(required));
    }
    let read_only = matches!(method, "get" | "head" | "options");
    let mut tool = json!({
        "name": name,
        "description": description,
        "inputSchema": input_schema,
        "annotations": {"readOnlyHint": read_only},
    });
    if let (Some(s), Some(o)) = (summary.filter(|s| !s.is_empty()), tool.as_object_mut()) {
        o.insert("title".into(), json!(s));
    }
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| OperationError::UnknownMethod(method.to_owned()))?;
    Ok(Operation {
        name,
        tool,
        method,
        path: template,
        params,
        body,
    })
}
