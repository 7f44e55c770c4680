//! The records the store suites write: a tier and a tenant with every field set, runtimes,
//! sessions, ledger entries and API keys of the tenants they name, and the reads several
//! suites check with.

use std::collections::BTreeMap;

use tenantry_core::{
    IsolationMode, IsolationOverrides, IsolationPreset, IsolationSettings, Money, OperatorGrant,
    RuntimeName, SandboxResources, Tenant, TenantId, TenantIsolation, TenantStatus, Tier,
    TierLimits, TierName, UserId,
};
use tenantry_store::{
    ApiKeyRecord, RuntimeRecord, SessionRecord, SessionStatus, Store, UsageGroup, UsageKind,
    UsageQuery, UsageRecord, UsageRow,
};

use super::scope;

pub fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

pub fn tier(name: &str) -> Tier {
    Tier {
        name: TierName::new(name).unwrap(),
        display_name: format!("The {name} tier ✓"),
        limits: TierLimits {
            requests_per_second: Some(7),
            burst: None,
            concurrent_invocations: Some(3),
            concurrent_sessions: None,
            tokens_per_minute: Some(u64::MAX),
            budget_per_month: Some(Money::parse("12.345678").unwrap()),
            model_requests_per_minute: Some(60),
            per_user: tenantry_core::UserLimits {
                model_requests_per_minute: None,
                tokens_per_minute: Some(1000),
                budget_per_month: Some(Money::parse("0.5").unwrap()),
            },
            fair_share_weight: Some(3),
        },
        allowed_models: vec!["default".into(), "smart".into()],
        allowed_tools: vec!["search___*".into()],
        guardrail_profile: Some("strict".into()),
        isolation: IsolationSettings {
            memory: IsolationMode::Silo,
            ..IsolationSettings::default()
        },
        sandbox: SandboxResources {
            memory_mb: 2048,
            cpu_millis: 250,
            max_processes: 9,
            storage_mb: 10,
            log_kb: 1024,
        },
        memory_event_expiry_days: 30,
    }
}

pub fn tenant(id: &str) -> Tenant {
    let mut entitlements = serde_json::Map::new();
    entitlements.insert("seats".into(), serde_json::json!(25));
    entitlements.insert(
        "plan".into(),
        serde_json::json!({"addons": ["sso"], "trial": false}),
    );
    Tenant {
        id: tid(id),
        uid: tenantry_core::TenantUid::generate(),
        name: format!("{id} Inc."),
        tier: TierName::new("standard").unwrap(),
        status: TenantStatus::Active,
        isolation: TenantIsolation {
            preset: IsolationPreset::Bridge,
            overrides: IsolationOverrides {
                knowledge: Some(IsolationMode::Silo),
                ..IsolationOverrides::default()
            },
        },
        region: "eu-west-1".into(),
        features: BTreeMap::from([("beta".to_owned(), true), ("voice".to_owned(), false)]),
        entitlements,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
    }
}

/// Every session of tenant `t`.
pub async fn sessions_of(store: &Store, t: &str) -> Vec<SessionRecord> {
    store.list_sessions(&scope(t), None, None).await.unwrap()
}

/// Every ledger entry of tenant `t`, newest first.
pub async fn usage_of(store: &Store, t: &str) -> Vec<UsageRecord> {
    store
        .list_usage(&scope(t), i64::MIN, i64::MAX, 1000)
        .await
        .unwrap()
}

pub fn grant() -> OperatorGrant {
    OperatorGrant::for_tests()
}

pub fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

pub fn rname(s: &str) -> RuntimeName {
    RuntimeName::new(s).unwrap()
}

pub fn runtime(name: &str, dedicated: Option<&str>) -> RuntimeRecord {
    RuntimeRecord {
        name: rname(name),
        dedicated_tenant: dedicated.map(tid),
        body: serde_json::json!({
            "protocol": "http",
            "command": ["python3", "agent.py", "--greeting", "grüß dich ✓"],
            "workdir": "/srv/agents/echo",
            "env": {"B": "2", "A": "1"},
            "lifecycle": {"idle_timeout_s": 900, "max_lifetime_s": 28800, "cpu_share": 0.25},
            "allowed_headers": ["X-Tenantry-Custom-Plan"],
            "big": 9_007_199_254_740_993_u64,
            "nothing": null,
        }),
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
    }
}

/// A valid session id (37 characters) made from a short tag.
pub fn sid(tag: &str) -> String {
    format!("sess-{tag:0>32}")
}

pub fn sess(id: &str) -> tenantry_core::SessionId {
    tenantry_core::SessionId::new(id).expect("a valid session id")
}

pub fn session(
    tenant: &str,
    id: &str,
    user: &str,
    runtime: &str,
    created_at: i64,
) -> SessionRecord {
    SessionRecord {
        id: sess(id),
        tenant_id: tid(tenant),
        user_id: uid(user),
        runtime: rname(runtime),
        status: SessionStatus::Active,
        created_at,
        last_active_at: created_at,
        stopped_at: None,
        stop_reason: None,
        node: "node-a".into(),
    }
}

/// A model call of `tenant` at `at`, with every optional field set.
pub fn usage(tenant: &str, id: &str, at: i64) -> UsageRecord {
    UsageRecord {
        id: format!("0190a0b1-{id:0>4}-7000-8000-000000000000"),
        tenant_id: tid(tenant),
        user_id: Some(uid("alice@example.com")),
        runtime: Some(rname("bot")),
        session_id: Some(sid("s1")),
        kind: UsageKind::Model,
        resource: Some("gpt-4o".into()),
        provider: Some("openai".into()),
        input_tokens: 120,
        output_tokens: 30,
        cpu_ms: 0,
        memory_mb_ms: 0,
        calls: 1,
        cost: Money::parse("0.000345").unwrap(),
        latency_ms: Some(850),
        ttft_ms: Some(120),
        status: "ok".into(),
        at,
    }
}

pub fn hash_of(secret: &str) -> Vec<u8> {
    // Any 32 bytes do for the store; it never sees the key itself.
    let mut h = [0u8; 32];
    for (i, b) in secret.bytes().enumerate() {
        h[i % 32] ^= b.wrapping_add(i as u8);
    }
    h.to_vec()
}

pub fn key(tenant: &str, id: &str, created_at: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        tenant_id: tid(tenant),
        name: format!("key {id}"),
        user_id: UserId::new(format!("svc-{tenant}@example.com")).unwrap(),
        roles: vec!["invoker".into(), "reader".into()],
        prefix: format!("tk_{tenant}_{id}"),
        secret_hash: hash_of(&format!("secret-{tenant}-{id}")),
        created_at,
        revoked_at: None,
        expires_at: None,
    }
}

/// The report query of every entry, of one tenant or of all.
pub fn query(tenant: Option<&str>, group_by: UsageGroup) -> UsageQuery {
    UsageQuery {
        tenant: tenant.map(tid),
        from: i64::MIN,
        to: i64::MAX,
        group_by,
    }
}

/// The tenants a report has rows of, in order.
pub fn tenants_of(rows: &[UsageRow]) -> Vec<String> {
    let mut out: Vec<String> = rows.iter().map(|r| r.tenant_id.to_string()).collect();
    out.dedup();
    out
}
