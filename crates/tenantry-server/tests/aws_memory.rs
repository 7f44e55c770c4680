//! AgentCore Memory through the AWS-compatible endpoints, driven by unmodified AWS clients
//! signing with a tenant's SigV4 access keys: the `bedrock-agentcore` SDK's `MemoryClient`
//! (create a memory, write conversational events, list them, retrieve the records a scripted
//! mock model extracted), and plain boto3 for the errors a client must see (a bad signature, a
//! revoked key, another tenant's memory as a missing one).
//!
//! Needs `python3` with `boto3`, and the SDK vendored at `examples/agents/agentcore/vendor`
//! (`.ci/run` installs both). Without them the tests print a SKIP line, unless
//! `TENANTRY_REQUIRE_AGENTCORE_SDK=1` (set by CI) makes them fail.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tenantry_testkit::TestServer;

mod aws_support;

use aws_support::*;

/// A server whose tier `mem` routes every model call to a mock that answers each extraction
/// with one fact about the user's favourite colour.
async fn server() -> TestServer {
    let s = TestServer::builder()
        .toml(
            r#"
[models.providers.scripted]
kind = "mock"
[[models.providers.scripted.script]]
content = "{\"records\":[{\"text\":\"The favourite colour of the user is green\"}]}"
[models.catalog.extractor]
provider = "scripted"
upstream_model = "extractor"
"#,
        )
        .start()
        .await;
    s.admin(
        "PUT",
        "/v1/admin/tiers/mem",
        Some(
            json!({"limits": {"requests_per_second": 100000, "burst": 100000},
                    "allowed_models": ["*"]}),
        ),
    )
    .await;
    s.admin(
        "PUT",
        "/v1/admin/models/tiers/mem",
        Some(json!({"default": "extractor"})),
    )
    .await;
    s
}

/// The SDK's MemoryClient, unchanged, end to end.
pub const SDK_SCRIPT: &str = r#"
import json
from bedrock_agentcore.memory import MemoryClient

client = MemoryClient(region_name="us-east-1")
memory = client.create_memory_and_wait(
    name="SupportFacts",
    description="facts about our users",
    strategies=[{"semanticMemoryStrategy": {"name": "facts", "namespaces": ["/facts/{actorId}"]}},
                # No namespace: the SDK adds its default template (/strategies/{id}/actors/{a}/).
                {"userPreferenceMemoryStrategy": {"name": "prefs"}}],
    event_expiry_days=30, max_wait=30, poll_interval=1)
mid = memory["id"]
assert memory["status"] == "ACTIVE", memory
assert memory["arn"].endswith(mid), memory
strategy, prefs = memory["strategies"]
assert strategy["type"] == "SEMANTIC", strategy
assert prefs["type"] == "USER_PREFERENCE", prefs
assert prefs["namespaces"] == ["/strategies/{memoryStrategyId}/actors/{actorId}/"], prefs
assert any(m["id"] == mid for m in client.list_memories()), "the new memory is listed"

event = client.create_event(
    memory_id=mid, actor_id="alice", session_id="chat-1",
    messages=[("My favourite colour is green.", "USER"), ("Noted!", "ASSISTANT")])
assert event["eventId"], event
events = client.list_events(memory_id=mid, actor_id="alice", session_id="chat-1")
assert len(events) == 1, events
texts = [p["conversational"]["content"]["text"] for p in events[0]["payload"]]
assert texts == ["My favourite colour is green.", "Noted!"], texts
got = client.gmdp_client.get_event(
    memoryId=mid, actorId="alice", sessionId="chat-1", eventId=event["eventId"])["event"]
assert got["eventId"] == event["eventId"], got
actors = client.gmdp_client.list_actors(memoryId=mid)["actorSummaries"]
assert [a["actorId"] for a in actors] == ["alice"], actors
sessions = client.gmdp_client.list_sessions(memoryId=mid, actorId="alice")["sessionSummaries"]
assert [x["sessionId"] for x in sessions] == ["chat-1"], sessions

assert client.wait_for_memories(
    memory_id=mid, namespace="/facts/alice", test_query="favourite colour",
    max_wait=30, poll_interval=1), "no record was extracted"
records = client.retrieve_memories(
    memory_id=mid, namespace="/facts/alice", query="favourite colour", top_k=3)
assert any("green" in r["content"]["text"] for r in records), records
prefs_ns = "/strategies/%s/actors/alice/" % prefs["strategyId"]
assert client.wait_for_memories(memory_id=mid, namespace=prefs_ns, test_query="colour",
                                max_wait=30, poll_interval=1), "no preference was extracted"
record = records[0]
assert "score" in record, record
listed = client.gmdp_client.list_memory_records(memoryId=mid, namespace="/facts/alice")
assert len(listed["memoryRecordSummaries"]) >= 1, listed
one = client.gmdp_client.get_memory_record(memoryId=mid, memoryRecordId=record["memoryRecordId"])
assert one["memoryRecord"]["memoryRecordId"] == record["memoryRecordId"], one

print(json.dumps({"memory_id": mid, "strategy_id": strategy["strategyId"]}))
print("OK")
"#;

#[tokio::test]
async fn the_agentcore_sdk_memory_client_works_with_access_keys() {
    let test = "the_agentcore_sdk_memory_client_works_with_access_keys";
    if !or_skip(test, "bedrock_agentcore.memory", Some(&vendor())) {
        return;
    }
    let s = server().await;
    s.create_tenant("acme", "mem").await;
    let key = access_key(&s, "acme", "ops", &["tenant-admin"]).await;
    let mut env = aws_env(&s, &key);
    env.push(("PYTHONPATH", vendor().display().to_string()));
    let out = run_python(SDK_SCRIPT, env).await;
    assert!(out["memory_id"].is_string(), "{out}");

    // What the SDK wrote is the tenant's: our own usage shows the extraction's model call.
    let usage = s
        .admin("GET", "/v1/admin/usage?tenant=acme&group_by=kind", None)
        .await;
    assert!(usage.to_string().contains("model"), "{usage}");
    s.stop().await;
}

/// Plain boto3: the errors a client sees.
const ERRORS_SCRIPT: &str = r#"
import json, os
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

url = os.environ["TENANTRY_URL"]
def client(service, key, secret):
    return boto3.client(
        service, region_name="us-east-1", endpoint_url=url + "/aws/" + service,
        aws_access_key_id=key, aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}))

def error_of(call):
    try:
        call()
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]
    raise SystemExit("the call succeeded")

acme_key, acme_secret = os.environ["ACME_KEY"], os.environ["ACME_SECRET"]
acme = client("bedrock-agentcore-control", acme_key, acme_secret)
acme_data = client("bedrock-agentcore", acme_key, acme_secret)
mid = acme.create_memory(name="Private", eventExpiryDuration=7)["memory"]["id"]
acme_data.create_event(memoryId=mid, actorId="alice", sessionId="s1",
    eventTimestamp=1767225600, payload=[{"conversational": {"content": {"text": "secret"}, "role": "USER"}}])

# A signature made with the wrong secret.
bad = client("bedrock-agentcore-control", acme_key, "not-the-secret-not-the-secret-not-the-se")
assert error_of(lambda: bad.get_memory(memoryId=mid)) == (403, "InvalidSignatureException")
# A key id nobody issued.
unknown = client("bedrock-agentcore-control", "AKIAIOSFODNN7EXAMPLE", acme_secret)
assert error_of(lambda: unknown.get_memory(memoryId=mid)) == (403, "UnrecognizedClientException")

# Another tenant's memory is not found, through every operation, never forbidden.
other = client("bedrock-agentcore-control", os.environ["GLOBEX_KEY"], os.environ["GLOBEX_SECRET"])
other_data = client("bedrock-agentcore", os.environ["GLOBEX_KEY"], os.environ["GLOBEX_SECRET"])
missing = (404, "ResourceNotFoundException")
assert error_of(lambda: other.get_memory(memoryId=mid)) == missing
assert error_of(lambda: other.get_memory(memoryId="Nothing-abcdefghij")) == missing
assert error_of(lambda: other.delete_memory(memoryId=mid)) == missing
assert error_of(lambda: other_data.list_events(memoryId=mid, actorId="alice", sessionId="s1")) == missing
assert error_of(lambda: other_data.list_actors(memoryId=mid)) == missing
assert error_of(lambda: other_data.retrieve_memory_records(
    memoryId=mid, namespace="/", searchCriteria={"searchQuery": "secret"})) == missing
assert error_of(lambda: other_data.create_event(memoryId=mid, actorId="alice", sessionId="s1",
    eventTimestamp=1767225600, payload=[{"conversational": {"content": {"text": "x"}, "role": "USER"}}])) == missing
assert [m["id"] for m in other.list_memories()["memories"]] == []

# A malformed request is a ValidationException.
assert error_of(lambda: acme_data.list_events(memoryId=mid, actorId="../x", sessionId="s1"))[1] == "ValidationException"

# Revoked: refused at once.
print(json.dumps({"memory_id": mid}), flush=True)
import sys
sys.stdin.readline()
assert error_of(lambda: acme.get_memory(memoryId=mid)) == (403, "UnrecognizedClientException")
print("OK")
"#;

#[tokio::test]
async fn boto3_gets_aws_errors_and_never_sees_another_tenants_memory() {
    let test = "boto3_gets_aws_errors_and_never_sees_another_tenants_memory";
    if !or_skip(test, "boto3", None) {
        return;
    }
    let s = server().await;
    s.create_tenant("acme", "mem").await;
    s.create_tenant("globex", "mem").await;
    let acme = access_key(&s, "acme", "ops", &["tenant-admin"]).await;
    let globex = access_key(&s, "globex", "ops", &["tenant-admin"]).await;

    // The script stops after its first part until the key is revoked.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("errors.py");
    std::fs::write(&path, ERRORS_SCRIPT).unwrap();
    let mut child = tokio::process::Command::new("python3")
        .arg(&path)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("TENANTRY_URL", &s.url)
        .env("ACME_KEY", &acme.0)
        .env("ACME_SECRET", &acme.1)
        .env("GLOBEX_KEY", &globex.0)
        .env("GLOBEX_SECRET", &globex.1)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the script hung")
        .unwrap();
    let Some(first) = first else {
        let out = child.wait_with_output().await.unwrap();
        panic!(
            "the script failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mid: Value = serde_json::from_str(&first).unwrap();
    assert!(mid["memory_id"].is_string(), "{first}");
    s.admin(
        "DELETE",
        &format!("/v1/admin/tenants/acme/access-keys/{}", acme.0),
        None,
    )
    .await;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    drop(stdin);
    let rest = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the script hung")
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success() && rest.as_deref() == Some("OK"),
        "the script failed: {rest:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.stop().await;
}

/// Plain boto3 through the operations the SDK test does not reach: UpdateMemory, the batch
/// record operations, DeleteMemoryRecord, DeleteEvent, ListEvents paging, DeleteMemory.
const OPERATIONS_SCRIPT: &str = r#"
import os, time
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

def client(service):
    return boto3.client(
        service, region_name="eu-west-1", endpoint_url=os.environ["TENANTRY_URL"] + "/aws/" + service,
        aws_access_key_id=os.environ["KEY"], aws_secret_access_key=os.environ["SECRET"],
        config=Config(retries={"max_attempts": 1}))

control, data = client("bedrock-agentcore-control"), client("bedrock-agentcore")
memory = control.create_memory(name="Ops", eventExpiryDuration=30)["memory"]
mid = memory["id"]
assert memory["strategies"] == [] and memory["eventExpiryDuration"] == 30, memory
updated = control.update_memory(memoryId=mid, description="now with facts", memoryStrategies={
    "addMemoryStrategies": [{"customMemoryStrategy": {"name": "prefs", "namespaces": ["/prefs/{actorId}"],
        "configuration": {"semanticOverride": {"extraction": {"appendToPrompt": "Only food.", "modelId": "x"}}}}}]})["memory"]
assert updated["description"] == "now with facts", updated
assert [s["type"] for s in updated["strategies"]] == ["CUSTOM"], updated
assert control.get_memory(memoryId=mid)["memory"]["strategies"][0]["name"] == "prefs"

# Events: three, paged two by two, oldest last; one deleted.
ids = []
for i in range(3):
    e = data.create_event(memoryId=mid, actorId="carol", sessionId="s-9", eventTimestamp=1767225600 + i,
        payload=[{"conversational": {"content": {"text": f"turn {i}"}, "role": "USER"}}])["event"]
    ids.append(e["eventId"])
page = data.list_events(memoryId=mid, actorId="carol", sessionId="s-9", maxResults=2)
assert len(page["events"]) == 2 and page.get("nextToken"), page
rest = data.list_events(memoryId=mid, actorId="carol", sessionId="s-9", maxResults=2, nextToken=page["nextToken"])
seen = [e["eventId"] for e in page["events"] + rest["events"]]
assert sorted(seen) == sorted(ids), (seen, ids)
assert data.delete_event(memoryId=mid, actorId="carol", sessionId="s-9", eventId=ids[0])["eventId"] == ids[0]
try:
    data.get_event(memoryId=mid, actorId="carol", sessionId="s-9", eventId=ids[0])
    raise SystemExit("a deleted event is still there")
except ClientError as e:
    assert e.response["Error"]["Code"] == "ResourceNotFoundException", e.response

# Records written, changed and deleted in batches.
made = data.batch_create_memory_records(memoryId=mid, records=[
    {"requestIdentifier": "r1", "namespaces": ["/prefs/carol"], "content": {"text": "Carol loves ramen"},
     "timestamp": 1767225600},
    {"requestIdentifier": "r2", "namespaces": ["/prefs/carol"], "content": {"text": "Carol avoids peanuts"},
     "timestamp": 1767225600, "metadata": {"source": {"stringValue": "import"}}},
])
assert made["failedRecords"] == [] and len(made["successfulRecords"]) == 2, made
rids = {r["requestIdentifier"]: r["memoryRecordId"] for r in made["successfulRecords"]}
changed = data.batch_update_memory_records(memoryId=mid, records=[
    {"memoryRecordId": rids["r1"], "timestamp": 1767225700, "content": {"text": "Carol loves tonkotsu ramen"}}])
assert changed["failedRecords"] == [], changed
rec = data.get_memory_record(memoryId=mid, memoryRecordId=rids["r1"])["memoryRecord"]
assert rec["content"]["text"] == "Carol loves tonkotsu ramen", rec
found = data.retrieve_memory_records(memoryId=mid, namespacePath="/prefs/carol",
    searchCriteria={"searchQuery": "ramen", "topK": 5})["memoryRecordSummaries"]
assert found and found[0]["memoryRecordId"] == rids["r1"], found
assert data.delete_memory_record(memoryId=mid, memoryRecordId=rids["r2"])["memoryRecordId"] == rids["r2"]
gone = data.batch_delete_memory_records(memoryId=mid, records=[
    {"memoryRecordId": rids["r1"]}, {"memoryRecordId": rids["r2"]}])
assert [r["memoryRecordId"] for r in gone["successfulRecords"]] == [rids["r1"]], gone
assert [r["memoryRecordId"] for r in gone["failedRecords"]] == [rids["r2"]], gone
# (The strategy's extraction from the events may have added its own records meanwhile.)
left = data.list_memory_records(memoryId=mid, namespace="/prefs/carol")["memoryRecordSummaries"]
assert not {r["memoryRecordId"] for r in left} & set(rids.values()), left

deleted = control.delete_memory(memoryId=mid)
assert deleted["memoryId"] == mid and deleted["status"] == "DELETING", deleted
try:
    control.get_memory(memoryId=mid)
    raise SystemExit("a deleted memory is still there")
except ClientError as e:
    assert e.response["Error"]["Code"] == "ResourceNotFoundException", e.response
print("OK")
"#;

#[tokio::test]
async fn boto3_drives_every_memory_operation() {
    let test = "boto3_drives_every_memory_operation";
    if !or_skip(test, "boto3", None) {
        return;
    }
    let s = server().await;
    s.create_tenant("acme", "mem").await;
    let (id, secret) = access_key(&s, "acme", "ops", &["tenant-admin"]).await;
    run_python(
        OPERATIONS_SCRIPT,
        vec![
            ("TENANTRY_URL", s.url.clone()),
            ("KEY", id),
            ("SECRET", secret),
        ],
    )
    .await;
    s.stop().await;
}

/// A memory the operator shares with every tenant (pool): each tenant reaches only its own
/// events and records in it, whatever ids, namespaces and filters it names through boto3.
const POOL_SCRIPT: &str = r#"
import os
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

def client(service, who):
    return boto3.client(
        service, region_name="us-east-1", endpoint_url=os.environ["TENANTRY_URL"] + "/aws/" + service,
        aws_access_key_id=os.environ[who + "_KEY"], aws_secret_access_key=os.environ[who + "_SECRET"],
        config=Config(retries={"max_attempts": 1}))

mid = os.environ["MEMORY"]
acme, globex = client("bedrock-agentcore", "ACME"), client("bedrock-agentcore", "GLOBEX")
assert client("bedrock-agentcore-control", "GLOBEX").get_memory(memoryId=mid)["memory"]["id"] == mid

event = acme.create_event(memoryId=mid, actorId="alice", sessionId="s1", eventTimestamp=1767225600,
    payload=[{"conversational": {"content": {"text": "acme secret plan"}, "role": "USER"}}])["event"]
made = acme.batch_create_memory_records(memoryId=mid, records=[{"requestIdentifier": "r",
    "namespaces": ["/facts/alice"], "content": {"text": "acme secret plan"}, "timestamp": 1767225600}])
rid = made["successfulRecords"][0]["memoryRecordId"]

def missing(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"] == "ResourceNotFoundException"
    return False

assert globex.list_actors(memoryId=mid)["actorSummaries"] == []
assert globex.list_sessions(memoryId=mid, actorId="alice")["sessionSummaries"] == []
listed = globex.list_events(memoryId=mid, actorId="alice", sessionId="s1")
assert listed["events"] == [], listed
assert missing(lambda: globex.get_event(memoryId=mid, actorId="alice", sessionId="s1", eventId=event["eventId"]))
assert missing(lambda: globex.get_memory_record(memoryId=mid, memoryRecordId=rid))
for ns in ["/", "/facts/alice", "/facts/"]:
    found = globex.retrieve_memory_records(memoryId=mid, namespace=ns,
        searchCriteria={"searchQuery": "secret plan", "topK": 10})["memoryRecordSummaries"]
    assert found == [], (ns, found)
    assert globex.list_memory_records(memoryId=mid, namespacePath=ns)["memoryRecordSummaries"] == []
for bad in ["/../acme", "/facts/%2F..", "//facts"]:
    try:
        found = globex.retrieve_memory_records(memoryId=mid, namespace=bad,
            searchCriteria={"searchQuery": "secret"})["memoryRecordSummaries"]
        assert found == [], (bad, found)
    except ClientError as e:
        assert e.response["Error"]["Code"] == "ValidationException", e.response
gone = globex.batch_delete_memory_records(memoryId=mid, records=[{"memoryRecordId": rid}])
assert gone["successfulRecords"] == [], gone
assert missing(lambda: globex.delete_memory_record(memoryId=mid, memoryRecordId=rid))
# Still there for acme.
assert acme.get_memory_record(memoryId=mid, memoryRecordId=rid)["memoryRecord"]["content"]["text"] == "acme secret plan"
print("OK")
"#;

#[tokio::test]
async fn a_shared_memory_keeps_each_tenant_to_its_own_rows() {
    let test = "a_shared_memory_keeps_each_tenant_to_its_own_rows";
    if !or_skip(test, "boto3", None) {
        return;
    }
    let s = server().await;
    s.create_tenant("acme", "mem").await;
    s.create_tenant("globex", "mem").await;
    let shared = s
        .admin(
            "POST",
            "/v1/admin/memories",
            Some(json!({"name": "Pool", "strategies": []})),
        )
        .await;
    let memory = shared["memory"]["id"].as_str().unwrap().to_string();
    let acme = access_key(&s, "acme", "alice", &[]).await;
    let globex = access_key(&s, "globex", "gina", &[]).await;
    run_python(
        POOL_SCRIPT,
        vec![
            ("TENANTRY_URL", s.url.clone()),
            ("MEMORY", memory),
            ("ACME_KEY", acme.0),
            ("ACME_SECRET", acme.1),
            ("GLOBEX_KEY", globex.0),
            ("GLOBEX_SECRET", globex.1),
        ],
    )
    .await;
    s.stop().await;
}
