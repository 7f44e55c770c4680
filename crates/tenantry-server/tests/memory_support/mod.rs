//! Helpers of the memory tests: memories, events and records through `/v1/memory/...`.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::{Value, json};
use tenantry_testkit::TestServer;

/// A tenant-admin API key of `tenant` (created with the tenant).
pub async fn admin_key(s: &TestServer, tenant: &str) -> String {
    s.create_tenant(tenant, "standard").await;
    s.create_api_key(tenant, &["tenant-admin"]).await.1
}

/// Creates a memory with one semantic strategy; (memory id, strategy id).
pub async fn memory(s: &TestServer, key: &str, name: &str) -> (String, String) {
    let r = s
        .send_json(
            "POST",
            "/v1/memory/memories",
            key,
            json!({"name": name, "strategies": [{"name": "facts", "type": "SEMANTIC"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    (
        r.body["memory"]["id"].as_str().unwrap().to_string(),
        r.body["memory"]["strategies"][0]["strategyId"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

/// A conversational event body.
pub fn turn(actor: &str, session: &str, role: &str, text: &str) -> Value {
    json!({
        "actorId": actor, "sessionId": session, "eventTimestamp": 1_760_000_000.5,
        "payload": [{"conversational": {"content": {"text": text}, "role": role}}],
    })
}

pub async fn event(s: &TestServer, key: &str, memory: &str, body: Value) -> Value {
    let r = s
        .send_json(
            "POST",
            &format!("/v1/memory/memories/{memory}/events"),
            key,
            body,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["event"].clone()
}

/// Creates records directly: (namespace, text) pairs; their ids.
pub async fn records(
    s: &TestServer,
    key: &str,
    memory: &str,
    items: &[(&str, &str)],
) -> Vec<String> {
    let records: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, (ns, text))| {
            json!({"requestIdentifier": format!("r{i}"), "namespaces": [ns],
                   "content": {"text": text}, "timestamp": 1_760_000_000})
        })
        .collect();
    let r = s
        .send_json(
            "POST",
            &format!("/v1/memory/memories/{memory}/records/batch-create"),
            key,
            json!({ "records": records }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["failedRecords"], json!([]), "{}", r.text);
    r.body["successfulRecords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["memoryRecordId"].as_str().unwrap().to_string())
        .collect()
}

/// The texts a retrieval answers.
pub async fn retrieve(s: &TestServer, key: &str, memory: &str, body: Value) -> (u16, Vec<String>) {
    let r = s
        .send_json(
            "POST",
            &format!("/v1/memory/memories/{memory}/records/retrieve"),
            key,
            body,
        )
        .await;
    let texts = r.body["memoryRecordSummaries"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["content"]["text"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    (r.status, texts)
}

/// The texts of a session's events, newest first.
pub async fn event_texts(
    s: &TestServer,
    key: &str,
    memory: &str,
    actor: &str,
    session: &str,
) -> (u16, Vec<String>) {
    let r = s
        .get(
            &format!("/v1/memory/memories/{memory}/actors/{actor}/sessions/{session}/events"),
            key,
        )
        .await;
    let texts = r.body["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    e["payload"][0]["conversational"]["content"]["text"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    (r.status, texts)
}
