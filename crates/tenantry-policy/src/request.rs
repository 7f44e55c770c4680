//! One call as Cedar is asked about it: the entities of the caller (user, tenant, tier, its
//! claims as tags), of the tool (in its target) and of its action, the clock of the context,
//! and how Cedar's answer is read.
//!
//! It must never read an answer with a failed `forbid` in it as an allow.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use cedar_policy::{
    Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet,
    RestrictedExpression,
};

use crate::engine::{PrincipalAttrs, ToolRef};
use crate::schema::{CALL_TOOL, NAMESPACE};

/// Why a call cannot be put to Cedar at all (a name Cedar refuses in an entity); the engine
/// denies such a call. Cedar's errors are boxed: they are large and this path is rare.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("entity type {type_name}: {source}")]
    EntityType {
        type_name: String,
        source: Box<cedar_policy::ParseErrors>,
    },
    #[error("the principal: {0}")]
    Principal(Box<cedar_policy::EntityAttrEvaluationError>),
    #[error("the tool: {0}")]
    Tool(Box<cedar_policy::EntityAttrEvaluationError>),
    #[error("the entities: {0}")]
    Entities(Box<cedar_policy::entities_errors::EntitiesError>),
}

pub(crate) struct Uids {
    pub(crate) principal: EntityUid,
    pub(crate) action: EntityUid,
    pub(crate) resource: EntityUid,
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid, RequestError> {
    let ty = EntityTypeName::from_str(&format!("{NAMESPACE}::{type_name}")).map_err(|source| {
        RequestError::EntityType {
            type_name: type_name.to_owned(),
            source: Box::new(source),
        }
    })?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

impl Uids {
    pub(crate) fn new(p: &PrincipalAttrs, tool: &ToolRef) -> Result<Self, RequestError> {
        Ok(Self {
            // Users are per tenant; tenant ids have no '/', so this is unambiguous.
            principal: uid("User", &format!("{}/{}", p.tenant, p.user))?,
            action: uid("Action", &tool.full_name)?,
            resource: uid("Tool", &tool.full_name)?,
        })
    }
}

/// The entities of one request: the user (in its tenant and tier, tagged with its claims),
/// the tool (in its target), and the tool's action (in `CallTool`).
pub(crate) fn entities(
    p: &PrincipalAttrs,
    tool: &ToolRef,
    uids: &Uids,
) -> Result<Entities, RequestError> {
    let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
    let tags = p.claims.iter().map(|(k, v)| {
        let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        (k.clone(), RestrictedExpression::new_string(text))
    });
    let user = Entity::new_with_tags(
        uids.principal.clone(),
        [
            ("tenant".to_owned(), string(p.tenant.as_str())),
            ("tier".to_owned(), string(p.tier.as_str())),
            ("user".to_owned(), string(p.user.as_str())),
            (
                "roles".to_owned(),
                RestrictedExpression::new_set(p.roles.iter().map(|r| string(r))),
            ),
        ],
        [
            uid("Tier", p.tier.as_str())?,
            uid("Tenant", p.tenant.as_str())?,
        ],
        tags,
    )
    .map_err(|e| RequestError::Principal(Box::new(e)))?;
    let name = tool
        .full_name
        .strip_prefix(&format!("{}___", tool.target))
        .or_else(|| tool.full_name.rsplit_once("___").map(|(_, n)| n))
        .unwrap_or(&tool.full_name);
    let resource = Entity::new(
        uids.resource.clone(),
        [
            ("target".to_owned(), string(&tool.target)),
            ("name".to_owned(), string(name)),
            (
                "tenant_owned".to_owned(),
                RestrictedExpression::new_bool(tool.tenant_owned),
            ),
        ]
        .into_iter()
        .collect(),
        [uid("Target", &tool.target)?].into_iter().collect(),
    )
    .map_err(|e| RequestError::Tool(Box::new(e)))?;
    let call_tool = uid("Action", CALL_TOOL)?;
    let action = Entity::new_no_attrs(uids.action.clone(), [call_tool.clone()].into());
    Entities::from_entities(
        [
            user,
            resource,
            action,
            Entity::new_no_attrs(call_tool, HashSet::new()),
        ],
        None,
    )
    .map_err(|e| RequestError::Entities(Box::new(e)))
}

/// Hour (0-23), minute (0-59) and ISO weekday (1 = Monday ... 7 = Sunday) of `now` in UTC.
pub(crate) fn utc_parts(now: SystemTime) -> (i64, i64, i64) {
    let secs = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // 1970-01-01 was a Thursday (ISO weekday 4).
    let weekday = (days + 3).rem_euclid(7) + 1;
    (of_day / 3600, of_day % 3600 / 60, weekday)
}

/// Whether Cedar's answer allows the call. Cedar skips a policy whose evaluation fails (an
/// integer overflow the caller's input provokes, say); a skipped `permit` grants nothing, but
/// a skipped `forbid` would let through a call it may have forbidden, so an error in any
/// `forbid` (or in a policy that cannot be found) denies: the engine could not decide.
pub(crate) fn allows(response: &cedar_policy::Response, set: &PolicySet) -> bool {
    response.decision() == CedarDecision::Allow
        && response.diagnostics().errors().all(|e| match e {
            cedar_policy::AuthorizationError::PolicyEvaluationError(e) => set
                .policy(e.policy_id())
                .is_some_and(|p| p.effect() == cedar_policy::Effect::Permit),
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn utc_parts_of_known_instants() {
        // 2024-03-15 14:37:00 UTC, a Friday.
        let t = UNIX_EPOCH + Duration::from_secs(1_710_513_420);
        assert_eq!(utc_parts(t), (14, 37, 5));
        assert_eq!(utc_parts(UNIX_EPOCH), (0, 0, 4));
        // 1969-12-31 23:59 UTC, a Wednesday.
        let t = UNIX_EPOCH - Duration::from_secs(60);
        assert_eq!(utc_parts(t), (23, 59, 3));
    }
}
