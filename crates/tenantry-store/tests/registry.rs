//! The store's contract for the operator's registry: tiers, tenants (and deleting one with
//! everything it owns, and only that), runtimes, and the settings of tiers and tenants.
//! Written once against `&Store` and run on both backends (`common::on_both_backends!`):
//! SQLite always, PostgreSQL when `TENANTRY_TEST_DATABASE_URL` is set, as the admin user and as
//! a database owner that is no superuser (so forced row-level security binds it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tenantry_core::{
    ErrorCode, IsolationOverrides, IsolationPreset, Tenant, TenantId, TenantIsolation,
    TenantStatus, Tier, TierName,
};
mod common;

use common::records::*;
use common::{on_both_backends, scope};
use tenantry_store::{RuntimeRecord, SettingKind, SettingRecord, Store, StoreError, UsageGroup};

on_both_backends!(
    tiers_round_trip_and_seed_does_not_overwrite,
    tenant_crud_and_conflict,
    delete_tenant_removes_its_data_and_only_its_data,
    errors_are_classified,
    runtime_crud_and_conflict,
    dedicated_runtimes_go_with_their_tenant,
    tier_and_tenant_settings_round_trip,
    tenant_settings_go_with_their_tenant,
);

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
