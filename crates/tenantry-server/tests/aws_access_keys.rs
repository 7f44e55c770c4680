//! Tenant access key pairs and SigV4 from the outside: issued by the operator and by a
//! tenant-admin, listed without their secrets, accepted as a signature on any tenant route,
//! refused at once when revoked, and refused in the AWS error shape on the AWS routes.
//! Signatures are made with the AWS SDK's own signer (`aws-sigv4`, through the model gateway's
//! wrapper), so a canonicalisation we got wrong would fail here.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tenantry_models::Secret;
use tenantry_models::sigv4::{Credentials, SignableRequest, sign};
use tenantry_testkit::{RequestBody, Response, TestServer};

/// Sends `method path` with `body`, signed by (`key_id`, `secret`) for `service` at `at`.
async fn signed_at(
    s: &TestServer,
    method: &str,
    path: &str,
    body: Option<Value>,
    (key_id, secret): (&str, &str),
    service: &str,
    at: SystemTime,
) -> Response {
    let host = s.url.trim_start_matches("http://").to_string();
    let bytes = body
        .as_ref()
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let content_type = "application/json";
    let headers = [("content-type", content_type), ("host", host.as_str())];
    let creds = Credentials {
        access_key_id: key_id.to_string(),
        secret_access_key: Secret::new(secret),
        session_token: None,
    };
    let req = SignableRequest {
        method,
        uri: path,
        headers: &headers,
        payload: &bytes,
    };
    let sig = sign(&req, &creds, "us-east-1", service, at).unwrap();
    let mut extra = vec![
        ("x-amz-date", sig.amz_date.as_str()),
        ("authorization", sig.authorization.as_str()),
    ];
    if body.is_none() {
        extra.push(("content-type", content_type));
    }
    let body = body.map(|_| RequestBody::Raw {
        content_type,
        bytes: bytes.clone(),
    });
    s.request(method, path, None, &extra, body).await
}

async fn signed(
    s: &TestServer,
    method: &str,
    path: &str,
    body: Option<Value>,
    key: (&str, &str),
) -> Response {
    signed_at(
        s,
        method,
        path,
        body,
        key,
        "bedrock-agentcore",
        SystemTime::now(),
    )
    .await
}

/// Creates an access key for `user` of `tenant` through the operator's endpoint.
async fn access_key(s: &TestServer, tenant: &str, user: &str) -> (String, String) {
    let v = s
        .admin(
            "POST",
            &format!("/v1/admin/tenants/{tenant}/access-keys"),
            Some(json!({"name": "sdk", "user": user})),
        )
        .await;
    (
        v["access_key_id"].as_str().unwrap().to_string(),
        v["secret_access_key"].as_str().unwrap().to_string(),
    )
}

fn aws_error(r: &Response) -> (u16, String, String) {
    (
        r.status,
        r.header("x-amzn-errortype").unwrap_or("").to_string(),
        r.body["message"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn a_signature_with_a_tenant_access_key_authenticates_any_route() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "standard").await;
    let (id, secret) = access_key(&s, "acme", "alice").await;
    assert!(id.starts_with("tka_acme_"), "{id}");
    assert_eq!(secret.len(), 40);

    let me = signed(&s, "GET", "/v1/me", None, (&id, &secret)).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["principal"]["tenant_id"], "acme");
    assert_eq!(me.body["principal"]["user_id"], "alice");
    assert_eq!(
        me.body["principal"]["credential"],
        json!({"kind": "access_key", "key_id": id})
    );

    // A query is signed as the SDKs sign it.
    let ok = signed(&s, "GET", "/v1/me?x=1&a=b%2Fc", None, (&id, &secret)).await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    // The wrong secret, a key id of ours that does not exist, and a foreign key id.
    for key in [
        (id.as_str(), "wrong-secret-wrong-secret-wrong-secret-00"),
        ("tka_acme_aaaaaaaaaaaaaaaa", secret.as_str()),
        ("AKIDEXAMPLE", secret.as_str()),
    ] {
        let r = signed(&s, "GET", "/v1/me", None, key).await;
        assert_eq!(r.status, 401, "{key:?}: {}", r.text);
        assert_eq!(r.code(), "invalid_token", "{}", r.text);
    }
    // Fifteen minutes off, and a service the platform does not answer for.
    let late = SystemTime::now() - Duration::from_secs(20 * 60);
    let r = signed_at(
        &s,
        "GET",
        "/v1/me",
        None,
        (&id, &secret),
        "bedrock-agentcore",
        late,
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.text.contains("expired"), "{}", r.text);
    let r = signed_at(
        &s,
        "GET",
        "/v1/me",
        None,
        (&id, &secret),
        "s3",
        SystemTime::now(),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn keys_are_listed_without_secrets_and_revocation_is_immediate() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "standard").await;
    s.create_tenant("other", "standard").await;
    let (id, secret) = access_key(&s, "acme", "alice").await;

    let listed = s
        .admin("GET", "/v1/admin/tenants/acme/access-keys", None)
        .await;
    let text = listed.to_string();
    assert!(!text.contains(&secret), "{text}");
    assert!(!text.contains("sealed"), "{text}");
    assert_eq!(listed["access_keys"][0]["id"], id.as_str());
    assert_eq!(listed["access_keys"][0]["user_id"], "alice");
    // Another tenant's key id names nothing under this tenant.
    let r = s
        .request(
            "GET",
            &format!("/v1/admin/tenants/other/access-keys/{id}"),
            Some(&s.admin_key),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);

    assert_eq!(
        signed(&s, "GET", "/v1/me", None, (&id, &secret))
            .await
            .status,
        200
    );
    let revoked = s
        .admin(
            "DELETE",
            &format!("/v1/admin/tenants/acme/access-keys/{id}"),
            None,
        )
        .await;
    assert!(revoked["revoked_at"].is_i64(), "{revoked}");
    let r = signed(&s, "GET", "/v1/me", None, (&id, &secret)).await;
    assert_eq!(
        r.status, 401,
        "a revoked key must be refused at once: {}",
        r.text
    );

    // The AWS routes refuse in the AWS error shape.
    let r = signed(
        &s,
        "GET",
        "/aws/bedrock-agentcore-control/memories/m-1/details",
        None,
        (&id, &secret),
    )
    .await;
    let (status, kind, message) = aws_error(&r);
    assert_eq!(
        (status, kind.as_str()),
        (403, "UnrecognizedClientException"),
        "{}",
        r.text
    );
    assert!(!message.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn tenant_admins_issue_keys_for_their_own_tenant_only() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "standard").await;
    let admin = s.token("acme", "carol", &["tenant-admin"]);
    let plain = s.token("acme", "dave", &[]);

    let created = s
        .send_json(
            "POST",
            "/v1/access-keys",
            &admin,
            json!({"name": "ci", "user": "carol"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["access_key_id"].as_str().unwrap().to_string();
    let secret = created.body["secret_access_key"]
        .as_str()
        .unwrap()
        .to_string();
    let me = signed(&s, "GET", "/v1/me", None, (&id, &secret)).await;
    assert_eq!(me.body["principal"]["user_id"], "carol", "{}", me.text);

    // Binding someone else, or granting a role one does not hold, is refused.
    let r = s
        .send_json("POST", "/v1/access-keys", &admin, json!({"user": "erin"}))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = s
        .send_json("POST", "/v1/access-keys", &plain, json!({}))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    // A service key (no user) acts as svc:NAME.
    let svc = s
        .send_json("POST", "/v1/access-keys", &admin, json!({"name": "batch"}))
        .await;
    assert_eq!(svc.body["user_id"], "svc:batch", "{}", svc.text);

    let listed = s.get("/v1/access-keys", &admin).await;
    assert_eq!(listed.body["access_keys"].as_array().unwrap().len(), 2);
    let r = s
        .request(
            "DELETE",
            &format!("/v1/access-keys/{id}?purge=true"),
            Some(&admin),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        s.get(&format!("/v1/access-keys/{id}"), &admin).await.status,
        404
    );
    let r = signed(&s, "GET", "/v1/me", None, (&id, &secret)).await;
    assert_eq!(r.status, 401, "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn a_deleted_tenant_takes_its_keys_with_it() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "standard").await;
    let (id, secret) = access_key(&s, "acme", "alice").await;
    s.admin("DELETE", "/v1/admin/tenants/acme", None).await;
    s.create_tenant("acme", "standard").await;
    let r = signed(&s, "GET", "/v1/me", None, (&id, &secret)).await;
    assert_eq!(r.status, 401, "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn the_sandbox_key_id_means_nothing_outside_a_sandbox_bridge() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "standard").await;
    let r = signed(
        &s,
        "GET",
        "/v1/me",
        None,
        ("tenantry-sandbox", "tsbx_00000000000000000000000000000000"),
    )
    .await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"), "{}", r.text);
    s.stop().await;
}

/// On PostgreSQL the keys live under row-level security: issued, verified, listed per tenant,
/// revoked at once, deleted with their tenant.
#[tokio::test]
async fn access_keys_work_on_postgres() {
    let Some(url) = tenantry_testkit::postgres_url_or_skip("access_keys_work_on_postgres") else {
        return;
    };
    let (db_url, _guard) = tenantry_store::testing::fresh_postgres(&url).await.unwrap();
    let s = TestServer::builder().database_url(db_url).start().await;
    s.create_tenant("acme", "standard").await;
    s.create_tenant("other", "standard").await;
    let (id, secret) = access_key(&s, "acme", "alice").await;
    let me = signed(&s, "GET", "/v1/me", None, (&id, &secret)).await;
    assert_eq!(me.body["principal"]["user_id"], "alice", "{}", me.text);
    let other = s
        .admin("GET", "/v1/admin/tenants/other/access-keys", None)
        .await;
    assert_eq!(other["access_keys"], json!([]));
    s.admin(
        "DELETE",
        &format!("/v1/admin/tenants/acme/access-keys/{id}"),
        None,
    )
    .await;
    let r = signed(&s, "GET", "/v1/me", None, (&id, &secret)).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let (id, secret) = access_key(&s, "acme", "bob").await;
    s.admin("DELETE", "/v1/admin/tenants/acme", None).await;
    let r = signed(&s, "GET", "/v1/me", None, (&id, &secret)).await;
    assert_eq!(r.status, 401, "{}", r.text);
    s.stop().await;
}
