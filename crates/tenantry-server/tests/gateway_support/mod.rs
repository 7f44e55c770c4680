//! Helpers of the model gateway tests: a server whose `[models]` gains an OpenAI-compatible
//! provider `up` pointing at a local mock upstream, tiers made through the control plane, and
//! the ledger read back through the usage report.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::{Value, json};
use tenantry_models::ModelsConfig;
use tenantry_testkit::TestServer;

/// Starts a server whose config adds `extra_models` (TOML of a `[models]`-relative fragment:
/// providers and catalogue entries) to the starter's.
pub async fn server_with(extra_models: &str) -> TestServer {
    let extra: ModelsConfig = toml::from_str(extra_models).unwrap();
    TestServer::builder()
        .configure(move |c| {
            c.models.providers.extend(extra.providers);
            c.models.catalog.extend(extra.catalog);
            c.models.queues.extend(extra.queues);
        })
        .start()
        .await
}

/// The TOML of provider `up` (OpenAI-compatible at `base`) with short deadlines, and catalogue
/// models `NAME` -> upstream id `NAME-upstream`, priced 1 and 2 micro-dollars per input and
/// output token.
pub fn upstream_models(base: &str, models: &[&str]) -> String {
    let mut t = format!(
        "[providers.up]\nkind = \"openai\"\nbase_url = \"{base}/v1\"\napi_key = \"sk-upstream-secret\"\n\
         timeout_ms = 1500\nstream_idle_timeout_ms = 500\nconnect_timeout_ms = 500\n"
    );
    for m in models {
        t.push_str(&format!(
            "[catalog.{m}]\nprovider = \"up\"\nupstream_model = \"{m}-upstream\"\n\
             input_price_per_mtok = \"1\"\noutput_price_per_mtok = \"2\"\n"
        ));
    }
    t
}

/// Creates (or replaces) a tier through the control plane: `limits` as JSON, everything
/// allowed, and routes `default` -> `default_model` with optional fallbacks.
pub async fn tier(s: &TestServer, name: &str, limits: Value, routes: Value) {
    s.admin(
        "PUT",
        &format!("/v1/admin/tiers/{name}"),
        Some(json!({"limits": limits, "allowed_models": ["*"]})),
    )
    .await;
    s.admin(
        "PUT",
        &format!("/v1/admin/models/tiers/{name}"),
        Some(routes),
    )
    .await;
}

/// A tier on the mock models whose guardrail profile is `profile`.
pub async fn guarded_tier(s: &TestServer, name: &str, profile: &str) {
    s.admin(
        "PUT",
        &format!("/v1/admin/tiers/{name}"),
        Some(
            json!({"limits": open_limits(json!({})), "allowed_models": ["*"],
                    "guardrail_profile": profile}),
        ),
    )
    .await;
    s.admin(
        "PUT",
        &format!("/v1/admin/models/tiers/{name}"),
        Some(json!({"default": "mock-small"})),
    )
    .await;
}

/// Limits that never refuse at ingress; the gateway's own are given by the test.
pub fn open_limits(extra: Value) -> Value {
    let mut l = json!({"requests_per_second": 100000, "burst": 100000});
    if let (Some(l), Some(e)) = (l.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            l.insert(k.clone(), v.clone());
        }
    }
    l
}

pub fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// The usage report's rows for one tenant.
pub async fn usage(s: &TestServer, tenant: &str, group_by: &str) -> Value {
    s.admin(
        "GET",
        &format!("/v1/admin/usage?tenant={tenant}&group_by={group_by}"),
        None,
    )
    .await
}

/// The report row of `group` (e.g. a model name), if any.
pub fn row<'a>(report: &'a Value, group: &str) -> Option<&'a Value> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == group)
}

/// The ledger entries' statuses of a tenant, from the report grouped by... status is not a
/// group, so the tests read entries through the store directly.
pub async fn ledger(s: &TestServer, tenant: &str) -> Vec<tenantry_store::UsageRecord> {
    let state = &s.server().state;
    state.ledger.flush(std::time::Duration::from_secs(5)).await;
    let scope = tenantry_core::TenantScope::for_operator(
        tenantry_core::OperatorGrant::for_tests(),
        tenantry_core::TenantId::new(tenant).unwrap(),
    );
    let mut v = state
        .store
        .list_usage(&scope, 0, i64::MAX, 10_000)
        .await
        .unwrap();
    v.reverse();
    v
}

/// Reads an SSE body as it arrives: the `data:` payloads, until the connection ends.
pub fn sse_payloads(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}
