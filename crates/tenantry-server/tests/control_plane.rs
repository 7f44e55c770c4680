//! The control plane driven over HTTP: tiers, tenants, API keys.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use tenantry_testkit::TestServer;

#[tokio::test]
async fn tiers_are_seeded_from_config_and_editable() {
    let s = TestServer::start().await;
    let tiers = s.admin("GET", "/v1/admin/tiers", None).await;
    let names: Vec<&str> = tiers["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["basic", "premium", "standard"]);

    let mut basic = s.admin("GET", "/v1/admin/tiers/basic", None).await;
    assert_eq!(basic["limits"]["requests_per_second"], 5);
    basic["limits"]["requests_per_second"] = json!(7);
    basic["limits"]["budget_per_month"] = json!("12.5");
    let saved = s.admin("PUT", "/v1/admin/tiers/basic", Some(basic)).await;
    assert_eq!(saved["limits"]["requests_per_second"], 7);
    let again = s.admin("GET", "/v1/admin/tiers/basic", None).await;
    assert_eq!(again["limits"]["budget_per_month"], "12.5");

    let r = s
        .send_json(
            "PUT",
            "/v1/admin/tiers/enterprise",
            &s.admin_key,
            json!({"display_name": "Enterprise"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = s.get("/v1/admin/tiers/nope", &s.admin_key).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    s.stop().await;
}

#[tokio::test]
async fn tenant_lifecycle() {
    let s = TestServer::start().await;
    let created = s
        .admin(
            "POST",
            "/v1/admin/tenants",
            Some(json!({
                "id": "globex",
                "name": "Globex Corp",
                "tier": "premium",
                "isolation": {"preset": "bridge", "overrides": {"data": "silo"}},
                "region": "eu-west-1",
                "features": {"beta": true},
                "entitlements": {"seats": 25}
            })),
        )
        .await;
    assert_eq!(created["status"], "active");
    // Bridge: the premium tier's defaults (memory and knowledge siloed) plus the data override.
    assert_eq!(created["effective_isolation"]["memory"], "silo");
    assert_eq!(created["effective_isolation"]["data"], "silo");
    assert_eq!(created["effective_isolation"]["runtime"], "pool");

    let r = s
        .send_json(
            "POST",
            "/v1/admin/tenants",
            &s.admin_key,
            json!({"id": "globex", "tier": "basic"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "conflict"));

    let updated = s
        .admin(
            "PATCH",
            "/v1/admin/tenants/globex",
            Some(json!({"tier": "basic", "status": "suspended"})),
        )
        .await;
    assert_eq!(updated["tier"], "basic");
    assert_eq!(updated["status"], "suspended");
    assert_eq!(updated["name"], "Globex Corp");

    let list = s.admin("GET", "/v1/admin/tenants", None).await;
    assert_eq!(list["tenants"].as_array().unwrap().len(), 1);

    s.admin("DELETE", "/v1/admin/tenants/globex", None).await;
    let r = s.get("/v1/admin/tenants/globex", &s.admin_key).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    s.stop().await;
}

#[tokio::test]
async fn api_keys_are_shown_once_and_stored_hashed() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "standard").await;
    let (key_id, key) = s.create_api_key("acme", &["tenant-admin"]).await;
    assert!(key.starts_with("tk_acme_"));

    let list = s
        .admin("GET", "/v1/admin/tenants/acme/api-keys", None)
        .await;
    let text = list.to_string();
    assert!(
        !text.contains(&key),
        "a listed key must never include the secret"
    );
    assert!(!text.contains("secret_hash"));
    assert_eq!(list["api_keys"][0]["id"], key_id.as_str());

    let me = s.get("/v1/me", &key).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["tenant"]["tenant_id"], "acme");
    assert_eq!(me.body["principal"]["credential"]["kind"], "api_key");

    // The tenant manages its own keys with the tenant-admin role.
    let r = s
        .send_json("POST", "/v1/api-keys", &key, json!({"name": "ci"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let second = r.body["key"].as_str().unwrap().to_string();
    let r = s
        .send_json("POST", "/v1/api-keys", &second, json!({}))
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let own = s.get("/v1/api-keys", &second).await;
    assert_eq!(own.body["api_keys"].as_array().unwrap().len(), 2);

    let revoked = s
        .admin(
            "DELETE",
            &format!("/v1/admin/tenants/acme/api-keys/{key_id}"),
            None,
        )
        .await;
    assert!(revoked["revoked_at"].is_i64());
    let r = s.get("/v1/me", &key).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"));
    s.stop().await;
}

/// Polls `check` until it holds, for at most five seconds (more than the registry's two).
async fn within_propagation(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what}: never seen");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A verified API key is remembered (no store round trip per request), yet revocation,
/// suspension and deletion take effect on the replica that made them at once and on another
/// replica within the control plane's propagation time; a key of a deleted tenant never opens
/// a tenant created again under the same id.
#[tokio::test]
async fn remembered_api_keys_follow_revocation_suspension_and_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("shared.db").display());
    let a = TestServer::builder().database_url(&db).start().await;
    let b = TestServer::builder().database_url(&db).start().await;
    a.create_tenant("acme", "standard").await;
    let (first_id, first) = a.create_api_key("acme", &[]).await;
    let (_, second) = a.create_api_key("acme", &[]).await;
    for s in [&a, &b] {
        for key in [&first, &second] {
            assert_eq!(s.get("/v1/me", key).await.status, 200);
        }
        assert_eq!(s.server().state.api_keys.len(), 2, "both keys remembered");
    }

    // Revoked through a: refused there at once, on b within the propagation time.
    a.admin(
        "DELETE",
        &format!("/v1/admin/tenants/acme/api-keys/{first_id}"),
        None,
    )
    .await;
    let r = a.get("/v1/me", &first).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"));
    within_propagation("revocation on b", async || {
        b.get("/v1/me", &first).await.status == 401
    })
    .await;
    assert_eq!(b.get("/v1/me", &second).await.status, 200, "other key kept");

    // Suspended through a: refused there at once, on b soon; reactivated, usable again.
    a.admin(
        "PATCH",
        "/v1/admin/tenants/acme",
        Some(json!({"status": "suspended"})),
    )
    .await;
    let r = a.get("/v1/me", &second).await;
    assert_eq!((r.status, r.code()), (403, "tenant_suspended"));
    within_propagation("suspension on b", async || {
        b.get("/v1/me", &second).await.status == 403
    })
    .await;
    a.admin(
        "PATCH",
        "/v1/admin/tenants/acme",
        Some(json!({"status": "active"})),
    )
    .await;
    within_propagation("reactivation on b", async || {
        b.get("/v1/me", &second).await.status == 200
    })
    .await;
    let old_uid = a.tenant_uid("acme").await.to_string();

    // Deleted and created again through a: the old key opens nothing on a at once; on b it
    // may still answer as the old tenant until b sees the deletion, never as the new one.
    a.admin("DELETE", "/v1/admin/tenants/acme", None).await;
    a.create_tenant("acme", "standard").await;
    let r = a.get("/v1/me", &second).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"));
    within_propagation("deletion on b", async || {
        let r = b.get("/v1/me", &second).await;
        if r.status == 200 {
            assert_eq!(
                r.body["tenant"]["tenant_uid"].as_str(),
                Some(old_uid.as_str()),
                "a deleted tenant's key opened the tenant created again: {}",
                r.text
            );
        }
        r.status == 401
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn health_and_discovery() {
    let s = TestServer::start().await;
    let r = s.request("GET", "/healthz", None, &[], None).await;
    assert_eq!(r.status, 200);
    let r = s.request("GET", "/readyz", None, &[], None).await;
    assert_eq!((r.status, r.body["store"].as_str()), (200, Some("sqlite")));
    let d = s
        .request("GET", "/.well-known/openid-configuration", None, &[], None)
        .await;
    assert_eq!(d.status, 200);
    assert!(
        d.body["jwks_uri"]
            .as_str()
            .unwrap()
            .ends_with("/.well-known/jwks.json")
    );
    let j = s
        .request("GET", "/.well-known/jwks.json", None, &[], None)
        .await;
    assert_eq!(j.body["keys"][0]["kty"], "OKP");
    s.stop().await;
}

/// An agent's working directory is visible in every sandbox of its runtime: one that holds the
/// state directory (keys, database, session storage), or lies inside it, is refused.
#[tokio::test]
async fn a_runtime_workdir_cannot_hold_or_sit_in_the_state_directory() {
    let s = TestServer::start().await;
    let state = s.config_path.parent().unwrap().to_path_buf();
    let inside = state.join("agent");
    std::fs::create_dir_all(&inside).unwrap();
    for (workdir, says) in [
        (
            state.parent().unwrap().to_path_buf(),
            "contains the state directory",
        ),
        (state.clone(), "contains the state directory"),
        (inside, "is inside the state directory"),
    ] {
        let r = s
            .send_json(
                "POST",
                "/v1/admin/runtimes",
                &s.admin_key,
                json!({"name": "bot", "command": ["python3", "agent.py"], "workdir": workdir}),
            )
            .await;
        assert_eq!((r.status, r.code()), (400, "invalid_request"), "{}", r.text);
        assert!(r.text.contains(says), "{}", r.text);
    }
    let r = s
        .send_json(
            "POST",
            "/v1/admin/runtimes",
            &s.admin_key,
            json!({"name": "bot", "command": ["python3", "agent.py"],
                   "workdir": env!("CARGO_MANIFEST_DIR")}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    s.stop().await;
}
