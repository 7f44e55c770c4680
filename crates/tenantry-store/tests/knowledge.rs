//! The store's contract for knowledge bases: a pooled base keeps each tenant's documents to
//! that tenant (full-text search, vectors, chunk reads, even by guessed chunk ids), re-ingesting
//! replaces a document's chunks, deletion and user erasure remove chunks and vectors, the
//! generation moves with every write, and deleting a tenant or a base leaves no rows.
//! Run on both backends (`common::on_both_backends!`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{alpha_and_bravo, delete_tenant, on_both_backends, scope};
use serde_json::json;
use tenantry_core::{OperatorGrant, TenantId, UserId};
use tenantry_store::{DocumentRecord, KnowledgeBaseRecord, NewChunk, Store};

on_both_backends!(
    pooled_base_keeps_tenants_apart,
    reingest_replaces_and_delete_removes,
    erasure_of_a_user_and_deletion_of_tenant_and_base,
);

fn doc(base: &str, id: &str, owner: Option<&str>, chunks: i64) -> DocumentRecord {
    DocumentRecord {
        base_id: base.into(),
        id: id.into(),
        title: format!("title of {id}"),
        content_type: "markdown".into(),
        metadata: json!({"team": "billing"}).as_object().unwrap().clone(),
        owner_user: owner.map(|u| UserId::new(u).unwrap()),
        chunk_count: chunks,
        bytes: 10,
        created_at: 1,
        updated_at: 1,
    }
}

fn chunk(seq: i64, text: &str, v: Option<[f32; 3]>) -> NewChunk {
    NewChunk {
        seq,
        heading_path: vec!["Guide".into()],
        text: text.into(),
        search_text: format!("Guide\n{text}"),
        embedding: v.map(|v| v.to_vec()),
        embed_model: v.map(|_| "mini".into()),
    }
}

fn terms(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| (*s).to_owned()).collect()
}

async fn pooled(store: &Store) {
    alpha_and_bravo(store).await;
    store
        .create_knowledge_base(&KnowledgeBaseRecord {
            id: "KBPOOL0001".into(),
            name: "shared".into(),
            description: String::new(),
            owner: None,
            created_at: 1,
        })
        .await
        .unwrap();
}

async fn pooled_base_keeps_tenants_apart(store: &Store) {
    pooled(store).await;
    let (a, b) = (scope("alpha"), scope("bravo"));
    let g = store
        .put_document(
            &a,
            &doc("KBPOOL0001", "refunds", None, 2),
            &[
                chunk(
                    0,
                    "Refunds are paid within thirty days",
                    Some([1.0, 0.0, 0.0]),
                ),
                chunk(1, "Invoices list every refund", Some([0.0, 1.0, 0.0])),
            ],
        )
        .await
        .unwrap();
    assert_eq!(g, 1);
    store
        .put_document(
            &b,
            &doc("KBPOOL0001", "onboarding", None, 1),
            &[chunk(0, "Welcome aboard, new refund policy", None)],
        )
        .await
        .unwrap();
    let hits = store
        .search_knowledge_text(&a, "KBPOOL0001", &terms(&["refunds", "invoices"]), 10)
        .await
        .unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.0.as_str()).collect();
    assert_eq!(ids.len(), 2, "{hits:?}");
    assert!(ids.contains(&"refunds:0") && ids.contains(&"refunds:1"));
    assert!(hits.iter().all(|h| h.1 > 0.0));
    // Bravo's search finds its own document only, never alpha's.
    let hits = store
        .search_knowledge_text(&b, "KBPOOL0001", &terms(&["refund", "refunds"]), 10)
        .await
        .unwrap();
    assert_eq!(
        hits.iter().map(|h| h.0.as_str()).collect::<Vec<_>>(),
        ["onboarding:0"]
    );
    // Guessing alpha's chunk ids or document id from bravo's scope finds nothing.
    let guessed = store
        .get_knowledge_chunks(&b, "KBPOOL0001", &terms(&["refunds:0", "refunds:1"]))
        .await
        .unwrap();
    assert!(guessed.is_empty());
    assert!(
        store
            .get_document(&b, "KBPOOL0001", "refunds")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .delete_document(&b, "KBPOOL0001", "refunds")
            .await
            .unwrap()
            .is_none()
    );
    let (gen_b, vectors_b) = store.knowledge_vectors(&b, "KBPOOL0001").await.unwrap();
    assert_eq!((gen_b, vectors_b.len()), (1, 0));
    let (gen_a, vectors_a) = store.knowledge_vectors(&a, "KBPOOL0001").await.unwrap();
    assert_eq!(gen_a, 1);
    assert_eq!(vectors_a.len(), 2);
    let own = store
        .get_knowledge_chunks(&a, "KBPOOL0001", &terms(&["refunds:1"]))
        .await
        .unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].text, "Invoices list every refund");
    assert_eq!(own[0].heading_path, ["Guide"]);
    assert_eq!(own[0].metadata["team"], "billing");
    // Operator-ish terms are refused before they reach a query parser.
    let none = store
        .search_knowledge_text(&a, "KBPOOL0001", &terms(&["fts_scope:x", "\"a\""]), 10)
        .await
        .unwrap();
    assert!(none.is_empty());
    let bases = store.list_knowledge_bases(Some(&b)).await.unwrap();
    assert_eq!(bases.len(), 1);
}

async fn reingest_replaces_and_delete_removes(store: &Store) {
    pooled(store).await;
    let a = scope("alpha");
    let base = "KBPOOL0001";
    store
        .put_document(
            &a,
            &doc(base, "d", None, 2),
            &[
                chunk(0, "alpha beta", Some([1.0, 0.0, 0.0])),
                chunk(1, "gamma delta", Some([0.0, 1.0, 0.0])),
            ],
        )
        .await
        .unwrap();
    let g = store
        .put_document(
            &a,
            &doc(base, "d", None, 1),
            &[chunk(0, "epsilon", Some([0.0, 0.0, 1.0]))],
        )
        .await
        .unwrap();
    assert_eq!(g, 2);
    assert_eq!(store.knowledge_generation(&a, base).await.unwrap(), 2);
    assert!(
        store
            .search_knowledge_text(&a, base, &terms(&["gamma"]), 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .search_knowledge_text(&a, base, &terms(&["epsilon"]), 5)
            .await
            .unwrap()
            .len(),
        1
    );
    let (_, v) = store.knowledge_vectors(&a, base).await.unwrap();
    assert_eq!(v, vec![("d:0".to_owned(), vec![0.0, 0.0, 1.0])]);
    assert_eq!(
        store
            .list_documents(&a, base, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.delete_document(&a, base, "d").await.unwrap(), Some(3));
    assert_eq!(store.count_knowledge_chunks(&a).await.unwrap(), 0);
    assert!(
        store
            .search_knowledge_text(&a, base, &terms(&["epsilon"]), 5)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn erasure_of_a_user_and_deletion_of_tenant_and_base(store: &Store) {
    pooled(store).await;
    let (a, b) = (scope("alpha"), scope("bravo"));
    let base = "KBPOOL0001";
    store
        .create_knowledge_base(&KnowledgeBaseRecord {
            id: "KBSILO0001".into(),
            name: "alpha's".into(),
            description: String::new(),
            owner: Some(TenantId::new("alpha").unwrap()),
            created_at: 1,
        })
        .await
        .unwrap();
    store
        .put_document(
            &a,
            &doc(base, "mine", Some("alice"), 1),
            &[chunk(0, "private notes", Some([1.0, 0.0, 0.0]))],
        )
        .await
        .unwrap();
    store
        .put_document(
            &a,
            &doc("KBSILO0001", "also", Some("alice"), 1),
            &[chunk(0, "more notes", None)],
        )
        .await
        .unwrap();
    store
        .put_document(
            &a,
            &doc(base, "shared", None, 1),
            &[chunk(0, "team notes", None)],
        )
        .await
        .unwrap();
    store
        .put_document(
            &b,
            &doc(base, "mine", Some("alice"), 1),
            &[chunk(0, "bravo alice", None)],
        )
        .await
        .unwrap();
    let (bases, n) = store
        .erase_user_knowledge(&a, &UserId::new("alice").unwrap())
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(bases.len(), 2);
    assert_eq!(store.count_knowledge_chunks(&a).await.unwrap(), 1);
    // Bravo's user of the same name is another user.
    assert_eq!(store.count_knowledge_chunks(&b).await.unwrap(), 1);
    // Deleting alpha removes its chunks, documents and its siloed base.
    let removed = delete_tenant(store, "alpha").await;
    assert_eq!(removed.rows["knowledge_chunks"], 1);
    assert!(
        store
            .get_knowledge_base("KBSILO0001")
            .await
            .unwrap()
            .is_none()
    );
    // Deleting the pooled base removes bravo's documents in it.
    assert!(
        store
            .delete_knowledge_base(&OperatorGrant::for_tests(), base)
            .await
            .unwrap()
    );
    assert_eq!(store.count_knowledge_chunks(&b).await.unwrap(), 0);
    assert!(
        store
            .list_documents(&b, base, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .delete_knowledge_base(&OperatorGrant::for_tests(), base)
            .await
            .unwrap()
    );
}
