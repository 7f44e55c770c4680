//! Policy set texts made into policies: Cedar's parser run on a thread with a stack of its own,
//! the limits on nesting and expression depth, distinct `@id`s, no templates, and each
//! policy's audit id (`{scope}@v{version}#{name}`).
//!
//! It must never let Cedar recurse on a server thread over a text of the caller's, and never
//! accept a set it could not inspect whole.

use std::collections::HashSet;
use std::str::FromStr;

use cedar_policy::{Policy, PolicyId, PolicySet};
use serde_json::Value;

use crate::{Mode, PolicyDiagnostic, PolicyError, PolicyScope};

/// Deepest nesting of parentheses, brackets and braces a policy text may have. Cedar's parser
/// recurses once per level, with tens of kilobytes of stack per level in a build without
/// optimisations: an upload of a few dozen nested parentheses overflowed a server thread's
/// stack, which aborts the whole process. Real policies nest a few levels.
pub const MAX_POLICY_NESTING: usize = 32;

/// Deepest expression a policy may have, counted in levels of its JSON form (an operator with
/// its operands is a level or two). Cedar clones, drops and evaluates expression trees by
/// recursion on whatever thread holds them, so a set with a chain of 20,000 `+` overflowed a
/// server thread when it was dropped. Real policies are a few dozen levels deep.
pub const MAX_POLICY_DEPTH: usize = 256;

/// The stack of the thread on which Cedar parses and validates a policy text. Long operator
/// chains and nested `if`s are parsed by recursion as well; within the store's 256 KiB text
/// limit they need tens of megabytes in a debug build. Address space only: a thread's stack
/// is committed as far as it is used.
const CEDAR_STACK_BYTES: usize = 512 << 20;

/// One scope's compiled policy set.
#[derive(Debug)]
pub(crate) struct CompiledSet {
    pub(crate) mode: Mode,
    pub(crate) policies: Vec<Policy>,
}

/// `tier:basic@v3`.
pub(crate) fn set_id(scope: &PolicyScope, version: i64) -> String {
    format!("{scope}@v{version}")
}

pub(crate) fn deny_all(id: &str) -> Policy {
    // A fixed, valid policy: parsing it cannot fail.
    Policy::parse(
        Some(PolicyId::new(id)),
        "forbid (principal, action, resource);",
    )
    .unwrap_or_else(|_| unreachable_policy())
}

#[allow(
    clippy::panic,
    reason = "only reachable if Cedar stops parsing its simplest policy, a build-time impossibility"
)]
fn unreachable_policy() -> Policy {
    panic!("cedar refused `forbid (principal, action, resource);`")
}

/// Runs `work` (Cedar parsing and validation) on a thread of its own with a stack of
/// `CEDAR_STACK_BYTES`, waiting for it: whatever a text makes Cedar recurse, the server's own
/// threads (2 MiB stacks) never overflow.
pub(crate) fn on_cedar_stack<T: Send>(
    work: impl FnOnce() -> Result<T, PolicyError> + Send,
) -> Result<T, PolicyError> {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("cedar-parse".into())
            .stack_size(CEDAR_STACK_BYTES)
            .spawn_scoped(scope, work)
            .map_err(|e| {
                PolicyError::Unavailable(format!("cannot start a thread to parse policies: {e}"))
            })?;
        worker
            .join()
            .unwrap_or_else(|_| Err(PolicyError::Unavailable("the policy parser failed".into())))
    })
}

/// The depth of a JSON value, counted without recursion.
fn json_depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut todo = vec![(v, 1usize)];
    while let Some((v, depth)) = todo.pop() {
        deepest = deepest.max(depth);
        match v {
            Value::Array(items) => todo.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Object(fields) => todo.extend(fields.values().map(|f| (f, depth + 1))),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
        }
    }
    deepest
}

/// Refuses a text nested deeper than `MAX_POLICY_NESTING` (outside string literals and
/// comments), naming where it went too deep.
fn check_nesting(text: &str) -> Result<(), PolicyError> {
    let mut depth = 0usize;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => {
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '/' if chars.peek().is_some_and(|(_, n)| *n == '/') => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_POLICY_NESTING {
                    return Err(PolicyError::Invalid {
                        diagnostics: vec![PolicyDiagnostic::at(
                            format!(
                                "expressions nest too deep: at most {MAX_POLICY_NESTING} levels of \
                                 parentheses, brackets and braces"
                            ),
                            text,
                            Some(at),
                        )],
                    });
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses a policy set text: static policies only, `@id` annotations distinct. Runs Cedar's
/// parser, so it belongs on the Cedar stack (`on_cedar_stack`).
pub(crate) fn parse(text: &str) -> Result<PolicySet, PolicyError> {
    check_nesting(text)?;
    let pset = PolicySet::from_str(text).map_err(|errors| PolicyError::Invalid {
        diagnostics: errors
            .iter()
            .map(|e| PolicyDiagnostic::from_miette(e, text))
            .collect(),
    })?;
    let mut diagnostics = Vec::new();
    for p in pset.policies() {
        let name = p
            .annotation("id")
            .map_or_else(|| p.id().to_string(), str::to_owned);
        let depth = match p.to_json() {
            Ok(json) => json_depth(&json),
            Err(e) => {
                diagnostics.push(PolicyDiagnostic::at(
                    format!("policy {name} cannot be inspected: {e}"),
                    text,
                    None,
                ));
                continue;
            }
        };
        if depth > MAX_POLICY_DEPTH {
            diagnostics.push(PolicyDiagnostic::at(
                format!(
                    "policy {name} nests too deep: its expression is {depth} levels deep, at \
                     most {MAX_POLICY_DEPTH}; split long chains of operators or conditions"
                ),
                text,
                None,
            ));
        }
    }
    if pset.templates().next().is_some() {
        let at = text.find("?principal").or_else(|| text.find("?resource"));
        diagnostics.push(PolicyDiagnostic::at(
            "templates (?principal, ?resource) are not supported: write static policies",
            text,
            at,
        ));
    }
    let mut seen = HashSet::new();
    for p in pset.policies() {
        if let Some(id) = p.annotation("id")
            && !seen.insert(id.to_owned())
        {
            let at = text.find(&format!("\"{id}\""));
            diagnostics.push(PolicyDiagnostic::at(
                format!("two policies are annotated @id(\"{id}\"); ids must be distinct"),
                text,
                at,
            ));
        }
    }
    if diagnostics.is_empty() {
        Ok(pset)
    } else {
        Err(PolicyError::Invalid { diagnostics })
    }
}

/// Parses a set and gives its policies their audit ids: `{scope}@v{version}#{name}`, the name
/// being the policy's `@id` annotation, or its position in the text (0, 1, ...).
pub(crate) fn compile(
    scope: &PolicyScope,
    version: i64,
    mode: Mode,
    text: &str,
) -> Result<CompiledSet, PolicyError> {
    on_cedar_stack(|| compile_here(scope, version, mode, text))
}

fn compile_here(
    scope: &PolicyScope,
    version: i64,
    mode: Mode,
    text: &str,
) -> Result<CompiledSet, PolicyError> {
    let pset = parse(text)?;
    let prefix = set_id(scope, version);
    let mut numbered: Vec<(usize, &Policy)> = pset
        .policies()
        .map(|p| {
            // Cedar numbers the policies of a text policy0, policy1... in order.
            let n = p
                .id()
                .to_string()
                .strip_prefix("policy")
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            (n, p)
        })
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    let policies = numbered
        .into_iter()
        .enumerate()
        .map(|(i, (_, p))| {
            let name = p
                .annotation("id")
                .map_or_else(|| i.to_string(), str::to_owned);
            p.new_id(PolicyId::new(format!("{prefix}#{name}")))
        })
        .collect();
    Ok(CompiledSet { mode, policies })
}

#[cfg(test)]
mod tests {
    use tenantry_core::TierName;

    use super::*;

    #[test]
    fn policy_ids_name_scope_version_and_position_or_annotation() {
        let set = compile(
            &PolicyScope::Tier(TierName::new("basic").unwrap_or_else(|_| unreachable!())),
            3,
            Mode::Enforce,
            "permit(principal, action, resource);\n@id(\"named\")\nforbid(principal, action, resource);\npermit(principal, action, resource);",
        );
        let ids: Vec<String> = set
            .map(|s| s.policies.iter().map(|p| p.id().to_string()).collect())
            .unwrap_or_default();
        assert_eq!(
            ids,
            ["tier:basic@v3#0", "tier:basic@v3#named", "tier:basic@v3#2"]
        );
    }
}
