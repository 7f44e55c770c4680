//! The store's contract, written once against `&Store` and run on both backends: SQLite (a
//! temporary file) always, PostgreSQL when `TENANTRY_TEST_DATABASE_URL` is set (a fresh
//! database per test), both as the admin user of that URL and, as in production, as a
//! database owner that is no superuser (so forced row-level security binds it). The last
//! tests prove, below the store, that PostgreSQL row-level security isolates tenants even from
//! SQL that forgets its tenant filter, and that the start-up check refuses a weakened schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use sqlx::{Connection, Executor, PgConnection, Row};
use tenantry_core::{
    ErrorCode, IsolationMode, IsolationOverrides, IsolationPreset, IsolationSettings, Money,
    OperatorGrant, RuntimeName, SandboxResources, Tenant, TenantId, TenantIsolation, TenantScope,
    TenantStatus, Tier, TierLimits, TierName, UserId,
};
mod common;

use common::on_both_backends;
use tenantry_store::{
    ApiKeyRecord, LIST_SESSIONS_LIMIT, RuntimeRecord, SessionRecord, SessionStatus, SettingKind,
    SettingRecord, Store, StoreError, UsageGroup, UsageKind, UsageQuery, UsageRecord, UsageRow,
};

// ---- fixtures ---------------------------------------------------------------------------------

on_both_backends!(
    tiers_round_trip_and_seed_does_not_overwrite,
    tenant_crud_and_conflict,
    delete_tenant_removes_its_data_and_only_its_data,
    api_keys_of_another_tenant_do_not_exist,
    api_key_authentication,
    revoking_keeps_the_first_time,
    errors_are_classified,
    runtime_crud_and_conflict,
    dedicated_runtimes_go_with_their_tenant,
    tier_and_tenant_settings_round_trip,
    tenant_settings_go_with_their_tenant,
    same_session_id_in_two_tenants_is_two_sessions,
    session_status_transitions_and_touch,
    sessions_are_resumed_on_a_node_and_found_by_it,
    session_ids_are_validated,
    list_sessions_filters_orders_and_limits,
    count_active_sessions_per_runtime,
    idle_sweep_returns_old_stopped_sessions_only,
    usage_is_recorded_and_listed_in_scope,
    usage_batches_are_all_or_nothing,
    usage_report_sums_exactly_per_group,
    usage_report_window_and_tenant_filter,
    a_thousand_micros_make_exactly_a_thousandth,
);

fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn scope(s: &str) -> TenantScope {
    TenantScope::for_operator(OperatorGrant::verified(), tid(s))
}

fn tier(name: &str) -> Tier {
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
        },
    }
}

fn tenant(id: &str) -> Tenant {
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
async fn sessions_of(store: &Store, t: &str) -> Vec<SessionRecord> {
    store.list_sessions(&scope(t), None, None).await.unwrap()
}

/// Every ledger entry of tenant `t`, newest first.
async fn usage_of(store: &Store, t: &str) -> Vec<UsageRecord> {
    store
        .list_usage(&scope(t), i64::MIN, i64::MAX, 1000)
        .await
        .unwrap()
}

fn grant() -> OperatorGrant {
    OperatorGrant::verified()
}

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn rname(s: &str) -> RuntimeName {
    RuntimeName::new(s).unwrap()
}

fn runtime(name: &str, dedicated: Option<&str>) -> RuntimeRecord {
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
fn sid(tag: &str) -> String {
    format!("sess-{tag:0>32}")
}

fn session(tenant: &str, id: &str, user: &str, runtime: &str, created_at: i64) -> SessionRecord {
    SessionRecord {
        id: id.to_owned(),
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
fn usage(tenant: &str, id: &str, at: i64) -> UsageRecord {
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

fn query(tenant: Option<&str>, group_by: UsageGroup) -> UsageQuery {
    UsageQuery {
        tenant: tenant.map(tid),
        from: i64::MIN,
        to: i64::MAX,
        group_by,
    }
}

fn tenants_of(rows: &[UsageRow]) -> Vec<String> {
    let mut out: Vec<String> = rows.iter().map(|r| r.tenant_id.to_string()).collect();
    out.dedup();
    out
}

fn hash_of(secret: &str) -> Vec<u8> {
    // Any 32 bytes do for the store; it never sees the key itself.
    let mut h = [0u8; 32];
    for (i, b) in secret.bytes().enumerate() {
        h[i % 32] ^= b.wrapping_add(i as u8);
    }
    h.to_vec()
}

fn key(tenant: &str, id: &str, created_at: i64) -> ApiKeyRecord {
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

// ---- the suite --------------------------------------------------------------------------------

async fn tiers_round_trip_and_seed_does_not_overwrite(store: &Store) {
    assert!(store.list_tiers().await.unwrap().is_empty());

    let original = tier("premium");
    assert!(store.seed_tier(&original).await.unwrap());
    assert_eq!(
        store.get_tier(&original.name).await.unwrap(),
        Some(original.clone())
    );

    // Seeding again does not overwrite what is there.
    let mut edited = original.clone();
    edited.display_name = "edited".into();
    edited.limits.budget_per_month = None;
    assert!(!store.seed_tier(&edited).await.unwrap());
    assert_eq!(
        store.get_tier(&original.name).await.unwrap(),
        Some(original.clone())
    );

    // Put does.
    store.put_tier(&edited).await.unwrap();
    assert_eq!(
        store.get_tier(&original.name).await.unwrap(),
        Some(edited.clone())
    );

    // A tier with every optional part left out round-trips too.
    let bare: Tier = serde_json::from_str(r#"{"name": "basic"}"#).unwrap();
    store.put_tier(&bare).await.unwrap();
    assert_eq!(
        store.get_tier(&bare.name).await.unwrap(),
        Some(bare.clone())
    );

    // Byte order, whatever the database's collation ("a-c" < "ab" < "basic" < "premium").
    store.put_tier(&tier("ab")).await.unwrap();
    store.put_tier(&tier("a-c")).await.unwrap();
    let names: Vec<String> = store
        .list_tiers()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["a-c", "ab", "basic", "premium"]);

    assert_eq!(
        store
            .get_tier(&TierName::new("nope").unwrap())
            .await
            .unwrap(),
        None
    );
}

async fn tenant_crud_and_conflict(store: &Store) {
    let acme = tenant("acme");
    store.create_tenant(&acme).await.unwrap();
    assert_eq!(
        store.get_tenant(&acme.id).await.unwrap(),
        Some(acme.clone())
    );

    let err = store.create_tenant(&acme).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::Conflict);

    store.create_tenant(&tenant("a-corp")).await.unwrap();
    store.create_tenant(&tenant("ab")).await.unwrap();
    let ids: Vec<String> = store
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(ids, ["a-corp", "ab", "acme"]);

    let mut changed = acme.clone();
    changed.name = "ACME (renamed)".into();
    changed.tier = TierName::new("premium").unwrap();
    changed.status = TenantStatus::Suspended;
    changed.region = "us-east-1".into();
    changed.isolation = TenantIsolation {
        preset: IsolationPreset::Silo,
        overrides: IsolationOverrides::default(),
    };
    changed.features.insert("voice".into(), true);
    changed.entitlements.clear();
    changed.updated_at = 1_800_000_000;
    changed.created_at = 1; // ignored: created_at is immutable
    assert!(store.update_tenant(&changed).await.unwrap());
    let got = store.get_tenant(&acme.id).await.unwrap().unwrap();
    assert_eq!(
        got,
        Tenant {
            created_at: acme.created_at,
            ..changed
        }
    );

    assert!(!store.update_tenant(&tenant("ghost")).await.unwrap());
    assert_eq!(store.get_tenant(&tid("ghost")).await.unwrap(), None);

    assert!(
        store
            .delete_tenant(&acme.id, false)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.get_tenant(&acme.id).await.unwrap(), None);
    assert!(
        store
            .delete_tenant(&acme.id, false)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.list_tenants().await.unwrap().len(), 2);
}

async fn sessions_are_resumed_on_a_node_and_found_by_it(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    let (a, b) = (sid("a"), sid("b"));
    store
        .insert_session(&scope("alpha"), &session("alpha", &a, "alice", "bot", 1))
        .await
        .unwrap();
    store
        .insert_session(&scope("bravo"), &session("bravo", &b, "bob", "bot", 1))
        .await
        .unwrap();
    let on_a = |_: ()| async {
        store
            .sessions_active_on(grant(), "node-a", 100)
            .await
            .unwrap()
    };
    assert_eq!(
        on_a(()).await,
        [(tid("alpha"), a.clone()), (tid("bravo"), b.clone())]
    );
    store
        .set_session_status(&scope("alpha"), &a, SessionStatus::Stopped, Some("x"), 5)
        .await
        .unwrap();
    assert_eq!(on_a(()).await, [(tid("bravo"), b.clone())]);
    // Resumed on another node: active there, and no longer on the first.
    let resumed = store
        .resume_session(&scope("alpha"), &a, "node-b", 9)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            resumed.status,
            resumed.node.as_str(),
            resumed.last_active_at,
            resumed.stop_reason
        ),
        (SessionStatus::Active, "node-b", 9, None)
    );
    assert_eq!(
        store
            .sessions_active_on(grant(), "node-b", 100)
            .await
            .unwrap(),
        [(tid("alpha"), a.clone())]
    );
    // Another tenant's scope does not reach it.
    assert_eq!(
        store
            .resume_session(&scope("bravo"), &a, "node-b", 10)
            .await
            .unwrap(),
        None
    );
}

async fn delete_tenant_removes_its_data_and_only_its_data(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    for (i, id) in ["k1", "k2", "k3"].into_iter().enumerate() {
        store
            .insert_api_key(&scope("alpha"), &key("alpha", id, i as i64))
            .await
            .unwrap();
    }
    store
        .insert_api_key(&scope("bravo"), &key("bravo", "k1", 5))
        .await
        .unwrap();
    // Sessions and usage of both, with the same ids in both.
    for t in ["alpha", "bravo"] {
        for (i, tag) in ["s1", "s2"].into_iter().enumerate() {
            let s = session(t, &sid(tag), "alice", "bot", i as i64);
            store.insert_session(&scope(t), &s).await.unwrap();
            store
                .record_usage(&scope(t), &usage(t, tag, 10 + i as i64))
                .await
                .unwrap();
        }
    }
    store
        .create_runtime(&runtime("alpha-bot", Some("alpha")))
        .await
        .unwrap();

    let removed = store
        .delete_tenant(&tid("alpha"), false)
        .await
        .unwrap()
        .unwrap();
    // The answer counts what went, table by table; the ledger is kept for billing.
    assert_eq!(removed.rows.get("api_keys"), Some(&3));
    assert_eq!(removed.rows.get("sessions"), Some(&2));
    assert_eq!(removed.rows.get("runtimes"), Some(&1));
    assert_eq!(removed.rows.get("usage_records"), None);
    let report = store
        .usage_report(grant(), &query(None, UsageGroup::Tenant))
        .await
        .unwrap();
    assert_eq!(tenants_of(&report), ["alpha", "bravo"]);
    // Purging the ledger of a deleted tenant (created again just for that) removes it.
    store.create_tenant(&tenant("alpha")).await.unwrap();
    let purged = store
        .delete_tenant(&tid("alpha"), true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(purged.rows.get("usage_records"), Some(&2));

    // Nothing of alpha is left for the operator's cross-tenant reads either.
    let report = store
        .usage_report(grant(), &query(None, UsageGroup::Tenant))
        .await
        .unwrap();
    assert_eq!(tenants_of(&report), ["bravo"]);
    let idle_before: Vec<TenantId> = store
        .sessions_idle_before(grant(), i64::MAX, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(t, _, _)| t)
        .collect();
    assert!(idle_before.iter().all(|t| t.as_str() == "bravo"));
    assert_eq!(store.get_runtime(&rname("alpha-bot")).await.unwrap(), None);

    // Re-creating the tenant does not resurrect its old keys.
    store.create_tenant(&tenant("alpha")).await.unwrap();
    assert!(
        store
            .list_api_keys(&scope("alpha"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .authenticate_api_key(&tid("alpha"), "k1", &hash_of("secret-alpha-k1"))
            .await
            .unwrap(),
        None
    );
    assert!(sessions_of(store, "alpha").await.is_empty());
    assert_eq!(
        store
            .get_session(&scope("alpha"), &sid("s1"))
            .await
            .unwrap(),
        None
    );
    assert!(usage_of(store, "alpha").await.is_empty());
    // The other tenant's keys, sessions and usage are untouched.
    assert_eq!(
        store.list_api_keys(&scope("bravo")).await.unwrap(),
        [key("bravo", "k1", 5)]
    );
    assert_eq!(sessions_of(store, "bravo").await.len(), 2);
    assert_eq!(
        usage_of(store, "bravo").await,
        [usage("bravo", "s2", 11), usage("bravo", "s1", 10)]
    );
}

async fn api_keys_of_another_tenant_do_not_exist(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    // Same key id in both tenants: ids are unique per tenant only.
    let a1 = key("alpha", "k1", 20);
    let a2 = key("alpha", "k0", 10);
    let b1 = key("bravo", "k1", 5);
    let b2 = key("bravo", "kb", 6);
    for k in [&a1, &a2] {
        store.insert_api_key(&scope("alpha"), k).await.unwrap();
    }
    for k in [&b1, &b2] {
        store.insert_api_key(&scope("bravo"), k).await.unwrap();
    }

    // Ordered by created_at, then id; only the scope's tenant.
    assert_eq!(
        store.list_api_keys(&scope("alpha")).await.unwrap(),
        [a2.clone(), a1.clone()]
    );
    assert_eq!(
        store.list_api_keys(&scope("bravo")).await.unwrap(),
        [b1.clone(), b2.clone()]
    );
    assert_eq!(
        store.get_api_key(&scope("alpha"), "k1").await.unwrap(),
        Some(a1.clone())
    );

    // Alpha cannot see, revoke or authenticate as bravo's key.
    assert_eq!(
        store.get_api_key(&scope("alpha"), "kb").await.unwrap(),
        None
    );
    assert_eq!(
        store
            .revoke_api_key(&scope("alpha"), "kb", 99)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.get_api_key(&scope("bravo"), "kb").await.unwrap(),
        Some(b2.clone())
    );
    assert_eq!(
        store
            .authenticate_api_key(&tid("alpha"), "kb", &b2.secret_hash)
            .await
            .unwrap(),
        None
    );
    // Revoking alpha's k1 leaves bravo's k1 alone.
    store
        .revoke_api_key(&scope("alpha"), "k1", 50)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.get_api_key(&scope("bravo"), "k1").await.unwrap(),
        Some(b1.clone())
    );

    // A record of another tenant cannot be written through this scope.
    let err = store
        .insert_api_key(&scope("alpha"), &key("bravo", "kx", 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Internal);
    assert_eq!(
        store.get_api_key(&scope("bravo"), "kx").await.unwrap(),
        None
    );

    // A scope of an unknown tenant sees nothing.
    assert!(
        store
            .list_api_keys(&scope("ghost"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn api_key_authentication(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    let k = key("alpha", "k1", 1);
    store.insert_api_key(&scope("alpha"), &k).await.unwrap();

    let ok = store
        .authenticate_api_key(&tid("alpha"), "k1", &k.secret_hash)
        .await
        .unwrap();
    assert_eq!(ok, Some(k.clone()));

    for wrong in [hash_of("guess"), vec![], k.secret_hash[..31].to_vec()] {
        assert_eq!(
            store
                .authenticate_api_key(&tid("alpha"), "k1", &wrong)
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(
        store
            .authenticate_api_key(&tid("alpha"), "nope", &k.secret_hash)
            .await
            .unwrap(),
        None
    );

    // Expired keys fail.
    let mut old = key("alpha", "old", 1);
    old.expires_at = Some(2);
    store.insert_api_key(&scope("alpha"), &old).await.unwrap();
    assert_eq!(
        store
            .authenticate_api_key(&tid("alpha"), "old", &old.secret_hash)
            .await
            .unwrap(),
        None
    );
    let mut later = key("alpha", "later", 1);
    later.expires_at = Some(i64::MAX);
    store.insert_api_key(&scope("alpha"), &later).await.unwrap();
    assert!(
        store
            .authenticate_api_key(&tid("alpha"), "later", &later.secret_hash)
            .await
            .unwrap()
            .is_some()
    );

    // Revoked keys fail.
    store
        .revoke_api_key(&scope("alpha"), "k1", 1_000)
        .await
        .unwrap();
    assert_eq!(
        store
            .authenticate_api_key(&tid("alpha"), "k1", &k.secret_hash)
            .await
            .unwrap(),
        None
    );

    // The secret hash never leaves through serialization.
    let json = serde_json::to_value(&k).unwrap();
    assert!(json.get("secret_hash").is_none(), "{json}");
    assert_eq!(json["tenant_id"], "alpha");
}

async fn revoking_keeps_the_first_time(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store
        .insert_api_key(&scope("alpha"), &key("alpha", "k1", 1))
        .await
        .unwrap();

    let first = store
        .revoke_api_key(&scope("alpha"), "k1", 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.revoked_at, Some(100));
    let second = store
        .revoke_api_key(&scope("alpha"), "k1", 200)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.revoked_at, Some(100));
    assert_eq!(second, first);
    assert_eq!(
        store.get_api_key(&scope("alpha"), "k1").await.unwrap(),
        Some(first)
    );
    assert_eq!(
        store
            .revoke_api_key(&scope("alpha"), "nope", 1)
            .await
            .unwrap(),
        None
    );
}

async fn errors_are_classified(store: &Store) {
    store.ping().await.unwrap();
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store
        .insert_api_key(&scope("alpha"), &key("alpha", "k1", 1))
        .await
        .unwrap();
    let dup = store
        .insert_api_key(&scope("alpha"), &key("alpha", "k1", 2))
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");

    // Keys of a tenant that is not registered (or was deleted meanwhile) are refused by the
    // foreign key: not found, naming the tenant, never an internal error.
    let orphan = store
        .insert_api_key(&scope("ghost"), &key("ghost", "k1", 1))
        .await
        .unwrap_err();
    assert_eq!(orphan.code(), ErrorCode::NotFound, "{orphan:?}");
    assert_eq!(orphan.to_string(), "tenant ghost not found");
}

// ---- runtimes ---------------------------------------------------------------------------------

async fn runtime_crud_and_conflict(store: &Store) {
    assert!(store.list_runtimes().await.unwrap().is_empty());
    store.create_tenant(&tenant("alpha")).await.unwrap();

    let bot = runtime("bot", None);
    store.create_runtime(&bot).await.unwrap();
    // The spec comes back as it went in (key order aside), floats and big integers included.
    assert_eq!(
        store.get_runtime(&bot.name).await.unwrap(),
        Some(bot.clone())
    );

    let mut again = runtime("bot", Some("alpha"));
    again.body = serde_json::json!({"other": true});
    let err = store.create_runtime(&again).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert_eq!(
        store.get_runtime(&bot.name).await.unwrap(),
        Some(bot.clone())
    );

    // Byte order, whatever the database's collation.
    store.create_runtime(&runtime("ab", None)).await.unwrap();
    store
        .create_runtime(&runtime("a-c", Some("alpha")))
        .await
        .unwrap();
    let names: Vec<String> = store
        .list_runtimes()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(names, ["a-c", "ab", "bot"]);

    // Update replaces tenancy, body and updated_at, never created_at.
    let mut changed = runtime("bot", Some("alpha"));
    changed.body = serde_json::json!({"protocol": "mcp", "command": ["server"], "n": -1.5});
    changed.created_at = 1;
    changed.updated_at = 1_800_000_000;
    assert!(store.update_runtime(&changed).await.unwrap());
    assert_eq!(
        store.get_runtime(&bot.name).await.unwrap(),
        Some(RuntimeRecord {
            created_at: bot.created_at,
            ..changed.clone()
        })
    );
    // And back to shared.
    let mut shared = changed.clone();
    shared.dedicated_tenant = None;
    assert!(store.update_runtime(&shared).await.unwrap());
    assert_eq!(
        store
            .get_runtime(&bot.name)
            .await
            .unwrap()
            .unwrap()
            .dedicated_tenant,
        None
    );
    assert!(!store.update_runtime(&runtime("ghost", None)).await.unwrap());
    assert_eq!(store.get_runtime(&rname("ghost")).await.unwrap(), None);

    // A runtime dedicated to a tenant that does not exist is refused, and is no conflict.
    let err = store
        .create_runtime(&runtime("orphan", Some("ghost")))
        .await
        .unwrap_err();
    assert!(!matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.get_runtime(&rname("orphan")).await.unwrap(), None);
    let mut to_ghost = runtime("ab", Some("ghost"));
    to_ghost.updated_at = 5;
    assert!(store.update_runtime(&to_ghost).await.is_err());

    assert!(store.delete_runtime(&bot.name).await.unwrap());
    assert_eq!(store.get_runtime(&bot.name).await.unwrap(), None);
    assert!(!store.delete_runtime(&bot.name).await.unwrap());
    assert_eq!(store.list_runtimes().await.unwrap().len(), 2);
}

async fn dedicated_runtimes_go_with_their_tenant(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    for r in [
        runtime("alpha-bot", Some("alpha")),
        runtime("alpha-tools", Some("alpha")),
        runtime("bravo-bot", Some("bravo")),
        runtime("shared", None),
    ] {
        store.create_runtime(&r).await.unwrap();
    }
    // A session of alpha on the shared runtime does not keep the runtime from staying.
    store
        .insert_session(
            &scope("alpha"),
            &session("alpha", &sid("s1"), "u", "shared", 1),
        )
        .await
        .unwrap();

    common::delete_tenant(store, "alpha").await;
    let names: Vec<String> = store
        .list_runtimes()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(names, ["bravo-bot", "shared"]);
    assert_eq!(
        store.get_runtime(&rname("bravo-bot")).await.unwrap(),
        Some(runtime("bravo-bot", Some("bravo")))
    );
    // Re-creating the tenant does not bring its runtimes back.
    store.create_tenant(&tenant("alpha")).await.unwrap();
    assert_eq!(store.get_runtime(&rname("alpha-bot")).await.unwrap(), None);
}

// ---- tier and tenant settings ------------------------------------------------------------------

fn setting<K>(owner: K, kind: SettingKind, body: serde_json::Value, at: i64) -> SettingRecord<K> {
    SettingRecord {
        owner,
        kind,
        body,
        updated_at: at,
    }
}

async fn tier_and_tenant_settings_round_trip(store: &Store) {
    let standard = TierName::new("standard").unwrap();
    let basic = TierName::new("basic").unwrap();
    store.put_tier(&tier("standard")).await.unwrap();
    store.put_tier(&tier("basic")).await.unwrap();
    assert!(
        store
            .list_tier_settings(SettingKind::ModelRoutes)
            .await
            .unwrap()
            .is_empty()
    );
    let routes =
        serde_json::json!({"default": "m-1", "aliases": {"fast": "m-2"}, "ünï": [1, 2.5, null]});
    let s1 = setting(
        standard.clone(),
        SettingKind::ModelRoutes,
        routes.clone(),
        10,
    );
    let b1 = setting(
        basic.clone(),
        SettingKind::ModelRoutes,
        serde_json::json!({}),
        11,
    );
    store.put_tier_setting(&s1).await.unwrap();
    store.put_tier_setting(&b1).await.unwrap();
    // Ordered by tier; another kind is another setting.
    assert_eq!(
        store
            .list_tier_settings(SettingKind::ModelRoutes)
            .await
            .unwrap(),
        vec![b1.clone(), s1.clone()]
    );
    assert!(
        store
            .list_tier_settings(SettingKind::Limits)
            .await
            .unwrap()
            .is_empty()
    );
    // Replacing keeps one row.
    let s2 = setting(
        standard.clone(),
        SettingKind::ModelRoutes,
        serde_json::json!({"default": "m-3"}),
        12,
    );
    store.put_tier_setting(&s2).await.unwrap();
    assert_eq!(
        store
            .list_tier_settings(SettingKind::ModelRoutes)
            .await
            .unwrap(),
        vec![b1.clone(), s2]
    );
    assert!(
        store
            .delete_tier_setting(&standard, SettingKind::ModelRoutes)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_tier_setting(&standard, SettingKind::ModelRoutes)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .list_tier_settings(SettingKind::ModelRoutes)
            .await
            .unwrap(),
        vec![b1]
    );
    // A tier that does not exist cannot have settings.
    let ghost = setting(
        TierName::new("ghost").unwrap(),
        SettingKind::ModelRoutes,
        serde_json::json!({}),
        1,
    );
    assert!(store.put_tier_setting(&ghost).await.is_err());

    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    let a = setting(tid("alpha"), SettingKind::ModelRoutes, routes, 20);
    let l = setting(
        tid("alpha"),
        SettingKind::Limits,
        serde_json::json!({"tokens_per_minute": 5}),
        21,
    );
    store.put_tenant_setting(&a).await.unwrap();
    store.put_tenant_setting(&l).await.unwrap();
    assert_eq!(
        store
            .get_tenant_setting(&tid("alpha"), SettingKind::ModelRoutes)
            .await
            .unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        store
            .get_tenant_setting(&tid("alpha"), SettingKind::Limits)
            .await
            .unwrap(),
        Some(l)
    );
    assert_eq!(
        store
            .get_tenant_setting(&tid("bravo"), SettingKind::ModelRoutes)
            .await
            .unwrap(),
        None
    );
    let a2 = setting(
        tid("alpha"),
        SettingKind::ModelRoutes,
        serde_json::json!({"default": "x"}),
        22,
    );
    store.put_tenant_setting(&a2).await.unwrap();
    assert_eq!(
        store
            .get_tenant_setting(&tid("alpha"), SettingKind::ModelRoutes)
            .await
            .unwrap(),
        Some(a2)
    );
    assert!(
        store
            .delete_tenant_setting(&tid("alpha"), SettingKind::ModelRoutes)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_tenant_setting(&tid("alpha"), SettingKind::ModelRoutes)
            .await
            .unwrap()
    );
    assert!(
        store
            .get_tenant_setting(&tid("alpha"), SettingKind::Limits)
            .await
            .unwrap()
            .is_some()
    );
    let ghost = setting(tid("ghost"), SettingKind::Limits, serde_json::json!({}), 1);
    assert!(store.put_tenant_setting(&ghost).await.is_err());
}

async fn tenant_settings_go_with_their_tenant(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    for t in ["alpha", "bravo"] {
        for kind in [SettingKind::ModelRoutes, SettingKind::Limits] {
            store
                .put_tenant_setting(&setting(tid(t), kind, serde_json::json!({"of": t}), 1))
                .await
                .unwrap();
        }
    }
    common::delete_tenant(store, "alpha").await;
    store.create_tenant(&tenant("alpha")).await.unwrap();
    for kind in [SettingKind::ModelRoutes, SettingKind::Limits] {
        assert_eq!(
            store.get_tenant_setting(&tid("alpha"), kind).await.unwrap(),
            None
        );
        assert_eq!(
            store
                .get_tenant_setting(&tid("bravo"), kind)
                .await
                .unwrap()
                .map(|s| s.body),
            Some(serde_json::json!({"of": "bravo"}))
        );
    }
}

// ---- sessions ---------------------------------------------------------------------------------

async fn same_session_id_in_two_tenants_is_two_sessions(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    let id = sid("shared-id");
    let a = session("alpha", &id, "alice", "bot", 100);
    let b = session("bravo", &id, "bob", "other", 200);
    store.insert_session(&scope("alpha"), &a).await.unwrap();
    store.insert_session(&scope("bravo"), &b).await.unwrap();

    assert_eq!(
        store.get_session(&scope("alpha"), &id).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        store.get_session(&scope("bravo"), &id).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(sessions_of(store, "alpha").await, vec![a.clone()]);
    assert_eq!(sessions_of(store, "bravo").await, vec![b.clone()]);

    // Stopping and touching alpha's leaves bravo's alone.
    let stopped = store
        .set_session_status(
            &scope("alpha"),
            &id,
            SessionStatus::Stopped,
            Some("user"),
            150,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stopped.tenant_id, tid("alpha"));
    assert_eq!(stopped.status, SessionStatus::Stopped);
    assert!(
        store
            .touch_session(&scope("alpha"), &id, 300)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_session(&scope("bravo"), &id).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(
        store
            .count_active_sessions(&scope("alpha"), None)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .count_active_sessions(&scope("bravo"), None)
            .await
            .unwrap(),
        1
    );

    // A session only bravo has does not exist for alpha: not to get, list, stop, touch, count
    // or delete.
    let only_b = session("bravo", &sid("bravo-only"), "bob", "bot", 400);
    store
        .insert_session(&scope("bravo"), &only_b)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_session(&scope("alpha"), &only_b.id)
            .await
            .unwrap(),
        None
    );
    assert!(
        !sessions_of(store, "alpha")
            .await
            .iter()
            .any(|s| s.id == only_b.id)
    );
    assert_eq!(
        store
            .set_session_status(
                &scope("alpha"),
                &only_b.id,
                SessionStatus::Stopped,
                None,
                500
            )
            .await
            .unwrap(),
        None
    );
    assert!(
        !store
            .touch_session(&scope("alpha"), &only_b.id, 500)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .count_active_sessions(&scope("alpha"), Some(&rname("bot")))
            .await
            .unwrap(),
        0
    );
    assert!(
        !store
            .delete_session(&scope("alpha"), &only_b.id)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .get_session(&scope("bravo"), &only_b.id)
            .await
            .unwrap(),
        Some(only_b.clone())
    );

    // The id is taken within alpha only.
    let err = store
        .insert_session(&scope("alpha"), &session("alpha", &id, "carol", "bot", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // A record of another tenant cannot be written through this scope.
    let planted = session("bravo", &sid("planted"), "mallory", "bot", 1);
    let err = store
        .insert_session(&scope("alpha"), &planted)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Internal);
    assert_eq!(
        store
            .get_session(&scope("bravo"), &planted.id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_session(&scope("alpha"), &planted.id)
            .await
            .unwrap(),
        None
    );

    // Deleting alpha's leaves bravo's of the same id.
    assert!(store.delete_session(&scope("alpha"), &id).await.unwrap());
    assert_eq!(store.get_session(&scope("alpha"), &id).await.unwrap(), None);
    assert_eq!(
        store.get_session(&scope("bravo"), &id).await.unwrap(),
        Some(b)
    );
    assert!(sessions_of(store, "ghost").await.is_empty());
}

async fn session_status_transitions_and_touch(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    let id = sid("s1");
    let s = session("alpha", &id, "alice", "bot", 100);
    store.insert_session(&scope("alpha"), &s).await.unwrap();
    let set = |status, reason: Option<&'static str>, at| {
        let id = id.clone();
        async move {
            store
                .set_session_status(&scope("alpha"), &id, status, reason, at)
                .await
                .unwrap()
                .unwrap()
        }
    };

    // Active -> Stopped records when and why; activity is unchanged.
    let stopped = set(SessionStatus::Stopped, Some("idle_timeout"), 200).await;
    assert_eq!(
        stopped,
        SessionRecord {
            status: SessionStatus::Stopped,
            stopped_at: Some(200),
            stop_reason: Some("idle_timeout".into()),
            ..s.clone()
        }
    );
    // Stopped -> Expired keeps the first stop and its reason, unless a new reason is given.
    let expired = set(SessionStatus::Expired, None, 300).await;
    assert_eq!(expired.status, SessionStatus::Expired);
    assert_eq!(expired.stopped_at, Some(200));
    assert_eq!(expired.stop_reason.as_deref(), Some("idle_timeout"));
    let expired = set(SessionStatus::Expired, Some("storage_expired"), 350).await;
    assert_eq!(expired.stopped_at, Some(200));
    assert_eq!(expired.stop_reason.as_deref(), Some("storage_expired"));

    // Resuming clears the stop and counts as activity.
    let resumed = set(SessionStatus::Active, Some("ignored"), 400).await;
    assert_eq!(
        resumed,
        SessionRecord {
            last_active_at: 400,
            ..s.clone()
        }
    );
    // Activity never moves back.
    assert_eq!(
        set(SessionStatus::Active, None, 50).await.last_active_at,
        400
    );
    assert!(
        store
            .touch_session(&scope("alpha"), &id, 500)
            .await
            .unwrap()
    );
    assert!(
        store
            .touch_session(&scope("alpha"), &id, 450)
            .await
            .unwrap()
    );
    let got = store
        .get_session(&scope("alpha"), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.last_active_at, 500);
    assert_eq!(got.created_at, 100);

    // A second stop of an active session records the new time.
    let again = set(SessionStatus::Stopped, Some("user"), 600).await;
    assert_eq!(again.stopped_at, Some(600));
    assert_eq!(again.stop_reason.as_deref(), Some("user"));
    assert_eq!(
        store.get_session(&scope("alpha"), &id).await.unwrap(),
        Some(again)
    );

    // Unknown sessions.
    assert!(
        !store
            .touch_session(&scope("alpha"), &sid("nope"), 1)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .set_session_status(
                &scope("alpha"),
                &sid("nope"),
                SessionStatus::Active,
                None,
                1
            )
            .await
            .unwrap(),
        None
    );

    // Statuses read and write as snake_case.
    assert_eq!(
        serde_json::to_value(SessionStatus::Expired).unwrap(),
        serde_json::json!("expired")
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["status"], "active");
    assert_eq!(
        serde_json::from_value::<SessionRecord>(json).unwrap(),
        s.clone()
    );
}

async fn session_ids_are_validated(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    for ok in ["a".repeat(33), "é".repeat(256), sid("x")] {
        store
            .insert_session(&scope("alpha"), &session("alpha", &ok, "u", "bot", 1))
            .await
            .unwrap();
        assert!(
            store
                .get_session(&scope("alpha"), &ok)
                .await
                .unwrap()
                .is_some()
        );
    }
    for bad in [
        "a".repeat(32),
        "é".repeat(257),
        String::new(),
        format!("{}\n", "a".repeat(40)),
    ] {
        let err = store
            .insert_session(&scope("alpha"), &session("alpha", &bad, "u", "bot", 1))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::Internal, "{bad:?}");
    }
    assert_eq!(sessions_of(store, "alpha").await.len(), 3);
}

async fn list_sessions_filters_orders_and_limits(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    let s1 = session("alpha", &sid("a1"), "alice", "r1", 10);
    let s2 = session("alpha", &sid("b1"), "bob", "r1", 20);
    let s3 = session("alpha", &sid("a2"), "alice", "r1", 30);
    let s4 = session("alpha", &sid("a3"), "alice", "r2", 40);
    // Two at the same time: the greater id first.
    let s5 = session("alpha", &sid("t-a"), "bob", "r2", 50);
    let s6 = session("alpha", &sid("t-b"), "bob", "r2", 50);
    for s in [&s3, &s1, &s6, &s2, &s5, &s4] {
        store.insert_session(&scope("alpha"), s).await.unwrap();
    }
    let alice = uid("alice");
    let r1 = rname("r1");
    let list = |user: Option<UserId>, runtime: Option<RuntimeName>| async move {
        store
            .list_sessions(&scope("alpha"), user.as_ref(), runtime.as_ref())
            .await
            .unwrap()
    };
    assert_eq!(
        list(None, None).await,
        [&s6, &s5, &s4, &s3, &s2, &s1].map(Clone::clone)
    );
    assert_eq!(
        list(Some(alice.clone()), None).await,
        [&s4, &s3, &s1].map(Clone::clone)
    );
    assert_eq!(
        list(None, Some(r1.clone())).await,
        [&s3, &s2, &s1].map(Clone::clone)
    );
    assert_eq!(
        list(Some(alice), Some(r1)).await,
        [&s3, &s1].map(Clone::clone)
    );
    assert!(list(Some(uid("nobody")), None).await.is_empty());

    // At most LIST_SESSIONS_LIMIT, the newest.
    let limit = i64::from(LIST_SESSIONS_LIMIT);
    for i in 0..limit {
        let s = session("alpha", &sid(&format!("bulk{i}")), "carol", "r3", 1_000 + i);
        store.insert_session(&scope("alpha"), &s).await.unwrap();
    }
    let all = list(None, None).await;
    assert_eq!(all.len(), LIST_SESSIONS_LIMIT as usize);
    assert_eq!(all.first().map(|s| s.created_at), Some(1_000 + limit - 1));
    assert_eq!(all.last().map(|s| s.created_at), Some(1_000));
}

async fn count_active_sessions_per_runtime(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    for (tag, rt) in [("a", "r1"), ("b", "r1"), ("c", "r1"), ("d", "r2")] {
        store
            .insert_session(&scope("alpha"), &session("alpha", &sid(tag), "u", rt, 1))
            .await
            .unwrap();
    }
    store
        .insert_session(&scope("bravo"), &session("bravo", &sid("a"), "u", "r1", 1))
        .await
        .unwrap();
    store
        .set_session_status(&scope("alpha"), &sid("c"), SessionStatus::Stopped, None, 2)
        .await
        .unwrap();
    let count = |rt: Option<&'static str>| async move {
        store
            .count_active_sessions(&scope("alpha"), rt.map(rname).as_ref())
            .await
            .unwrap()
    };
    assert_eq!(count(None).await, 3);
    assert_eq!(count(Some("r1")).await, 2);
    assert_eq!(count(Some("r2")).await, 1);
    assert_eq!(count(Some("r3")).await, 0);
    store
        .set_session_status(&scope("alpha"), &sid("c"), SessionStatus::Active, None, 3)
        .await
        .unwrap();
    assert_eq!(count(Some("r1")).await, 3);
}

async fn idle_sweep_returns_old_stopped_sessions_only(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    // (tenant, tag, runtime, last active, status after)
    let plan = [
        ("alpha", "s1", "r1", 100, SessionStatus::Stopped),
        ("alpha", "s2", "r2", 150, SessionStatus::Expired),
        ("alpha", "old-active", "r1", 50, SessionStatus::Active),
        ("alpha", "recent", "r1", 1_000, SessionStatus::Stopped),
        ("bravo", "s5", "r1", 120, SessionStatus::Stopped),
        ("bravo", "s1", "r9", 100, SessionStatus::Stopped),
    ];
    for (t, tag, rt, last_active, status) in plan {
        let s = session(t, &sid(tag), "u", rt, last_active);
        store.insert_session(&scope(t), &s).await.unwrap();
        store
            .set_session_status(&scope(t), &sid(tag), status, None, last_active + 5)
            .await
            .unwrap();
    }
    let entry = |t: &str, tag: &str, rt: &str| (tid(t), sid(tag), rname(rt));

    let idle = store.sessions_idle_before(grant(), 500, 100).await.unwrap();
    assert_eq!(
        idle,
        [
            entry("alpha", "s1", "r1"),
            entry("bravo", "s1", "r9"),
            entry("bravo", "s5", "r1"),
            entry("alpha", "s2", "r2"),
        ]
    );
    // `before` is exclusive, and the limit holds.
    assert!(
        store
            .sessions_idle_before(grant(), 100, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.sessions_idle_before(grant(), 101, 100).await.unwrap(),
        [entry("alpha", "s1", "r1"), entry("bravo", "s1", "r9")]
    );
    assert_eq!(
        store.sessions_idle_before(grant(), 500, 1).await.unwrap(),
        [entry("alpha", "s1", "r1")]
    );

    // The sweeper deletes each through its tenant's scope.
    for (t, id, _) in idle {
        let scope = TenantScope::for_operator(grant(), t);
        assert!(store.delete_session(&scope, &id).await.unwrap());
    }
    assert!(
        store
            .sessions_idle_before(grant(), 500, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let left: Vec<String> = sessions_of(store, "alpha")
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, [sid("recent"), sid("old-active")]);
    assert!(sessions_of(store, "bravo").await.is_empty());
}

// ---- the usage ledger -------------------------------------------------------------------------

async fn usage_is_recorded_and_listed_in_scope(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();

    let full = usage("alpha", "u1", 1_000);
    // Every optional field empty, another kind.
    let bare = UsageRecord {
        id: "0190a0b1-bare".into(),
        user_id: None,
        runtime: None,
        session_id: None,
        kind: UsageKind::Compute,
        resource: None,
        provider: None,
        input_tokens: 0,
        output_tokens: 0,
        cpu_ms: 1_500,
        memory_mb_ms: i64::MAX / 4,
        calls: 0,
        cost: Money::from_micros(-7),
        latency_ms: None,
        ttft_ms: None,
        status: "error:upstream_error".into(),
        ..usage("alpha", "u2", 1_000)
    };
    let later = usage("alpha", "u3", 2_000);
    let edge_from = usage("alpha", "u4", 500);
    let edge_to = usage("alpha", "u5", 3_000);
    for u in [&full, &bare, &later, &edge_from, &edge_to] {
        store.record_usage(&scope("alpha"), u).await.unwrap();
    }
    // Bravo records the same ids: ids are unique per tenant only.
    let theirs = usage("bravo", "u1", 1_000);
    store.record_usage(&scope("bravo"), &theirs).await.unwrap();

    // Newest first, then id descending ("0190a0b1-bare" > "0190a0b1-00u1-..."); `from`
    // inclusive, `to` exclusive.
    assert_eq!(
        store
            .list_usage(&scope("alpha"), 500, 3_000, 100)
            .await
            .unwrap(),
        [later.clone(), bare.clone(), full.clone(), edge_from.clone()]
    );
    assert_eq!(
        store
            .list_usage(&scope("alpha"), 501, 3_001, 100)
            .await
            .unwrap(),
        [edge_to.clone(), later.clone(), bare.clone(), full.clone()]
    );
    assert_eq!(
        store
            .list_usage(&scope("alpha"), i64::MIN, i64::MAX, 2)
            .await
            .unwrap(),
        [edge_to.clone(), later.clone()]
    );
    assert!(
        store
            .list_usage(&scope("alpha"), 1_000, 1_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(usage_of(store, "bravo").await, vec![theirs.clone()]);
    assert!(usage_of(store, "ghost").await.is_empty());

    // The same id twice in one tenant is a conflict, so a retried write never counts twice.
    let err = store
        .record_usage(&scope("alpha"), &usage("alpha", "u1", 9_999))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // A record of another tenant cannot be written through this scope.
    let planted = usage("bravo", "planted", 1_000);
    let err = store
        .record_usage(&scope("alpha"), &planted)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Internal);
    assert_eq!(usage_of(store, "bravo").await, [theirs]);
    assert_eq!(usage_of(store, "alpha").await.len(), 5);

    // The wire form: snake_case kinds, money as an exact decimal string.
    let json = serde_json::to_value(&bare).unwrap();
    assert_eq!(json["kind"], "compute");
    assert_eq!(json["cost"], "-0.000007");
    assert_eq!(serde_json::from_value::<UsageRecord>(json).unwrap(), bare);
}

/// A deterministic mix of ledger entries over three tenants, with values above 2^53 (where a
/// floating-point sum would round) and times around day boundaries, before 1970 included.
async fn usage_batches_are_all_or_nothing(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    let batch = vec![
        usage("alpha", "1", 10),
        usage("alpha", "2", 11),
        usage("alpha", "3", 12),
    ];
    store.record_usages(&scope("alpha"), &batch).await.unwrap();
    store.record_usages(&scope("alpha"), &[]).await.unwrap();
    let ids = |v: Vec<UsageRecord>| v.into_iter().map(|u| u.id).collect::<Vec<_>>();
    let listed = store
        .list_usage(&scope("alpha"), 0, 100, 100)
        .await
        .unwrap();
    assert_eq!(ids(listed), ids(batch.iter().rev().cloned().collect()));
    // A batch with one entry already recorded is refused whole.
    let err = store
        .record_usages(
            &scope("alpha"),
            &[usage("alpha", "4", 13), usage("alpha", "2", 11)],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        store
            .list_usage(&scope("alpha"), 0, 100, 100)
            .await
            .unwrap()
            .len(),
        3
    );
    // An entry of another tenant in the batch is refused before anything is written.
    assert!(
        store
            .record_usages(
                &scope("alpha"),
                &[usage("alpha", "5", 14), usage("bravo", "6", 14)]
            )
            .await
            .is_err()
    );
    assert_eq!(
        store
            .list_usage(&scope("alpha"), 0, 100, 100)
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(
        store
            .list_usage(&scope("bravo"), 0, 100, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

fn ledger() -> Vec<UsageRecord> {
    const BIG: i64 = 9_007_199_254_740_993; // 2^53 + 1
    let tenants = ["alpha", "bravo", "a-b"];
    let users = [Some("alice@example.com"), Some("Bob"), None];
    let models = [Some("gpt-4o"), Some("Claude"), Some("claude"), None];
    let runtimes = [Some("support-bot"), Some("ab"), None];
    let kinds = [
        UsageKind::Model,
        UsageKind::Tool,
        UsageKind::Compute,
        UsageKind::Storage,
    ];
    let times = [
        -1,
        0,
        86_399,
        86_400,
        1_700_000_000,
        1_700_006_399,
        1_700_006_400,
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) % n as u64) as usize
    };
    let mut out = Vec::new();
    for i in 0..240 {
        let t = tenants[next(tenants.len())];
        let kind = kinds[next(kinds.len())];
        let mut u = usage(t, &format!("g{i}"), times[next(times.len())]);
        u.user_id = users[next(users.len())].map(uid);
        u.resource = models[next(models.len())].map(str::to_owned);
        u.runtime = runtimes[next(runtimes.len())].map(rname);
        u.kind = kind;
        u.calls = i64::from(matches!(kind, UsageKind::Model | UsageKind::Tool));
        u.input_tokens = next(5_000) as i64;
        u.output_tokens = next(2_000) as i64;
        u.cpu_ms = next(100_000) as i64;
        u.memory_mb_ms = next(1_000_000_000) as i64;
        u.cost = Money::from_micros(next(3_000_000) as i64);
        out.push(u);
    }
    for (i, t) in ["alpha", "bravo"].into_iter().enumerate() {
        let mut u = usage(t, &format!("big{i}"), 1_700_000_000);
        u.input_tokens = BIG;
        u.cost = Money::from_micros(BIG);
        u.memory_mb_ms = BIG;
        out.push(u.clone());
        u.id = format!("{}-again", u.id);
        out.push(u);
    }
    out
}

/// The UTC calendar day of a unix time, computed independently of both databases.
fn utc_day(at: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = at.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn group_key(u: &UsageRecord, group: UsageGroup) -> String {
    match group {
        UsageGroup::Tenant => u.tenant_id.to_string(),
        UsageGroup::User => u
            .user_id
            .as_ref()
            .map(UserId::to_string)
            .unwrap_or_default(),
        UsageGroup::Model => match u.kind {
            UsageKind::Model => u.resource.clone().unwrap_or_default(),
            UsageKind::Tool | UsageKind::Compute | UsageKind::Storage => String::new(),
        },
        UsageGroup::Runtime => u
            .runtime
            .as_ref()
            .map(RuntimeName::to_string)
            .unwrap_or_default(),
        UsageGroup::Day => utc_day(u.at),
        UsageGroup::Kind => serde_json::to_value(u.kind)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned(),
    }
}

/// The report computed in Rust with checked integer arithmetic, in (tenant, group) byte order.
fn expected_report(records: &[UsageRecord], q: &UsageQuery) -> Vec<UsageRow> {
    let mut rows: BTreeMap<(String, String), UsageRow> = BTreeMap::new();
    let add = |a: i64, b: i64| a.checked_add(b).unwrap();
    for u in records {
        if q.tenant.as_ref().is_some_and(|t| t != &u.tenant_id) || u.at < q.from || u.at >= q.to {
            continue;
        }
        let group = group_key(u, q.group_by);
        let row = rows
            .entry((u.tenant_id.to_string(), group.clone()))
            .or_insert_with(|| UsageRow {
                group,
                tenant_id: u.tenant_id.clone(),
                calls: 0,
                input_tokens: 0,
                output_tokens: 0,
                cpu_ms: 0,
                memory_mb_ms: 0,
                cost: Money::ZERO,
                records: 0,
            });
        row.calls = add(row.calls, u.calls);
        row.input_tokens = add(row.input_tokens, u.input_tokens);
        row.output_tokens = add(row.output_tokens, u.output_tokens);
        row.cpu_ms = add(row.cpu_ms, u.cpu_ms);
        row.memory_mb_ms = add(row.memory_mb_ms, u.memory_mb_ms);
        row.cost = Money::from_micros(add(row.cost.micros(), u.cost.micros()));
        row.records += 1;
    }
    rows.into_values().collect()
}

const ALL_GROUPS: [UsageGroup; 6] = [
    UsageGroup::Tenant,
    UsageGroup::User,
    UsageGroup::Model,
    UsageGroup::Runtime,
    UsageGroup::Day,
    UsageGroup::Kind,
];

async fn record_ledger(store: &Store) -> Vec<UsageRecord> {
    for t in ["alpha", "bravo", "a-b", "quiet"] {
        store.create_tenant(&tenant(t)).await.unwrap();
    }
    let records = ledger();
    for u in &records {
        let scope = TenantScope::for_operator(grant(), u.tenant_id.clone());
        store.record_usage(&scope, u).await.unwrap();
    }
    records
}

async fn usage_report_sums_exactly_per_group(store: &Store) {
    let records = record_ledger(store).await;
    for group_by in ALL_GROUPS {
        for tenant in [None, Some("alpha"), Some("a-b")] {
            let q = query(tenant, group_by);
            let got = store.usage_report(grant(), &q).await.unwrap();
            let want = expected_report(&records, &q);
            assert!(!want.is_empty());
            assert_eq!(got, want, "{q:?}");
            // Every grouping adds up to the same totals per tenant.
            let total: i64 = got.iter().map(|r| r.cost.micros()).sum();
            let all: i64 = records
                .iter()
                .filter(|u| tenant.is_none_or(|t| u.tenant_id.as_str() == t))
                .map(|u| u.cost.micros())
                .sum();
            assert_eq!(total, all, "{q:?}");
        }
    }

    // A few rows checked by hand, independently of the expectation above.
    let by_tenant = store
        .usage_report(grant(), &query(None, UsageGroup::Tenant))
        .await
        .unwrap();
    // Byte order of tenants ("a-b" < "alpha" < "bravo"), and a tenant without entries has no row.
    assert_eq!(tenants_of(&by_tenant), ["a-b", "alpha", "bravo"]);
    assert!(by_tenant.iter().all(|r| r.group == r.tenant_id.as_str()));
    let alpha = &by_tenant[1];
    assert!(alpha.input_tokens > 2 * 9_007_199_254_740_993);
    assert_eq!(
        alpha.input_tokens,
        records
            .iter()
            .filter(|u| u.tenant_id.as_str() == "alpha")
            .map(|u| u.input_tokens)
            .sum::<i64>()
    );

    let days: Vec<String> = store
        .usage_report(grant(), &query(Some("alpha"), UsageGroup::Day))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.group)
        .collect();
    assert_eq!(
        days,
        [
            "1969-12-31",
            "1970-01-01",
            "1970-01-02",
            "2023-11-14",
            "2023-11-15"
        ]
    );

    let models: Vec<String> = store
        .usage_report(grant(), &query(Some("bravo"), UsageGroup::Model))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.group)
        .collect();
    assert_eq!(models, ["", "Claude", "claude", "gpt-4o"]);

    let kinds: Vec<String> = store
        .usage_report(grant(), &query(Some("bravo"), UsageGroup::Kind))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.group)
        .collect();
    assert_eq!(kinds, ["compute", "model", "storage", "tool"]);
}

async fn usage_report_window_and_tenant_filter(store: &Store) {
    let records = record_ledger(store).await;
    // from inclusive, to exclusive: [86_400, 1_700_006_400) holds 86_400 and the 2023-11-14
    // entries, not 86_399 nor 1_700_006_400.
    for (from, to) in [
        (86_400, 1_700_006_400),
        (0, 1),
        (-1, 0),
        (1_700_006_400, 1_700_006_401),
        (5, 5),
        (10, 0),
    ] {
        for tenant in [None, Some("bravo"), Some("quiet"), Some("ghost")] {
            for group_by in [UsageGroup::Tenant, UsageGroup::Day] {
                let q = UsageQuery {
                    tenant: tenant.map(tid),
                    from,
                    to,
                    group_by,
                };
                let got = store.usage_report(grant(), &q).await.unwrap();
                assert_eq!(got, expected_report(&records, &q), "{q:?}");
            }
        }
    }
    let q = UsageQuery {
        tenant: Some(tid("bravo")),
        from: 86_400,
        to: 1_700_006_400,
        group_by: UsageGroup::Day,
    };
    let days: Vec<String> = store
        .usage_report(grant(), &q)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.group)
        .collect();
    assert_eq!(days, ["1970-01-02", "2023-11-14"]);
    assert!(
        store
            .usage_report(grant(), &query(Some("quiet"), UsageGroup::User))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_thousand_micros_make_exactly_a_thousandth(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    for i in 0..1_000 {
        let mut u = usage("alpha", &format!("m{i}"), 1_700_000_000 + i);
        u.cost = Money::parse("0.000001").unwrap();
        u.input_tokens = 1;
        u.output_tokens = 2;
        store.record_usage(&scope("alpha"), &u).await.unwrap();
    }
    store
        .record_usage(&scope("bravo"), &usage("bravo", "other", 1_700_000_000))
        .await
        .unwrap();

    let rows = store
        .usage_report(grant(), &query(Some("alpha"), UsageGroup::Model))
        .await
        .unwrap();
    assert_eq!(
        rows,
        [UsageRow {
            group: "gpt-4o".into(),
            tenant_id: tid("alpha"),
            calls: 1_000,
            input_tokens: 1_000,
            output_tokens: 2_000,
            cpu_ms: 0,
            memory_mb_ms: 0,
            cost: Money::parse("0.001").unwrap(),
            records: 1_000,
        }]
    );
    assert_eq!(rows[0].cost.micros(), 1_000);
    assert_eq!(
        serde_json::to_value(&rows[0]).unwrap()["cost"],
        serde_json::json!("0.001")
    );
    let users = store
        .usage_report(grant(), &query(None, UsageGroup::User))
        .await
        .unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0].cost, Money::parse("0.001").unwrap());
    assert_eq!(users[1].tenant_id, tid("bravo"));
    assert_eq!(users[1].cost, Money::parse("0.000345").unwrap());
}

// ---- connecting and migrating -----------------------------------------------------------------

/// Connecting again (and several times at once) finds the migrations applied and the data kept.
async fn migrations_are_idempotent(url: &str) {
    let first = Store::connect(url).await.unwrap();
    first.create_tenant(&tenant("alpha")).await.unwrap();
    drop(first);

    let (a, b, c) = tokio::join!(
        Store::connect(url),
        Store::connect(url),
        Store::connect(url)
    );
    for store in [a.unwrap(), b.unwrap(), c.unwrap()] {
        assert!(store.get_tenant(&tid("alpha")).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn migrations_are_idempotent_sqlite() {
    let db = common::sqlite_db();
    migrations_are_idempotent(&db.url).await;
    // The file is in WAL mode, with one row per migration.
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 9]);
}

/// A database made by an earlier build (before tenants had a uid): upgrading gives each
/// existing tenant a uid of its own and keeps the ledger, which then outlives its tenant.
#[tokio::test]
async fn upgrading_gives_existing_tenants_a_uid_and_keeps_their_ledger() {
    let db = common::sqlite_db();
    let earlier = [
        include_str!("../migrations/sqlite/0001_registry_and_api_keys.sql"),
        include_str!("../migrations/sqlite/0002_runtimes_sessions_usage.sql"),
        include_str!("../migrations/sqlite/0003_tier_and_tenant_settings.sql"),
        include_str!("../migrations/sqlite/0004_policy_sets_and_vault.sql"),
        include_str!("../migrations/sqlite/0005_tool_targets.sql"),
    ];
    let names = [
        "0001_registry_and_api_keys",
        "0002_runtimes_sessions_usage",
        "0003_tier_and_tenant_settings",
        "0004_policy_sets_and_vault",
        "0005_tool_targets",
    ];
    {
        let file = std::path::PathBuf::from(db.url.trim_start_matches("sqlite://"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        pool.execute(
            "CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, \
             name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT",
        )
        .await
        .unwrap();
        for (i, (sql, name)) in earlier.iter().zip(names).enumerate() {
            pool.execute(*sql).await.unwrap();
            sqlx::query("INSERT INTO schema_migrations VALUES (?1, ?2, 0)")
                .bind(i as i64 + 1)
                .bind(name)
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.execute(
            "INSERT INTO tiers VALUES ('basic', '{\"name\":\"basic\"}', 0);
             INSERT INTO tenants VALUES ('alpha', 'Alpha', 'basic', 'active', 'eu', '{}', '{}', '{}', 1, 1);
             INSERT INTO tenants VALUES ('bravo', 'Bravo', 'basic', 'active', 'eu', '{}', '{}', '{}', 1, 1);
             INSERT INTO usage_records VALUES ('alpha', 'u1', NULL, NULL, NULL, 'model', 'm', 'p',
                 1, 2, 0, 0, 1, 5, NULL, NULL, 'ok', 10);",
        )
        .await
        .unwrap();
        pool.close().await;
    }
    let store = Store::connect(&db.url).await.unwrap();
    let alpha = store.get_tenant(&tid("alpha")).await.unwrap().unwrap();
    let bravo = store.get_tenant(&tid("bravo")).await.unwrap().unwrap();
    assert_ne!(alpha.uid, bravo.uid);
    common::delete_tenant(&store, "alpha").await;
    let kept = store
        .usage_report(grant(), &query(None, UsageGroup::Tenant))
        .await
        .unwrap();
    assert_eq!(tenants_of(&kept), ["alpha"]);
    // The ledger's rules survived the rebuild of its table.
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let err = sqlx::query("UPDATE usage_records SET cost_micros = 0")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

/// Below the store, the SQLite ledger refuses to change an entry.
#[tokio::test]
async fn sqlite_usage_ledger_is_append_only() {
    let db = common::sqlite_db();
    let store = Store::connect(&db.url).await.unwrap();
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store
        .record_usage(&scope("alpha"), &usage("alpha", "u1", 1))
        .await
        .unwrap();
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let err = sqlx::query("UPDATE usage_records SET cost_micros = 0")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    assert_eq!(usage_of(&store, "alpha").await, [usage("alpha", "u1", 1)]);
}

#[tokio::test]
async fn migrations_are_idempotent_postgres() {
    let Some(db) = common::postgres_db("migrations_are_idempotent_postgres", false).await else {
        return;
    };
    // Concurrent first start on an empty database: the advisory lock serialises migrations.
    let (a, b) = tokio::join!(Store::connect(&db.url), Store::connect(&db.url));
    a.unwrap();
    b.unwrap();
    migrations_are_idempotent(&db.url).await;
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8, 10]);
}

#[tokio::test]
async fn in_memory_sqlite_keeps_its_data_between_calls() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    store.create_tenant(&tenant("alpha")).await.unwrap();
    for _ in 0..3 {
        assert!(store.get_tenant(&tid("alpha")).await.unwrap().is_some());
    }
    let clone = store.clone();
    assert_eq!(clone.list_tenants().await.unwrap().len(), 1);
}

#[tokio::test]
async fn bad_urls_are_config_errors() {
    for url in [
        "mysql://localhost/x",
        "",
        "postgres://user@host:notaport/db",
    ] {
        let err = Store::connect(url).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidUrl(_)), "{url}: {err:?}");
        assert_eq!(err.code(), ErrorCode::Internal);
    }
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    // Port 1 on localhost refuses connections.
    let err = Store::connect("postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::Unavailable);
}

// ---- PostgreSQL row-level security, proved below the store -----------------------------------

/// Keys for alpha and bravo inserted through the store, then raw SQL without any tenant filter
/// run the way the store runs tenant queries: the database itself hides and refuses the other
/// tenant's rows.
#[tokio::test]
async fn postgres_row_level_security_isolates_tenants() {
    let Some(db) = common::postgres_db("postgres_row_level_security_isolates_tenants", false).await
    else {
        return;
    };
    let store = Store::connect(&db.url).await.unwrap();
    for t in ["alpha", "bravo"] {
        store.create_tenant(&tenant(t)).await.unwrap();
        for id in ["k1", "k2"] {
            store
                .insert_api_key(&scope(t), &key(t, id, 1))
                .await
                .unwrap();
        }
    }
    let mut conn = PgConnection::connect(&db.url).await.unwrap();

    // Scoped to alpha, an unfiltered SELECT returns alpha's rows only.
    let mut tx = conn.begin().await.unwrap();
    tx.execute("SET LOCAL ROLE tenantry_app").await.unwrap();
    tx.execute("SELECT set_config('app.tenant_id', 'alpha', true)")
        .await
        .unwrap();
    let seen: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM api_keys")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, ["alpha", "alpha"]);
    // Unfiltered UPDATE and DELETE do not reach bravo's rows either.
    let updated = tx
        .execute("UPDATE api_keys SET name = 'x'")
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(updated, 2);
    tx.rollback().await.unwrap();

    // Without app.tenant_id, nothing is visible.
    let mut tx = conn.begin().await.unwrap();
    tx.execute("SET LOCAL ROLE tenantry_app").await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let deleted = tx
        .execute("DELETE FROM api_keys")
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 0);
    tx.rollback().await.unwrap();

    // Writing a row of bravo while scoped to alpha is refused, by INSERT and by UPDATE.
    for statement in [
        "INSERT INTO api_keys (tenant_id, id, name, user_id, roles, prefix, secret_hash, created_at)
         VALUES ('bravo', 'planted', 'x', 'u', '[]', 'p', '\\x00', 1)",
        "UPDATE api_keys SET tenant_id = 'bravo' WHERE id = 'k1'",
    ] {
        let err = in_alpha_scope(&mut conn, statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{statement}: {err}");
        assert!(err.to_string().contains("row-level security"), "{err}");
    }

    // The role cannot turn row security off, nor disable the policy, nor read the registry.
    for statement in [
        "SET LOCAL row_security = off; SELECT * FROM api_keys",
        "ALTER TABLE api_keys DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE api_keys NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON api_keys",
        "SELECT * FROM tenants",
    ] {
        let err = in_alpha_scope(&mut conn, statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{statement}: {err}");
    }

    // The role's attributes and the table's settings are what the guarantees rest on.
    let role = sqlx::query(
        "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = 'tenantry_app'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(!role.get::<bool, _>("rolsuper"));
    assert!(!role.get::<bool, _>("rolbypassrls"));
    assert!(!role.get::<bool, _>("rolcanlogin"));
    let owner: String =
        sqlx::query_scalar("SELECT tableowner::text FROM pg_tables WHERE tablename = 'api_keys'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_ne!(owner, "tenantry_app");
    let owned: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tableowner = 'tenantry_app'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(owned, 0);
    let table = sqlx::query(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'api_keys'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(table.get::<bool, _>("relrowsecurity"));
    assert!(table.get::<bool, _>("relforcerowsecurity"));

    // FORCE binds the table owner too: a non-superuser owner (the production setup) sees no
    // rows without a tenant setting. Superusers bypass RLS entirely, so only check otherwise.
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    if !superuser {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            n, 0,
            "the owner must not see tenant rows without app.tenant_id"
        );
    }

    // Nothing above leaked into the store's view.
    assert_eq!(store.list_api_keys(&scope("bravo")).await.unwrap().len(), 2);
    assert!(
        store
            .get_api_key(&scope("bravo"), "planted")
            .await
            .unwrap()
            .is_none()
    );
}

/// Sessions and usage of alpha and bravo (the same ids in both) inserted through the store,
/// then raw SQL without any tenant filter, as `tenantry_app` scoped to alpha and as the
/// operator's read-only role: the database itself confines each.
async fn row_level_security_isolates_sessions_and_usage(url: &str) {
    let store = Store::connect(url).await.unwrap();
    for t in ["alpha", "bravo"] {
        store.create_tenant(&tenant(t)).await.unwrap();
        for (i, tag) in ["s1", "s2"].into_iter().enumerate() {
            let s = session(t, &sid(tag), "alice", "bot", i as i64);
            store.insert_session(&scope(t), &s).await.unwrap();
        }
        for (i, tag) in ["u1", "u2", "u3"].into_iter().enumerate() {
            store
                .record_usage(&scope(t), &usage(t, tag, i as i64))
                .await
                .unwrap();
        }
    }
    let mut conn = PgConnection::connect(url).await.unwrap();

    // Scoped to alpha, unfiltered reads and writes reach alpha's rows only.
    let mut tx = conn.begin().await.unwrap();
    tx.execute("SET LOCAL ROLE tenantry_app").await.unwrap();
    tx.execute("SELECT set_config('app.tenant_id', 'alpha', true)")
        .await
        .unwrap();
    let seen: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM sessions")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, ["alpha", "alpha"]);
    let seen: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM usage_records")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, ["alpha", "alpha", "alpha"]);
    let sums: i64 = sqlx::query_scalar("SELECT sum(cost_micros)::bigint FROM usage_records")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(sums, 3 * 345);
    let updated = tx
        .execute("UPDATE sessions SET status = 'stopped'")
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(updated, 2);
    let deleted = tx
        .execute("DELETE FROM usage_records")
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 3);
    tx.rollback().await.unwrap();

    // Without app.tenant_id, nothing is visible.
    let mut tx = conn.begin().await.unwrap();
    tx.execute("SET LOCAL ROLE tenantry_app").await.unwrap();
    for table in [
        "SELECT count(*) FROM sessions",
        "SELECT count(*) FROM usage_records",
    ] {
        let n: i64 = sqlx::query_scalar(table).fetch_one(&mut *tx).await.unwrap();
        assert_eq!(n, 0, "{table}");
    }
    tx.rollback().await.unwrap();

    // Writing bravo's rows from alpha's scope is refused; the ledger refuses any update; the
    // role cannot touch the runtimes registry.
    for (statement, why) in [
        (
            "INSERT INTO sessions (tenant_id, id, user_id, runtime, status, created_at, last_active_at)
             VALUES ('bravo', 'planted-planted-planted-planted-1', 'u', 'bot', 'active', 1, 1)",
            "row-level security",
        ),
        (
            "UPDATE sessions SET tenant_id = 'bravo'",
            "row-level security",
        ),
        (
            "INSERT INTO usage_records (tenant_id, id, kind, input_tokens, output_tokens, cpu_ms,
                                        memory_mb_ms, calls, cost_micros, status, at)
             VALUES ('bravo', 'planted', 'model', 0, 0, 0, 0, 1, 1000000, 'ok', 1)",
            "row-level security",
        ),
        ("UPDATE usage_records SET cost_micros = 0", "permission denied"),
        ("SELECT * FROM runtimes", "permission denied"),
        (
            "ALTER TABLE usage_records NO FORCE ROW LEVEL SECURITY",
            "must be owner",
        ),
        ("DROP POLICY operator_read ON sessions", "must be owner"),
    ] {
        let err = in_alpha_scope(&mut conn, statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{statement}: {err}");
        assert!(err.to_string().contains(why), "{statement}: {err}");
    }

    // The operator's role reads every tenant's sessions and usage, and nothing else, and can
    // write nothing.
    let mut tx = conn.begin().await.unwrap();
    tx.execute("SET LOCAL ROLE tenantry_operator")
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 4);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_records")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 6);
    tx.rollback().await.unwrap();
    for statement in [
        "DELETE FROM sessions",
        "UPDATE sessions SET status = 'expired'",
        "INSERT INTO usage_records (tenant_id, id, kind, input_tokens, output_tokens, cpu_ms,
                                    memory_mb_ms, calls, cost_micros, status, at)
         VALUES ('alpha', 'x', 'model', 0, 0, 0, 0, 1, 1, 'ok', 1)",
        "DELETE FROM usage_records",
        "SELECT * FROM api_keys",
        "SELECT * FROM tenants",
        "SELECT * FROM runtimes",
    ] {
        let err = as_operator_role(&mut conn, statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{statement}: {err}");
    }

    // The role attributes the operator role's guarantees rest on.
    let role = sqlx::query(
        "SELECT rolsuper, rolbypassrls, rolcanlogin,
                pg_has_role('tenantry_app', 'tenantry_operator', 'MEMBER') AS app_member
         FROM pg_roles WHERE rolname = 'tenantry_operator'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    for attribute in ["rolsuper", "rolbypassrls", "rolcanlogin", "app_member"] {
        assert!(!role.get::<bool, _>(attribute), "{attribute}");
    }
    for table in ["sessions", "usage_records"] {
        let row = sqlx::query(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = $1",
        )
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(row.get::<bool, _>("relrowsecurity"), "{table}");
        assert!(row.get::<bool, _>("relforcerowsecurity"), "{table}");
    }

    // The owner itself (when no superuser, as in production) sees no tenant rows without
    // app.tenant_id, and the operator policy does not apply to it though it is a member of the
    // operator role.
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    if !superuser {
        for table in [
            "SELECT count(*) FROM sessions",
            "SELECT count(*) FROM usage_records",
        ] {
            let n: i64 = sqlx::query_scalar(table)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(n, 0, "the owner must not see tenant rows: {table}");
        }
    }

    // Nothing above leaked into the store's view, and the operator's reports see both tenants.
    assert_eq!(sessions_of(&store, "bravo").await.len(), 2);
    assert_eq!(usage_of(&store, "bravo").await.len(), 3);
    let report = store
        .usage_report(grant(), &query(None, UsageGroup::Tenant))
        .await
        .unwrap();
    assert_eq!(tenants_of(&report), ["alpha", "bravo"]);
    assert!(report.iter().all(|r| r.records == 3));
}

#[tokio::test]
async fn postgres_row_level_security_isolates_sessions_and_usage() {
    let Some(db) = common::postgres_db(
        "postgres_row_level_security_isolates_sessions_and_usage",
        false,
    )
    .await
    else {
        return;
    };
    row_level_security_isolates_sessions_and_usage(&db.url).await;
}

#[tokio::test]
async fn postgres_row_level_security_isolates_sessions_and_usage_from_the_owner() {
    let Some(db) = common::postgres_db(
        "postgres_row_level_security_isolates_sessions_and_usage_from_the_owner",
        true,
    )
    .await
    else {
        return;
    };
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(!superuser, "this test must run as a non-superuser owner");
    row_level_security_isolates_sessions_and_usage(&db.url).await;
}

/// The start-up check covers every tenant table: a database where one has lost its forced
/// row-level security, or where the operator role may write one, is refused.
#[tokio::test]
async fn postgres_startup_refuses_weakened_tenant_tables() {
    let Some(db) =
        common::postgres_db("postgres_startup_refuses_weakened_tenant_tables", false).await
    else {
        return;
    };
    drop(Store::connect(&db.url).await.unwrap());
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    for table in ["api_keys", "sessions", "usage_records"] {
        for (weaken, restore) in [
            (
                format!("ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY"),
                format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"),
            ),
            (
                format!("ALTER TABLE {table} DISABLE ROW LEVEL SECURITY"),
                format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"),
            ),
            (
                format!("GRANT DELETE ON {table} TO tenantry_operator"),
                format!("REVOKE DELETE ON {table} FROM tenantry_operator"),
            ),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(weaken.clone()))
                .execute(&mut conn)
                .await
                .unwrap();
            let err = Store::connect(&db.url).await.unwrap_err();
            assert!(matches!(err, StoreError::Migration(_)), "{weaken}: {err:?}");
            assert!(err.to_string().contains(table), "{weaken}: {err}");
            sqlx::raw_sql(sqlx::AssertSqlSafe(restore))
                .execute(&mut conn)
                .await
                .unwrap();
            Store::connect(&db.url).await.unwrap();
        }
    }
}

/// Runs `statement` as the operator's cross-tenant reads run, in a transaction rolled back after.
async fn as_operator_role(
    conn: &mut PgConnection,
    statement: &'static str,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    tx.execute("SET LOCAL ROLE tenantry_operator").await?;
    let result = sqlx::raw_sql(statement).execute(&mut *tx).await.map(|_| ());
    tx.rollback().await?;
    result
}

/// The transaction-local settings do not outlive their transaction on a pooled connection.
#[tokio::test]
async fn postgres_scope_does_not_leak_across_transactions() {
    let Some(db) =
        common::postgres_db("postgres_scope_does_not_leak_across_transactions", false).await
    else {
        return;
    };
    let store = Store::connect(&db.url).await.unwrap();
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store
        .insert_api_key(&scope("alpha"), &key("alpha", "k1", 1))
        .await
        .unwrap();

    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    tx.execute("SET LOCAL ROLE tenantry_app").await.unwrap();
    tx.execute("SELECT set_config('app.tenant_id', 'alpha', true)")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let row = sqlx::query(
        "SELECT current_user::text AS who, current_setting('app.tenant_id', true) AS t",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_ne!(row.get::<String, _>("who"), "tenantry_app");
    assert_eq!(row.get::<Option<String>, _>("t").unwrap_or_default(), "");
}

/// Runs `statement` as the store runs tenant queries for alpha, in a transaction rolled back after.
async fn in_alpha_scope(
    conn: &mut PgConnection,
    statement: &'static str,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    tx.execute("SET LOCAL ROLE tenantry_app").await?;
    tx.execute("SELECT set_config('app.tenant_id', 'alpha', true)")
        .await?;
    let result = sqlx::raw_sql(statement).execute(&mut *tx).await.map(|_| ());
    tx.rollback().await?;
    result
}

fn sqlstate(err: &sqlx::Error) -> String {
    err.as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
        .unwrap_or_default()
}
