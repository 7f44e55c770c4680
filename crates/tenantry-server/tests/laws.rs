//! The tenancy laws of DESIGN.md section 2, attacked from the outside through HTTP:
//! identity only from verified credentials, another tenant's resource does not exist,
//! client-sent context headers have no effect, suspended tenants and revoked keys are refused,
//! and the control plane takes only the operator key.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use tenantry_testkit::TestServer;
use tenantry_testkit::oidc::MockIssuer;

fn issuer_config(mock: &MockIssuer) -> tenantry_identity::IssuerConfig {
    serde_json::from_value(json!({
        "name": "mock",
        "issuer": mock.issuer(),
        "audiences": ["tenantry-test"],
        "discovery_url": mock.discovery_url(),
        "algorithms": ["ES256", "RS256"],
        "claims": {"tenant": "custom:tenant_id", "user": "sub", "roles": "groups"},
        "leeway_seconds": 5
    }))
    .unwrap()
}

fn claims(mock: &MockIssuer, tenant: &str, user: &str) -> Value {
    let mut c = mock.claims(tenant, user);
    c["custom:tenant_id"] = json!(tenant);
    c
}

async fn server_with_mock() -> (TestServer, MockIssuer) {
    let mock = MockIssuer::start().await;
    let s = TestServer::builder()
        .issuer(issuer_config(&mock))
        .configure(|c| c.identity.jwks_min_refresh_seconds = 0)
        .start()
        .await;
    s.create_tenant("acme", "basic").await;
    s.create_tenant("globex", "premium").await;
    (s, mock)
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401() {
    let (s, mock) = server_with_mock().await;
    let good = mock.sign(&claims(&mock, "acme", "alice"));
    let r = s.get("/v1/me", &good).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["tenant"]["tenant_id"], "acme");
    assert_eq!(r.body["principal"]["credential"]["issuer"], "mock");

    let now = tenantry_core::unix_now();
    let mut cases: Vec<(&str, String)> = Vec::new();
    cases.push((
        "unknown key",
        mock.sign_with_unknown_key(&claims(&mock, "acme", "alice")),
    ));
    cases.push((
        "alg none",
        mock.sign_unsigned_none(&claims(&mock, "acme", "alice")),
    ));
    let mut c = claims(&mock, "acme", "alice");
    c["exp"] = json!(now - 600);
    c["iat"] = json!(now - 1200);
    cases.push(("expired", mock.sign(&c)));
    let mut c = claims(&mock, "acme", "alice");
    c["nbf"] = json!(now + 600);
    cases.push(("not yet valid", mock.sign(&c)));
    let mut c = claims(&mock, "acme", "alice");
    c["aud"] = json!("someone-else");
    cases.push(("wrong aud", mock.sign(&c)));
    let mut c = claims(&mock, "acme", "alice");
    c["iss"] = json!("https://evil.example.com");
    cases.push(("wrong iss", mock.sign(&c)));
    // Tampered payload: a valid token for acme whose payload is swapped for globex.
    let parts: Vec<&str> = good.split('.').collect();
    let forged_payload = {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload: Value = serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
        payload["custom:tenant_id"] = json!("globex");
        engine.encode(serde_json::to_vec(&payload).unwrap())
    };
    cases.push((
        "tampered",
        format!("{}.{}.{}", parts[0], forged_payload, parts[2]),
    ));
    // A dev-issuer token with a tenant that does not exist.
    cases.push(("unknown tenant", s.token("initech", "bob", &[])));
    cases.push(("garbage", "not-a-token".to_string()));

    for (what, token) in cases {
        let r = s.get("/v1/me", &token).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text);
        assert_eq!(r.code(), "invalid_token", "{what}");
        assert!(!r.body["error"]["message"].as_str().unwrap().is_empty());
        assert!(r.header("www-authenticate").is_some(), "{what}");
    }
    s.stop().await;
}

#[tokio::test]
async fn registry_not_token_decides_the_tier() {
    let (s, mock) = server_with_mock().await;
    let mut c = claims(&mock, "acme", "alice");
    c["tier"] = json!("premium");
    c["tenantry_tier"] = json!("premium");
    let r = s.get("/v1/me", &mock.sign(&c)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["tenant"]["tier"], "basic");
    s.stop().await;
}

#[tokio::test]
async fn jwks_rotation_is_picked_up_without_restart() {
    let (s, mock) = server_with_mock().await;
    let before = mock.sign(&claims(&mock, "acme", "alice"));
    assert_eq!(s.get("/v1/me", &before).await.status, 200);
    mock.rotate();
    let after = mock.sign(&claims(&mock, "acme", "alice"));
    let r = s.get("/v1/me", &after).await;
    assert_eq!(
        r.status, 200,
        "a token from the rotated key must verify: {}",
        r.text
    );
    s.stop().await;
}

#[tokio::test]
async fn client_context_headers_have_no_effect() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "basic").await;
    s.create_tenant("globex", "premium").await;
    let token = s.token("acme", "alice", &[]);
    let r = s
        .request(
            "GET",
            "/v1/me",
            Some(&token),
            &[
                ("X-Tenantry-Tenant-Id", "globex"),
                ("X-Tenantry-Tier", "premium"),
                ("X-Tenantry-User-Id", "root"),
                ("X-Tenantry-Region", "mars"),
                ("X-Tenantry-Features", "{\"admin\":true}"),
                ("X-Tenantry-Entitlements", "{\"seats\":9999}"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let t = &r.body["tenant"];
    assert_eq!(t["tenant_id"], "acme");
    assert_eq!(t["tier"], "basic");
    assert_eq!(t["user_id"], "alice");
    assert_eq!(t["region"], "local");
    assert_eq!(t["features"], json!({}));
    assert_eq!(t["entitlements"], json!({}));

    // A header alone is not a credential.
    let r = s
        .request(
            "GET",
            "/v1/me",
            None,
            &[("X-Tenantry-Tenant-Id", "acme")],
            None,
        )
        .await;
    assert_eq!((r.status, r.code()), (401, "unauthenticated"));
    s.stop().await;
}

/// Every tenant-scoped endpoint answers another tenant's resource exactly like one that never
/// existed.
async fn assert_cross_tenant_is_404(s: &TestServer) {
    s.create_tenant("acme", "basic").await;
    s.create_tenant("globex", "premium").await;
    let (globex_key_id, _) = s.create_api_key("globex", &[]).await;
    let (acme_key_id, _) = s.create_api_key("acme", &[]).await;
    let acme_admin = s.token("acme", "alice", &["tenant-admin"]);

    let list = s.get("/v1/api-keys", &acme_admin).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let ids: Vec<&str> = list.body["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [acme_key_id.as_str()]);

    let never = "zzzzzzzzzzzz";
    for method in ["GET", "DELETE"] {
        let theirs = s
            .request(
                method,
                &format!("/v1/api-keys/{globex_key_id}"),
                Some(&acme_admin),
                &[],
                None,
            )
            .await;
        let missing = s
            .request(
                method,
                &format!("/v1/api-keys/{never}"),
                Some(&acme_admin),
                &[],
                None,
            )
            .await;
        assert_eq!(theirs.status, 404, "{method}: {}", theirs.text);
        assert_eq!(theirs.status, missing.status, "{method}");
        assert_eq!(theirs.body["error"]["code"], missing.body["error"]["code"]);
        assert_eq!(
            theirs.body["error"]["message"],
            missing.body["error"]["message"]
        );
    }
    // Same for a non-admin of acme: 404 before 403, so nothing is learnt.
    let acme_user = s.token("acme", "bob", &[]);
    let r = s
        .delete(&format!("/v1/api-keys/{globex_key_id}"), &acme_user)
        .await;
    assert_eq!(r.status, 404);

    // globex's key survived acme's DELETE attempts.
    let theirs = s
        .admin(
            "GET",
            &format!("/v1/admin/tenants/globex/api-keys/{globex_key_id}"),
            None,
        )
        .await;
    assert!(theirs["revoked_at"].is_null());
    // And through the operator's scoped path, the wrong tenant does not have it either.
    let r = s
        .get(
            &format!("/v1/admin/tenants/acme/api-keys/{globex_key_id}"),
            &s.admin_key,
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn another_tenants_resource_does_not_exist_sqlite() {
    let s = TestServer::start().await;
    assert_cross_tenant_is_404(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn another_tenants_resource_does_not_exist_postgres() {
    let Some(url) =
        tenantry_testkit::postgres_url_or_skip("another_tenants_resource_does_not_exist_postgres")
    else {
        return;
    };
    let (db_url, _guard) = tenantry_store::testing::fresh_postgres(&url).await.unwrap();
    let s = TestServer::builder().database_url(db_url).start().await;
    let r = s.request("GET", "/readyz", None, &[], None).await;
    assert_eq!(r.body["store"], "postgres");
    assert_cross_tenant_is_404(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn suspended_tenants_and_revoked_keys_are_refused() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "basic").await;
    let token = s.token("acme", "alice", &[]);
    let (key_id, key) = s.create_api_key("acme", &[]).await;
    assert_eq!(s.get("/v1/me", &token).await.status, 200);
    assert_eq!(s.get("/v1/me", &key).await.status, 200);

    s.admin(
        "PATCH",
        "/v1/admin/tenants/acme",
        Some(json!({"status": "suspended"})),
    )
    .await;
    for cred in [&token, &key] {
        let r = s.get("/v1/me", cred).await;
        assert_eq!(
            (r.status, r.code()),
            (403, "tenant_suspended"),
            "{}",
            r.text
        );
    }
    s.admin(
        "PATCH",
        "/v1/admin/tenants/acme",
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(s.get("/v1/me", &token).await.status, 200);

    s.admin(
        "DELETE",
        &format!("/v1/admin/tenants/acme/api-keys/{key_id}"),
        None,
    )
    .await;
    let r = s.get("/v1/me", &key).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"));
    // A key with a forged secret for a real key id is refused too.
    let forged = format!("{}AAAA", &key[..key.len() - 4]);
    let r = s.get("/v1/me", &forged).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"));
    s.stop().await;
}

#[tokio::test]
async fn control_plane_takes_only_the_operator_key() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "basic").await;
    let token = s.token("acme", "alice", &["tenant-admin", "admin", "operator"]);
    let (_, key) = s.create_api_key("acme", &["tenant-admin"]).await;
    for path in [
        "/v1/admin/tenants",
        "/v1/admin/tiers",
        "/v1/admin/tenants/acme/api-keys",
    ] {
        for cred in [&token, &key] {
            let r = s.get(path, cred).await;
            assert_eq!(
                (r.status, r.code()),
                (403, "forbidden"),
                "{path}: {}",
                r.text
            );
        }
        let r = s.request("GET", path, None, &[], None).await;
        assert_eq!((r.status, r.code()), (401, "unauthenticated"), "{path}");
        let r = s.get(path, "tadm_wrong-key-of-sufficient-length").await;
        assert_eq!((r.status, r.code()), (401, "invalid_token"), "{path}");
    }
    let r = s
        .send_json(
            "POST",
            "/v1/admin/tenants",
            &token,
            json!({"id": "evil", "tier": "premium"}),
        )
        .await;
    assert_eq!(r.status, 403);

    // Tenant endpoints refuse a missing credential, and the operator key is not a tenant.
    let r = s.request("GET", "/v1/me", None, &[], None).await;
    assert_eq!((r.status, r.code()), (401, "unauthenticated"));
    let r = s.get("/v1/me", &s.admin_key).await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = s.request("GET", "/v1/api-keys", None, &[], None).await;
    assert_eq!(r.status, 401);
    s.stop().await;
}

#[tokio::test]
async fn workload_tokens_are_platform_minted_only() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "basic").await;
    let state = &s.server().state;
    let tenant = tenantry_core::TenantId::new("acme").unwrap();
    let user = tenantry_core::UserId::new("alice").unwrap();
    // A genuine token for a session that is not running is refused: a workload token lives
    // only as long as its session (the runtime tests show the running case).
    let uid = state.store.get_tenant(&tenant).await.unwrap().unwrap().uid;
    let subject = tenantry_identity::WorkloadSubject {
        tenant: tenant.clone(),
        tenant_uid: uid,
        user: user.clone(),
        session: "session-0123456789-0123456789-0123".into(),
        instance: "no-such-sandbox".into(),
        runtime: "echo".into(),
    };
    let token = state
        .workload
        .mint(&subject, std::time::Duration::from_secs(60))
        .unwrap();
    let r = s.get("/v1/me", &token).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"), "{}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not running")
    );

    // The same claims signed with another secret are refused for their signature.
    let forged = tenantry_identity::WorkloadIssuer::from_secret(&[9u8; 32])
        .unwrap()
        .mint(&subject, std::time::Duration::from_secs(60))
        .unwrap();
    let r = s.get("/v1/me", &forged).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"));
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{}",
        r.text
    );
    s.stop().await;
}
