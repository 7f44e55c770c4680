//! Metadata filters of a retrieval, in the shape of Bedrock's `RetrievalFilter`: exactly one
//! of `equals`, `notEquals`, `greaterThan`, `greaterThanOrEquals`, `lessThan`,
//! `lessThanOrEquals`, `in`, `notIn`, `startsWith`, `listContains`, `stringContains` (each
//! `{key, value}`), or `andAll` / `orAll` (lists of at least two filters).
//!
//! A filter only narrows what the caller's tenant already reaches: it is evaluated on the
//! metadata of the caller's own documents, after the tenant is fixed by the server. A key such
//! as `tenant_id` is an ordinary metadata key here and can widen nothing.

use serde_json::{Map, Value};

/// How deep `andAll`/`orAll` may nest.
const MAX_DEPTH: usize = 5;
/// How many conditions one filter may hold in all.
const MAX_NODES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter: {0}")]
pub struct FilterError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equals,
    NotEquals,
    GreaterThan,
    GreaterThanOrEquals,
    LessThan,
    LessThanOrEquals,
    In,
    NotIn,
    StartsWith,
    ListContains,
    StringContains,
}

impl Op {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "equals" => Op::Equals,
            "notEquals" => Op::NotEquals,
            "greaterThan" => Op::GreaterThan,
            "greaterThanOrEquals" => Op::GreaterThanOrEquals,
            "lessThan" => Op::LessThan,
            "lessThanOrEquals" => Op::LessThanOrEquals,
            "in" => Op::In,
            "notIn" => Op::NotIn,
            "startsWith" => Op::StartsWith,
            "listContains" => Op::ListContains,
            "stringContains" => Op::StringContains,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Cond { op: Op, key: String, value: Value },
    All(Vec<Filter>),
    Any(Vec<Filter>),
}

impl Filter {
    /// Reads a filter from its JSON form.
    pub fn from_json(v: &Value) -> Result<Filter, FilterError> {
        let mut nodes = 0;
        read(v, 0, &mut nodes)
    }

    /// Whether a document's metadata passes.
    pub fn matches(&self, meta: &Map<String, Value>) -> bool {
        match self {
            Filter::All(fs) => fs.iter().all(|f| f.matches(meta)),
            Filter::Any(fs) => fs.iter().any(|f| f.matches(meta)),
            Filter::Cond { op, key, value } => cond(*op, meta.get(key), value),
        }
    }
}

fn read(v: &Value, depth: usize, nodes: &mut usize) -> Result<Filter, FilterError> {
    *nodes += 1;
    if depth > MAX_DEPTH || *nodes > MAX_NODES {
        return Err(FilterError(format!(
            "at most {MAX_DEPTH} levels and {MAX_NODES} conditions"
        )));
    }
    let obj = v
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| FilterError("each filter is an object with exactly one member".into()))?;
    let Some((name, body)) = obj.iter().next() else {
        return Err(FilterError("empty filter".into()));
    };
    match name.as_str() {
        "andAll" | "orAll" => {
            let list = body
                .as_array()
                .filter(|l| l.len() >= 2)
                .ok_or_else(|| FilterError(format!("{name} takes a list of at least 2 filters")))?;
            let fs = list
                .iter()
                .map(|f| read(f, depth + 1, nodes))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if name == "andAll" {
                Filter::All(fs)
            } else {
                Filter::Any(fs)
            })
        }
        other => {
            let op = Op::parse(other)
                .ok_or_else(|| FilterError(format!("unknown filter operator {other:?}")))?;
            let attr = body
                .as_object()
                .ok_or_else(|| FilterError(format!("{other} takes {{key, value}}")))?;
            let key = attr
                .get("key")
                .and_then(Value::as_str)
                .filter(|k| (1..=100).contains(&k.len()))
                .ok_or_else(|| FilterError(format!("{other}.key must be 1 to 100 characters")))?;
            let value = attr
                .get("value")
                .ok_or_else(|| FilterError(format!("{other}.value is required")))?;
            if matches!(op, Op::In | Op::NotIn) && !value.is_array() {
                return Err(FilterError(format!("{other}.value must be a list")));
            }
            Ok(Filter::Cond {
                op,
                key: key.to_owned(),
                value: value.clone(),
            })
        }
    }
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn same(a: &Value, b: &Value) -> bool {
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn cond(op: Op, have: Option<&Value>, want: &Value) -> bool {
    let Some(have) = have else {
        // An absent key equals nothing, so only the negations pass.
        return matches!(op, Op::NotEquals | Op::NotIn);
    };
    let ordered = |f: fn(f64, f64) -> bool| match (num(have), num(want)) {
        (Some(h), Some(w)) => f(h, w),
        _ => false,
    };
    match op {
        Op::Equals => same(have, want),
        Op::NotEquals => !same(have, want),
        Op::GreaterThan => ordered(|h, w| h > w),
        Op::GreaterThanOrEquals => ordered(|h, w| h >= w),
        Op::LessThan => ordered(|h, w| h < w),
        Op::LessThanOrEquals => ordered(|h, w| h <= w),
        Op::In => want
            .as_array()
            .is_some_and(|l| l.iter().any(|w| same(have, w))),
        Op::NotIn => !want
            .as_array()
            .is_some_and(|l| l.iter().any(|w| same(have, w))),
        Op::StartsWith => match (have.as_str(), want.as_str()) {
            (Some(h), Some(w)) => h.starts_with(w),
            _ => false,
        },
        Op::StringContains => match (have, want.as_str()) {
            (Value::String(h), Some(w)) => h.contains(w),
            (Value::Array(l), Some(w)) => {
                l.iter().any(|x| x.as_str().is_some_and(|x| x.contains(w)))
            }
            _ => false,
        },
        Op::ListContains => have
            .as_array()
            .is_some_and(|l| l.iter().any(|x| same(x, want))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn meta(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn conditions_and_combinations() {
        let m = meta(json!({"team": "billing", "year": 2025, "tags": ["a", "b"]}));
        let f = |v: Value| Filter::from_json(&v).unwrap().matches(&m);
        assert!(f(json!({"equals": {"key": "team", "value": "billing"}})));
        assert!(!f(json!({"equals": {"key": "team", "value": "support"}})));
        assert!(f(json!({"greaterThan": {"key": "year", "value": 2024}})));
        assert!(f(json!({"in": {"key": "team", "value": ["x", "billing"]}})));
        assert!(f(json!({"listContains": {"key": "tags", "value": "b"}})));
        assert!(f(json!({"startsWith": {"key": "team", "value": "bill"}})));
        assert!(f(json!({"notEquals": {"key": "missing", "value": 1}})));
        assert!(!f(json!({"equals": {"key": "missing", "value": 1}})));
        assert!(f(json!({"andAll": [
            {"equals": {"key": "team", "value": "billing"}},
            {"orAll": [{"lessThan": {"key": "year", "value": 2000}}, {"stringContains": {"key": "team", "value": "ill"}}]}
        ]})));
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in [
            json!({}),
            json!({"equals": {"key": "a", "value": 1}, "in": {"key": "b", "value": [1]}}),
            json!({"andAll": [{"equals": {"key": "a", "value": 1}}]}),
            json!({"in": {"key": "a", "value": 1}}),
            json!({"sql": "1=1"}),
            json!({"equals": {"key": "", "value": 1}}),
        ] {
            assert!(Filter::from_json(&bad).is_err(), "{bad}");
        }
    }
}
