//! The store's contract for tool targets (operator data: one row per name, shared or of one
//! tenant, deleted with that tenant), on SQLite always and on PostgreSQL when
//! `TENANTRY_TEST_DATABASE_URL` is set (as the admin user and as a database owner that is no
//! superuser).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use serde_json::json;
use tenantry_core::{Tenant, TenantId, TenantIsolation, TenantStatus, Tier, TierName};
mod common;

use common::on_both_backends;
use tenantry_store::{Store, StoreError, ToolTargetRecord};

on_both_backends!(targets_round_trip_and_replace, targets_go_with_their_tenant);

fn tenant(id: &str) -> Tenant {
    Tenant {
        id: TenantId::new(id).unwrap(),
        uid: tenantry_core::TenantUid::generate(),
        name: id.to_owned(),
        tier: TierName::new("basic").unwrap(),
        status: TenantStatus::Active,
        isolation: TenantIsolation::default(),
        region: "eu".into(),
        features: BTreeMap::new(),
        entitlements: serde_json::Map::new(),
        created_at: 1,
        updated_at: 1,
    }
}

async fn registry(store: &Store) {
    let tier: Tier = serde_json::from_value(json!({"name": "basic"})).unwrap();
    store.put_tier(&tier).await.unwrap();
    for t in ["alpha", "bravo"] {
        store.create_tenant(&tenant(t)).await.unwrap();
    }
}

fn target(name: &str, tenant: Option<&str>, url: &str, at: i64) -> ToolTargetRecord {
    ToolTargetRecord {
        name: name.to_owned(),
        tenant: tenant.map(|t| TenantId::new(t).unwrap()),
        body: json!({"name": name, "kind": {"type": "mcp", "url": url}}),
        created_at: at,
        updated_at: at,
    }
}

async fn targets_round_trip_and_replace(store: &Store) {
    registry(store).await;
    assert!(store.list_tool_targets().await.unwrap().is_empty());
    assert!(
        store
            .put_tool_target(&target("wiki", None, "http://a/mcp", 10))
            .await
            .unwrap()
    );
    assert!(
        store
            .put_tool_target(&target("crm", Some("alpha"), "http://c/mcp", 11))
            .await
            .unwrap()
    );
    let names: Vec<String> = store
        .list_tool_targets()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["crm", "wiki"]);

    // Replacing keeps created_at and takes the new body and owner.
    assert!(
        !store
            .put_tool_target(&target("wiki", Some("bravo"), "http://b/mcp", 20))
            .await
            .unwrap()
    );
    let wiki = store.get_tool_target("wiki").await.unwrap().unwrap();
    assert_eq!(wiki.created_at, 10);
    assert_eq!(wiki.updated_at, 20);
    assert_eq!(wiki.tenant, Some(TenantId::new("bravo").unwrap()));
    assert_eq!(wiki.body["kind"]["url"], json!("http://b/mcp"));

    assert!(store.delete_tool_target("wiki").await.unwrap());
    assert!(!store.delete_tool_target("wiki").await.unwrap());
    assert!(store.get_tool_target("wiki").await.unwrap().is_none());

    // A target of a tenant that does not exist is refused; an empty name is refused.
    let err = store
        .put_tool_target(&target("ghost", Some("nobody"), "http://g/mcp", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Missing(m) if m == "tenant nobody not found"),
        "{err:?}"
    );
    assert!(
        store
            .put_tool_target(&target("", None, "http://g/mcp", 1))
            .await
            .is_err()
    );
}

async fn targets_go_with_their_tenant(store: &Store) {
    registry(store).await;
    store
        .put_tool_target(&target("crm", Some("alpha"), "http://c/mcp", 1))
        .await
        .unwrap();
    store
        .put_tool_target(&target("erp", Some("bravo"), "http://e/mcp", 1))
        .await
        .unwrap();
    store
        .put_tool_target(&target("wiki", None, "http://w/mcp", 1))
        .await
        .unwrap();
    assert!(
        store
            .delete_tenant(&TenantId::new("alpha").unwrap(), false)
            .await
            .unwrap()
            .is_some()
    );
    let names: Vec<String> = store
        .list_tool_targets()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["erp", "wiki"]);
}
