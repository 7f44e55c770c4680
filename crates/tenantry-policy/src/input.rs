//! A tool's input as Cedar sees it: the Cedar type derived from the tool's JSON Schema
//! (`inputSchema` of MCP), and the conversion of one call's JSON input into a value of that
//! type.
//!
//! The mapping, JSON Schema to Cedar:
//!
//! | JSON Schema                          | Cedar                                          |
//! |--------------------------------------|------------------------------------------------|
//! | `"type": "integer"`                  | `Long` (a JSON number without fraction, in i64) |
//! | `"type": "number"`                   | `decimal` (rounded to 4 places; compare with `.lessThan(decimal("10.5"))`) |
//! | `"type": "string"` (any `format`)    | `String`                                       |
//! | `"type": "boolean"`                  | `Bool`                                         |
//! | `"type": "array"` with typed `items` | `Set<T>` (order and duplicates are lost)       |
//! | `"type": "object"` with `properties` | a record of the properties this table maps     |
//! | `"type": [T, "null"]`                | T, as an optional attribute                    |
//! | no `type`, but `enum`/`const`        | the type all the values share                  |
//! | anything else (`anyOf`, `$ref`, mixed types, free-form objects' extra keys, property names starting with `__`) | left out: policies cannot read it |
//!
//! A property is a required attribute when the schema lists it in `required` and does not
//! allow `null`; every other property is optional, so a policy must test `context.input has
//! x` before reading `context.input.x` (the validator insists). At call time only the
//! properties of the type are converted: extra keys are dropped, `null` counts as absent, and
//! a value of the wrong type or a missing required property makes the input unfit, which the
//! engine refuses (fail closed).
//!
//! This module must never let an input value reach Cedar in a shape its type does not admit.

use serde_json::{Map, Value, json};

/// How deep nested objects and arrays are typed; deeper parts are left out.
const MAX_DEPTH: usize = 8;

/// The Cedar type of (part of) a tool's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputType {
    Long,
    Decimal,
    String,
    Bool,
    Set(Box<InputType>),
    Record(Vec<InputAttr>),
}

/// Why a call's input does not fit its tool's type; `path` names the place in the input
/// (`input.items[2].price`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InputError {
    #[error("{path}: expected an integer")]
    NotInteger { path: String },
    #[error("{path}: expected a number between -922337203685477 and 922337203685477")]
    NotDecimal { path: String },
    #[error("{path}: expected a string")]
    NotString { path: String },
    #[error("{path}: expected true or false")]
    NotBool { path: String },
    #[error("{path}: expected an array")]
    NotArray { path: String },
    #[error("{path}: expected an object")]
    NotObject { path: String },
    #[error("{path}: {name:?} is required")]
    Missing { path: String, name: String },
}

/// One attribute of a record type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputAttr {
    pub name: String,
    pub required: bool,
    pub ty: InputType,
}

impl InputType {
    /// The record type of a tool's input, from its JSON Schema. A schema that is not an
    /// object schema gives the empty record.
    pub fn from_json_schema(schema: &Value) -> InputType {
        record_of(schema, 0).unwrap_or(InputType::Record(Vec::new()))
    }

    /// The type in Cedar's JSON schema format.
    pub(crate) fn to_cedar_schema(&self) -> Value {
        match self {
            InputType::Long => json!({"type": "Long"}),
            InputType::Decimal => json!({"type": "Extension", "name": "decimal"}),
            InputType::String => json!({"type": "String"}),
            InputType::Bool => json!({"type": "Boolean"}),
            InputType::Set(elem) => json!({"type": "Set", "element": elem.to_cedar_schema()}),
            InputType::Record(attrs) => {
                let mut out = Map::new();
                for a in attrs {
                    let mut ty = a.ty.to_cedar_schema();
                    if let Some(obj) = ty.as_object_mut() {
                        obj.insert("required".into(), Value::Bool(a.required));
                    }
                    out.insert(a.name.clone(), ty);
                }
                json!({"type": "Record", "attributes": out})
            }
        }
    }

    /// Converts one call's input into Cedar's JSON value format for this type. `path` names
    /// the place in the input for error messages (`input.items[2].price`).
    pub(crate) fn convert(&self, value: &Value, path: &str) -> Result<Value, InputError> {
        let at = || path.to_owned();
        match self {
            InputType::Long => to_long(value)
                .map(Value::from)
                .ok_or_else(|| InputError::NotInteger { path: at() }),
            InputType::Decimal => to_decimal(value)
                .map(|arg| json!({"__extn": {"fn": "decimal", "arg": arg}}))
                .ok_or_else(|| InputError::NotDecimal { path: at() }),
            InputType::String => value
                .as_str()
                .map(Value::from)
                .ok_or_else(|| InputError::NotString { path: at() }),
            InputType::Bool => value
                .as_bool()
                .map(Value::from)
                .ok_or_else(|| InputError::NotBool { path: at() }),
            InputType::Set(elem) => {
                let items = value
                    .as_array()
                    .ok_or_else(|| InputError::NotArray { path: at() })?;
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| elem.convert(v, &format!("{path}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array)
            }
            InputType::Record(attrs) => {
                let obj = value
                    .as_object()
                    .ok_or_else(|| InputError::NotObject { path: at() })?;
                let mut out = Map::new();
                for a in attrs {
                    match obj.get(&a.name) {
                        None | Some(Value::Null) => {
                            if a.required {
                                return Err(InputError::Missing {
                                    path: at(),
                                    name: a.name.clone(),
                                });
                            }
                        }
                        Some(v) => {
                            let converted = a.ty.convert(v, &format!("{path}.{}", a.name))?;
                            out.insert(a.name.clone(), converted);
                        }
                    }
                }
                Ok(Value::Object(out))
            }
        }
    }
}

fn to_long(value: &Value) -> Option<i64> {
    let n = value.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // 2^63 is exactly representable; anything at or above it does not fit.
    (f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f))
        .then_some(f as i64)
}

/// Cedar's decimal: at most 4 fraction digits, within i64 / 10^4.
fn to_decimal(value: &Value) -> Option<String> {
    const LIMIT: f64 = 922_337_203_685_477.0;
    let n = value.as_number()?;
    if let Some(i) = n.as_i64() {
        return (i.unsigned_abs() <= LIMIT as u64).then(|| format!("{i}.0"));
    }
    let f = n.as_f64()?;
    (f.is_finite() && f.abs() <= LIMIT).then(|| format!("{f:.4}"))
}

/// The single JSON Schema type `schema` admits, and whether it also admits `null`.
fn type_of(schema: &Value) -> Option<(&str, bool)> {
    match schema.get("type") {
        Some(Value::String(t)) => Some((t.as_str(), false)),
        Some(Value::Array(types)) => {
            let nullable = types.iter().any(|t| t == "null");
            let mut others = types.iter().filter(|t| *t != "null");
            match (others.next(), others.next()) {
                (Some(Value::String(t)), None) => Some((t.as_str(), nullable)),
                _ => None,
            }
        }
        Some(_) => None,
        None => infer_type(schema).map(|t| (t, false)),
    }
}

/// The type of a schema without `type`: an object or array by its keywords, or the type all
/// its `enum`/`const` values share.
fn infer_type(schema: &Value) -> Option<&'static str> {
    if schema.get("properties").is_some() {
        return Some("object");
    }
    if schema.get("items").is_some() {
        return Some("array");
    }
    let values: Vec<&Value> = match (schema.get("enum"), schema.get("const")) {
        (Some(Value::Array(vs)), _) => vs.iter().collect(),
        (None, Some(v)) => vec![v],
        _ => return None,
    };
    if values.is_empty() {
        return None;
    }
    if values.iter().all(|v| v.is_string()) {
        Some("string")
    } else if values.iter().all(|v| v.is_i64()) {
        Some("integer")
    } else if values.iter().all(|v| v.is_boolean()) {
        Some("boolean")
    } else {
        None
    }
}

/// The Cedar type of a property schema and whether it admits `null`; `None` if Cedar cannot
/// type it (the property is left out).
fn convert(schema: &Value, depth: usize) -> Option<(InputType, bool)> {
    if depth > MAX_DEPTH {
        return None;
    }
    let (name, nullable) = type_of(schema)?;
    let ty = match name {
        "integer" => InputType::Long,
        "number" => InputType::Decimal,
        "string" => InputType::String,
        "boolean" => InputType::Bool,
        "array" => {
            let (elem, elem_nullable) = convert(schema.get("items")?, depth + 1)?;
            // A set cannot hold null.
            if elem_nullable {
                return None;
            }
            InputType::Set(Box::new(elem))
        }
        "object" => record_of(schema, depth)?,
        _ => return None,
    };
    Some((ty, nullable))
}

fn record_of(schema: &Value, depth: usize) -> Option<InputType> {
    if depth > MAX_DEPTH {
        return None;
    }
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut attrs: Vec<InputAttr> = schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(name, _)| !name.starts_with("__"))
        .filter_map(|(name, sub)| {
            let (ty, nullable) = convert(sub, depth + 1)?;
            Some(InputAttr {
                name: name.clone(),
                required: required.contains(&name.as_str()) && !nullable,
                ty,
            })
        })
        .collect();
    attrs.sort_by(|a, b| a.name.cmp(&b.name));
    Some(InputType::Record(attrs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(name: &str, required: bool, ty: InputType) -> InputAttr {
        InputAttr {
            name: name.into(),
            required,
            ty,
        }
    }

    #[test]
    fn json_schema_maps_to_cedar_types() {
        let schema = json!({
            "type": "object",
            "properties": {
                "amount": {"type": "integer"},
                "price": {"type": "number"},
                "note": {"type": ["string", "null"]},
                "urgent": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "level": {"enum": ["low", "high"]},
                "choice": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "mixed": {"type": ["string", "integer"]},
                "free": {"type": "object", "additionalProperties": true},
                "__entity": {"type": "string"},
                "patient": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}},
                    "required": ["id"]
                }
            },
            "required": ["amount", "note", "missing"]
        });
        let ty = InputType::from_json_schema(&schema);
        assert_eq!(
            ty,
            InputType::Record(vec![
                attr("amount", true, InputType::Long),
                attr("free", false, InputType::Record(vec![])),
                attr("level", false, InputType::String),
                attr("note", false, InputType::String),
                attr(
                    "patient",
                    false,
                    InputType::Record(vec![attr("id", true, InputType::String)])
                ),
                attr("price", false, InputType::Decimal),
                attr("tags", false, InputType::Set(Box::new(InputType::String))),
                attr("urgent", false, InputType::Bool),
            ])
        );
    }

    #[test]
    fn not_an_object_schema_is_the_empty_record() {
        assert_eq!(
            InputType::from_json_schema(&json!(true)),
            InputType::Record(vec![])
        );
        assert_eq!(
            InputType::from_json_schema(&json!({"type": "object"})),
            InputType::Record(vec![])
        );
    }

    #[test]
    fn deep_nesting_is_cut_off() {
        let mut schema = json!({"type": "integer"});
        for _ in 0..20 {
            schema = json!({"type": "object", "properties": {"x": schema}});
        }
        let mut ty = InputType::from_json_schema(&schema);
        let mut depth = 0;
        while let InputType::Record(attrs) = ty {
            match attrs.into_iter().next() {
                Some(a) => ty = a.ty,
                None => break,
            }
            depth += 1;
        }
        assert!(depth <= MAX_DEPTH + 1, "typed {depth} levels");
    }

    #[test]
    fn values_convert_by_type() {
        let ty = InputType::from_json_schema(&json!({
            "type": "object",
            "properties": {
                "amount": {"type": "integer"},
                "price": {"type": "number"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "note": {"type": "string"}
            },
            "required": ["amount"]
        }));
        let got = ty
            .convert(
                &json!({"amount": 12.0, "price": 1.23456, "tags": ["a", "b"], "note": null, "extra": 1}),
                "input",
            )
            .unwrap_or_default();
        assert_eq!(
            got,
            json!({
                "amount": 12,
                "price": {"__extn": {"fn": "decimal", "arg": "1.2346"}},
                "tags": ["a", "b"]
            })
        );
        let int_price = ty.convert(&json!({"amount": 1, "price": 7}), "input");
        assert_eq!(
            int_price.ok().and_then(|v| v.get("price").cloned()),
            Some(json!({"__extn": {"fn": "decimal", "arg": "7.0"}}))
        );
    }

    #[test]
    fn unfit_values_are_refused_with_their_path() {
        let ty = InputType::from_json_schema(&json!({
            "type": "object",
            "properties": {
                "amount": {"type": "integer"},
                "items": {"type": "array", "items": {
                    "type": "object", "properties": {"qty": {"type": "integer"}}
                }}
            },
            "required": ["amount"]
        }));
        let err = |v: Value| {
            ty.convert(&v, "input")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(err(json!({})), "input: \"amount\" is required");
        assert_eq!(
            err(json!({"amount": 1.5})),
            "input.amount: expected an integer"
        );
        assert_eq!(
            err(json!({"amount": "1"})),
            "input.amount: expected an integer"
        );
        assert_eq!(
            err(json!({"amount": 1e30})),
            "input.amount: expected an integer"
        );
        assert_eq!(
            err(json!({"amount": 1, "items": [{"qty": 1}, {"qty": "x"}]})),
            "input.items[1].qty: expected an integer"
        );
        assert_eq!(err(json!([1])), "input: expected an object");
    }
}
