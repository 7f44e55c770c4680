//! Checks on JSON values (tool call arguments, tool results): every string in the value is
//! checked on its own by the local checks and masked in place; the remote checks see the
//! strings joined, once.

use serde_json::Value;

use crate::engine::{Context, Found, Guard, Outcome, Verdict};
use crate::profile::Stage;

/// The decision on a JSON value.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueVerdict {
    /// The blocking category, if blocked.
    pub blocked: Option<String>,
    /// The value with its strings masked, if anything was masked.
    pub masked: Option<Value>,
    pub findings: Vec<Found>,
}

fn walk(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| walk(x, f)),
        Value::Object(o) => o.values_mut().for_each(|x| walk(x, f)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn add(findings: &mut Vec<Found>, more: Vec<Found>) {
    for f in more {
        if !findings.contains(&f) {
            findings.push(f);
        }
    }
}

impl Guard {
    /// Checks every string of `value` at `stage`.
    pub async fn check_value(
        &self,
        stage: Stage,
        value: &Value,
        ctx: &Context<'_>,
    ) -> ValueVerdict {
        let mut out = ValueVerdict {
            blocked: None,
            masked: None,
            findings: Vec::new(),
        };
        if !self.applies(stage) {
            return out;
        }
        let mut copy = value.clone();
        let mut changed = false;
        let mut joined = String::new();
        walk(&mut copy, &mut |s: &mut String| {
            if out.blocked.is_some() {
                return;
            }
            let v = self.check_local(stage, s, ctx);
            add(&mut out.findings, v.findings);
            match v.outcome {
                Outcome::Pass => {}
                Outcome::Masked(m) => {
                    *s = m;
                    changed = true;
                }
                Outcome::Blocked { category } => out.blocked = Some(category),
            }
            if !joined.is_empty() {
                joined.push('\n');
            }
            joined.push_str(s);
        });
        if out.blocked.is_some() {
            return out;
        }
        let mut remote = Verdict::pass();
        if !joined.is_empty() {
            self.check_remote(stage, &joined, ctx, &mut remote).await;
        }
        add(&mut out.findings, remote.findings);
        if let Outcome::Blocked { category } = remote.outcome {
            out.blocked = Some(category);
            return out;
        }
        if changed {
            out.masked = Some(copy);
        }
        out
    }
}
