//! Credentials cannot impersonate: a tenant API key acts as a user only if that user (or the
//! operator) bound it; any other key is a service principal (`svc:NAME`) that sees no user's
//! sessions; a key carries only the tenant roles the platform defines; and no identity
//! provider's token can pass for a service principal.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use tenantry_core::{OperatorGrant, RuntimeName, TenantId, TenantScope, UserId, unix_now};
use tenantry_store::{SessionRecord, SessionStatus};
use tenantry_testkit::TestServer;

const BOB_SESSION: &str = "bob-session-0123456789-0123456789-abcdef";

/// A server with tenant `acme`, in which user `bob` has a session (stored directly: these
/// tests need no sandbox, only the session's owner).
async fn server_with_bobs_session() -> TestServer {
    let s = TestServer::start().await;
    s.create_tenant("acme", "standard").await;
    let scope =
        TenantScope::for_operator(OperatorGrant::for_tests(), TenantId::new("acme").unwrap());
    let now = unix_now();
    s.server()
        .state
        .store
        .insert_session(
            &scope,
            &SessionRecord {
                id: tenantry_core::SessionId::new(BOB_SESSION).unwrap(),
                tenant_id: TenantId::new("acme").unwrap(),
                user_id: UserId::new("bob").unwrap(),
                runtime: RuntimeName::new("echo").unwrap(),
                status: SessionStatus::Stopped,
                created_at: now,
                last_active_at: now,
                stopped_at: Some(now),
                stop_reason: Some("user".into()),
                node: String::new(),
            },
        )
        .await
        .unwrap();
    // Bob himself sees it, so the refusals below are about the credential, not the data.
    let bob = s.token("acme", "bob", &[]);
    let r = s.get(&format!("/v1/sessions/{BOB_SESSION}"), &bob).await;
    assert_eq!(r.status, 200, "{}", r.text);
    s
}

fn sessions_of(v: &Value) -> Vec<String> {
    v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_tenant_admin_cannot_bind_a_key_to_another_user() {
    let s = server_with_bobs_session().await;
    let alice = s.token("acme", "alice", &["tenant-admin"]);
    let (_, admin_key) = s.create_api_key("acme", &["tenant-admin"]).await;

    for (who, cred) in [("alice's JWT", &alice), ("a tenant-admin key", &admin_key)] {
        for user in ["bob", "operator", "svc:billing", "apikey:x"] {
            let r = s
                .send_json(
                    "POST",
                    "/v1/api-keys",
                    cred,
                    json!({"name": "borrowed", "user": user}),
                )
                .await;
            assert_eq!(
                (r.status, r.code()),
                (403, "forbidden"),
                "{who} binding a key to {user}: {}",
                r.text
            );
        }
    }
    let listed = s.get("/v1/api-keys", &alice).await;
    assert_eq!(
        listed.body["api_keys"].as_array().unwrap().len(),
        1,
        "no key was created: {}",
        listed.text
    );

    // A user may bind a key to themself.
    let r = s
        .send_json(
            "POST",
            "/v1/api-keys",
            &alice,
            json!({"name": "mine", "user": "alice"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["user_id"], "alice");
    let me = s.get("/v1/me", r.body["key"].as_str().unwrap()).await;
    assert_eq!(me.body["principal"]["user_id"], "alice");

    // The operator may bind a key to any user of the tenant.
    let r = s
        .request(
            "POST",
            "/v1/admin/tenants/acme/api-keys",
            Some(&s.admin_key),
            &[],
            Some(tenantry_testkit::RequestBody::Json(
                json!({"name": "bob-cli", "user": "bob"}),
            )),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bobs_key = r.body["key"].as_str().unwrap().to_owned();
    let r = s.get("/v1/sessions", &bobs_key).await;
    assert_eq!(sessions_of(&r.body), vec![BOB_SESSION.to_owned()]);
    s.stop().await;
}

#[tokio::test]
async fn a_key_without_a_user_is_a_service_principal_that_sees_no_users_sessions() {
    let s = server_with_bobs_session().await;
    let alice = s.token("acme", "alice", &["tenant-admin"]);
    let r = s
        .send_json("POST", "/v1/api-keys", &alice, json!({"name": "ci"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["user_id"], "svc:ci");
    let key = r.body["key"].as_str().unwrap().to_owned();
    let me = s.get("/v1/me", &key).await;
    assert_eq!(me.body["principal"]["user_id"], "svc:ci", "{}", me.text);

    let r = s.get("/v1/sessions", &key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(sessions_of(&r.body).is_empty(), "{}", r.text);
    for method in ["GET", "DELETE"] {
        let r = s
            .request(
                method,
                &format!("/v1/sessions/{BOB_SESSION}"),
                Some(&key),
                &[],
                None,
            )
            .await;
        assert_eq!((r.status, r.code()), (404, "not_found"), "{method}");
    }

    // No key can be named like the platform's own principals (the policy-discovery stand-in
    // `svc:tenantry:policy-discovery`), whose sessions it would then own.
    let r = s
        .send_json(
            "POST",
            "/v1/api-keys",
            &alice,
            json!({"name": "tenantry:policy-discovery"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"), "{}", r.text);

    // The operator's keys without a user are service principals too.
    let (_, op_key) = s.create_api_key("acme", &[]).await;
    let me = s.get("/v1/me", &op_key).await;
    assert_eq!(
        me.body["principal"]["user_id"], "svc:default",
        "{}",
        me.text
    );
    s.stop().await;
}

#[tokio::test]
async fn keys_carry_only_the_tenant_roles_the_platform_defines() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "standard").await;
    let alice = s.token("acme", "alice", &["tenant-admin"]);
    for roles in [
        json!(["platform-admin"]),
        json!(["operator"]),
        json!(["tenant-admin", "admin"]),
        json!(["Tenant-Admin"]),
    ] {
        let r = s
            .send_json(
                "POST",
                "/v1/api-keys",
                &alice,
                json!({"name": "x", "roles": roles}),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_request"),
            "{roles}: {}",
            r.text
        );
        assert!(
            r.text.contains("tenant-admin"),
            "the refusal names the roles that exist: {}",
            r.text
        );
        let r = s
            .request(
                "POST",
                "/v1/admin/tenants/acme/api-keys",
                Some(&s.admin_key),
                &[],
                Some(tenantry_testkit::RequestBody::Json(
                    json!({"name": "x", "roles": roles}),
                )),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_request"),
            "operator, {roles}: {}",
            r.text
        );
    }
    // What the observed key asked for: roles ["platform-admin"] and user "operator".
    let r = s
        .send_json(
            "POST",
            "/v1/api-keys",
            &alice,
            json!({"name": "x", "roles": ["platform-admin"], "user": "operator"}),
        )
        .await;
    assert!(
        matches!(r.status, 400 | 403),
        "refused either way: {}",
        r.text
    );
    let r = s
        .send_json(
            "POST",
            "/v1/api-keys",
            &alice,
            json!({"name": "deputy", "roles": ["tenant-admin"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["roles"], json!(["tenant-admin"]));
    s.stop().await;
}

#[tokio::test]
async fn no_token_passes_for_a_service_principal() {
    let s = server_with_bobs_session().await;
    let alice = s.token("acme", "alice", &["tenant-admin"]);
    let r = s
        .send_json("POST", "/v1/api-keys", &alice, json!({"name": "ci"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // A JWT whose user is `svc:ci` (an identity provider where users pick their name) would
    // share the service principal's sessions: it is refused.
    let pretender = s.token("acme", "svc:ci", &[]);
    let r = s.get("/v1/sessions", &pretender).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"), "{}", r.text);
    s.stop().await;
}
