//! Namespaces and what a caller may name: the one place these rules live.
//!
//! A record lives in one namespace, a path such as `/strategies/facts-AbC123xYz0/actors/alice`,
//! made from a strategy's template by substituting `{memoryStrategyId}`, `{actorId}` and
//! `{sessionId}`. Namespaces are per tenant by construction (every stored row is keyed by its
//! tenant), so a namespace naming another tenant simply matches nothing of the caller's.
//!
//! Rules for what a caller sends:
//! - a namespace has 1 to 1,024 characters from letters, digits, `-_/:` (and a trailing `*`
//!   in a query, meaning "prefix", which a query is anyway); `.`, `%`, `\`, whitespace and
//!   `//` are refused with 400, so `..` and percent-encoded slashes can never reach the store;
//! - a caller limited to one actor (an agent's workload token, unless its runtime has
//!   tenant-wide memory) names only that actor: events of another actor are refused (403),
//!   and records are filtered by their actor in the store, so a namespace prefix wider than
//!   the caller's reach (`/`) answers only what the caller may read — it is narrowed, never
//!   widened.

use crate::MemoryError;
use crate::ids::{ActorId, MemorySessionId, StrategyId};
use crate::types::StrategyKind;

/// The longest namespace (AgentCore's limit for queries; templates take 512).
pub const MAX_NAMESPACE: usize = 1024;
const MAX_TEMPLATE: usize = 512;

const PLACEHOLDERS: [&str; 3] = ["{memoryStrategyId}", "{actorId}", "{sessionId}"];

/// What a caller may reach within its tenant's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Every actor of the tenant (API keys, user JWTs, operator, agents of runtimes with
    /// tenant-wide memory).
    TenantWide,
    /// Only this actor (an agent's workload token: its session's user).
    Actor(ActorId),
}

impl Reach {
    /// Refuses an actor other than the caller's own.
    pub fn check_actor(&self, actor: &ActorId) -> Result<(), MemoryError> {
        match self {
            Reach::TenantWide => Ok(()),
            Reach::Actor(own) if own == actor => Ok(()),
            Reach::Actor(own) => Err(MemoryError::Forbidden(format!(
                "this credential may use the memory of actor {own} only"
            ))),
        }
    }

    /// The actor every read of records is restricted to, if any.
    pub fn actor(&self) -> Option<&ActorId> {
        match self {
            Reach::TenantWide => None,
            Reach::Actor(a) => Some(a),
        }
    }
}

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_/:".contains(&b)
}

fn refuse(what: &str, ns: &str, why: &str) -> MemoryError {
    MemoryError::Invalid(format!(
        "invalid {what} {:?}: {why}",
        ns.chars().take(120).collect::<String>()
    ))
}

/// A namespace a record is written to: letters, digits, `-_/:`, no `//`.
pub fn check_namespace(ns: &str) -> Result<(), MemoryError> {
    if ns.is_empty() || ns.len() > MAX_NAMESPACE {
        return Err(refuse("namespace", ns, "use 1 to 1024 characters"));
    }
    if !ns.bytes().all(allowed) {
        return Err(refuse(
            "namespace",
            ns,
            "use letters, digits and -_/: only (no '.', '%' or spaces)",
        ));
    }
    if ns.contains("//") {
        return Err(refuse("namespace", ns, "empty path segment"));
    }
    Ok(())
}

/// The prefix a query names: `None` (or `/`, `*`, `/*`) is everything the caller may read.
/// A trailing `*` is dropped (a query matches by prefix anyway); anything `check_namespace`
/// refuses is refused.
pub fn query_prefix(raw: Option<&str>) -> Result<String, MemoryError> {
    let Some(raw) = raw else {
        return Ok(String::new());
    };
    let trimmed = raw.strip_suffix('*').unwrap_or(raw);
    if trimmed.is_empty() || trimmed == "/" {
        return Ok(String::new());
    }
    check_namespace(trimmed)?;
    Ok(trimmed.to_string())
}

/// A namespace template: the namespace alphabet plus the three placeholders.
pub fn check_template(t: &str) -> Result<(), MemoryError> {
    if t.is_empty() || t.len() > MAX_TEMPLATE {
        return Err(refuse("namespace template", t, "use 1 to 512 characters"));
    }
    let mut rest = t.to_string();
    for p in PLACEHOLDERS {
        rest = rest.replace(p, "x");
    }
    if rest.contains('{') || rest.contains('}') {
        return Err(refuse(
            "namespace template",
            t,
            "the only placeholders are {memoryStrategyId}, {actorId} and {sessionId}",
        ));
    }
    check_namespace(&rest).map_err(|_| {
        refuse(
            "namespace template",
            t,
            "use letters, digits, -_/: and placeholders only",
        )
    })
}

/// The templates a strategy of `kind` gets when it names none.
pub fn default_templates(kind: StrategyKind) -> Vec<String> {
    let t = match kind {
        StrategyKind::Summarization => {
            "/strategies/{memoryStrategyId}/actors/{actorId}/sessions/{sessionId}"
        }
        StrategyKind::Semantic | StrategyKind::UserPreference | StrategyKind::Custom => {
            "/strategies/{memoryStrategyId}/actors/{actorId}"
        }
    };
    vec![t.to_string()]
}

/// The namespace of `template` for a strategy, an actor and a session.
pub fn expand(
    template: &str,
    strategy: &StrategyId,
    actor: &ActorId,
    session: &MemorySessionId,
) -> Result<String, MemoryError> {
    check_template(template)?;
    let ns = template
        .replace("{memoryStrategyId}", strategy.as_str())
        .replace("{actorId}", actor.as_str())
        .replace("{sessionId}", session.as_str());
    check_namespace(&ns)?;
    Ok(ns)
}

/// The actor (and session) a namespace was made for, if it is an expansion of `template` for
/// `strategy`. Placeholders match one path segment or more for `{actorId}` (actor ids may hold
/// `/`), exactly one segment otherwise.
pub fn match_template(
    template: &str,
    strategy: &StrategyId,
    namespace: &str,
) -> Option<(Option<ActorId>, Option<MemorySessionId>)> {
    let t = template.replace("{memoryStrategyId}", strategy.as_str());
    let mut actor = None;
    let mut session = None;
    if !matches(&t, namespace, &mut actor, &mut session) {
        return None;
    }
    let actor = match actor {
        Some(a) => Some(ActorId::new(a).ok()?),
        None => None,
    };
    let session = match session {
        Some(s) => Some(MemorySessionId::new(s).ok()?),
        None => None,
    };
    Some((actor, session))
}

fn matches<'a>(
    t: &str,
    ns: &'a str,
    actor: &mut Option<&'a str>,
    session: &mut Option<&'a str>,
) -> bool {
    let next = [("{actorId}", true), ("{sessionId}", false)]
        .into_iter()
        .filter_map(|(p, is_actor)| t.find(p).map(|i| (i, p, is_actor)))
        .min_by_key(|(i, _, _)| *i);
    let Some((i, p, is_actor)) = next else {
        return t == ns;
    };
    let (lit, rest) = (&t[..i], &t[i + p.len()..]);
    let Some(after) = ns.strip_prefix(lit) else {
        return false;
    };
    // The value runs to where the rest of the template matches; try the shortest first.
    for end in 1..=after.len() {
        let value = &after[..end];
        if !is_actor && value.contains('/') {
            break;
        }
        let (mut a, mut s) = (*actor, *session);
        if is_actor {
            a = Some(value);
        } else {
            s = Some(value);
        }
        if matches(rest, &after[end..], &mut a, &mut s) {
            *actor = a;
            *session = s;
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sid() -> StrategyId {
        StrategyId::new("facts-AbCdEfGhIj").unwrap()
    }

    #[test]
    fn templates_expand_and_match_back() {
        let a = ActorId::new("alice").unwrap();
        let s = MemorySessionId::new("s1").unwrap();
        let t = "/summaries/{actorId}/{sessionId}";
        let ns = expand(t, &sid(), &a, &s).unwrap();
        assert_eq!(ns, "/summaries/alice/s1");
        assert_eq!(
            match_template(t, &sid(), &ns),
            Some((Some(a.clone()), Some(s.clone())))
        );
        let t = "/strategies/{memoryStrategyId}/actors/{actorId}";
        let ns = expand(t, &sid(), &ActorId::new("org:bob/x").unwrap(), &s).unwrap();
        assert_eq!(ns, "/strategies/facts-AbCdEfGhIj/actors/org:bob/x");
        assert_eq!(
            match_template(t, &sid(), &ns).unwrap().0.unwrap().as_str(),
            "org:bob/x"
        );
        assert_eq!(
            match_template(t, &sid(), "/strategies/other/actors/a"),
            None
        );
        assert_eq!(
            match_template("/fixed", &sid(), "/fixed"),
            Some((None, None))
        );
    }

    #[test]
    fn hostile_namespaces_are_refused() {
        for bad in [
            "/a/../b",
            "..",
            "/a/%2Fb",
            "/a/%2fb",
            "/a\\b",
            "/a//b",
            "/a b",
            "/tenants/x/.",
            "/a/\u{0}",
        ] {
            assert!(query_prefix(Some(bad)).is_err(), "{bad}");
            assert!(check_namespace(bad).is_err(), "{bad}");
        }
        assert_eq!(query_prefix(Some("/")).unwrap(), "");
        assert_eq!(query_prefix(Some("/*")).unwrap(), "");
        assert_eq!(query_prefix(None).unwrap(), "");
        assert_eq!(query_prefix(Some("/a/b*")).unwrap(), "/a/b");
        assert!(check_template("/x/{tenantId}").is_err());
        assert!(check_template("/x/{actorId}/{sessionId}").is_ok());
    }

    #[test]
    fn a_limited_reach_names_its_own_actor_only() {
        let alice = ActorId::new("alice").unwrap();
        let bob = ActorId::new("bob").unwrap();
        let reach = Reach::Actor(alice.clone());
        assert!(reach.check_actor(&alice).is_ok());
        assert!(matches!(
            reach.check_actor(&bob),
            Err(MemoryError::Forbidden(_))
        ));
        assert!(Reach::TenantWide.check_actor(&bob).is_ok());
        assert_eq!(reach.actor(), Some(&alice));
    }
}
