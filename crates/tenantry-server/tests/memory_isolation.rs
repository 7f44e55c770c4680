//! Tenancy of memory through our REST API: tenant B never reads tenant A's memories, events or
//! records, in A's own memory or in a memory the operator shares with both, whatever memory
//! id, actor, namespace or filter B crafts; hostile namespaces are refused. On SQLite and
//! PostgreSQL.

#![allow(clippy::unwrap_used)]

mod memory_support;

use memory_support::*;
use serde_json::json;
use tenantry_testkit::TestServer;

async fn tenant_b_never_reads_a(s: &TestServer) {
    let a = admin_key(s, "acme").await;
    let b = admin_key(s, "globex").await;
    let (a_mem, a_strategy) = memory(s, &a, "support").await;
    let a_ns = format!("/strategies/{a_strategy}/actors/alice");
    event(
        s,
        &a,
        &a_mem,
        turn("alice", "s1", "USER", "acme secret plan"),
    )
    .await;
    records(
        s,
        &a,
        &a_mem,
        &[(a_ns.as_str(), "alice likes acme secret tea")],
    )
    .await;
    let (code, texts) = retrieve(s, &a, &a_mem, json!({"searchQuery": "secret tea"})).await;
    assert_eq!((code, texts.len()), (200, 1));
    // Query syntax of either engine is only words here: never an error, never more.
    for q in [
        "\") OR 1=1 --",
        "secret* NEAR(tea x)",
        "a & !b | tea:*",
        "\"",
        "*",
        "the",
    ] {
        let (code, texts) = retrieve(s, &a, &a_mem, json!({"searchQuery": q})).await;
        assert_eq!(code, 200, "{q}");
        assert!(texts.len() <= 1, "{q}");
    }

    // A's memory does not exist for B: every operation on it is 404, like a made-up id.
    let made_up = "support-ZZZZZZZZZZ";
    for m in [a_mem.as_str(), made_up] {
        let paths = [
            ("GET", format!("/v1/memory/memories/{m}")),
            ("DELETE", format!("/v1/memory/memories/{m}")),
            ("GET", format!("/v1/memory/memories/{m}/actors")),
            (
                "GET",
                format!("/v1/memory/memories/{m}/actors/alice/sessions"),
            ),
            (
                "GET",
                format!("/v1/memory/memories/{m}/actors/alice/sessions/s1/events"),
            ),
        ];
        for (method, path) in paths {
            let r = s.request(method, &path, Some(&b), &[], None).await;
            assert_eq!(
                (r.status, r.code()),
                (404, "not_found"),
                "{method} {path}: {}",
                r.text
            );
            assert_eq!(r.body["error"]["message"], "memory not found");
        }
        let r = s
            .send_json(
                "POST",
                &format!("/v1/memory/memories/{m}/events"),
                &b,
                turn("alice", "s1", "USER", "x"),
            )
            .await;
        assert_eq!(r.status, 404, "{}", r.text);
        let (code, texts) = retrieve(s, &b, m, json!({"searchQuery": "secret"})).await;
        assert_eq!((code, texts.len()), (404, 0));
        let r = s
            .send_json(
                "POST",
                &format!("/v1/memory/memories/{m}/records/list"),
                &b,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 404, "{}", r.text);
    }
    let listed = s.get("/v1/memory/memories", &b).await;
    assert_eq!(listed.body["memories"], json!([]), "{}", listed.text);

    // B's own memory, searched with A's namespaces, another tenant's prefix, or everything.
    let (b_mem, _) = memory(s, &b, "support").await;
    for ns in [a_ns.as_str(), "/", "/tenants/acme", "/strategies", "*"] {
        let (code, texts) = retrieve(
            s,
            &b,
            &b_mem,
            json!({"searchQuery": "secret tea", "namespace": ns}),
        )
        .await;
        assert_eq!((code, texts), (200, Vec::<String>::new()), "{ns}");
    }
    // Hostile namespaces are refused, not interpreted.
    for ns in [
        "/a/../../acme",
        "/strategies/%2Factors",
        "/x\\y",
        "/a//b",
        "/a/./b",
    ] {
        let (code, _) = retrieve(
            s,
            &b,
            &b_mem,
            json!({"searchQuery": "secret", "namespace": ns}),
        )
        .await;
        assert_eq!(code, 400, "{ns}");
    }

    // A memory the operator shares with every tenant: same actor and session ids in both.
    let shared = s
        .admin(
            "POST",
            "/v1/admin/memories",
            Some(json!({"name": "pool", "strategies": [{"name": "facts", "type": "SEMANTIC"}]})),
        )
        .await;
    let pool = shared["memory"]["id"].as_str().unwrap().to_string();
    let strategy = shared["memory"]["strategies"][0]["strategyId"]
        .as_str()
        .unwrap()
        .to_string();
    let ns = format!("/strategies/{strategy}/actors/alice");
    event(
        s,
        &a,
        &pool,
        turn("alice", "s1", "USER", "acme pooled words"),
    )
    .await;
    event(
        s,
        &b,
        &pool,
        turn("alice", "s1", "USER", "globex pooled words"),
    )
    .await;
    records(s, &a, &pool, &[(ns.as_str(), "acme pooled fact")]).await;
    records(s, &b, &pool, &[(ns.as_str(), "globex pooled fact")]).await;
    for (key, own) in [(&a, "acme"), (&b, "globex")] {
        let (code, texts) = event_texts(s, key, &pool, "alice", "s1").await;
        assert_eq!((code, texts), (200, vec![format!("{own} pooled words")]));
        let (_, texts) = retrieve(
            s,
            key,
            &pool,
            json!({"searchQuery": "pooled fact acme globex"}),
        )
        .await;
        assert_eq!(texts, vec![format!("{own} pooled fact")]);
        let r = s
            .send_json(
                "POST",
                &format!("/v1/memory/memories/{pool}/records/list"),
                key,
                json!({"namespace": "/"}),
            )
            .await;
        assert_eq!(
            r.body["memoryRecordSummaries"].as_array().unwrap().len(),
            1,
            "{}",
            r.text
        );
        // Metadata filters cannot reach further either.
        let (_, texts) = retrieve(
            s,
            key,
            &pool,
            json!({"searchQuery": "pooled", "metadataFilters": [
                {"left": {"metadataKey": "tenant"}, "operator": "NOT_EXISTS"}]}),
        )
        .await;
        assert_eq!(texts.len(), 1);
    }
    // A's record ids are absent for B, in the shared memory too.
    let a_ids = records(s, &a, &pool, &[(ns.as_str(), "acme second fact")]).await;
    let r = s
        .get(
            &format!("/v1/memory/memories/{pool}/records/{}", a_ids[0]),
            &b,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = s
        .delete(
            &format!("/v1/memory/memories/{pool}/records/{}", a_ids[0]),
            &b,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = s
        .send_json(
            "POST",
            &format!("/v1/memory/memories/{pool}/records/batch-update"),
            &b,
            json!({"records": [{"memoryRecordId": a_ids[0], "timestamp": 1_760_000_001,
                                "content": {"text": "overwritten"}}]}),
        )
        .await;
    assert_eq!(r.body["failedRecords"][0]["errorCode"], 404, "{}", r.text);
    let r = s
        .get(
            &format!("/v1/memory/memories/{pool}/records/{}", a_ids[0]),
            &a,
        )
        .await;
    assert_eq!(
        r.body["memoryRecord"]["content"]["text"],
        "acme second fact"
    );
    // A tenant cannot change or delete the shared memory.
    let r = s.delete(&format!("/v1/memory/memories/{pool}"), &b).await;
    assert_eq!(r.status, 403, "{}", r.text);
}

#[tokio::test]
async fn tenant_b_never_reads_a_sqlite() {
    let s = TestServer::start().await;
    tenant_b_never_reads_a(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn tenant_b_never_reads_a_postgres() {
    let Some(url) = tenantry_testkit::postgres_url_or_skip("tenant_b_never_reads_a_postgres")
    else {
        return;
    };
    let (db_url, _guard) = tenantry_store::testing::fresh_postgres(&url).await.unwrap();
    let s = TestServer::builder().database_url(db_url).start().await;
    tenant_b_never_reads_a(&s).await;
    s.stop().await;
}
