//! The model gateway from the outside: OpenAI-compatible chat (whole and streamed) and
//! embeddings through the real server, entitlement by tier, a tenant's own model, routing
//! changed through the control plane without a restart, and the ledger of every call.

#![allow(clippy::unwrap_used)]

mod gateway_support;

use gateway_support::*;
use serde_json::{Value, json};
use tenantry_models::MockConfig;
use tenantry_models::testing::MockUpstream;
use tenantry_testkit::TestServer;

#[tokio::test]
async fn starter_config_answers_offline_through_the_mock() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "standard").await;
    let token = s.token("acme", "alice", &[]);

    // A whole answer from the tier's default model.
    let r = s
        .send_json(
            "POST",
            "/v1/chat/completions",
            &token,
            chat("default", "hello there"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["object"], "chat.completion");
    assert_eq!(r.body["model"], "mock-small");
    assert_eq!(
        r.body["choices"][0]["message"]["content"],
        "echo: hello there"
    );
    let answer_usage = &r.body["usage"];
    assert!(answer_usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(answer_usage["completion_tokens"].as_u64().unwrap() > 0);
    assert!(r.header("ratelimit-limit").is_some());

    // A stream, with the usage chunk it asked for, ending in [DONE].
    let mut body = chat("smart", "stream this please");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = s
        .send_json("POST", "/v1/chat/completions", &token, body)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = sse_payloads(&r.text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "echo: stream this please");
    assert!(chunks.iter().all(|c| c["model"] == "mock-large"));
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    let streamed_usage = last["usage"].clone();
    assert!(streamed_usage["completion_tokens"].as_u64().unwrap() > 0);

    // Embeddings.
    let r = s
        .send_json(
            "POST",
            "/v1/embeddings",
            &token,
            json!({"model": "default", "input": ["one", "two words"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["data"][0]["embedding"].as_array().unwrap().len(), 64);

    // Every call is in the ledger, attributed to the user, with its model and provider.
    let entries = ledger(&s, "acme").await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(entries.iter().all(|e| e.status == "ok"
        && e.user_id.as_ref().map(|u| u.as_str()) == Some("alice")
        && e.provider.as_deref() == Some("mock")));
    let streamed = entries
        .iter()
        .find(|e| e.resource.as_deref() == Some("mock-large"))
        .unwrap();
    assert_eq!(
        streamed.output_tokens,
        streamed_usage["completion_tokens"].as_i64().unwrap()
    );
    assert!(streamed.ttft_ms.is_some());
    assert!(streamed.cost.micros() > 0);
    let report = usage(&s, "acme", "model").await;
    assert_eq!(row(&report, "mock-small").unwrap()["calls"], 2);
    assert_eq!(row(&report, "mock-large").unwrap()["calls"], 1);
    s.stop().await;
}

#[tokio::test]
async fn a_basic_tenant_cannot_use_a_premium_model() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "basic").await;
    s.create_tenant("globex", "premium").await;
    let acme = s.token("acme", "alice", &[]);
    let globex = s.token("globex", "bob", &[]);

    for model in ["mock-large", "smart"] {
        let r = s
            .send_json("POST", "/v1/chat/completions", &acme, chat(model, "hi"))
            .await;
        if model == "smart" {
            // basic has no `smart` alias: it does not exist for it.
            assert_eq!(r.status, 404, "{}", r.text);
            continue;
        }
        assert_eq!(r.status, 403, "{}", r.text);
        assert_eq!(r.code(), "model_not_entitled");
        assert_eq!(r.body["error"]["type"], "permission_error");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("basic")
        );
    }
    // The model list shows only what the tier includes.
    let r = s.get("/v1/models", &acme).await;
    assert_eq!(r.status, 200);
    let ids: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["default", "fast", "mock-small"]);
    assert_eq!(s.get("/v1/models/mock-large", &acme).await.status, 404);
    assert_eq!(s.get("/v1/models/mock-small", &acme).await.status, 200);
    // A premium tenant may use it.
    let r = s
        .send_json(
            "POST",
            "/v1/chat/completions",
            &globex,
            chat("mock-large", "hi"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Refusals are not billed.
    assert!(ledger(&s, "acme").await.is_empty());
    // The body names no model: the tier's default.
    let r = s
        .send_json(
            "POST",
            "/v1/chat/completions",
            &acme,
            json!({"messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.body["model"], "mock-small", "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn a_tenant_with_a_fine_tuned_override_gets_its_own_model() {
    let up = MockUpstream::openai_compatible(MockConfig::default()).await;
    let s = server_with(&upstream_models(&up.url(), &[])).await;
    s.create_tenant("acme", "basic").await;
    s.create_tenant("globex", "basic").await;
    let acme = s.token("acme", "alice", &[]);
    let globex = s.token("globex", "bob", &[]);

    let r = s
        .request(
            "PUT",
            "/v1/admin/tenants/acme/models",
            Some(&s.admin_key),
            &[],
            Some(tenantry_testkit::RequestBody::Json(json!({
                "default": "acme-ft",
                "models": {"acme-ft": {"provider": "up", "upstream_model": "ft:acme-v3",
                                        "input_price_per_mtok": "4", "output_price_per_mtok": "8"}}
            }))),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["source"], "control_plane");
    assert_eq!(r.body["available"][0], "default");

    let r = s
        .send_json("POST", "/v1/chat/completions", &acme, chat("default", "hi"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["model"], "acme-ft");
    let sent = up.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].json()["model"], "ft:acme-v3");
    // The upstream gets the provider's key, never the caller's credential.
    assert_eq!(
        sent[0].header("authorization"),
        Some("Bearer sk-upstream-secret")
    );
    // acme's model is in its list; another tenant on the same tier neither sees nor gets it.
    let ids = s.get("/v1/models", &acme).await.body["data"].clone();
    assert!(ids.as_array().unwrap().iter().any(|m| m["id"] == "acme-ft"));
    let r = s
        .send_json(
            "POST",
            "/v1/chat/completions",
            &globex,
            chat("default", "hi"),
        )
        .await;
    assert_eq!(r.body["model"], "mock-small");
    let r = s
        .send_json(
            "POST",
            "/v1/chat/completions",
            &globex,
            chat("acme-ft", "hi"),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);

    // Overrides are validated before they are stored.
    let r = s
        .request(
            "PUT",
            "/v1/admin/tenants/acme/models",
            Some(&s.admin_key),
            &[],
            Some(tenantry_testkit::RequestBody::Json(
                json!({"default": "nowhere"}),
            )),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("default")
    );

    // Removing the override gives acme its tier's default again, at once.
    s.admin("DELETE", "/v1/admin/tenants/acme/models", None)
        .await;
    let r = s
        .send_json("POST", "/v1/chat/completions", &acme, chat("default", "hi"))
        .await;
    assert_eq!(r.body["model"], "mock-small");
    let entries = ledger(&s, "acme").await;
    assert_eq!(entries[0].resource.as_deref(), Some("acme-ft"));
    assert_eq!(entries[0].provider.as_deref(), Some("up"));

    // A tenant deleted and created again under the same id gets nothing of the old one's
    // models, on this replica at once (its routing was cached).
    let own = json!({"default": "acme-ft", "models": {"acme-ft": {"provider": "up",
        "upstream_model": "ft:acme-v3", "input_price_per_mtok": "4", "output_price_per_mtok": "8"}}});
    s.admin("PUT", "/v1/admin/tenants/acme/models", Some(own))
        .await;
    let r = s
        .send_json("POST", "/v1/chat/completions", &acme, chat("default", "hi"))
        .await;
    assert_eq!(r.body["model"], "acme-ft", "{}", r.text);
    let r = s.delete("/v1/admin/tenants/acme", &s.admin_key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["rows"]["tenant_settings"], 1, "{}", r.text);
    s.create_tenant("acme", "basic").await;
    let acme = s.token("acme", "alice", &[]);
    let r = s
        .send_json("POST", "/v1/chat/completions", &acme, chat("default", "hi"))
        .await;
    assert_eq!(r.body["model"], "mock-small", "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn routing_changes_through_the_control_plane_apply_without_restart() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "standard").await;
    let token = s.token("acme", "alice", &[]);
    let ask = || s.send_json("POST", "/v1/chat/completions", &token, chat("fast", "hi"));
    assert_eq!(ask().await.body["model"], "mock-small");

    let before = s
        .admin("GET", "/v1/admin/models/tiers/standard", None)
        .await;
    assert_eq!(before["source"], "config");
    let mut routes = before["routes"].clone();
    routes["aliases"]["fast"] = json!("mock-large");
    let after = s
        .admin("PUT", "/v1/admin/models/tiers/standard", Some(routes))
        .await;
    assert_eq!(after["source"], "control_plane");
    assert_eq!(ask().await.body["model"], "mock-large");

    // A route to a model that is not in the catalogue is refused, naming the key.
    let r = s
        .request(
            "PUT",
            "/v1/admin/models/tiers/standard",
            Some(&s.admin_key),
            &[],
            Some(tenantry_testkit::RequestBody::Json(
                json!({"default": "mock-small", "aliases": {"fast": "gpt-9"}}),
            )),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("aliases.fast")
    );
    assert_eq!(ask().await.body["model"], "mock-large");

    // Unknown fields are refused, not ignored.
    let r = s
        .request(
            "PUT",
            "/v1/admin/models/tiers/standard",
            Some(&s.admin_key),
            &[],
            Some(tenantry_testkit::RequestBody::Json(
                json!({"defualt": "mock-small"}),
            )),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);

    // Back to the configuration file's routes.
    let reset = s
        .admin("DELETE", "/v1/admin/models/tiers/standard", None)
        .await;
    assert_eq!(reset["source"], "config");
    assert_eq!(ask().await.body["model"], "mock-small");
    // Tenant credentials cannot change routing.
    let r = s
        .send_json(
            "PUT",
            "/v1/admin/models/tiers/standard",
            &token,
            json!({"default": "mock-large"}),
        )
        .await;
    assert_eq!(r.status, 403);
    s.stop().await;
}

#[tokio::test]
async fn routes_set_through_the_control_plane_survive_a_restart_and_reach_other_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("shared.db").display());
    let a = TestServer::builder().database_url(&db).start().await;
    let b = TestServer::builder().database_url(&db).start().await;
    a.create_tenant("acme", "standard").await;
    let token_a = a.token("acme", "alice", &[]);
    let token_b = b.token("acme", "alice", &[]);
    async fn ask(s: &TestServer, t: &str) -> Value {
        s.send_json("POST", "/v1/chat/completions", t, chat("default", "hi"))
            .await
            .body["model"]
            .clone()
    }
    assert_eq!(ask(&b, &token_b).await, "mock-small");
    a.admin(
        "PUT",
        "/v1/admin/models/tiers/standard",
        Some(json!({"default": "mock-large"})),
    )
    .await;
    assert_eq!(ask(&a, &token_a).await, "mock-large");
    // The other replica re-reads routes from the store within REGISTRY_TTL.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if ask(&b, &token_b).await == "mock-large" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replica b never saw the change"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    a.stop().await;
    b.stop().await;
    // A new server on the same database starts with the stored routes.
    let c = TestServer::builder().database_url(&db).start().await;
    let token_c = c.token("acme", "alice", &[]);
    assert_eq!(ask(&c, &token_c).await, "mock-large");
    c.stop().await;
}

#[tokio::test]
async fn model_request_rates_are_per_user_and_per_tenant() {
    let s = TestServer::start().await;
    tier(
        &s,
        "metered",
        open_limits(json!({
            "model_requests_per_minute": 5,
            "per_user": {"model_requests_per_minute": 3}
        })),
        json!({"default": "mock-small"}),
    )
    .await;
    s.create_tenant("acme", "metered").await;
    s.create_tenant("globex", "metered").await;
    let alice = s.token("acme", "alice", &[]);
    let bob = s.token("acme", "bob", &[]);
    let carol = s.token("globex", "carol", &[]);
    let call = |t: &str| {
        let t = t.to_owned();
        let s = &s;
        async move {
            s.send_json("POST", "/v1/chat/completions", &t, chat("default", "hi"))
                .await
        }
    };
    for _ in 0..3 {
        assert_eq!(call(&alice).await.status, 200);
    }
    let r = call(&alice).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.code(), "rate_limited");
    assert_eq!(r.body["error"]["type"], "rate_limit_error");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("user alice")
    );
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("ratelimit-limit"), Some("3"));
    // Another user of the same tenant has its own rate, within the tenant's 5.
    assert_eq!(call(&bob).await.status, 200);
    assert_eq!(call(&bob).await.status, 200);
    let r = call(&bob).await;
    assert_eq!(r.status, 429);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tenant acme")
    );
    // Another tenant is unaffected.
    assert_eq!(call(&carol).await.status, 200);
    // A tenant override lifts acme's tenant limit; the change applies at once.
    let v = s
        .admin(
            "PUT",
            "/v1/admin/tenants/acme/limits",
            Some(json!({"model_requests_per_minute": 100, "per_user": {"model_requests_per_minute": 100}})),
        )
        .await;
    assert_eq!(v["effective"]["tenant"]["model_requests_per_minute"], 100);
    // GCRA keeps the debt of the calls made under the old rate (a minute's worth at 5 per
    // minute), which the new rate of 100 per minute pays off in 0.6 s instead of 12 s.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(call(&bob).await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_the_gateway_limit() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "premium").await;
    let token = s.token("acme", "alice", &[]);
    // 2 MiB is over the control plane's 1 MiB but within the gateway's 10 MiB.
    let long = "word ".repeat(2 * 1024 * 1024 / 5);
    let mut body = chat("default", &long);
    body["max_tokens"] = json!(5);
    let r = s
        .send_json("POST", "/v1/chat/completions", &token, body)
        .await;
    assert_eq!(r.status, 200, "{}", &r.text[..r.text.len().min(300)]);
    let huge = "x".repeat(11 * 1024 * 1024);
    let r = s
        .send_json(
            "POST",
            "/v1/chat/completions",
            &token,
            chat("default", &huge),
        )
        .await;
    assert_eq!(r.status, 413, "{}", &r.text[..r.text.len().min(300)]);
    s.stop().await;
}

#[test]
fn the_starter_config_carries_the_models_starter_block() {
    // `tenantry init` writes examples/tenantry.toml; its [models] part is tenantry-models'
    // STARTER_CONFIG, verbatim, so the two cannot drift apart.
    let example = include_str!("../../../examples/tenantry.toml");
    assert!(example.contains(tenantry_models::STARTER_CONFIG));
}
