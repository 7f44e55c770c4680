//! The store's contract for the usage ledger: entries recorded and listed in their scope,
//! batches all or nothing, and the operator's report summed exactly per tenant and group.
//! Written once against `&Store` and run on both backends (`common::on_both_backends!`):
//! SQLite always, PostgreSQL when `TENANTRY_TEST_DATABASE_URL` is set, as the admin user and as
//! a database owner that is no superuser (so forced row-level security binds it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use tenantry_core::{ErrorCode, Money, RuntimeName, TenantScope, UserId};
mod common;

use common::records::*;
use common::{on_both_backends, scope};
use tenantry_store::{Store, StoreError, UsageGroup, UsageKind, UsageQuery, UsageRecord, UsageRow};

on_both_backends!(
    usage_is_recorded_and_listed_in_scope,
    usage_batches_are_all_or_nothing,
    usage_report_sums_exactly_per_group,
    usage_report_window_and_tenant_filter,
    a_thousand_micros_make_exactly_a_thousandth,
);

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
