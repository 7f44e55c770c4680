//! The model spend the in-process limiter is seeded from at start-up
//! (`Store::model_spend_since`), on SQLite always and on PostgreSQL when
//! `TENANTRY_TEST_DATABASE_URL` is set: per user, model entries only, from a moment on, of the
//! scope's tenant only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tenantry_core::{Money, TenantId, UserId};
mod common;

use common::{on_both_backends, scope};
use tenantry_store::{ModelSpend, Store, UsageKind, UsageRecord};

on_both_backends!(spend_sums_model_entries_per_user_since_a_moment);

fn entry(t: &str, n: u32, user: &str, kind: UsageKind, at: i64) -> UsageRecord {
    UsageRecord {
        id: format!("0190a0b1-{n:0>4}-7000-8000-000000000000"),
        tenant_id: TenantId::new(t).unwrap(),
        user_id: Some(UserId::new(user).unwrap()),
        runtime: None,
        session_id: None,
        kind,
        resource: Some("m".into()),
        provider: Some("p".into()),
        input_tokens: 100,
        output_tokens: 20,
        cpu_ms: 0,
        memory_mb_ms: 0,
        calls: 1,
        cost: Money::from_micros(7),
        latency_ms: None,
        ttft_ms: None,
        status: "ok".into(),
        at,
    }
}

async fn spend_sums_model_entries_per_user_since_a_moment(store: &Store) {
    common::alpha_and_bravo(store).await;
    let a = scope("alpha");
    let entries = [
        entry("alpha", 1, "ann", UsageKind::Model, 100),
        entry("alpha", 2, "ann", UsageKind::Model, 200),
        entry("alpha", 3, "bob", UsageKind::Model, 200),
        // Not model spend: not budgeted.
        entry("alpha", 4, "ann", UsageKind::Tool, 200),
        entry("alpha", 5, "ann", UsageKind::Compute, 200),
        // Before the window.
        entry("alpha", 6, "bob", UsageKind::Model, 99),
    ];
    store.record_usages(&a, &entries).await.unwrap();
    store
        .record_usage(
            &scope("bravo"),
            &entry("bravo", 7, "ann", UsageKind::Model, 150),
        )
        .await
        .unwrap();

    let spent = store.model_spend_since(&a, 100).await.unwrap();
    assert_eq!(
        spent,
        vec![
            ModelSpend {
                user_id: Some(UserId::new("ann").unwrap()),
                tokens: 240,
                cost: Money::from_micros(14),
            },
            ModelSpend {
                user_id: Some(UserId::new("bob").unwrap()),
                tokens: 120,
                cost: Money::from_micros(7),
            },
        ]
    );
    // From a later moment on; and another tenant's entries are never counted.
    let later = store.model_spend_since(&a, 150).await.unwrap();
    assert_eq!(later.iter().map(|s| s.tokens).sum::<i64>(), 240);
    assert!(store.model_spend_since(&a, 201).await.unwrap().is_empty());
    let b = store.model_spend_since(&scope("bravo"), 0).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].cost, Money::from_micros(7));
}
