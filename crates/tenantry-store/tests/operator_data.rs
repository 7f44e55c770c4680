//! The store's contract for operator data — tool targets (one row per name, shared or of one
//! tenant, deleted with that tenant) and the audit log (appended, read per tenant through its
//! scope or across tenants with the operator grant, outliving its tenant) — on SQLite always and on PostgreSQL when
//! `TENANTRY_TEST_DATABASE_URL` is set (as the admin user and as a database owner that is no
//! superuser).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tenantry_core::TenantId;
mod common;

use common::on_both_backends;
use tenantry_core::OperatorGrant;
use tenantry_store::{AuditEvent, AuditQuery, Store, StoreError, ToolTargetRecord};

on_both_backends!(
    targets_round_trip_and_replace,
    targets_go_with_their_tenant,
    audit_events_are_read_per_tenant_in_pages_and_outlive_their_tenant
);

fn target(name: &str, tenant: Option<&str>, url: &str, at: i64) -> ToolTargetRecord {
    ToolTargetRecord {
        name: name.to_owned(),
        tenant: tenant.map(|t| TenantId::new(t).unwrap()),
        body: json!({"name": name, "kind": {"type": "mcp", "url": url}}),
        created_at: at,
        updated_at: at,
    }
}

async fn target_names(store: &Store) -> Vec<String> {
    let targets = store.list_tool_targets().await.unwrap();
    targets.into_iter().map(|t| t.name).collect()
}

async fn targets_round_trip_and_replace(store: &Store) {
    common::alpha_and_bravo(store).await;
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
    let names = target_names(store).await;
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
    common::alpha_and_bravo(store).await;
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
    common::delete_tenant(store, "alpha").await;
    let names = target_names(store).await;
    assert_eq!(names, ["erp", "wiki"]);
}

fn event(n: u32, tenant: Option<&str>, action: &str, at: i64) -> AuditEvent {
    AuditEvent {
        // Ids sort in time order, as UUIDv7 do.
        id: format!("0190000{n:05}"),
        tenant: tenant.map(|t| TenantId::new(t).unwrap()),
        at,
        actor: "operator".into(),
        action: action.into(),
        target: tenant.map(str::to_owned),
        outcome: "ok".into(),
        request_id: Some(format!("req_{n}")),
        detail: json!({"after": {"n": n}}),
    }
}

async fn audit_events_are_read_per_tenant_in_pages_and_outlive_their_tenant(store: &Store) {
    common::alpha_and_bravo(store).await;
    let events = vec![
        event(1, Some("alpha"), "tenant.update", 100),
        event(2, Some("bravo"), "tenant.update", 101),
        event(3, None, "tier.put", 102),
        event(4, Some("alpha"), "tool.decision", 103),
        event(5, Some("alpha"), "api_key.create", 104),
    ];
    store.insert_audit_events(&events).await.unwrap();
    let alpha = common::scope("alpha");
    let all = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    let ids = |v: Vec<AuditEvent>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let mine = store.list_audit_events(&alpha, &all).await.unwrap();
    assert_eq!(mine[0], events[4], "round trip, newest first");
    assert_eq!(
        ids(mine),
        ["019000000005", "019000000004", "019000000001"],
        "only alpha's events"
    );
    // Pages, a time bound and an action prefix (a `_` in it is not a wildcard).
    let page = AuditQuery {
        limit: 2,
        ..AuditQuery::default()
    };
    let first = store.list_audit_events(&alpha, &page).await.unwrap();
    let next = AuditQuery {
        before: Some(first[1].id.clone()),
        ..page.clone()
    };
    assert_eq!(
        ids(store.list_audit_events(&alpha, &next).await.unwrap()),
        ["019000000001"]
    );
    let recent = AuditQuery {
        since: Some(103),
        ..all.clone()
    };
    assert_eq!(
        store
            .list_audit_events(&alpha, &recent)
            .await
            .unwrap()
            .len(),
        2
    );
    let keys = AuditQuery {
        action_prefix: Some("api_key.".into()),
        ..all.clone()
    };
    assert_eq!(
        ids(store.list_audit_events(&alpha, &keys).await.unwrap()),
        ["019000000005"]
    );
    let wildcard = AuditQuery {
        action_prefix: Some("api_".into()),
        ..all.clone()
    };
    assert_eq!(
        store
            .list_audit_events(&alpha, &wildcard)
            .await
            .unwrap()
            .len(),
        1
    );
    // The operator sees everyone's and the platform's.
    let everything = store
        .list_all_audit_events(&OperatorGrant::for_tests(), &all)
        .await
        .unwrap();
    assert_eq!(everything.len(), 5);
    // A deleted tenant's trail stays; retention removes old events.
    store
        .delete_tenant(&TenantId::new("alpha").unwrap(), true)
        .await
        .unwrap();
    assert_eq!(
        store.list_audit_events(&alpha, &all).await.unwrap().len(),
        3
    );
    assert_eq!(store.delete_audit_events_before(102).await.unwrap(), 2);
    let left = store
        .list_all_audit_events(&OperatorGrant::for_tests(), &all)
        .await
        .unwrap();
    assert_eq!(ids(left), ["019000000005", "019000000004", "019000000003"]);
}
