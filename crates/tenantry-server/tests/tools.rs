//! The tool gateway from the outside, through the real server: `/mcp` with tenant API keys and
//! user JWTs, targets registered through the control plane (an upstream MCP server and an
//! OpenAPI service), Cedar policies per tier and tenant (visibility, input conditions,
//! `log_only`, invalid uploads with their position, rollback), each tenant's own credential
//! from the vault (API keys, OAuth2 client credentials, token exchange), upstreams that are
//! down or slow, the ledger and the audit log, and no secret in any control-plane answer or
//! log line (the server's logs are captured in memory at DEBUG).

#![allow(clippy::unwrap_used)]

mod tools_support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenantry_testkit::mcp::PROTOCOL;
use tools_support::*;

#[tokio::test]
async fn each_tenant_lists_and_calls_with_its_own_credential_and_is_metered() {
    let env = Env::start().await;
    let acme = env.connect("acme").await;
    let bolt = env.connect("bolt").await;

    let tools = acme.tools().await;
    for t in [
        "kit___add",
        "kit___echo",
        "kit___fail",
        "kit___slow",
        "pets___createPet",
        "pets___getPet",
        "pets___get_echo_value",
        "pets___listPets",
        "pets___slow",
    ] {
        assert!(tools.contains(&t.to_owned()), "{t} missing from {tools:?}");
    }

    // Each tenant's call carries its own credential, placed as each target says.
    let a = acme.call("kit___echo", json!({"message": "hi"})).await;
    assert_eq!(
        a.json()["authorization"],
        json!(format!("Bearer {ACME_KIT}"))
    );
    let b = bolt.call("kit___echo", json!({"message": "hi"})).await;
    assert_eq!(
        b.json()["authorization"],
        json!(format!("Bearer {BOLT_KIT}"))
    );
    let a = acme
        .call("pets___get_echo_value", json!({"value": "x"}))
        .await;
    assert_eq!(a.json()["x_api_key"], json!(ACME_PETS));
    let b = bolt
        .call("pets___get_echo_value", json!({"value": "x"}))
        .await;
    assert_eq!(b.json()["x_api_key"], json!(BOLT_PETS));
    assert_eq!(
        acme.call("kit___add", json!({"a": 2, "b": 40}))
            .await
            .text(),
        "42"
    );
    let pet = acme.call("pets___getPet", json!({"petId": 1})).await;
    assert_eq!(pet.json()["name"], "Rex", "{:?}", pet.body);
    let failed = acme.call("kit___fail", json!({})).await;
    assert_eq!(failed.body["result"]["isError"], json!(true));

    // The upstreams saw A's credential only on A's calls and B's only on B's.
    for r in env.mcp.requests() {
        let auth = r.header("authorization").unwrap_or_default().to_owned();
        assert!(
            auth == format!("Bearer {ACME_KIT}") || auth == format!("Bearer {BOLT_KIT}"),
            "{auth}"
        );
    }
    let upstream_calls = env.mcp.calls();
    let with = |k: &str| {
        upstream_calls
            .iter()
            .filter(|r| r.header("authorization") == Some(&format!("Bearer {k}")))
            .count()
    };
    assert_eq!((with(ACME_KIT), with(BOLT_KIT)), (3, 1));

    // A tenant without credentials sees none of the targets' tools and cannot call them.
    let carl = env.connect("carl").await;
    assert!(carl.tools().await.is_empty());
    let refused = carl.call("kit___echo", json!({})).await;
    assert_eq!(refused.error_code(), Some(-32010), "{:?}", refused.body);
    assert_eq!(
        env.mcp.calls().len(),
        4,
        "carl's call must not reach the upstream"
    );

    // The ledger: one tool entry per call, priced for the targets that set a price.
    let usage = wait_for_tool_calls(&env, "acme", 5).await;
    let tool = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "tool")
        .unwrap();
    assert_eq!(tool["calls"], 5, "{usage}");
    // kit___echo, kit___add and kit___fail reached the priced upstream: 3 × $0.002.
    assert_eq!(tool["cost"], "0.006", "{usage}");
    let bolt_usage = wait_for_tool_calls(&env, "bolt", 2).await;
    assert_eq!(bolt_usage["totals"]["calls"], 2, "{bolt_usage}");

    env.assert_no_secrets(&[env.key("acme"), env.key("bolt"), env.key("carl")]);
}

async fn wait_for_tool_calls(env: &Env, tenant: &str, calls: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let usage = env
            .admin(
                "GET",
                &format!("/v1/admin/usage?tenant={tenant}&group_by=kind"),
                Value::Null,
                200,
            )
            .await;
        let n = usage["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["group"] == "tool")
            .map(|r| r["calls"].as_i64().unwrap())
            .sum::<i64>();
        if n >= calls || Instant::now() > deadline {
            assert_eq!(n, calls, "{usage}");
            return usage;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_basic_tier_tenant_neither_sees_nor_calls_a_premium_tool() {
    let env = Env::start().await;
    let v = env
        .policy(
            json!({"tier": "basic"}),
            "// Adding is a premium feature.\n@id(\"no-premium\")\nforbid (principal, action == Tenantry::Action::\"kit___add\", resource);\n",
            "enforce",
            201,
        )
        .await;
    assert_eq!(v["version"], 1);
    assert_eq!(v["scope"], "tier:basic");

    let acme = env.connect("acme").await; // basic
    let bolt = env.connect("bolt").await; // premium
    let acme_tools = acme.tools().await;
    assert!(
        !acme_tools.contains(&"kit___add".to_owned()),
        "{acme_tools:?}"
    );
    assert!(acme_tools.contains(&"kit___echo".to_owned()));
    let refused = acme.call("kit___add", json!({"a": 1, "b": 2})).await;
    assert_eq!(refused.error_code(), Some(-32010), "{:?}", refused.body);
    assert!(
        refused.error_message().contains("tier:basic@v1#no-premium"),
        "{}",
        refused.error_message()
    );
    assert_eq!(refused.body["error"]["data"]["code"], "forbidden");
    assert!(bolt.tools().await.contains(&"kit___add".to_owned()));
    assert_eq!(
        bolt.call("kit___add", json!({"a": 1, "b": 2})).await.text(),
        "3"
    );
    // The refused call never reached the upstream.
    assert_eq!(env.mcp.calls().len(), 1);

    // Every decision is in the audit log with tenant, user, tool, decision and policies.
    let audit = env.logs.audit_lines();
    let denied = audit
        .iter()
        .find(|l| l["event"] == "tool_policy_decision" && l["decision"] == "deny")
        .unwrap_or_else(|| panic!("no denial in the audit log: {audit:?}"));
    assert_eq!(denied["tenant"], "acme");
    assert_eq!(denied["tool"], "kit___add");
    assert_eq!(denied["policies"], "tier:basic@v1#no-premium");
    assert!(
        denied["user"].as_str().unwrap().starts_with("svc:"),
        "{denied}"
    );
    let allowed = audit
        .iter()
        .find(|l| l["event"] == "tool_policy_decision" && l["decision"] == "allow")
        .unwrap();
    assert_eq!(allowed["tenant"], "bolt");
    assert_eq!(allowed["policies"], "platform@v0#starter");
    env.assert_no_secrets(&[env.key("acme"), env.key("bolt")]);
}

#[tokio::test]
async fn input_conditions_decide_as_written_log_only_allows_and_logs_and_rollback_restores() {
    let env = Env::start().await;
    let text = "@id(\"small-pages\")\nforbid (principal, action == Tenantry::Action::\"pets___listPets\", resource)\nwhen { context.input has limit && context.input.limit >= 10 };\n";
    env.policy(json!({"tenant": "acme"}), text, "enforce", 201)
        .await;
    let acme = env.connect("acme").await;
    let small = acme.call("pets___listPets", json!({"limit": 1})).await;
    assert_eq!(
        small.json().as_array().map(Vec::len),
        Some(1),
        "{:?}",
        small.body
    );
    let unbounded = acme.call("pets___listPets", json!({})).await;
    assert_eq!(unbounded.json().as_array().map(Vec::len), Some(2));
    let big = acme.call("pets___listPets", json!({"limit": 50})).await;
    assert_eq!(big.error_code(), Some(-32010), "{:?}", big.body);
    assert!(big.error_message().contains("tenant:acme@v1#small-pages"));
    // Another tenant is not bound by acme's set.
    let bolt = env.connect("bolt").await;
    assert!(
        bolt.call("pets___listPets", json!({"limit": 50}))
            .await
            .error_code()
            .is_none()
    );

    // The same set in log_only mode: the call goes through, the audit log says what the set
    // would have decided.
    let v = env
        .policy(json!({"tenant": "acme"}), text, "log_only", 201)
        .await;
    assert_eq!(
        (v["version"].as_i64(), v["mode"].as_str()),
        (Some(2), Some("log_only"))
    );
    let logged = acme.call("pets___listPets", json!({"limit": 50})).await;
    assert!(logged.error_code().is_none(), "{:?}", logged.body);
    let audit = env.logs.audit_lines();
    let line = audit
        .iter()
        .rev()
        .find(|l| l["event"] == "tool_policy_decision" && l["mode"] == "log_only")
        .unwrap_or_else(|| panic!("no log_only decision in {audit:?}"));
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["policy_decision"], "deny");
    assert_eq!(line["policies"], "tenant:acme@v2#small-pages");
    assert_eq!(line["tenant"], "acme");

    // Versions, and a rollback to the enforced one.
    let versions = env
        .admin("GET", "/v1/admin/policies/tenant:acme", Value::Null, 200)
        .await;
    let listed: Vec<(i64, bool)> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [(2, true), (1, false)]);
    let back = env
        .admin(
            "POST",
            "/v1/admin/policies/tenant:acme/rollback",
            Value::Null,
            200,
        )
        .await;
    assert_eq!(
        (back["version"].as_i64(), back["mode"].as_str()),
        (Some(1), Some("enforce"))
    );
    let again = acme.call("pets___listPets", json!({"limit": 50})).await;
    assert_eq!(again.error_code(), Some(-32010), "{:?}", again.body);
    // Clearing the scope leaves the starter policy: allowed.
    env.admin("DELETE", "/v1/admin/policies/tenant:acme", Value::Null, 204)
        .await;
    assert!(
        acme.call("pets___listPets", json!({"limit": 50}))
            .await
            .error_code()
            .is_none()
    );
    env.assert_no_secrets(&[env.key("acme")]);
}

#[tokio::test]
async fn an_invalid_policy_is_refused_with_its_position_and_not_stored() {
    let env = Env::start().await;
    // A syntax error on line 3 (the missing comma after `principal`).
    let text = "// two policies\npermit (principal, action, resource);\nforbid (principal action, resource);\n";
    let e = env
        .policy(json!({"tier": "basic"}), text, "enforce", 400)
        .await;
    assert_eq!(e["error"]["code"], "invalid_request");
    let d = &e["error"]["diagnostics"][0];
    assert_eq!(d["line"], 3, "{e}");
    assert!(d["column"].as_u64().unwrap() >= 18, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("the policy set is not valid: 3:")
    );

    // A tool that does not exist fails validation against the schema, at its position.
    let text = "forbid (principal, action == Tenantry::Action::\"kit___nope\", resource);";
    let e = env
        .policy(json!({"tenant": "acme"}), text, "enforce", 400)
        .await;
    let d = &e["error"]["diagnostics"][0];
    assert_eq!(d["line"], 1, "{e}");
    assert!(d["message"].as_str().unwrap().contains("kit___nope"), "{e}");
    // An attribute the tool's input does not have.
    let text = "forbid (principal, action == Tenantry::Action::\"kit___add\", resource)\nwhen { context.input.c == 1 };";
    let e = env
        .policy(json!({"tier": "premium"}), text, "enforce", 400)
        .await;
    assert_eq!(e["error"]["diagnostics"][0]["line"], 2, "{e}");

    // Nothing was stored: the scopes have no versions.
    for scope in ["tier:basic", "tenant:acme", "tier:premium"] {
        let v = env
            .admin(
                "GET",
                &format!("/v1/admin/policies/{scope}"),
                Value::Null,
                200,
            )
            .await;
        assert_eq!(v["versions"], json!([]), "{scope}");
    }
    // Unknown scopes are refused precisely.
    env.policy(
        json!({"tier": "gold"}),
        "permit (principal, action, resource);",
        "enforce",
        404,
    )
    .await;
    env.policy(
        json!({"tier": "basic", "tenant": "acme"}),
        "",
        "enforce",
        400,
    )
    .await;
    // The schema names the catalogued tools.
    let schema = env
        .server
        .get("/v1/admin/policies/schema", &env.server.admin_key)
        .await;
    assert!(schema.text.contains("kit___add"), "{}", schema.text);
}

#[tokio::test]
async fn an_upstream_that_is_down_or_slow_gives_an_mcp_error_in_time() {
    let env = Env::start().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    env.admin(
        "POST",
        "/v1/admin/tool-targets",
        json!({"name": "gone", "kind": {"type": "mcp", "url": format!("http://127.0.0.1:{closed}/mcp")},
               "timeout_ms": 2000}),
        201,
    )
    .await;
    let acme = env.connect("acme").await;

    // tools/list still answers, without the down target's tools.
    let started = Instant::now();
    let tools = acme.tools().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(tools.iter().all(|t| !t.starts_with("gone___")), "{tools:?}");
    assert!(tools.contains(&"kit___echo".to_owned()));

    let started = Instant::now();
    let down = acme.call("gone___anything", json!({})).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(down.status, 200);
    assert_eq!(down.error_code(), Some(-32011), "{:?}", down.body);
    assert_eq!(down.body["error"]["data"]["retryable"], json!(true));

    // A tool slower than the target's 1 s timeout.
    let started = Instant::now();
    let slow = acme.call("kit___slow", json!({"ms": 10000})).await;
    let took = started.elapsed();
    assert_eq!(slow.error_code(), Some(-32011), "{:?}", slow.body);
    assert!(
        slow.error_message().contains("within 1000ms"),
        "{}",
        slow.error_message()
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // An OpenAPI operation slower than its target's timeout (30 s by default) is not waited
    // for here; the same deadline applies (tested in tenantry-tools).

    // The failed calls are in the ledger with their reason.
    let usage = wait_for_tool_calls(&env, "acme", 2).await;
    assert_eq!(
        usage["totals"]["cost"], "0",
        "failed calls cost nothing: {usage}"
    );
}

#[tokio::test]
async fn targets_are_managed_through_the_control_plane() {
    let env = Env::start().await;
    let list = env
        .admin("GET", "/v1/admin/tool-targets", Value::Null, 200)
        .await;
    let names: Vec<&str> = list["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kit", "pets"]);
    // The OpenAPI document was fetched once and is kept inline (shown by its size).
    let pets = env
        .admin("GET", "/v1/admin/tool-targets/pets", Value::Null, 200)
        .await;
    assert!(
        pets["kind"]["spec"]["inline_bytes"].as_u64().unwrap() > 100,
        "{pets}"
    );

    // A name is taken; PUT replaces; another owner must delete first.
    env.admin(
        "POST",
        "/v1/admin/tool-targets",
        json!({"name": "kit", "kind": {"type": "mcp", "url": env.mcp.url()}}),
        409,
    )
    .await;
    env.admin(
        "PUT",
        "/v1/admin/tool-targets/kit",
        json!({"kind": {"type": "mcp", "url": env.mcp.url()}, "tenant": "acme"}),
        409,
    )
    .await;
    let replaced = env
        .admin(
            "PUT",
            "/v1/admin/tool-targets/kit",
            json!({"kind": {"type": "mcp", "url": env.mcp.url()},
                   "credential": {"placement": "header", "name": "X-Api-Key"}}),
            200,
        )
        .await;
    assert_eq!(replaced["credential"]["name"], "X-Api-Key");
    let acme = env.connect("acme").await;
    let echo = acme.call("kit___echo", json!({})).await;
    assert_eq!(echo.json()["x_api_key"], json!(ACME_KIT), "{:?}", echo.body);

    // A tenant's own target is invisible to the others.
    env.admin(
        "POST",
        "/v1/admin/tool-targets",
        json!({"name": "acme-crm", "tenant": "acme", "kind": {"type": "mcp", "url": env.mcp.url()}}),
        201,
    )
    .await;
    assert!(acme.tools().await.contains(&"acme-crm___echo".to_owned()));
    let bolt = env.connect("bolt").await;
    assert!(!bolt.tools().await.iter().any(|t| t.starts_with("acme-crm")));
    let other = bolt.call("acme-crm___echo", json!({})).await;
    assert_eq!(other.error_code(), Some(-32602), "{:?}", other.body);

    // Bad specs are refused with the field at fault.
    let bad = env
        .admin(
            "POST",
            "/v1/admin/tool-targets",
            json!({"name": "bad", "kind": {"type": "mcp", "url": "ftp://x"}}),
            400,
        )
        .await;
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("kind.url")
    );
    env.admin(
        "POST",
        "/v1/admin/tool-targets",
        json!({"name": "ghost", "tenant": "nobody", "kind": {"type": "mcp", "url": env.mcp.url()}}),
        400,
    )
    .await;

    // Deleting removes the tools at once; the targets survive a restart of the catalogue
    // (they are in the store: the listing reads the live catalogue, the store is checked by
    // tenantry-store's tests and by the CLI test's restart).
    env.admin(
        "DELETE",
        "/v1/admin/tool-targets/acme-crm",
        Value::Null,
        204,
    )
    .await;
    env.admin(
        "DELETE",
        "/v1/admin/tool-targets/acme-crm",
        Value::Null,
        404,
    )
    .await;
    assert!(!acme.tools().await.iter().any(|t| t.starts_with("acme-crm")));
    env.assert_no_secrets(&[]);
}

#[tokio::test]
async fn credentials_are_write_only_rotate_and_delete() {
    let env = Env::start().await;
    let list = env
        .admin(
            "GET",
            "/v1/admin/tenants/acme/credentials",
            Value::Null,
            200,
        )
        .await;
    let creds = list["credentials"].as_array().unwrap();
    assert_eq!(creds.len(), 2);
    assert_eq!(creds[0]["name"], "kit");
    assert_eq!(creds[0]["metadata"], json!({}));

    // Rotation: a new version, used at once.
    let rotated = env
        .admin(
            "PUT",
            "/v1/admin/tenants/acme/credentials/kit",
            json!({"kind": "api_key", "value": "acme-kit-rotated-5e6f"}),
            200,
        )
        .await;
    assert_eq!(rotated["version"], 2);
    assert_eq!(rotated["versions"], json!([2, 1]));
    let acme = env.connect("acme").await;
    let echo = acme.call("kit___echo", json!({})).await;
    assert_eq!(echo.json()["authorization"], "Bearer acme-kit-rotated-5e6f");

    // A user's own credential wins over the tenant's for that user.
    let alice = env.server.token("acme", "alice", &[]);
    env.admin(
        "PUT",
        "/v1/admin/tenants/acme/credentials/kit?user=alice",
        json!({"kind": "api_key", "value": "alice-own-key-0a0b"}),
        201,
    )
    .await;
    let as_alice = Mcp::connect(&env.server.url, &alice).await;
    let echo = as_alice.call("kit___echo", json!({})).await;
    assert_eq!(echo.json()["authorization"], "Bearer alice-own-key-0a0b");

    // A refused body never echoes its values.
    let r = env
        .server
        .request(
            "PUT",
            "/v1/admin/tenants/acme/credentials/kit",
            Some(&env.server.admin_key),
            &[],
            Some(tenantry_testkit::RequestBody::Json(
                json!({"kind": "api_key", "value": ["not-a-string-9x9x"]}),
            )),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(!r.text.contains("9x9x"), "{}", r.text);

    // Deletion: the tools of a credentialed target disappear for the tenant.
    let d = env
        .admin(
            "DELETE",
            "/v1/admin/tenants/acme/credentials/pets",
            Value::Null,
            200,
        )
        .await;
    assert_eq!(d["deleted"], 1);
    env.admin(
        "DELETE",
        "/v1/admin/tenants/acme/credentials/pets",
        Value::Null,
        404,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = env.connect("acme").await;
    assert!(!fresh.tools().await.iter().any(|t| t.starts_with("pets___")));
    // Another tenant's credentials, or an unknown tenant's, do not exist here.
    env.admin(
        "GET",
        "/v1/admin/tenants/nobody/credentials",
        Value::Null,
        404,
    )
    .await;
    env.assert_no_secrets(&[
        "acme-kit-rotated-5e6f",
        "alice-own-key-0a0b",
        "not-a-string-9x9x",
        &alice,
    ]);
}

#[tokio::test]
async fn oauth2_client_credentials_and_a_user_token_exchange_reach_the_upstream() {
    let env = Env::start().await;
    let idp = MockTokenEndpoint::start().await;
    let client_secret = "cc-client-secret-77aa";
    env.admin(
        "PUT",
        "/v1/admin/tenants/bolt/credentials/kit",
        json!({"kind": "oauth2_client_credentials", "token_url": idp.url(),
               "client_id": "bolt-app", "client_secret": client_secret, "scopes": ["tools"]}),
        200,
    )
    .await;
    let shown = env
        .admin(
            "GET",
            "/v1/admin/tenants/bolt/credentials/kit",
            Value::Null,
            200,
        )
        .await;
    assert_eq!(shown["kind"], "oauth2_client_credentials");
    assert_eq!(shown["metadata"]["client_id"], "bolt-app");
    let bolt = env.connect("bolt").await;
    for _ in 0..3 {
        let echo = bolt.call("kit___echo", json!({})).await;
        assert_eq!(
            echo.json()["authorization"],
            "Bearer cc-bolt-app-1",
            "{:?}",
            echo.body
        );
    }
    assert_eq!(idp.forms().len(), 1, "the token is cached");

    // A token exchange for acme: the caller's user JWT goes as subject_token; the upstream
    // gets a token for that user (no agent is involved in a direct call: no actor).
    let exchange_secret = "tx-client-secret-31c9";
    env.admin(
        "PUT",
        "/v1/admin/tenants/acme/credentials/kit",
        json!({"kind": "token_exchange", "token_url": idp.url(),
               "client_id": "acme-gw", "client_secret": exchange_secret, "audience": "kit"}),
        200,
    )
    .await;
    let alice = env.server.token("acme", "alice", &[]);
    let as_alice = Mcp::connect(&env.server.url, &alice).await;
    let echo = as_alice.call("kit___echo", json!({})).await;
    let auth = echo.json()["authorization"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let token = auth
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("{:?}", echo.body));
    assert_eq!(jwt_claims(token)["sub"], "alice");
    assert!(jwt_claims(token).get("act").is_none());
    let form = idp.forms().last().cloned().unwrap();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(field("subject_token").as_deref(), Some(alice.as_str()));
    assert_eq!(field("audience").as_deref(), Some("kit"));
    // An API key has no user token to exchange: refused, never sent without one.
    let acme = env.connect("acme").await;
    let refused = acme.call("kit___echo", json!({})).await;
    assert_eq!(refused.error_code(), Some(-32010), "{:?}", refused.body);
    env.assert_no_secrets(&[
        client_secret,
        exchange_secret,
        "cc-bolt-app-1",
        &alice,
        token,
    ]);
}

#[tokio::test]
async fn mcp_needs_a_tenant_credential() {
    let env = Env::start().await;
    let http = reqwest::Client::new();
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let none = http
        .post(format!("{}/mcp", env.server.url))
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    let operator = Mcp::post(&http, &env.server.url, &env.server.admin_key, None, &init).await;
    assert_eq!(operator.status, 403);
    // A session belongs to its caller: another tenant's key cannot use it.
    let acme = env.connect("acme").await;
    let a = acme.rpc("tools/list", json!({})).await;
    assert_eq!(a.status, 200);
    let sid = {
        let init = Mcp::post(&http, &env.server.url, env.key("acme"), None, &init).await;
        init.body["_session"].as_str().unwrap().to_owned()
    };
    let stolen = Mcp::post(
        &http,
        &env.server.url,
        env.key("bolt"),
        Some(&sid),
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert_eq!(stolen.status, 404, "{:?}", stolen.body);
}

#[tokio::test]
async fn tool_calls_count_against_the_tenants_rate() {
    let env = Env::start().await;
    // The standard tier, slowed down: one tool call per second, a burst of 5.
    let mut standard = env
        .admin("GET", "/v1/admin/tiers/standard", Value::Null, 200)
        .await;
    standard["limits"]["requests_per_second"] = json!(1);
    standard["limits"]["burst"] = json!(5);
    env.admin("PUT", "/v1/admin/tiers/standard", standard, 200)
        .await;
    env.admin(
        "POST",
        "/v1/admin/tool-targets",
        json!({"name": "open", "kind": {"type": "mcp", "url": env.mcp.url()}}),
        201,
    )
    .await;
    // The tier cache of the registry holds for up to 2 s.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let carl = env.connect("carl").await;
    // A batch is one request at ingress, but each call in it counts as a tool call.
    let batch: Vec<Value> = (0..8)
        .map(|i| {
            json!({"jsonrpc": "2.0", "id": 100 + i, "method": "tools/call",
                   "params": {"name": "open___add", "arguments": {"a": i, "b": 1}}})
        })
        .collect();
    let http = reqwest::Client::new();
    let session = carl.session_id().to_owned();
    let answer = Mcp::post(
        &http,
        &env.server.url,
        env.key("carl"),
        Some(&session),
        &Value::Array(batch),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let answers = answer.body.as_array().unwrap();
    let limited = answers
        .iter()
        .filter(|a| a.pointer("/error/code") == Some(&json!(-32012)))
        .count();
    let ok = answers.iter().filter(|a| a.get("result").is_some()).count();
    assert!(limited >= 2 && ok >= 1 && limited + ok == 8, "{answers:?}");
    let refusal = answers
        .iter()
        .find(|a| a.pointer("/error/code") == Some(&json!(-32012)))
        .unwrap();
    assert_eq!(
        refusal["error"]["data"]["reason"], "tool_rate_limited",
        "{refusal}"
    );
    assert_eq!(refusal["error"]["data"]["retryable"], json!(true));
}

/// The audit log holds control-plane changes (a tenant's change with before and after, a
/// tenant-scoped policy upload) and every policy decision (a denied tool call), each with its
/// actor and request id; a tenant-admin reads its own tenant's events only, the operator any.
#[tokio::test]
async fn the_audit_log_records_changes_and_decisions_per_tenant() {
    let env = Env::start().await;
    env.policy(
        json!({"tenant": "acme"}),
        "@id(\"no-add\")\nforbid (principal, action == Tenantry::Action::\"kit___add\", resource);\n",
        "enforce",
        201,
    )
    .await;
    env.admin(
        "PATCH",
        "/v1/admin/tenants/acme",
        json!({"name": "Acme Corp"}),
        200,
    )
    .await;
    let acme = env.connect("acme").await;
    let refused = acme.call("kit___add", json!({"a": 1, "b": 2})).await;
    assert_eq!(refused.error_code(), Some(-32010));
    let state = &env.server.server().state;
    assert!(state.audit.flush(Duration::from_secs(5)).await);

    let (_, acme_admin) = env.server.create_api_key("acme", &["tenant-admin"]).await;
    let (_, bolt_admin) = env.server.create_api_key("bolt", &["tenant-admin"]).await;
    let own = env.server.get("/v1/audit?limit=1000", &acme_admin).await;
    assert_eq!(own.status, 200, "{}", own.text);
    let events = own.body["events"].as_array().unwrap().clone();
    assert!(events.iter().all(|e| e["tenant"] == "acme"), "{events:?}");
    let find = |action: &str| {
        events
            .iter()
            .find(|e| e["action"].as_str().unwrap().starts_with(action))
            .unwrap_or_else(|| panic!("no {action} event in {events:?}"))
            .clone()
    };
    let change = find("PATCH tenants/{id}");
    assert_eq!(change["actor"], "operator");
    assert_eq!(change["outcome"], "ok");
    assert_eq!(change["detail"]["before"]["name"], "acme");
    assert_eq!(change["detail"]["after"]["name"], "Acme Corp");
    assert!(change["request_id"].as_str().unwrap().starts_with("req_"));
    let upload = find("POST policies");
    assert_eq!(upload["target"], "tenant:acme");
    assert_eq!(upload["detail"]["version"], 1);
    let decision = find("tool.decision");
    assert_eq!(decision["outcome"], "deny");
    assert_eq!(decision["target"], "kit___add");
    assert!(decision["actor"].as_str().unwrap().starts_with("user:"));
    assert!(
        decision["detail"]["determining_policies"][0]
            .as_str()
            .unwrap()
            .contains("no-add")
    );

    // Another tenant's admin sees none of it; a key without the role is refused.
    let other = env.server.get("/v1/audit", &bolt_admin).await;
    assert!(
        other.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["tenant"] == "bolt"),
        "{}",
        other.text
    );
    let r = env.server.get("/v1/audit", env.key("acme")).await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = env.server.get("/v1/audit?tenant=bolt", &acme_admin).await;
    assert_eq!(r.status, 400);
    // The operator reads any tenant's, or everyone's.
    let op = env
        .admin(
            "GET",
            "/v1/admin/audit?tenant=acme&action=tool.",
            Value::Null,
            200,
        )
        .await;
    assert!(!op["events"].as_array().unwrap().is_empty());
    let all = env
        .admin("GET", "/v1/admin/audit?limit=2", Value::Null, 200)
        .await;
    assert_eq!(all["events"].as_array().unwrap().len(), 2);
    assert!(all["next_before"].is_string());
    env.server.stop().await;
}
