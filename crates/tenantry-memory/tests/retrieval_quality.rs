//! Retrieval quality on the labelled corpus in `corpus/` (written for this project: 220
//! passages, 36 questions with their relevant passages): recall@5 of full-text search (SQLite
//! FTS5 in the embedded store), vector search (the local MiniLM embedder and the in-process
//! index) and hybrid search (both fused by reciprocal rank, k = 60), the same building blocks
//! and candidate pool (40) the server's retrieval uses. Each is reported and held above a floor
//! set from a measured run with margin; hybrid must beat full-text.
//!
//! Vector and hybrid need the model (`TENANTRY_LOCAL_EMBEDDER_MODEL`); without it they are
//! skipped with a visible line, or fail under `TENANTRY_REQUIRE_LOCAL_EMBEDDER=1`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use tenantry_core::{
    OperatorGrant, Tenant, TenantId, TenantIsolation, TenantScope, TenantStatus, TenantUid,
    TierName,
};
use tenantry_memory::search::{
    PartitionKey, RRF_K, VectorIndex, query_terms, reciprocal_rank_fusion,
};
use tenantry_models::{LocalConfig, LocalProvider};
use tenantry_store::{DocumentRecord, KnowledgeBaseRecord, NewChunk, Store};

/// Floors, with margin below the run recorded in `bench/results/2026-12-03-knowledge.md`
/// (full-text 0.806, vector 0.958, hybrid 0.889).
const FLOOR_FULL_TEXT: f64 = 0.70;
const FLOOR_VECTOR: f64 = 0.85;
const FLOOR_HYBRID: f64 = 0.80;
const POOL: usize = 40;
const BASE: &str = "KBCORPUS01";

struct Passage {
    id: String,
    heading: Vec<String>,
    text: String,
}

struct Question {
    text: String,
    relevant: Vec<String>,
}

fn corpus() -> (Vec<Passage>, Vec<Question>) {
    let passages = include_str!("corpus/chunks.txt")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut p = l.splitn(3, '|');
            let (id, heading, text) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
            Passage {
                id: id.to_owned(),
                heading: heading.split(" > ").map(str::to_owned).collect(),
                text: text.to_owned(),
            }
        })
        .collect();
    let questions = include_str!("corpus/queries.txt")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut p = l.splitn(3, '|');
            let (_, text, rel) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
            Question {
                text: text.to_owned(),
                relevant: rel.split(',').map(str::to_owned).collect(),
            }
        })
        .collect();
    (passages, questions)
}

fn model() -> Option<LocalProvider> {
    match std::env::var("TENANTRY_LOCAL_EMBEDDER_MODEL") {
        Ok(dir) if !dir.trim().is_empty() => {
            let c = LocalConfig {
                path: Some(dir.into()),
                ..LocalConfig::default()
            };
            Some(LocalProvider::new("providers.minilm", &c, &|_| None).unwrap())
        }
        _ => {
            assert!(
                std::env::var("TENANTRY_REQUIRE_LOCAL_EMBEDDER").as_deref() != Ok("1"),
                "TENANTRY_REQUIRE_LOCAL_EMBEDDER=1 but TENANTRY_LOCAL_EMBEDDER_MODEL is unset"
            );
            eprintln!(
                "SKIP: TENANTRY_LOCAL_EMBEDDER_MODEL unset; vector and hybrid recall not measured"
            );
            None
        }
    }
}

/// The share of `relevant` among the first five of `ranked` (chunk ids `DOC:0`).
fn recall_at_5(ranked: &[String], relevant: &[String]) -> f64 {
    let top: Vec<&str> = ranked
        .iter()
        .take(5)
        .map(|id| id.split(':').next().unwrap_or(""))
        .collect();
    let found = relevant
        .iter()
        .filter(|r| top.contains(&r.as_str()))
        .count();
    found as f64 / relevant.len() as f64
}

#[tokio::test]
async fn recall_at_5_full_text_vector_and_hybrid() {
    let (passages, questions) = corpus();
    assert!(passages.len() >= 200 && questions.len() >= 30);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("k.db").display()))
        .await
        .unwrap();
    let tier = serde_json::from_value(serde_json::json!({"name": "basic"})).unwrap();
    store.put_tier(&tier).await.unwrap();
    let tenant = Tenant {
        id: TenantId::new("corpus").unwrap(),
        uid: TenantUid::generate(),
        name: "corpus".into(),
        tier: TierName::new("basic").unwrap(),
        status: TenantStatus::Active,
        isolation: TenantIsolation::default(),
        region: "eu".into(),
        features: BTreeMap::new(),
        entitlements: serde_json::Map::new(),
        created_at: 1,
        updated_at: 1,
    };
    store.create_tenant(&tenant).await.unwrap();
    store
        .create_knowledge_base(&KnowledgeBaseRecord {
            id: BASE.into(),
            name: "corpus".into(),
            description: String::new(),
            owner: None,
            created_at: 1,
        })
        .await
        .unwrap();
    let scope =
        TenantScope::for_operator(OperatorGrant::for_tests(), TenantId::new("corpus").unwrap());
    let embedder = model();
    let texts: Vec<String> = passages
        .iter()
        .map(|p| tenantry_memory::knowledge::search_text(&p.heading, &p.text))
        .collect();
    let vectors = embedder.as_ref().map(|m| {
        let started = std::time::Instant::now();
        let (v, _) = m.embed_blocking(&texts);
        eprintln!(
            "embedded {} passages in {:.1} s",
            texts.len(),
            started.elapsed().as_secs_f64()
        );
        v
    });
    for (i, p) in passages.iter().enumerate() {
        let doc = DocumentRecord {
            base_id: BASE.into(),
            id: p.id.clone(),
            title: p.heading[0].clone(),
            content_type: "text".into(),
            metadata: serde_json::Map::new(),
            owner_user: None,
            chunk_count: 1,
            bytes: p.text.len() as i64,
            created_at: 1,
            updated_at: 1,
        };
        let chunk = NewChunk {
            seq: 0,
            heading_path: p.heading.clone(),
            text: p.text.clone(),
            search_text: texts[i].clone(),
            embedding: vectors.as_ref().map(|v| v[i].clone()),
            embed_model: embedder.as_ref().map(|_| "minilm".to_owned()),
        };
        store.put_document(&scope, &doc, &[chunk]).await.unwrap();
    }
    let index = VectorIndex::new();
    let key = PartitionKey::new(scope.tenant().clone(), format!("kb:{BASE}"));
    let (generation, entries) = store.knowledge_vectors(&scope, BASE).await.unwrap();
    index.load(key.clone(), generation, entries);

    let mut sums: BTreeMap<&str, f64> = BTreeMap::new();
    for q in &questions {
        let text: Vec<String> = store
            .search_knowledge_text(&scope, BASE, &query_terms(&q.text), POOL as u32)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.0)
            .collect();
        *sums.entry("full_text").or_default() += recall_at_5(&text, &q.relevant);
        if let Some(m) = &embedder {
            let (qv, _) = m.embed_blocking(std::slice::from_ref(&q.text));
            let vector: Vec<String> = index
                .search(&key, &qv[0], POOL)
                .unwrap()
                .into_iter()
                .map(|h| h.id)
                .collect();
            *sums.entry("vector").or_default() += recall_at_5(&vector, &q.relevant);
            let fused: Vec<String> = reciprocal_rank_fusion(&[text, vector], RRF_K)
                .into_iter()
                .map(|f| f.id)
                .collect();
            *sums.entry("hybrid").or_default() += recall_at_5(&fused, &q.relevant);
        }
    }
    let n = questions.len() as f64;
    let recall: BTreeMap<&str, f64> = sums.iter().map(|(k, v)| (*k, v / n)).collect();
    println!(
        "recall@5 over {} questions, {} passages: {recall:?}",
        questions.len(),
        passages.len()
    );
    eprintln!("recall@5: {recall:?}");
    assert!(recall["full_text"] >= FLOOR_FULL_TEXT, "{recall:?}");
    if embedder.is_some() {
        assert!(recall["vector"] >= FLOOR_VECTOR, "{recall:?}");
        assert!(recall["hybrid"] >= FLOOR_HYBRID, "{recall:?}");
        assert!(recall["hybrid"] > recall["full_text"], "{recall:?}");
    }
}
