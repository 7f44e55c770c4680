//! Memory through our REST API on a real server: memory resources, events (idempotency,
//! order, paging, filters, deletion), actors and sessions, records (batch writes, retrieval
//! with scores and filters), extraction through the model gateway with consolidation of a
//! restated fact, the expiry job, and erasure of a user and of a tenant.

#![allow(clippy::unwrap_used)]

mod gateway_support;
mod memory_support;

use memory_support::*;
use serde_json::{Value, json};
use tenantry_core::{SystemGrant, TenantId, TenantScope};
use tenantry_memory::{ActorId, MemoryId};
use tenantry_models::{MockConfig, MockReply, ProviderConfig};
use tenantry_store::RecordQuery;
use tenantry_testkit::TestServer;

fn scope(tenant: &str) -> TenantScope {
    TenantScope::for_tests(TenantId::new(tenant).unwrap())
}

#[tokio::test]
async fn events_are_idempotent_ordered_paged_and_filtered() {
    let s = TestServer::start().await;
    let key = admin_key(&s, "acme").await;
    let (mem, _) = memory(&s, &key, "chat").await;

    // A plain user of the tenant uses memories but does not manage them.
    let plain = s.create_api_key("acme", &[]).await.1;
    let r = s
        .send_json("POST", "/v1/memory/memories", &plain, json!({"name": "x"}))
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.text);

    // The same client token answers the same event.
    let mut body = turn("alice", "s1", "USER", "first");
    body["clientToken"] = json!("tok-1");
    let e1 = event(&s, &plain, &mem, body.clone()).await;
    let again = event(&s, &plain, &mem, body).await;
    assert_eq!(e1["eventId"], again["eventId"]);
    assert!(
        e1["eventId"]
            .as_str()
            .unwrap()
            .starts_with("1760000000500#")
    );
    for (i, text) in ["second", "third", "fourth", "fifth"].iter().enumerate() {
        let mut b = turn("alice", "s1", "ASSISTANT", text);
        b["eventTimestamp"] = json!(1_760_000_001 + i as i64);
        b["metadata"] = json!({"kind": {"stringValue": if i % 2 == 0 { "even" } else { "odd" }}});
        event(&s, &plain, &mem, b).await;
    }
    event(&s, &plain, &mem, turn("bob", "s9", "USER", "bob's turn")).await;
    let (_, texts) = event_texts(&s, &plain, &mem, "alice", "s1").await;
    assert_eq!(texts, ["fifth", "fourth", "third", "second", "first"]);

    // Oldest first, two at a time, with the opaque token.
    let base = format!("/v1/memory/memories/{mem}/actors/alice/sessions/s1/events");
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut body = json!({"order": "OLDEST_FIRST", "maxResults": 2});
        if let Some(t) = &next {
            body["nextToken"] = json!(t);
        }
        let r = s
            .send_json("POST", &format!("{base}/list"), &plain, body)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        for e in r.body["events"].as_array().unwrap() {
            seen.push(
                e["payload"][0]["conversational"]["content"]["text"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        match r.body["nextToken"].as_str() {
            Some(t) => next = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["first", "second", "third", "fourth", "fifth"]);
    let r = s
        .send_json(
            "POST",
            &format!("{base}/list"),
            &plain,
            json!({"nextToken": "bm9wZQ"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);

    // Metadata filter, and payloads left out.
    let r = s
        .send_json(
            "POST",
            &format!("{base}/list"),
            &plain,
            json!({"includePayloads": false, "filter": {"eventMetadata": [
                {"left": {"metadataKey": "kind"}, "operator": "EQUALS_TO",
                 "right": {"metadataValue": {"stringValue": "odd"}}}]}}),
        )
        .await;
    let events = r.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{}", r.text);
    assert!(events.iter().all(|e| e["payload"] == json!([])));

    // Get and delete one event (its id holds '#', sent encoded).
    let id = e1["eventId"].as_str().unwrap().replace('#', "%23");
    let r = s.get(&format!("{base}/{id}"), &plain).await;
    assert_eq!(r.body["event"]["eventId"], e1["eventId"], "{}", r.text);
    assert_eq!(s.delete(&format!("{base}/{id}"), &plain).await.status, 200);
    assert_eq!(s.get(&format!("{base}/{id}"), &plain).await.status, 404);

    // Actors and sessions.
    let r = s
        .get(&format!("/v1/memory/memories/{mem}/actors"), &plain)
        .await;
    assert_eq!(
        r.body["actorSummaries"],
        json!([{"actorId": "alice"}, {"actorId": "bob"}])
    );
    let r = s
        .get(
            &format!("/v1/memory/memories/{mem}/actors/bob/sessions"),
            &plain,
        )
        .await;
    assert_eq!(
        r.body["sessionSummaries"][0]["sessionId"], "s9",
        "{}",
        r.text
    );

    // Malformed events are refused with the reason.
    let mut bad = turn("alice", "s1", "USER", "x");
    bad["payload"] = json!([]);
    let r = s
        .send_json(
            "POST",
            &format!("/v1/memory/memories/{mem}/events"),
            &plain,
            bad,
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"), "{}", r.text);
    let r = s
        .send_json(
            "POST",
            &format!("/v1/memory/memories/{mem}/events"),
            &plain,
            turn("../x", "s1", "USER", "x"),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn records_are_written_in_batches_and_retrieved_with_scores() {
    let s = TestServer::start().await;
    let key = admin_key(&s, "acme").await;
    let (mem, strategy) = memory(&s, &key, "facts").await;
    let alice_ns = format!("/strategies/{strategy}/actors/alice");
    let bob_ns = format!("/strategies/{strategy}/actors/bob");
    let ids = records(
        &s,
        &key,
        &mem,
        &[
            (alice_ns.as_str(), "Alice drinks green tea every morning"),
            (alice_ns.as_str(), "Alice lives in Lyon"),
            (bob_ns.as_str(), "Bob drinks black coffee"),
        ],
    )
    .await;
    // The namespace of a strategy's template names the record's actor and strategy.
    let r = s
        .get(
            &format!("/v1/memory/memories/{mem}/records/{}", ids[0]),
            &key,
        )
        .await;
    assert_eq!(r.body["memoryRecord"]["actorId"], "alice", "{}", r.text);
    assert_eq!(
        r.body["memoryRecord"]["memoryStrategyId"],
        strategy.as_str()
    );

    let r = s
        .send_json(
            "POST",
            &format!("/v1/memory/memories/{mem}/records/retrieve"),
            &key,
            json!({"searchQuery": "what does she drink? tea", "namespace": alice_ns, "topK": 5}),
        )
        .await;
    let found = r.body["memoryRecordSummaries"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{}", r.text);
    assert_eq!(
        found[0]["content"]["text"],
        "Alice drinks green tea every morning"
    );
    let score = found[0]["score"].as_f64().unwrap();
    assert!(score > 0.0 && score < 1.0, "{score}");
    let (_, texts) = retrieve(&s, &key, &mem, json!({"searchQuery": "drinks", "topK": 1})).await;
    assert_eq!(texts.len(), 1);
    let (_, texts) = retrieve(&s, &key, &mem, json!({"searchQuery": "drinks"})).await;
    assert_eq!(texts.len(), 2);

    // Metadata, updates and deletes.
    let r = s
        .send_json(
            "POST",
            &format!("/v1/memory/memories/{mem}/records/batch-update"),
            &key,
            json!({"records": [{"memoryRecordId": ids[1], "timestamp": 1_760_000_100,
                    "content": {"text": "Alice moved to Paris"},
                    "metadata": {"topic": {"stringValue": "home"}}}]}),
        )
        .await;
    assert_eq!(
        r.body["successfulRecords"][0]["status"], "SUCCEEDED",
        "{}",
        r.text
    );
    let (_, texts) = retrieve(
        &s,
        &key,
        &mem,
        json!({"searchQuery": "alice paris lyon tea", "metadataFilters": [
            {"left": {"metadataKey": "topic"}, "operator": "EQUALS_TO",
             "right": {"metadataValue": {"stringValue": "home"}}}]}),
    )
    .await;
    assert_eq!(texts, ["Alice moved to Paris"]);
    let r = s
        .send_json(
            "POST",
            &format!("/v1/memory/memories/{mem}/records/list"),
            &key,
            json!({"namespace": bob_ns}),
        )
        .await;
    assert_eq!(r.body["memoryRecordSummaries"].as_array().unwrap().len(), 1);
    let r = s
        .send_json(
            "POST",
            &format!("/v1/memory/memories/{mem}/records/batch-delete"),
            &key,
            json!({"records": [{"memoryRecordId": ids[2]}, {"memoryRecordId": ids[2]}]}),
        )
        .await;
    assert_eq!(
        r.body["successfulRecords"].as_array().unwrap().len(),
        1,
        "{}",
        r.text
    );
    assert_eq!(r.body["failedRecords"][0]["errorCode"], 404);
    let r = s
        .delete(
            &format!("/v1/memory/memories/{mem}/records/{}", ids[0]),
            &key,
        )
        .await;
    assert_eq!(r.status, 200);
    let r = s
        .get(
            &format!("/v1/memory/memories/{mem}/records/{}", ids[0]),
            &key,
        )
        .await;
    assert_eq!(r.status, 404);
    // A record needs exactly one well-formed namespace.
    let r = s
        .send_json(
            "POST",
            &format!("/v1/memory/memories/{mem}/records/batch-create"),
            &key,
            json!({"records": [{"requestIdentifier": "x", "namespaces": ["/a/../b"],
                    "content": {"text": "t"}, "timestamp": 1}]}),
        )
        .await;
    assert_eq!(r.body["failedRecords"][0]["errorCode"], 400, "{}", r.text);
    s.stop().await;
}

/// A server whose mock model answers every extraction with the same fact.
async fn extracting_server() -> TestServer {
    TestServer::builder()
        .configure(|c| {
            let mock = MockConfig {
                script: vec![MockReply {
                    content: Some(
                        "{\"records\": [{\"text\": \"The user likes green tea.\"}]}".into(),
                    ),
                    tool_calls: Vec::new(),
                }],
                ..MockConfig::default()
            };
            c.models
                .providers
                .insert("mock".into(), ProviderConfig::Mock(mock));
        })
        .start()
        .await
}

#[tokio::test]
async fn extraction_makes_records_and_consolidates_a_restated_fact() {
    let s = extracting_server().await;
    let key = admin_key(&s, "acme").await;
    let (mem, strategy) = memory(&s, &key, "prefs").await;
    let alice = s.token("acme", "alice", &[]);
    event(
        &s,
        &alice,
        &mem,
        turn("alice", "s1", "USER", "I like green tea"),
    )
    .await;
    s.server().state.memory.flush_extraction().await;

    let list = |who: String| {
        let s = &s;
        let mem = mem.clone();
        async move {
            let r = s
                .send_json(
                    "POST",
                    &format!("/v1/memory/memories/{mem}/records/list"),
                    &who,
                    json!({}),
                )
                .await;
            r.body["memoryRecordSummaries"].as_array().unwrap().clone()
        }
    };
    let first = list(key.clone()).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["content"]["text"], "The user likes green tea.");
    assert_eq!(
        first[0]["namespaces"],
        json!([format!("/strategies/{strategy}/actors/alice")])
    );
    assert_eq!(first[0]["actorId"], "alice");

    // Restated in another session: the same record is updated, not duplicated.
    event(
        &s,
        &alice,
        &mem,
        turn(
            "alice",
            "s2",
            "USER",
            "As I said, green tea is my favourite",
        ),
    )
    .await;
    s.server().state.memory.flush_extraction().await;
    let second = list(key.clone()).await;
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(second[0]["memoryRecordId"], first[0]["memoryRecordId"]);

    // Both extractions were model calls of the tenant, billed to the user who wrote the event.
    let entries = gateway_support::ledger(&s, "acme").await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(
        entries
            .iter()
            .all(|e| e.status == "ok" && e.user_id.as_ref().map(|u| u.as_str()) == Some("alice"))
    );
    s.stop().await;
}

/// A server on a fresh PostgreSQL database, or `None` (skipped) without one.
async fn postgres_server(test: &str) -> Option<(TestServer, tenantry_store::testing::DropGuard)> {
    let url = tenantry_testkit::postgres_url_or_skip(test)?;
    let (db_url, guard) = tenantry_store::testing::fresh_postgres(&url).await.unwrap();
    Some((
        TestServer::builder().database_url(db_url).start().await,
        guard,
    ))
}

#[tokio::test]
async fn the_expiry_job_deletes_events_past_their_memorys_expiry() {
    let s = TestServer::start().await;
    expiry(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn the_expiry_job_deletes_events_past_their_memorys_expiry_postgres() {
    if let Some((s, _guard)) = postgres_server("expiry_postgres").await {
        expiry(&s).await;
        s.stop().await;
    }
}

async fn expiry(s: &TestServer) {
    let key = admin_key(s, "acme").await;
    let (long, _) = memory(s, &key, "long").await;
    let r = s
        .send_json(
            "POST",
            "/v1/memory/memories",
            &key,
            json!({"name": "short", "eventExpiryDays": 7}),
        )
        .await;
    assert_eq!(r.body["memory"]["eventExpiryDays"], 7, "{}", r.text);
    let short = r.body["memory"]["id"].as_str().unwrap().to_string();
    let default = s.get(&format!("/v1/memory/memories/{long}"), &key).await;
    assert_eq!(default.body["memory"]["eventExpiryDays"], 90);
    event(s, &key, &long, turn("alice", "s1", "USER", "kept long")).await;
    event(s, &key, &short, turn("alice", "s1", "USER", "kept a week")).await;

    let store = &s.server().state.store;
    let now = tenantry_core::unix_now() * 1000;
    let day = 24 * 3600 * 1000;
    let tick = |at: i64| tenantry_server::memory::expiry::tick(store, SystemGrant::at_start(), at);
    assert_eq!(tick(now + 6 * day).await.unwrap(), 0);
    assert_eq!(tick(now + 8 * day).await.unwrap(), 1);
    assert_eq!(event_texts(s, &key, &short, "alice", "s1").await.1.len(), 0);
    assert_eq!(event_texts(s, &key, &long, "alice", "s1").await.1.len(), 1);
    assert_eq!(tick(now + 91 * day).await.unwrap(), 1);
    assert_eq!(event_texts(s, &key, &long, "alice", "s1").await.1.len(), 0);
}

async fn leftovers(s: &TestServer, tenant: &str, memories: &[&str], actor: Option<&str>) -> usize {
    let store = &s.server().state.store;
    let scope = scope(tenant);
    let actor = actor.map(|a| ActorId::new(a).unwrap());
    let mut n = 0;
    for m in memories {
        let m = MemoryId::new(*m).unwrap();
        let actors = store.list_memory_actors(&scope, &m).await.unwrap();
        n += actors
            .iter()
            .filter(|a| actor.as_ref().is_none_or(|x| x == *a))
            .count();
        let q = RecordQuery {
            memory: &m,
            prefix: "",
            strategy: None,
            actor: actor.as_ref(),
        };
        n += store.list_memory_records(&scope, &q).await.unwrap().len();
    }
    n
}

#[tokio::test]
async fn erasure_leaves_nothing_of_the_user_and_tenant_deletion_nothing_of_the_tenant() {
    let s = TestServer::start().await;
    erasure(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn erasure_leaves_nothing_postgres() {
    if let Some((s, _guard)) = postgres_server("erasure_leaves_nothing_postgres").await {
        erasure(&s).await;
        s.stop().await;
    }
}

async fn erasure(s: &TestServer) {
    let key = admin_key(s, "acme").await;
    let (own, strategy) = memory(s, &key, "own").await;
    let shared = s
        .admin("POST", "/v1/admin/memories", Some(json!({"name": "pool"})))
        .await["memory"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for m in [&own, &shared] {
        for actor in ["alice", "bob"] {
            event(s, &key, m, turn(actor, "s1", "USER", "hello")).await;
            let ns = format!("/strategies/{strategy}/actors/{actor}");
            let r = s
                .send_json(
                    "POST",
                    &format!("/v1/memory/memories/{m}/records/batch-create"),
                    &key,
                    json!({"records": [{"requestIdentifier": "a", "namespaces": [ns],
                        "content": {"text": "a fact"}, "timestamp": 1, "actorId": actor}]}),
                )
                .await;
            assert_eq!(r.body["failedRecords"], json!([]), "{}", r.text);
        }
    }
    let memories = [own.as_str(), shared.as_str()];
    assert_eq!(leftovers(s, "acme", &memories, Some("alice")).await, 4);

    let plain = s.create_api_key("acme", &[]).await.1;
    assert_eq!(s.delete("/v1/memory/users/alice", &plain).await.status, 403);
    let r = s.delete("/v1/memory/users/alice", &key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["deleted"], json!({"events": 2, "records": 2}));
    assert_eq!(leftovers(s, "acme", &memories, Some("alice")).await, 0);
    assert_eq!(leftovers(s, "acme", &memories, Some("bob")).await, 4);

    // The operator erases too.
    let r = s
        .request(
            "DELETE",
            "/v1/admin/tenants/acme/memory/users/bob",
            Some(&s.admin_key),
            &[],
            None,
        )
        .await;
    assert_eq!(
        r.body["deleted"],
        json!({"events": 2, "records": 2}),
        "{}",
        r.text
    );

    // Deleting the tenant deletes its memories and its rows in the shared one.
    event(s, &key, &shared, turn("carol", "s1", "USER", "hello")).await;
    event(s, &key, &own, turn("carol", "s1", "USER", "hello")).await;
    let removed: Value = s.admin("DELETE", "/v1/admin/tenants/acme", None).await;
    assert_eq!(removed["rows"]["memory_events"], 2, "{removed}");
    assert_eq!(leftovers(s, "acme", &memories, None).await, 0);
    let left = s
        .server()
        .state
        .store
        .list_all_memories(&SystemGrant::at_start())
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "only the shared memory stays: {left:?}");
}

#[tokio::test]
async fn a_tiers_expiry_is_the_default_and_search_syntax_is_inert() {
    let s = TestServer::start().await;
    let r = s
        .request(
            "PUT",
            "/v1/admin/tiers/brief",
            Some(&s.admin_key),
            &[],
            Some(tenantry_testkit::RequestBody::Json(
                json!({"memory_event_expiry_days": 0}),
            )),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    s.admin(
        "PUT",
        "/v1/admin/tiers/brief",
        Some(json!({"memory_event_expiry_days": 30, "allowed_models": ["*"]})),
    )
    .await;
    s.create_tenant("acme", "brief").await;
    let key = s.create_api_key("acme", &["tenant-admin"]).await.1;
    let (mem, strategy) = memory(&s, &key, "m").await;
    let r = s.get(&format!("/v1/memory/memories/{mem}"), &key).await;
    assert_eq!(r.body["memory"]["eventExpiryDays"], 30, "{}", r.text);

    let ns = format!("/strategies/{strategy}/actors/alice");
    records(&s, &key, &mem, &[(ns.as_str(), "alpha beta gamma")]).await;
    // Query syntax of FTS5 or tsquery is only words here: no error, no widening.
    for q in [
        "\") OR 1=1 --",
        "alpha* NEAR(beta gamma)",
        "alpha & !beta | gamma:*",
        "\"",
        "*",
        "NOT",
    ] {
        let (code, texts) = retrieve(&s, &key, &mem, json!({"searchQuery": q})).await;
        assert_eq!(code, 200, "{q}");
        assert!(texts.len() <= 1, "{q}");
    }
    let (_, texts) = retrieve(&s, &key, &mem, json!({"searchQuery": "GAMMA?"})).await;
    assert_eq!(texts, ["alpha beta gamma"]);
    s.stop().await;
}

#[tokio::test]
async fn a_summary_strategy_keeps_one_record_per_session() {
    let s = extracting_server().await;
    let key = admin_key(&s, "acme").await;
    let r = s
        .send_json(
            "POST",
            "/v1/memory/memories",
            &key,
            json!({"name": "recaps", "strategies": [
                {"name": "recap", "type": "SUMMARIZATION",
                 "namespaces": ["/summaries/{actorId}/{sessionId}"]}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mem = r.body["memory"]["id"].as_str().unwrap().to_string();
    for (session, text) in [("s1", "hello"), ("s1", "more"), ("s2", "again")] {
        event(&s, &key, &mem, turn("alice", session, "USER", text)).await;
        s.server().state.memory.flush_extraction().await;
    }
    for (ns, n) in [
        ("/summaries/alice/s1", 1),
        ("/summaries/alice/s2", 1),
        ("/summaries/alice", 2),
    ] {
        let r = s
            .send_json(
                "POST",
                &format!("/v1/memory/memories/{mem}/records/list"),
                &key,
                json!({"namespace": ns}),
            )
            .await;
        assert_eq!(
            r.body["memoryRecordSummaries"].as_array().unwrap().len(),
            n,
            "{ns}: {}",
            r.text
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn extraction_is_budgeted_like_the_tenants_own_calls() {
    let s = extracting_server().await;
    gateway_support::tier(
        &s,
        "tight",
        gateway_support::open_limits(json!({"tokens_per_minute": 5})),
        json!({"default": "mock-small"}),
    )
    .await;
    s.create_tenant("acme", "tight").await;
    let key = s.create_api_key("acme", &["tenant-admin"]).await.1;
    let (mem, _) = memory(&s, &key, "prefs").await;
    // The event is stored; its extraction does not fit the tenant's token budget.
    event(
        &s,
        &key,
        &mem,
        turn("alice", "s1", "USER", "I like green tea"),
    )
    .await;
    s.server().state.memory.flush_extraction().await;
    let r = s
        .send_json(
            "POST",
            &format!("/v1/memory/memories/{mem}/records/list"),
            &key,
            json!({}),
        )
        .await;
    assert_eq!(r.body["memoryRecordSummaries"], json!([]), "{}", r.text);
    assert_eq!(event_texts(&s, &key, &mem, "alice", "s1").await.1.len(), 1);
    assert!(gateway_support::ledger(&s, "acme").await.is_empty());
    s.stop().await;
}
