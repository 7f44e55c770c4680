//! Interoperability through the real server: the official Python MCP SDK (`pip install mcp`),
//! a client of another implementation, connects to Tenantry's `/mcp` with a tenant API key,
//! lists and calls the tools of a local upstream MCP server and a local OpenAPI service, and
//! gets Tenantry's policy and timeout errors as MCP errors.
//!
//! The client is `tenantry-tools`' `tests/python/mcp_client.py` (the SDK's 2.x `Client`, or
//! 1.x `ClientSession`). Without `python3 -c "import mcp"` the test prints a SKIP line, unless
//! `TENANTRY_REQUIRE_MCP_CLIENT=1` (set by `.ci/run`) makes it fail.

#![allow(clippy::unwrap_used)]

mod tools_support;

use serde_json::{Value, json};
use tools_support::*;

use tenantry_tools::testing::python_client::{available_or_skip, run as run_client};

#[tokio::test]
async fn the_python_mcp_sdk_lists_and_calls_through_tenantry() {
    if !available_or_skip("the_python_mcp_sdk_lists_and_calls_through_tenantry").await {
        return;
    }
    let env = Env::start().await;
    env.policy(
        json!({"tier": "basic"}),
        "@id(\"short-lists\")\nforbid (principal, action == Tenantry::Action::\"pets___listPets\", resource)\nwhen { context.input has limit && context.input.limit >= 10 };\n",
        "enforce",
        201,
    )
    .await;

    let acme = run_client(&format!("{}/mcp", env.server.url), env.key("acme")).await;
    let tools: Vec<&str> = acme["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in [
        "kit___echo",
        "kit___add",
        "pets___getPet",
        "pets___listPets",
        "pets___get_echo_value",
    ] {
        assert!(tools.contains(&t), "{t} missing from {tools:?}");
    }
    assert_eq!(
        acme["schemas"]["pets___getPet"]["required"],
        json!(["petId"])
    );
    let echo: Value = serde_json::from_str(acme["echo"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(echo["arguments"], json!({"message": "from python"}));
    assert_eq!(echo["authorization"], json!(format!("Bearer {ACME_KIT}")));
    assert_eq!(acme["add"], json!({"text": "42", "is_error": false}));
    assert_eq!(
        acme["tool_error"],
        json!({"text": "the tool failed", "is_error": true})
    );
    assert!(acme["pet"]["text"].as_str().unwrap().contains("\"Tom\""));
    let api_echo: Value = serde_json::from_str(acme["echo_api"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(api_echo["path"], json!("/echo/a%20b%2Fc"));
    assert_eq!(api_echo["x_api_key"], json!(ACME_PETS));

    let errors = &acme["errors"];
    assert_eq!(errors["kit___nope"]["code"], json!(-32602), "{errors}");
    assert_eq!(errors["pets___listPets"]["code"], json!(-32010), "{errors}");
    assert!(
        errors["pets___listPets"]["message"]
            .as_str()
            .unwrap()
            .contains("tier:basic@v1#short-lists"),
        "{errors}"
    );
    assert_eq!(errors["kit___slow"]["code"], json!(-32011), "{errors}");

    // The premium tenant is not bound by the basic tier's set, and gets its own credential.
    let bolt = run_client(&format!("{}/mcp", env.server.url), env.key("bolt")).await;
    let echo: Value = serde_json::from_str(bolt["echo"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(echo["authorization"], json!(format!("Bearer {BOLT_KIT}")));
    assert!(
        bolt["errors"]["pets___listPets"]
            .get("unexpected_result")
            .is_some(),
        "{}",
        bolt["errors"]
    );
    env.assert_no_secrets(&[env.key("acme"), env.key("bolt")]);
}
