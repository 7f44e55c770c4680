//! Fixtures shared by the policy engine's tests: a tool catalogue, callers, a fixed clock, and
//! uploads that validate before they install.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tenantry_core::{TenantId, TierName, UserId};
use tenantry_policy::{
    AuthzRequest, Decision, Mode, PolicyEngine, PolicyError, PolicyScope, PolicySetRecord,
    PrincipalAttrs, ToolRef, ToolSpec,
};

pub fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            full_name: "ehr___patient_context".into(),
            input_schema: json!({
                "type": "object",
                "properties": {"patient_id": {"type": "string"}},
                "required": ["patient_id"]
            }),
        },
        ToolSpec {
            full_name: "ehr___premium_report".into(),
            input_schema: json!({"type": "object", "properties": {}}),
        },
        ToolSpec {
            full_name: "pay___transfer".into(),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "amount": {"type": "integer"},
                    "price": {"type": "number"},
                    "currency": {"type": "string", "enum": ["EUR", "USD"]},
                    "memo": {"type": ["string", "null"]}
                },
                "required": ["amount"]
            }),
        },
    ]
}

pub fn engine() -> PolicyEngine {
    let engine = PolicyEngine::new().unwrap();
    engine.set_tools(tools()).unwrap();
    engine
}

pub fn tool(full_name: &str) -> ToolRef {
    let (target, _) = full_name.split_once("___").unwrap();
    ToolRef {
        full_name: full_name.into(),
        target: target.into(),
        tenant_owned: false,
    }
}

pub fn caller(tenant: &str, tier: &str) -> PrincipalAttrs {
    PrincipalAttrs {
        tenant: TenantId::new(tenant).unwrap(),
        tier: TierName::new(tier).unwrap(),
        user: UserId::new("alice@example.com").unwrap(),
        roles: vec!["member".into()],
        claims: serde_json::Map::new(),
    }
}

/// 2024-03-15 (a Friday) at `hour`:30 UTC.
pub fn at_hour(hour: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_710_460_800 + hour * 3600 + 30 * 60)
}

pub fn decide(
    engine: &PolicyEngine,
    who: &PrincipalAttrs,
    tool_name: &str,
    input: Value,
    now: SystemTime,
) -> Decision {
    engine.authorize(&AuthzRequest {
        principal: who,
        tool: &tool(tool_name),
        input: &input,
        now,
    })
}

pub fn record(scope: PolicyScope, version: i64, mode: Mode, text: &str) -> PolicySetRecord {
    PolicySetRecord {
        scope,
        version,
        text: text.into(),
        mode,
        created_at: 0,
        active: true,
    }
}

pub fn tier_scope(t: &str) -> PolicyScope {
    PolicyScope::Tier(TierName::new(t).unwrap())
}

pub fn tenant_scope(t: &str) -> PolicyScope {
    PolicyScope::Tenant(TenantId::new(t).unwrap())
}

/// Validates (as the upload does), then installs.
pub fn upload(engine: &PolicyEngine, scope: PolicyScope, version: i64, mode: Mode, text: &str) {
    engine.validate(text).unwrap();
    engine.install(&record(scope, version, mode, text)).unwrap();
}

pub fn invalid(engine: &PolicyEngine, text: &str) -> Vec<(Option<u32>, Option<u32>, String)> {
    match engine.validate(text) {
        Err(PolicyError::Invalid { diagnostics }) => diagnostics
            .into_iter()
            .map(|d| (d.line, d.column, d.message))
            .collect(),
        other => panic!("expected the policy to be refused, got {other:?}"),
    }
}
