//! The Bedrock knowledge-base `Retrieve` call through an unmodified boto3
//! `bedrock-agent-runtime` client (`AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME`), signing with a
//! tenant's access keys: a tenant retrieves its own chunks from a pooled base, never another
//! tenant's, and another tenant's siloed base is a missing one (`ResourceNotFoundException`).
//!
//! Needs `python3` with `boto3` (`.ci/run` installs it); without it the test prints a SKIP
//! line, unless `TENANTRY_REQUIRE_AGENTCORE_SDK=1` makes it fail.

#![allow(clippy::unwrap_used)]

mod aws_support;

use aws_support::*;
use serde_json::json;
use tenantry_testkit::TestServer;

const RETRIEVE_SCRIPT: &str = r#"
import json, os, sys
import boto3
from botocore.exceptions import ClientError

client = boto3.client("bedrock-agent-runtime", region_name="us-east-1")
pool, foreign = os.environ["POOL_ID"], os.environ["FOREIGN_ID"]
out = client.retrieve(
    knowledgeBaseId=pool,
    retrievalQuery={"text": "refunds"},
    retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 5}},
)
texts = [r["content"]["text"] for r in out["retrievalResults"]]
assert any("Refunds" in t for t in texts), texts
assert not any("Globex" in t for t in texts), texts
try:
    client.retrieve(knowledgeBaseId=foreign, retrievalQuery={"text": "invoices"})
    sys.exit("another tenant's base answered")
except ClientError as e:
    assert e.response["Error"]["Code"] == "ResourceNotFoundException", e.response
print(json.dumps({"texts": texts}))
print("OK")
"#;

async fn server() -> TestServer {
    let s = TestServer::builder().start().await;
    s.admin(
        "PUT",
        "/v1/admin/tiers/kb",
        Some(
            json!({"limits": {"requests_per_second": 100000, "burst": 100000},
                    "allowed_models": ["*"]}),
        ),
    )
    .await;
    s.create_tenant("acme", "kb").await;
    s.create_tenant("globex", "kb").await;
    s
}

async fn put(s: &TestServer, token: &str, base: &str, doc: &str, content: &str) {
    let r = s
        .send_json(
            "PUT",
            &format!("/v1/knowledge/bases/{base}/documents/{doc}"),
            token,
            json!({"content": content, "content_type": "markdown"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn boto3_retrieves_a_tenants_own_chunks_and_nothing_of_another_tenant() {
    let test = "boto3_retrieves_a_tenants_own_chunks_and_nothing_of_another_tenant";
    if !or_skip(test, "boto3", None) {
        return;
    }
    let s = server().await;
    let pool = s
        .admin(
            "POST",
            "/v1/admin/knowledge/bases",
            Some(json!({"name": "shared"})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let acme = s.token("acme", "alice", &[]);
    let globex_admin = s.token("globex", "gina", &["tenant-admin"]);
    put(
        &s,
        &acme,
        &pool,
        "billing",
        "# Billing\n\n## Refunds\n\nRefunds are paid within thirty days.\n",
    )
    .await;
    put(
        &s,
        &globex_admin,
        &pool,
        "handbook",
        "# Globex\n\nGlobex refunds invoices by card.\n",
    )
    .await;
    let r = s
        .send_json(
            "POST",
            "/v1/knowledge/bases",
            &globex_admin,
            json!({"name": "own"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let foreign = r.body["id"].as_str().unwrap().to_owned();

    let key = access_key(&s, "acme", "alice", &[]).await;
    let mut env = aws_env(&s, &key);
    env.push(("AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME", s.url.clone()));
    env.push(("POOL_ID", pool));
    env.push(("FOREIGN_ID", foreign));
    let out = run_python(RETRIEVE_SCRIPT, env).await;
    assert!(!out["texts"].as_array().unwrap().is_empty(), "{out}");
}
