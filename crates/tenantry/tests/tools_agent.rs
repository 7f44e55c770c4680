//! An agent in its sandbox calls the tool gateway (`/mcp`) with the credential the platform
//! gives it (its session's workload token), and a tool whose credential is an RFC 8693 token
//! exchange reaches its upstream with a token for the user who invoked the agent, whose `act`
//! claim names the agent: the exchange sent the user's JWT as `subject_token` and the agent's
//! actor token (`agent:RUNTIME`) as `actor_token`. The call is metered with its session and
//! runtime, and no secret reaches the control plane's answers.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tenantry_testkit::{RequestBody, TestServer};
use tenantry_tools::testing::MockMcpServer;

mod support;

use support::{BIN, sandboxes_available, test_agents_dir};

fn claims(jwt: &str) -> Value {
    jwt.split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

type Forms = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// A token endpoint answering RFC 8693 exchanges with an unsigned token for the subject's
/// `sub`, naming the actor token's `sub` in `act`; it records each form (and checks the
/// client's Basic credentials).
async fn token_endpoint(client_secret: &'static str) -> (String, Forms) {
    let forms: Forms = Arc::default();
    let log = forms.clone();
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let log = log.clone();
                async move {
                    let form: Vec<(String, String)> =
                        url::form_urlencoded::parse(&body).into_owned().collect();
                    let basic = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Basic "))
                        .and_then(|b| STANDARD.decode(b).ok())
                        .and_then(|b| String::from_utf8(b).ok())
                        .unwrap_or_default();
                    log.lock().unwrap().push(form.clone());
                    let get = |k: &str| {
                        form.iter()
                            .find(|(n, _)| n == k)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    };
                    if basic != format!("agent-gw:{client_secret}") {
                        return (
                            axum::http::StatusCode::UNAUTHORIZED,
                            axum::Json(json!({"error": "invalid_client"})),
                        );
                    }
                    let mut token_claims =
                        json!({"sub": claims(&get("subject_token"))["sub"], "iss": "mock-idp"});
                    let actor = claims(&get("actor_token"));
                    if !actor.is_null() {
                        token_claims["act"] = json!({"sub": actor["sub"]});
                    }
                    let token = format!(
                        "{}.{}.",
                        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
                        URL_SAFE_NO_PAD.encode(token_claims.to_string())
                    );
                    (
                        axum::http::StatusCode::OK,
                        axum::Json(json!({"access_token": token, "token_type": "Bearer",
                                          "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                                          "expires_in": 600})),
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/token"), forms)
}

#[tokio::test]
async fn an_agents_tool_call_exchanges_the_users_token_and_names_the_agent() {
    if !sandboxes_available("an_agents_tool_call_exchanges_the_users_token_and_names_the_agent") {
        return;
    }
    const CLIENT_SECRET: &str = "exchange-client-secret-6b1d";
    let (token_url, forms) = token_endpoint(CLIENT_SECRET).await;
    let upstream = MockMcpServer::start().await;
    let s = TestServer::builder()
        .sandbox_helper(BIN, &["sandbox-helper"])
        .configure(|c| c.runtime.ready_timeout_seconds = 5)
        .start()
        .await;
    s.create_tenant("acme", "standard").await;
    s.admin(
        "POST",
        "/v1/admin/tool-targets",
        Some(
            json!({"name": "crm", "kind": {"type": "mcp", "url": upstream.url()},
                    "credential": {"placement": "bearer"}, "timeout_ms": 5000}),
        ),
    )
    .await;
    let stored = s
        .request(
            "PUT",
            "/v1/admin/tenants/acme/credentials/crm",
            Some(&s.admin_key),
            &[],
            Some(RequestBody::Json(json!({
                "kind": "token_exchange", "token_url": token_url, "client_id": "agent-gw",
                "client_secret": CLIENT_SECRET, "audience": "crm"}))),
        )
        .await;
    assert_eq!(stored.status, 201, "{}", stored.text);
    assert!(!stored.text.contains(CLIENT_SECRET));
    s.admin(
        "POST",
        "/v1/admin/runtimes",
        Some(
            json!({"name": "support-bot", "command": ["python3", "tool_caller.py"],
                    "workdir": test_agents_dir()}),
        ),
    )
    .await;

    let alice = s.token("acme", "alice", &[]);
    let session = format!("tool-session-{:032x}", std::process::id());
    let r = s
        .request(
            "POST",
            "/v1/runtimes/support-bot/invocations",
            Some(&alice),
            &[("X-Tenantry-Session-Id", &session)],
            Some(RequestBody::Json(
                json!({"tool": "crm___echo", "arguments": {"message": "for alice"}}),
            )),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], 200, "{}", r.text);
    let answer = &r.body["answer"];
    assert!(answer.get("result").is_some(), "{answer}");
    let seen: Value =
        serde_json::from_str(answer["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(seen["arguments"], json!({"message": "for alice"}));

    // The upstream's token is alice's, acting through the agent.
    let token = seen["authorization"]
        .as_str()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_else(|| panic!("{seen}"));
    let upstream_claims = claims(token);
    assert_eq!(upstream_claims["sub"], "alice", "{upstream_claims}");
    assert_eq!(
        upstream_claims["act"]["sub"], "agent:support-bot",
        "{upstream_claims}"
    );

    // What the token endpoint received: alice's JWT as subject, the agent's actor token (not
    // a Tenantry credential: its audience is tenantry:actor) as actor.
    let forms = forms.lock().unwrap().clone();
    assert_eq!(forms.len(), 1, "{forms:?}");
    let field = |k: &str| {
        forms[0]
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        field("grant_type"),
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(field("subject_token"), alice);
    let actor = claims(&field("actor_token"));
    assert_eq!(actor["sub"], "agent:support-bot");
    assert_eq!(actor["aud"], "tenantry:actor");
    assert_eq!(actor["tenant_id"], "acme");
    assert_eq!(actor["sid"], session.as_str());
    assert_eq!(field("audience"), "crm");
    // The token endpoint can verify the actor token with the platform's published JWKS alone
    // (it is signed with the actor key, ES256, never with the workload secret).
    let jwks = s
        .request("GET", "/.well-known/jwks.json", None, &[], None)
        .await;
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(field("actor_token").split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256", "{header}");
    let jwk = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("the actor key is not in the JWKS: {}", jwks.text));
    let key =
        jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&["tenantry:actor"]);
    validation.set_audience(&["tenantry:actor"]);
    jsonwebtoken::decode::<Value>(&field("actor_token"), &key, &validation)
        .expect("the actor token verifies against the JWKS");
    let refused = s
        .request(
            "POST",
            "/mcp",
            Some(&field("actor_token")),
            &[],
            Some(RequestBody::Json(
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "replay", "version": "1"}}}),
            )),
        )
        .await;
    assert_eq!(
        refused.status, 401,
        "an actor token is no credential: {}",
        refused.text
    );

    // The tool call is metered with the agent's session and runtime.
    let scope = tenantry_core::TenantScope::for_operator(
        tenantry_core::OperatorGrant::for_tests(),
        tenantry_core::TenantId::new("acme").unwrap(),
    );
    let mut entry = None;
    for _ in 0..100 {
        let entries = s
            .server()
            .state
            .store
            .list_usage(&scope, 0, i64::MAX, 100)
            .await
            .unwrap();
        entry = entries
            .into_iter()
            .find(|e| e.kind == tenantry_store::UsageKind::Tool);
        if entry.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let entry = entry.expect("a tool entry in the ledger");
    assert_eq!(entry.resource.as_deref(), Some("crm___echo"));
    assert_eq!(entry.provider.as_deref(), Some("crm"));
    assert_eq!(entry.session_id.as_deref(), Some(session.as_str()));
    assert_eq!(
        entry.runtime.as_ref().map(|r| r.as_str()),
        Some("support-bot")
    );
    assert_eq!(entry.user_id.as_ref().map(|u| u.as_str()), Some("alice"));
    assert_eq!(entry.status, "ok");

    // Invoked with an API key, the agent has no user token to exchange: refused.
    let (_, key) = s.create_api_key("acme", &[]).await;
    let session2 = format!("tool-session-b-{:030x}", std::process::id());
    let r = s
        .request(
            "POST",
            "/v1/runtimes/support-bot/invocations",
            Some(&key),
            &[("X-Tenantry-Session-Id", &session2)],
            Some(RequestBody::Json(
                json!({"tool": "crm___echo", "arguments": {}}),
            )),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["answer"]["error"]["code"], -32010, "{}", r.text);
    let listing = s
        .get("/v1/admin/tenants/acme/credentials", &s.admin_key)
        .await;
    assert!(!listing.text.contains(CLIENT_SECRET));
}
