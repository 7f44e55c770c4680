//! The store's contract for memory: definitions are a tenant's own or shared, events and
//! records stay with their tenant (in a shared memory too), client tokens are idempotent,
//! full-text search is scoped, and erasure, memory deletion (a shared one: every tenant's
//! rows) and tenant deletion leave nothing behind. On both backends (`on_both_backends!`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{alpha_and_bravo, delete_tenant, on_both_backends, scope};
use tenantry_core::{OperatorGrant, TenantId};
use tenantry_memory::types::{
    Conversational, Event, Memory, MemoryOwner, PayloadItem, Record, Role, TextContent,
};
use tenantry_memory::{ActorId, EventId, MemoryId, MemorySessionId, RecordId};
use tenantry_store::{MemoryWriter, RecordQuery, Store};

on_both_backends!(memory_rows_stay_with_their_tenant_and_leave_nothing_behind);

fn memory(name: &str, owner: MemoryOwner) -> Memory {
    Memory {
        id: MemoryId::generate(name),
        name: name.into(),
        description: String::new(),
        shared: owner == MemoryOwner::Shared,
        owner,
        event_expiry_days: 90,
        strategies: Vec::new(),
        status: "ACTIVE",
        created_at: 1,
        updated_at: 1,
    }
}

fn event(m: &Memory, actor: &str, text: &str) -> Event {
    Event {
        memory_id: m.id.clone(),
        actor_id: ActorId::new(actor).unwrap(),
        session_id: MemorySessionId::new("s1").unwrap(),
        event_id: EventId::generate(1_000),
        event_timestamp: 1_000,
        payload: vec![PayloadItem::Conversational(Conversational {
            content: TextContent { text: text.into() },
            role: Role::User,
        })],
        branch: None,
        metadata: BTreeMap::new(),
    }
}

fn record(actor: &str, text: &str) -> Record {
    Record {
        memory_record_id: RecordId::generate(),
        content: TextContent { text: text.into() },
        memory_strategy_id: "direct".into(),
        namespaces: vec![format!("/actors/{actor}")],
        actor_id: Some(ActorId::new(actor).unwrap()),
        session_id: None,
        created_at: 1,
        updated_at: 1,
        metadata: BTreeMap::new(),
    }
}

async fn texts(store: &Store, tenant: &str, m: &MemoryId, query: &str) -> Vec<String> {
    let q = RecordQuery {
        memory: m,
        prefix: "",
        strategy: None,
        actor: None,
    };
    let terms: Vec<String> = query.split(' ').map(str::to_string).collect();
    store
        .search_memory_records(&scope(tenant), &q, &terms)
        .await
        .unwrap()
        .into_iter()
        .map(|(r, score)| {
            assert!(score > 0.0 && score < 1.0, "{score}");
            r.content.text
        })
        .collect()
}

async fn rows(store: &Store, tenant: &str, m: &MemoryId) -> usize {
    let q = RecordQuery {
        memory: m,
        prefix: "",
        strategy: None,
        actor: None,
    };
    store
        .list_memory_actors(&scope(tenant), m)
        .await
        .unwrap()
        .len()
        + store
            .list_memory_records(&scope(tenant), &q)
            .await
            .unwrap()
            .len()
}

async fn memory_rows_stay_with_their_tenant_and_leave_nothing_behind(store: &Store) {
    alpha_and_bravo(store).await;
    let grant = OperatorGrant::for_tests();
    let (alpha, bravo) = (scope("alpha"), scope("bravo"));
    let own = memory("own", MemoryOwner::Tenant(TenantId::new("alpha").unwrap()));
    let pool = memory("pool", MemoryOwner::Shared);
    store
        .insert_memory(MemoryWriter::Tenant(&alpha), &own)
        .await
        .unwrap();
    store
        .insert_memory(MemoryWriter::Operator(&grant), &pool)
        .await
        .unwrap();
    // A tenant cannot store a memory for another owner, nor under a name it has already.
    assert!(
        store
            .insert_memory(MemoryWriter::Tenant(&bravo), &own)
            .await
            .is_err()
    );
    let mut again = memory("own", own.owner.clone());
    again.id = MemoryId::generate("own");
    assert!(
        store
            .insert_memory(MemoryWriter::Tenant(&alpha), &again)
            .await
            .is_err()
    );

    // Each tenant sees its own memories and the shared ones; never changes another's.
    assert!(store.get_memory(&bravo, &own.id).await.unwrap().is_none());
    assert_eq!(store.list_memories(&bravo).await.unwrap().len(), 1);
    assert_eq!(store.list_memories(&alpha).await.unwrap().len(), 2);
    assert!(
        !store
            .update_memory(MemoryWriter::Tenant(&bravo), &own)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_memory(MemoryWriter::Tenant(&alpha), &pool.id)
            .await
            .unwrap()
    );

    // Idempotent events, per tenant.
    let first = event(&pool, "carol", "alpha words");
    let (e, created) = store
        .insert_memory_event(&alpha, &first, Some("tok"), 5)
        .await
        .unwrap();
    assert!(created);
    let (e2, created) = store
        .insert_memory_event(&alpha, &event(&pool, "carol", "other"), Some("tok"), 6)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(e2.event_id, e.event_id);
    let (_, created) = store
        .insert_memory_event(
            &bravo,
            &event(&pool, "carol", "bravo words"),
            Some("tok"),
            6,
        )
        .await
        .unwrap();
    assert!(created, "a token of another tenant is another event");
    let carol = ActorId::new("carol").unwrap();
    let s1 = MemorySessionId::new("s1").unwrap();
    for (sc, word) in [(&alpha, "alpha"), (&bravo, "bravo")] {
        let listed = store
            .list_memory_events(sc, &pool.id, &carol, &s1, true)
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            listed[0].payload[0],
            PayloadItem::Conversational(Conversational {
                content: TextContent {
                    text: format!("{word} words")
                },
                role: Role::User
            })
        );
    }
    assert!(
        store
            .get_memory_event(&bravo, &pool.id, &carol, &s1, &e.event_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !store
            .delete_memory_event(&bravo, &pool.id, &carol, &s1, &e.event_id)
            .await
            .unwrap()
    );

    // Records and their search stay with their tenant.
    let a_rec = record("carol", "carol likes green tea");
    store
        .insert_memory_record(&alpha, &pool.id, &a_rec, "carol likes green tea")
        .await
        .unwrap();
    store
        .insert_memory_record(
            &bravo,
            &pool.id,
            &record("carol", "carol likes tea too"),
            "x",
        )
        .await
        .unwrap();
    store
        .insert_memory_record(&alpha, &own.id, &record("dave", "dave likes tea"), "x")
        .await
        .unwrap();
    assert_eq!(
        texts(store, "alpha", &pool.id, "tea").await,
        ["carol likes green tea"]
    );
    assert_eq!(
        texts(store, "bravo", &pool.id, "tea").await,
        ["carol likes tea too"]
    );
    assert!(texts(store, "bravo", &own.id, "tea").await.is_empty());
    assert!(
        store
            .get_memory_record(&bravo, &pool.id, &a_rec.memory_record_id, None)
            .await
            .unwrap()
            .is_none()
    );
    let mut changed = a_rec.clone();
    changed.content.text = "stolen".into();
    assert!(
        !store
            .update_memory_record(&bravo, &pool.id, &changed, "stolen")
            .await
            .unwrap()
    );
    // An update re-indexes the text.
    changed.content.text = "carol prefers coffee".into();
    assert!(
        store
            .update_memory_record(&alpha, &pool.id, &changed, "carol prefers coffee")
            .await
            .unwrap()
    );
    assert!(texts(store, "alpha", &pool.id, "tea").await.is_empty());
    assert_eq!(
        texts(store, "alpha", &pool.id, "coffee").await,
        ["carol prefers coffee"]
    );

    // Erasure of an actor: its events and records in every memory of the tenant only.
    assert_eq!(
        store.erase_memory_actor(&alpha, &carol).await.unwrap(),
        (1, 1)
    );
    assert_eq!(rows(store, "alpha", &pool.id).await, 0);
    assert_eq!(rows(store, "bravo", &pool.id).await, 2);

    // Deleting the shared memory deletes every tenant's rows in it.
    assert!(
        store
            .delete_memory(MemoryWriter::Operator(&grant), &pool.id)
            .await
            .unwrap()
    );
    assert_eq!(rows(store, "bravo", &pool.id).await, 0);

    // Deleting a tenant deletes its memories and their rows.
    let removed = delete_tenant(store, "alpha").await;
    assert_eq!(removed.rows["memory_records"], 1, "{removed:?}");
    assert_eq!(removed.rows["memories"], 1, "{removed:?}");
    assert_eq!(rows(store, "alpha", &own.id).await, 0);
    assert!(store.list_all_memories(&grant).await.unwrap().is_empty());
}
