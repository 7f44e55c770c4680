//! Knowledge bases from the outside (HTTP against a real server): silo and pool isolation
//! through `/v1/knowledge` and Bedrock's Retrieve, crafted filters and guessed ids included, on
//! SQLite and (when `TENANTRY_TEST_DATABASE_URL` is set) PostgreSQL; re-ingestion, deletion,
//! full-text-only answers without an embedder, the Retrieve wire shape and its AWS errors,
//! tenant deletion, and semantic retrieval with the real local embedder (MiniLM, when
//! `TENANTRY_LOCAL_EMBEDDER_MODEL` is set).

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use tenantry_testkit::{TestServer, TestServerBuilder};

async fn kb_tier(s: &TestServer) {
    s.admin(
        "PUT",
        "/v1/admin/tiers/kbtier",
        Some(
            json!({"limits": {"requests_per_second": 100000, "burst": 100000},
                    "allowed_models": ["*"]}),
        ),
    )
    .await;
    s.admin(
        "PUT",
        "/v1/admin/models/tiers/kbtier",
        Some(json!({"default": "mock-small"})),
    )
    .await;
}

fn with_mock_embedder(b: TestServerBuilder) -> TestServerBuilder {
    b.toml("[knowledge]\nembedding_model = \"mock-small\"\n")
}

async fn setup(b: TestServerBuilder) -> TestServer {
    let s = b.start().await;
    kb_tier(&s).await;
    s.create_tenant("acme", "kbtier").await;
    s.create_tenant("globex", "kbtier").await;
    s
}

const GUIDE: &str = "# Billing guide\n\nAcme pays invoices by wire transfer.\n\n## Refunds\n\nRefunds for the acme-secret plan are paid within thirty days.\n";
const GLOBEX: &str = "# Globex handbook\n\nGlobex invoices are paid by card.\n";

async fn put_doc(s: &TestServer, token: &str, base: &str, doc: &str, body: Value) -> Value {
    let r = s
        .send_json(
            "PUT",
            &format!("/v1/knowledge/bases/{base}/documents/{doc}"),
            token,
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

async fn retrieve(
    s: &TestServer,
    token: &str,
    base: &str,
    body: Value,
) -> tenantry_testkit::Response {
    s.send_json(
        "POST",
        &format!("/v1/knowledge/bases/{base}/retrieve"),
        token,
        body,
    )
    .await
}

async fn bedrock(
    s: &TestServer,
    token: &str,
    base: &str,
    body: Value,
) -> tenantry_testkit::Response {
    s.send_json(
        "POST",
        &format!("/knowledgebases/{base}/retrieve"),
        token,
        body,
    )
    .await
}

fn texts(r: &Value) -> Vec<String> {
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["text"].as_str().unwrap().to_owned())
        .collect()
}

/// The whole isolation scenario on one server.
async fn isolation(s: &TestServer) {
    let acme = s.token("acme", "alice", &["tenant-admin"]);
    let globex = s.token("globex", "gus", &["tenant-admin"]);
    let pool = s
        .admin(
            "POST",
            "/v1/admin/knowledge/bases",
            Some(json!({"name": "shared help"})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .send_json(
            "POST",
            "/v1/knowledge/bases",
            &acme,
            json!({"name": "acme private"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["isolation"], "silo");
    let silo = r.body["id"].as_str().unwrap().to_owned();

    let meta = json!({"team": "billing", "tenant_id": "acme"});
    let d = put_doc(
        s,
        &acme,
        &pool,
        "guide",
        json!({"content": GUIDE, "metadata": meta}),
    )
    .await;
    assert_eq!(d["chunk_count"], 2);
    assert_eq!(d["title"], "Billing guide");
    put_doc(s, &acme, &silo, "secret", json!({"content": GUIDE})).await;
    put_doc(
        s,
        &globex,
        &pool,
        "handbook",
        json!({"content": GLOBEX, "metadata": {"team": "billing"}}),
    )
    .await;

    // Acme finds its chunks, with heading paths.
    let r = retrieve(
        s,
        &acme,
        &pool,
        json!({"query": "refunds acme-secret plan", "top_k": 5}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["mode"], "hybrid");
    let first = &r.body["results"][0];
    assert_eq!(first["heading_path"], json!(["Billing guide", "Refunds"]));
    assert!(texts(&r.body).iter().all(|t| !t.contains("Globex")));

    // Globex, in the same pooled base, never sees acme's chunks: plain, with filters that name
    // acme, in every mode.
    for body in [
        json!({"query": "refunds acme-secret plan invoices wire transfer"}),
        json!({"query": "acme", "filter": {"equals": {"key": "tenant_id", "value": "acme"}}}),
        json!({"query": "acme invoices", "filter": {"orAll": [
            {"equals": {"key": "team", "value": "billing"}},
            {"notEquals": {"key": "team", "value": "x"}}]}}),
        json!({"query": "acme refunds", "mode": "vector", "top_k": 100}),
        json!({"query": "acme refunds", "mode": "full_text"}),
    ] {
        let r = retrieve(s, &globex, &pool, body.clone()).await;
        assert_eq!(r.status, 200, "{}", r.text);
        for t in texts(&r.body) {
            assert!(
                !t.contains("cme") && !t.contains("Acme"),
                "{body}: leaked {t}"
            );
        }
    }
    let r = bedrock(
        s,
        &globex,
        &pool,
        json!({
        "retrievalQuery": {"text": "acme-secret refunds"},
        "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": 100,
            "filter": {"startsWith": {"key": "tenant_id", "value": "ac"}}}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["retrievalResults"], json!([]));
    let r = bedrock(
        s,
        &globex,
        &pool,
        json!({"retrievalQuery": {"text": "acme refunds invoices"}}),
    )
    .await;
    for x in r.body["retrievalResults"].as_array().unwrap() {
        assert!(
            !x["content"]["text"].as_str().unwrap().contains("cme"),
            "{x}"
        );
    }

    // Acme's silo base and acme's document in the pool do not exist for globex: 404 exactly
    // like a base that was never created.
    let missing = s.get("/v1/knowledge/bases/NOSUCHBASE", &globex).await;
    let foreign = s.get(&format!("/v1/knowledge/bases/{silo}"), &globex).await;
    assert_eq!((missing.status, foreign.status), (404, 404));
    assert_eq!(
        missing.body["error"]["message"],
        foreign.body["error"]["message"]
    );
    let r = retrieve(s, &globex, &silo, json!({"query": "refunds"})).await;
    assert_eq!(r.status, 404);
    let r = bedrock(
        s,
        &globex,
        &silo,
        json!({"retrievalQuery": {"text": "refunds"}}),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("ResourceNotFoundException")
    );
    assert_eq!(
        s.get(
            &format!("/v1/knowledge/bases/{pool}/documents/guide"),
            &globex
        )
        .await
        .status,
        404
    );
    assert_eq!(
        s.delete(
            &format!("/v1/knowledge/bases/{pool}/documents/guide"),
            &globex
        )
        .await
        .status,
        404
    );
    let r = s
        .send_json(
            "PUT",
            &format!("/v1/knowledge/bases/{silo}/documents/x"),
            &globex,
            json!({"content": "x"}),
        )
        .await;
    assert_eq!(r.status, 404);
    let listed = s.get("/v1/knowledge/bases", &globex).await;
    let ids: Vec<&str> = listed.body["knowledge_bases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [pool.as_str()]);
    let docs = s
        .get(&format!("/v1/knowledge/bases/{pool}/documents"), &globex)
        .await;
    assert_eq!(docs.body["documents"].as_array().unwrap().len(), 1);
    // Acme still has its document; the globex attempts changed nothing.
    assert_eq!(
        s.get(
            &format!("/v1/knowledge/bases/{pool}/documents/guide"),
            &acme
        )
        .await
        .status,
        200
    );
    // A pooled base is not the tenant's to delete.
    assert_eq!(
        s.delete(&format!("/v1/knowledge/bases/{pool}"), &acme)
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn tenants_never_read_each_others_chunks_on_sqlite() {
    let s = setup(with_mock_embedder(TestServer::builder())).await;
    isolation(&s).await;
}

#[tokio::test]
async fn tenants_never_read_each_others_chunks_on_postgres() {
    let Some(url) = tenantry_testkit::postgres_url_or_skip("knowledge isolation on PostgreSQL")
    else {
        return;
    };
    let (db_url, _guard) = tenantry_store::testing::fresh_postgres_unprivileged(&url)
        .await
        .unwrap();
    let s = setup(with_mock_embedder(
        TestServer::builder().database_url(db_url),
    ))
    .await;
    isolation(&s).await;
}

#[tokio::test]
async fn reingest_replaces_delete_removes_and_tenant_deletion_clears() {
    let s = setup(with_mock_embedder(TestServer::builder())).await;
    let acme = s.token("acme", "alice", &[]);
    let pool = s
        .admin(
            "POST",
            "/v1/admin/knowledge/bases",
            Some(json!({"name": "p"})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    put_doc(
        &s,
        &acme,
        &pool,
        "d",
        json!({"content": "<h1>Old</h1><p>zebra stripes</p>", "content_type": "html"}),
    )
    .await;
    put_doc(
        &s,
        &acme,
        &pool,
        "d",
        json!({"content": "giraffe necks", "content_type": "text"}),
    )
    .await;
    let r = retrieve(
        &s,
        &acme,
        &pool,
        json!({"query": "zebra", "mode": "full_text"}),
    )
    .await;
    assert_eq!(r.body["results"], json!([]));
    let r = retrieve(&s, &acme, &pool, json!({"query": "zebra stripes"})).await;
    assert!(texts(&r.body).iter().all(|t| !t.contains("zebra")));
    let r = retrieve(&s, &acme, &pool, json!({"query": "giraffe"})).await;
    assert_eq!(texts(&r.body), ["giraffe necks"]);
    assert_eq!(
        s.delete(&format!("/v1/knowledge/bases/{pool}/documents/d"), &acme)
            .await
            .status,
        204
    );
    let r = retrieve(
        &s,
        &acme,
        &pool,
        json!({"query": "giraffe", "mode": "vector"}),
    )
    .await;
    assert_eq!(r.body["results"], json!([]));
    // Bad input is the caller's mistake, never a 500.
    for body in [
        json!({"query": "x", "top_k": 0}),
        json!({"query": "x", "filter": {"bogus": 1}}),
        json!({"query": "x", "mode": "telepathy"}),
    ] {
        let r = retrieve(&s, &acme, &pool, body).await;
        assert!(r.status == 400, "{}", r.text);
    }
    let r = s
        .send_json(
            "PUT",
            &format!("/v1/knowledge/bases/{pool}/documents/..%2Fx"),
            &acme,
            json!({"content": "x"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    put_doc(&s, &acme, &pool, "keep", json!({"content": "llama wool"})).await;
    let removed = s.admin("DELETE", "/v1/admin/tenants/acme", None).await;
    assert_eq!(removed["rows"]["knowledge_chunks"], 1, "{removed}");
    s.create_tenant("acme", "kbtier").await;
    let acme = s.token("acme", "alice", &[]);
    let r = retrieve(&s, &acme, &pool, json!({"query": "llama wool"})).await;
    assert_eq!(r.body["results"], json!([]), "{}", r.text);
}

#[tokio::test]
async fn a_users_erasure_takes_the_documents_they_own() {
    let s = setup(with_mock_embedder(TestServer::builder())).await;
    let alice = s.token("acme", "alice", &[]);
    let bob = s.token("acme", "bob", &[]);
    let admin = s.token("acme", "carol", &["tenant-admin"]);
    let pool = s
        .admin(
            "POST",
            "/v1/admin/knowledge/bases",
            Some(json!({"name": "p"})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    put_doc(
        &s,
        &alice,
        &pool,
        "mine",
        json!({"content": "alpaca fleece notes", "personal": true}),
    )
    .await;
    put_doc(
        &s,
        &bob,
        &pool,
        "bobs",
        json!({"content": "alpaca shearing diary", "personal": true}),
    )
    .await;
    put_doc(
        &s,
        &alice,
        &pool,
        "shared",
        json!({"content": "alpaca care handbook"}),
    )
    .await;

    // One call erases alice everywhere: memory and the documents she owns, nobody else's.
    let r = s.delete("/v1/memory/users/alice", &admin).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body: Value = serde_json::from_str(&r.text).unwrap();
    assert_eq!(body["knowledge_documents_deleted"], 1, "{body}");
    let r = retrieve(
        &s,
        &bob,
        &pool,
        json!({"query": "alpaca", "mode": "full_text"}),
    )
    .await;
    let mut found = texts(&r.body);
    found.sort();
    assert!(found.iter().all(|t| !t.contains("fleece")), "{found:?}");
    assert!(found.iter().any(|t| t.contains("shearing")), "{found:?}");
    assert!(found.iter().any(|t| t.contains("handbook")), "{found:?}");
}

#[tokio::test]
async fn without_an_embedder_retrieval_is_full_text_and_says_so() {
    let s = setup(TestServer::builder()).await;
    let acme = s.token("acme", "alice", &[]);
    let pool = s
        .admin(
            "POST",
            "/v1/admin/knowledge/bases",
            Some(json!({"name": "p"})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = put_doc(&s, &acme, &pool, "d", json!({"content": GUIDE})).await;
    assert_eq!(d["embedded"], false);
    let r = retrieve(&s, &acme, &pool, json!({"query": "refunds"})).await;
    assert_eq!(r.body["mode"], "full_text");
    assert!(r.body["note"].as_str().unwrap().contains("no embedder"));
    assert_eq!(
        r.body["results"][0]["heading_path"],
        json!(["Billing guide", "Refunds"])
    );
    let r = bedrock(
        &s,
        &acme,
        &pool,
        json!({"retrievalQuery": {"text": "refunds"}}),
    )
    .await;
    let first = &r.body["retrievalResults"][0];
    assert_eq!(first["metadata"]["x-tenantry-search-mode"], "full_text");
}

#[tokio::test]
async fn bedrock_retrieve_has_the_service_model_shapes() {
    let s = setup(with_mock_embedder(TestServer::builder())).await;
    let acme = s.token("acme", "alice", &[]);
    let pool = s
        .admin(
            "POST",
            "/v1/admin/knowledge/bases",
            Some(json!({"name": "p"})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(pool.len() == 10 && pool.bytes().all(|b| b.is_ascii_alphanumeric()));
    put_doc(
        &s,
        &acme,
        &pool,
        "guide",
        json!({"content": GUIDE, "metadata": {"year": 2025}}),
    )
    .await;
    let r = bedrock(
        &s,
        &acme,
        &pool,
        json!({
        "retrievalQuery": {"text": "refunds plan"},
        "retrievalConfiguration": {"vectorSearchConfiguration": {
            "numberOfResults": 1, "overrideSearchType": "HYBRID",
            "filter": {"greaterThanOrEquals": {"key": "year", "value": 2024}}}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let results = r.body["retrievalResults"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    let x = &results[0];
    assert_eq!(x["content"]["type"], "TEXT");
    assert!(x["content"]["text"].as_str().unwrap().contains("Refunds"));
    assert_eq!(
        x["location"],
        json!({"type": "CUSTOM", "customDocumentLocation": {"id": "guide"}})
    );
    assert!(x["score"].as_f64().unwrap() > 0.0);
    assert_eq!(x["metadata"]["year"], 2025);
    assert_eq!(x["metadata"]["x-amz-bedrock-kb-chunk-id"], "guide:1");
    // Errors are AWS-shaped.
    let r = bedrock(&s, &acme, &pool, json!({"retrievalQuery": {}})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-amzn-errortype"), Some("ValidationException"));
    assert!(r.body["message"].is_string());
    let r = bedrock(
        &s,
        &acme,
        &pool,
        json!({"retrievalQuery": {"text": "x"},
        "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": 101}}}),
    )
    .await;
    assert_eq!(r.header("x-amzn-errortype"), Some("ValidationException"));
    let r = s
        .request(
            "POST",
            &format!("/knowledgebases/{pool}/retrieve"),
            Some("not-a-credential"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.header("x-amzn-errortype"), Some("AccessDeniedException"));
    let r = bedrock(
        &s,
        &acme,
        "bad-id!",
        json!({"retrievalQuery": {"text": "x"}}),
    )
    .await;
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("ResourceNotFoundException")
    );
}

/// The real local embedder behind the gateway: a paraphrase with no word in common with the
/// document finds it by vector similarity.
#[tokio::test]
async fn the_local_embedder_finds_paraphrases() {
    let Ok(dir) = std::env::var("TENANTRY_LOCAL_EMBEDDER_MODEL") else {
        assert!(
            std::env::var("TENANTRY_REQUIRE_LOCAL_EMBEDDER").as_deref() != Ok("1"),
            "TENANTRY_REQUIRE_LOCAL_EMBEDDER=1 but TENANTRY_LOCAL_EMBEDDER_MODEL is unset"
        );
        eprintln!("SKIP: TENANTRY_LOCAL_EMBEDDER_MODEL unset; local embedder test not run");
        return;
    };
    let toml = format!(
        "[models.providers.minilm]\nkind = \"local\"\npath = {dir:?}\n\n[models.catalog.minilm]\nprovider = \"minilm\"\n\n[knowledge]\nembedding_model = \"minilm\"\n"
    );
    let s = setup(TestServer::builder().toml(&toml)).await;
    let acme = s.token("acme", "alice", &[]);
    let pool = s
        .admin(
            "POST",
            "/v1/admin/knowledge/bases",
            Some(json!({"name": "p"})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (id, text) in [
        (
            "cats",
            "Felines sleep for most of the day and hunt at dusk.",
        ),
        (
            "tax",
            "Quarterly VAT returns must be filed before the deadline.",
        ),
        (
            "rust",
            "The borrow checker rejects aliasing mutable references.",
        ),
    ] {
        let d = put_doc(
            &s,
            &acme,
            &pool,
            id,
            json!({"content": text, "content_type": "text"}),
        )
        .await;
        assert_eq!(d["embedded"], true);
    }
    let r = retrieve(
        &s,
        &acme,
        &pool,
        json!({"query": "when do kitties nap", "mode": "vector", "top_k": 1}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["results"][0]["document_id"], "cats", "{}", r.text);
    let r = retrieve(
        &s,
        &acme,
        &pool,
        json!({"query": "paying sales tax on time", "top_k": 1}),
    )
    .await;
    assert_eq!(r.body["results"][0]["document_id"], "tax", "{}", r.text);
}
