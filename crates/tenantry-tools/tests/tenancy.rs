//! The tenancy laws at the tool gateway, tried from the outside: another tenant's target does
//! not exist for you, a tenant's credential goes only on its own calls, the policy hides and
//! refuses, and an MCP session belongs to the caller that opened it.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{FnPolicy, Harness, MapVault, allow_all, mcp_target, openapi_target, text};
use futures_util::future::join_all;
use serde_json::{Value, json};
use tenantry_tools::ToolDecision;
use tenantry_tools::testing::{MockMcpServer, MockOpenApi};

#[tokio::test]
async fn another_tenants_target_does_not_exist() {
    let shared = MockMcpServer::start().await;
    let acme_own = MockMcpServer::start().await;
    let bolt_own = MockMcpServer::start().await;
    let h = Harness::start(
        vec![
            mcp_target("kit", &shared.url(), json!({})),
            mcp_target("vault", &acme_own.url(), json!({"tenant": "acme"})),
            mcp_target("desk", &bolt_own.url(), json!({"tenant": "bolt"})),
        ],
        allow_all(),
        MapVault::with(&[]),
    )
    .await;
    let mut acme = h.client("acme:ann:basic");
    acme.initialize("2025-06-18").await;
    let mut bolt = h.client("bolt:ann:basic");
    bolt.initialize("2025-06-18").await;

    let acme_tools = acme.tool_names().await;
    assert!(acme_tools.contains(&"vault___echo".to_owned()));
    assert!(acme_tools.contains(&"kit___echo".to_owned()));
    assert!(
        acme_tools.iter().all(|t| !t.starts_with("desk___")),
        "{acme_tools:?}"
    );
    let bolt_tools = bolt.tool_names().await;
    assert!(
        bolt_tools.iter().all(|t| !t.starts_with("vault___")),
        "{bolt_tools:?}"
    );
    assert!(bolt_tools.contains(&"kit___echo".to_owned()));
    assert!(bolt_tools.contains(&"desk___echo".to_owned()));

    // Calling it answers exactly what a never-registered target answers.
    let theirs = bolt.call("vault___echo", json!({})).await;
    let nothing = bolt.call("ghost___echo", json!({})).await;
    assert_eq!(theirs.status, nothing.status);
    assert_eq!(theirs.body["error"]["code"], nothing.body["error"]["code"]);
    assert_eq!(theirs.body["error"]["data"], nothing.body["error"]["data"]);
    assert_eq!(
        theirs.body["error"]["message"]
            .as_str()
            .unwrap()
            .replace("vault", "ghost"),
        nothing.body["error"]["message"].as_str().unwrap()
    );
    assert!(
        acme_own
            .requests()
            .iter()
            .all(|r| r.rpc_method().as_deref() != Some("tools/call")),
        "bolt's call must not reach acme's upstream"
    );

    // Each tenant's own target reaches its own upstream only.
    assert_eq!(
        bolt.call("desk___echo", json!({"message": "b"})).await.body["result"]["isError"],
        json!(false)
    );
    assert_eq!((acme_own.calls().len(), bolt_own.calls().len()), (0, 1));
    acme.call("vault___echo", json!({"message": "a"})).await;
    assert_eq!((acme_own.calls().len(), bolt_own.calls().len()), (1, 1));
    let _ = acme.call("desk___echo", json!({})).await;
    assert_eq!(bolt_own.calls().len(), 1);
}

/// A policy that, like the Cedar engine, refuses any tool it has not been told about.
#[derive(Debug, Default)]
struct CataloguePolicy {
    known: std::sync::Mutex<std::collections::HashMap<String, Value>>,
}

impl tenantry_tools::ToolPolicy for CataloguePolicy {
    fn visible(
        &self,
        _: &tenantry_tools::CallerIdentity,
        tool: &tenantry_tools::ToolRef<'_>,
    ) -> bool {
        self.known.lock().unwrap().contains_key(tool.name)
    }
    fn authorize(&self, r: &tenantry_tools::ToolAuthzRequest<'_>) -> ToolDecision {
        if self.known.lock().unwrap().contains_key(r.tool.name) {
            ToolDecision::Allow
        } else {
            ToolDecision::Deny {
                reason: format!("{} is not in the catalogue", r.tool.name),
            }
        }
    }
    fn tools_offered(
        &self,
        target: &tenantry_tools::TargetSpec,
        tools: &[tenantry_tools::OfferedTool<'_>],
    ) {
        let mut known = self.known.lock().unwrap();
        for t in tools {
            assert!(t.name.starts_with(&format!("{}___", target.name)));
            known.insert(t.name.to_owned(), t.input_schema.clone());
        }
    }
}

#[tokio::test]
async fn the_policy_learns_each_tool_before_deciding_on_it() {
    let mcp = MockMcpServer::start().await;
    let api = MockOpenApi::start().await;
    let policy = Arc::new(CataloguePolicy::default());
    let h = Harness::start(
        vec![
            mcp_target("kit", &mcp.url(), json!({})),
            openapi_target("pets", &api.spec(), &api.base_url(), json!({})),
        ],
        policy.clone(),
        MapVault::with(&[]),
    )
    .await;
    // A first call, with no listing before it, on each kind of target.
    let mut c = h.client("acme:ann:basic");
    c.initialize("2025-06-18").await;
    assert_eq!(
        text(&c.call("kit___add", json!({"a": 1, "b": 1})).await),
        "2"
    );
    let pet = c.call("pets___getPet", json!({"petId": 1})).await;
    assert_eq!(pet.body["result"]["isError"], json!(false), "{pet:?}");
    // The listing shows everything, with the schemas the policy was given.
    let list = c.request("tools/list", json!({})).await;
    let tools = list.body["result"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 9);
    let known = policy.known.lock().unwrap().clone();
    for t in tools {
        assert_eq!(
            known.get(t["name"].as_str().unwrap()),
            Some(&t["inputSchema"]),
            "{t}"
        );
    }
}

#[tokio::test]
async fn a_tenants_credential_goes_only_on_its_own_calls() {
    let mcp = MockMcpServer::start().await;
    let api = MockOpenApi::start().await;
    let h = Harness::start(
        vec![
            mcp_target(
                "kit",
                &mcp.url(),
                json!({"credential": {"placement": "bearer"}}),
            ),
            openapi_target(
                "hdr",
                &api.spec(),
                &api.base_url(),
                json!({"credential": {"placement": "header", "name": "X-Api-Key"}}),
            ),
            openapi_target(
                "qry",
                &api.spec(),
                &api.base_url(),
                json!({"credential": {"placement": "query", "name": "api_key"}}),
            ),
        ],
        allow_all(),
        MapVault::with(&[("acme", "acme-key"), ("bolt", "bolt-key")]),
    )
    .await;
    let mut acme = h.client("acme:ann:basic");
    acme.initialize("2025-06-18").await;
    let mut bolt = h.client("bolt:bob:basic");
    bolt.initialize("2025-06-18").await;

    // Interleaved calls of both tenants through shared targets.
    let (acme, bolt) = (
        Arc::new(tokio::sync::Mutex::new(acme)),
        Arc::new(tokio::sync::Mutex::new(bolt)),
    );
    let calls = (0..16).map(|i| {
        let (client, tenant) = if i % 2 == 0 {
            (acme.clone(), "acme")
        } else {
            (bolt.clone(), "bolt")
        };
        async move {
            let mut c = client.lock().await;
            let echoed: Value = serde_json::from_str(&text(
                &c.call("kit___echo", json!({"message": tenant})).await,
            ))
            .unwrap();
            assert_eq!(
                echoed["authorization"],
                json!(format!("Bearer {tenant}-key"))
            );
            let hdr: Value = serde_json::from_str(&text(
                &c.call(
                    "hdr___get_echo_value",
                    json!({"value": tenant, "X-Trace": "t"}),
                )
                .await,
            ))
            .unwrap();
            assert_eq!(hdr["x_api_key"], json!(format!("{tenant}-key")));
            assert_eq!(hdr["x_trace"], json!("t"));
            assert_eq!(hdr["authorization"], Value::Null);
            // The caller cannot supply the credential parameter: it is not in the schema, and
            // the tenant's credential replaces anything sent under that name.
            let qry: Value = serde_json::from_str(&text(
                &c.call(
                    "qry___get_echo_value",
                    json!({"value": tenant, "api_key": "stolen"}),
                )
                .await,
            ))
            .unwrap();
            assert_eq!(qry["query"], json!(format!("api_key={tenant}-key")));
        }
    });
    join_all(calls).await;

    // Upstream side: every request carried the credential of the tenant that made it, and each
    // upstream session was opened and used with one credential only.
    let mut sessions: std::collections::HashMap<String, String> = Default::default();
    for r in mcp.requests() {
        let auth = r.header("authorization").unwrap().to_owned();
        if let Some(tenant) = r
            .json()
            .pointer("/params/arguments/message")
            .and_then(Value::as_str)
        {
            assert_eq!(auth, format!("Bearer {tenant}-key"));
        }
        if let Some(s) = r.header("mcp-session-id") {
            let first = sessions.entry(s.to_owned()).or_insert_with(|| auth.clone());
            assert_eq!(
                *first, auth,
                "an upstream session was used with two credentials"
            );
        }
    }
    assert_eq!(sessions.len(), 2);
    assert_eq!(mcp.calls().len(), 16);
    for r in api.requests() {
        let key = r
            .header("x-api-key")
            .map(str::to_owned)
            .or_else(|| r.path.split_once("api_key=").map(|(_, k)| k.to_owned()));
        let tenant = r
            .path
            .trim_start_matches("/echo/")
            .split('?')
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(key, Some(format!("{tenant}-key")), "{}", r.path);
        assert!(!r.path.contains("stolen"));
    }
}

#[tokio::test]
async fn a_shared_target_without_a_credential_gets_one_upstream_session_per_tenant() {
    let mcp = MockMcpServer::start().await;
    let h = Harness::start(
        vec![mcp_target("kit", &mcp.url(), json!({}))],
        allow_all(),
        MapVault::with(&[]),
    )
    .await;
    let mut acme = h.client("acme:ann:basic");
    acme.initialize("2025-06-18").await;
    let mut bolt = h.client("bolt:bob:basic");
    bolt.initialize("2025-06-18").await;
    for i in 0..6 {
        let (client, tenant) = if i % 2 == 0 {
            (&mut acme, "acme")
        } else {
            (&mut bolt, "bolt")
        };
        let answer = client.call("kit___echo", json!({"message": tenant})).await;
        assert!(text(&answer).contains(tenant), "{answer:?}");
    }
    // Upstream side: the calls of each tenant went in one upstream session, and no upstream
    // session carried both tenants' calls (the upstream keeps state per session, e.g. its
    // own memory of earlier calls, which must not cross tenants).
    let mut session_of: std::collections::HashMap<String, String> = Default::default();
    for r in mcp.calls() {
        let tenant = r
            .json()
            .pointer("/params/arguments/message")
            .and_then(Value::as_str)
            .unwrap()
            .to_owned();
        let session = r
            .header("mcp-session-id")
            .expect("calls are made in an upstream session")
            .to_owned();
        let first = session_of.entry(session.clone()).or_insert(tenant.clone());
        assert_eq!(
            *first, tenant,
            "upstream session {session} carried calls of two tenants"
        );
    }
    assert_eq!(session_of.len(), 2, "{session_of:?}");
}

#[tokio::test]
async fn a_tenant_without_a_credential_sees_none_of_the_targets_tools_and_cannot_call_them() {
    let mcp = MockMcpServer::start().await;
    let api = MockOpenApi::start().await;
    let h = Harness::start(
        vec![
            mcp_target(
                "kit",
                &mcp.url(),
                json!({"credential": {"placement": "bearer"}}),
            ),
            openapi_target(
                "pets",
                &api.spec(),
                &api.base_url(),
                json!({"credential": {"placement": "header", "name": "X-Api-Key"}}),
            ),
            openapi_target("open", &api.spec(), &api.base_url(), json!({})),
        ],
        allow_all(),
        MapVault::with(&[("acme", "acme-key")]),
    )
    .await;
    let mut cyan = h.client("cyan:cy:basic");
    cyan.initialize("2025-06-18").await;
    let tools = cyan.tool_names().await;
    assert!(
        !tools.is_empty() && tools.iter().all(|t| t.starts_with("open___")),
        "{tools:?}"
    );
    let a = cyan.call("pets___listPets", json!({})).await;
    assert_eq!(a.body["error"]["code"], json!(-32010), "{a:?}");
    assert_eq!(
        a.body["error"]["data"]["reason"],
        json!("credential_missing")
    );
    let a = cyan.call("kit___echo", json!({})).await;
    assert_eq!(
        a.body["error"]["data"]["reason"],
        json!("credential_missing")
    );
    assert!(
        mcp.requests().is_empty(),
        "nothing may reach the upstream without a credential"
    );
    assert!(api.requests().is_empty());
}

#[tokio::test]
async fn the_policy_hides_and_refuses() {
    let mcp = MockMcpServer::start().await;
    let api = MockOpenApi::start().await;
    // Basic tier: no kit___add; listPets only with a limit under 10. Anything named
    // `*___slow` is undecidable (the engine failing).
    let policy = Arc::new(FnPolicy(Box::new(|caller, tool, input| {
        if tool.ends_with("___slow") {
            return ToolDecision::Undecided {
                reason: "no policy set loaded".into(),
            };
        }
        if caller.tier.as_str() == "basic" && tool == "kit___add" {
            return ToolDecision::Deny {
                reason: "tier basic may not call kit___add".into(),
            };
        }
        if tool == "pets___listPets"
            && let Some(input) = input
            && input
                .get("limit")
                .and_then(Value::as_u64)
                .is_none_or(|l| l >= 10)
        {
            return ToolDecision::Deny {
                reason: "listPets needs a limit under 10".into(),
            };
        }
        ToolDecision::Allow
    })));
    let h = Harness::start(
        vec![
            mcp_target("kit", &mcp.url(), json!({})),
            openapi_target("pets", &api.spec(), &api.base_url(), json!({})),
        ],
        policy,
        MapVault::with(&[]),
    )
    .await;
    let mut basic = h.client("acme:ann:basic");
    basic.initialize("2025-06-18").await;
    let mut premium = h.client("bolt:bob:premium");
    premium.initialize("2025-06-18").await;

    let b = basic.tool_names().await;
    assert!(
        !b.contains(&"kit___add".to_owned()) && b.contains(&"kit___echo".to_owned()),
        "{b:?}"
    );
    assert!(
        !b.iter().any(|t| t.ends_with("___slow")),
        "undecidable tools are hidden: {b:?}"
    );
    assert!(premium.tool_names().await.contains(&"kit___add".to_owned()));

    let denied = basic.call("kit___add", json!({"a": 1, "b": 2})).await;
    assert_eq!(denied.status, 200);
    assert_eq!(denied.body["error"]["code"], json!(-32010));
    assert_eq!(
        denied.body["error"]["data"],
        json!({"code": "forbidden", "reason": "policy_denied", "retryable": false})
    );
    assert_eq!(
        denied.body["error"]["message"],
        json!("calling kit___add is not allowed: tier basic may not call kit___add")
    );
    assert!(
        mcp.calls().is_empty(),
        "a denied call must not reach the upstream"
    );
    assert_eq!(
        text(&premium.call("kit___add", json!({"a": 1, "b": 2})).await),
        "3"
    );

    // Decided with the call's input.
    let small = basic.call("pets___listPets", json!({"limit": 1})).await;
    assert_eq!(small.body["result"]["isError"], json!(false), "{small:?}");
    let big = basic.call("pets___listPets", json!({"limit": 50})).await;
    assert_eq!(big.body["error"]["data"]["reason"], json!("policy_denied"));
    assert_eq!(api.requests().len(), 1);

    // An engine that cannot decide refuses (fail closed), retryably.
    let undecided = premium.call("kit___slow", json!({"ms": 1})).await;
    assert_eq!(undecided.body["error"]["code"], json!(-32011));
    assert_eq!(
        undecided.body["error"]["data"]["reason"],
        json!("policy_undecided")
    );
    assert_eq!(undecided.body["error"]["data"]["retryable"], json!(true));
}

#[tokio::test]
async fn a_session_belongs_to_the_caller_that_opened_it() {
    let mcp = MockMcpServer::start().await;
    let h = Harness::start(
        vec![mcp_target("kit", &mcp.url(), json!({}))],
        allow_all(),
        MapVault::with(&[]),
    )
    .await;
    let mut ann = h.client("acme:ann:basic");
    ann.initialize("2025-06-18").await;
    let session = ann.session.clone();

    for other in ["bolt:ann:basic", "acme:bob:basic"] {
        let mut thief = h.client(other);
        thief.session = session.clone();
        let a = thief.request("tools/list", json!({})).await;
        assert_eq!(a.status, 404, "{other}");
        let a = thief.call("kit___echo", json!({})).await;
        assert_eq!(a.status, 404, "{other}");
        let a = thief
            .raw(reqwest::Method::DELETE, None, "application/json")
            .await;
        assert_eq!(a.status, 404, "{other}");
    }
    // The same answer as an id that never existed.
    let mut guesser = h.client("bolt:ann:basic");
    guesser.session = Some("ffffffffffffffffffffffffffffffff".into());
    let guessed = guesser.request("tools/list", json!({})).await;
    let mut thief = h.client("bolt:ann:basic");
    thief.session = session.clone();
    let stolen = thief.request("tools/list", json!({})).await;
    assert_eq!(
        (guessed.status, &guessed.body),
        (stolen.status, &stolen.body)
    );

    assert!(mcp.calls().is_empty());
    assert_eq!(
        ann.request("ping", json!({})).await.status,
        200,
        "the owner's session still works"
    );
}
