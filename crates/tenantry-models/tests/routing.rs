//! Routing, entitlement, fallback, failure classification and metering, through the router
//! and the real HTTP clients against local mock upstreams.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tenantry_core::{ErrorCode, Money};
use tenantry_models::testing::{MockUpstream, Reply};
use tenantry_models::wire::{ChatChunk, EmbeddingVector, EmbeddingsRequest, FinishReason};
use tenantry_models::{
    MockConfig, ModelsConfig, ProviderError, RouteError, Router, STARTER_CONFIG, TenantModels,
};

#[derive(Deserialize)]
struct File {
    models: ModelsConfig,
}

fn starter() -> Router {
    let f: File = toml::from_str(STARTER_CONFIG).unwrap();
    Router::new(&f.models, &no_env).unwrap()
}

fn ids(r: &Router, t: &tenantry_core::Tier, tenant: Option<&TenantModels>) -> Vec<String> {
    r.models_for(t, tenant)
        .data
        .into_iter()
        .map(|m| m.id)
        .collect()
}

#[test]
fn starter_config_routes_every_tier_to_the_mock() {
    let r = starter();
    for name in ["basic", "standard", "premium"] {
        let allowed: &[&str] = match name {
            "basic" => &["default", "fast"],
            "standard" => &["default", "fast", "smart"],
            _ => &["*"],
        };
        let plan = r.resolve(&tier(name, allowed), None, "default").unwrap();
        assert!(plan.primary().model.starts_with("mock-"), "{name}");
        assert_eq!(plan.primary().provider, "mock");
        // An empty model name means `default`.
        assert_eq!(r.resolve(&tier(name, allowed), None, "").unwrap(), plan);
    }
}

#[test]
fn entitlement_follows_allowed_models_and_aliases() {
    let r = starter();
    let basic = tier("basic", &["default", "fast"]);
    // Through an allowed alias, and by the name of the model an allowed alias points to.
    assert_eq!(
        r.resolve(&basic, None, "fast").unwrap().primary().model,
        "mock-small"
    );
    assert_eq!(
        r.resolve(&basic, None, "mock-small")
            .unwrap()
            .primary()
            .model,
        "mock-small"
    );
    // A premium model is refused with a distinct, stable code.
    let e = r.resolve(&basic, None, "mock-large").unwrap_err();
    assert!(matches!(e, RouteError::NotEntitled { .. }));
    assert_eq!(e.code(), ErrorCode::ModelNotEntitled);
    assert_eq!(e.code().as_str(), "model_not_entitled");
    assert_eq!(e.code().http_status(), 403);
    assert!(!e.code().retryable());
    // An alias the tier does not define does not exist for it.
    assert!(matches!(
        r.resolve(&basic, None, "smart").unwrap_err(),
        RouteError::UnknownModel(_)
    ));
    assert_eq!(
        r.resolve(&basic, None, "gpt-9").unwrap_err().code(),
        ErrorCode::NotFound
    );
    // An alias that exists but is not in allowed_models, pointing to a model not allowed.
    let narrow = tier("standard", &["default"]);
    assert!(matches!(
        r.resolve(&narrow, None, "smart").unwrap_err(),
        RouteError::NotEntitled { .. }
    ));
    // A tier with nothing allowed can use nothing.
    let none = tier("basic", &[]);
    assert!(r.resolve(&none, None, "default").is_err());
    assert!(r.models_for(&none, None).data.is_empty());
    // A tier with no routes has no default.
    let unrouted = tier("gold", &["*"]);
    assert_eq!(
        r.resolve(&unrouted, None, "default").unwrap_err(),
        RouteError::NoDefault("gold".into())
    );
    assert_eq!(
        r.resolve(&unrouted, None, "mock-large")
            .unwrap()
            .primary()
            .model,
        "mock-large"
    );

    assert_eq!(ids(&r, &basic, None), ["default", "fast", "mock-small"]);
    let standard = tier("standard", &["default", "fast", "smart"]);
    assert_eq!(
        ids(&r, &standard, None),
        ["default", "fast", "smart", "mock-large", "mock-small"]
    );
}

#[test]
fn a_tenant_override_gives_the_tenant_its_own_model() {
    let r = starter();
    let acme: TenantModels = serde_json::from_value(json!({
        "default": "acme-ft",
        "models": {"acme-ft": {"provider": "mock", "upstream_model": "acme-ft-v3",
                               "input_price_per_mtok": "1.5", "output_price_per_mtok": "6"}}
    }))
    .unwrap();
    r.validate_tenant_models(&acme).unwrap();
    let basic = tier("basic", &["default", "fast"]);
    let plan = r.resolve(&basic, Some(&acme), "default").unwrap();
    assert_eq!(plan.primary().model, "acme-ft");
    assert_eq!(plan.primary().upstream_model, "acme-ft-v3");
    assert_eq!(
        r.resolve(&basic, Some(&acme), "acme-ft")
            .unwrap()
            .primary()
            .model,
        "acme-ft"
    );
    assert_eq!(
        ids(&r, &basic, Some(&acme)),
        ["default", "fast", "acme-ft", "mock-small"]
    );
    // Another tenant on the same tier keeps the tier's default and cannot name acme's model.
    assert_eq!(
        r.resolve(&basic, None, "default").unwrap().primary().model,
        "mock-small"
    );
    assert!(matches!(
        r.resolve(&basic, None, "acme-ft").unwrap_err(),
        RouteError::UnknownModel(_)
    ));
    // Overrides are validated before they are stored.
    let bad: TenantModels = serde_json::from_value(json!({"default": "nope"})).unwrap();
    let e = r.validate_tenant_models(&bad).unwrap_err();
    assert!(e.key.ends_with("default"), "{e}");
    let clash: TenantModels =
        serde_json::from_value(json!({"models": {"mock-small": {"provider": "mock"}}})).unwrap();
    assert!(r.validate_tenant_models(&clash).is_err());
}

#[test]
fn configuration_errors_name_the_key() {
    let bad = |toml_text: &str| {
        let c: ModelsConfig = toml::from_str(toml_text).unwrap();
        Router::new(&c, &no_env).unwrap_err()
    };
    let e = bad("[catalog.m]\nprovider = \"ghost\"\n");
    assert_eq!(e.key, "catalog.m.provider");
    let e = bad(
        "[providers.mock]\nkind = \"mock\"\n[catalog.m]\nprovider = \"mock\"\n[tiers.basic]\ndefault = \"x\"\n",
    );
    assert_eq!(e.key, "tiers.basic.default");
    let e = bad(
        "[providers.mock]\nkind = \"mock\"\n[catalog.m]\nprovider = \"mock\"\n[tiers.basic]\naliases = { m = \"m\" }\n",
    );
    assert_eq!(e.key, "tiers.basic.aliases.m");
    let e = bad("[providers.c]\nkind = \"anthropic\"\napi_key_env = \"MISSING_KEY\"\n");
    assert_eq!(e.key, "providers.c.api_key_env");
    assert!(e.to_string().contains("MISSING_KEY"));
    let e = bad("[providers.b]\nkind = \"bedrock\"\nregion = \"us-east-1\"\n");
    assert!(e.message.contains("AWS_ACCESS_KEY_ID"), "{e}");
    assert!(toml::from_str::<ModelsConfig>("[tiers.basic]\ndefualt = \"m\"\n").is_err());
}

#[test]
fn prices_are_exact_and_round_up_to_the_micro_dollar() {
    let r = starter();
    // mock-large: 3.00 in, 15.00 out per million tokens.
    assert_eq!(
        r.cost("mock-large", 1_000_000, 0),
        Some(Money::from_micros(3_000_000))
    );
    assert_eq!(r.cost("mock-large", 1, 0), Some(Money::from_micros(3)));
    assert_eq!(r.cost("mock-large", 0, 1), Some(Money::from_micros(15)));
    // mock-small: 0.10 per million: one token is 0.1 micro-dollar, billed as 1.
    assert_eq!(r.cost("mock-small", 1, 0), Some(Money::from_micros(1)));
    assert_eq!(r.cost("mock-small", 10, 0), Some(Money::from_micros(1)));
    assert_eq!(r.cost("mock-small", 11, 0), Some(Money::from_micros(2)));
    assert_eq!(r.cost("mock-small", 0, 0), Some(Money::ZERO));
    assert_eq!(r.cost("nope", 1, 1), None);
}

#[tokio::test]
async fn mock_echo_with_realistic_usage_and_cost() {
    let r = starter();
    let premium = tier("premium", &["*"]);
    let plan = r.resolve(&premium, None, "default").unwrap();
    let req = simple("default", "hello there, mock");
    assert_eq!(plan.token_estimate(&req), 3 + 4 + 5 + 1024);
    let a = r.execute(&plan, req).await.unwrap();
    let msg = &a.response.choices[0].message;
    assert_eq!(msg.text(), "echo: hello there, mock");
    assert_eq!(a.response.model, "mock-large");
    assert_eq!(a.usage.prompt_tokens, 12);
    assert_eq!(a.usage.completion_tokens, 7);
    assert!(!a.usage_counted);
    assert_eq!(a.cost, Money::from_micros((12 * 3 + 7 * 15) as i64));
    assert!(plan.cost_estimate(&simple("default", "hello there, mock")) >= a.cost);
}

#[tokio::test]
async fn max_tokens_truncates_and_is_applied_when_absent() {
    let r = router(
        "[providers.mock]\nkind = \"mock\"\n[catalog.m]\nprovider = \"mock\"\n[tiers.basic]\ndefault = \"m\"\ndefault_max_tokens = 3\n",
    );
    let plan = r.resolve(&tier("basic", &["*"]), None, "default").unwrap();
    let a = r
        .execute(&plan, simple("default", "one two three four five six"))
        .await
        .unwrap();
    assert_eq!(
        a.response.choices[0].finish_reason,
        Some(FinishReason::Length)
    );
    assert!(a.usage.completion_tokens <= 3);
}

fn scripted() -> Router {
    router(
        r#"
        [providers.mock]
        kind = "mock"
        ttft_ms = 60
        token_interval_ms = 5
        [[providers.mock.script]]
        content = "Let me look that up."
        tool_calls = [{ name = "get_weather", arguments = { city = "Paris" } }]
        [[providers.mock.script]]
        content = "It is 18 degrees and cloudy."
        [catalog.mock-small]
        provider = "mock"
        [tiers.basic]
        default = "mock-small"
        "#,
    )
}

#[tokio::test]
async fn mock_script_plays_tool_calls_over_turns_and_streams_word_by_word() {
    let r = scripted();
    let t = tier("basic", &["*"]);
    let plan = r.resolve(&t, None, "default").unwrap();
    // Turn 1: a tool call.
    let a = r
        .execute(&plan, simple("default", "weather?"))
        .await
        .unwrap();
    let m = &a.response.choices[0].message;
    let calls = m.tool_calls.as_ref().unwrap();
    assert_eq!(calls[0].function.name, "get_weather");
    assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
    assert_eq!(
        a.response.choices[0].finish_reason,
        Some(FinishReason::ToolCalls)
    );
    // Turn 2 (after the tool result), streamed.
    let mut req = tool_conversation();
    req.tools = None;
    req.tool_choice = None;
    req.stream = Some(true);
    req.stream_options = serde_json::from_value(json!({"include_usage": true})).unwrap();
    let started = Instant::now();
    let s = r.execute_stream(&plan, req).await.unwrap();
    let mut stream = s.stream;
    let mut chunks: Vec<ChatChunk> = Vec::new();
    let mut first_text_at = None;
    while let Some(c) = stream.next().await {
        let c = c.unwrap();
        if first_text_at.is_none()
            && c.choices
                .iter()
                .any(|ch| ch.delta.content.as_deref().is_some_and(|t| !t.is_empty()))
        {
            first_text_at = Some(started.elapsed());
        }
        chunks.push(c);
    }
    assert!(first_text_at.unwrap() >= Duration::from_millis(60));
    let words: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.content.as_deref())
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(words, ["It ", "is ", "18 ", "degrees ", "and ", "cloudy."]);
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    let usage = last.usage.clone().unwrap();
    assert_eq!(usage.completion_tokens, 8);
    assert!(chunks.iter().all(|c| c.model == "mock-small"));
    let m = s.meter.snapshot();
    assert!(m.finished && !m.usage_counted && m.error.is_none());
    assert_eq!(m.usage, usage);
    assert!(m.ttft.unwrap() >= Duration::from_millis(60));
}

#[tokio::test]
async fn usage_chunk_only_when_asked_and_metered_when_the_caller_leaves() {
    let r = scripted();
    let plan = r.resolve(&tier("basic", &["*"]), None, "default").unwrap();
    let mut req = simple("default", "weather?");
    req.stream = Some(true);
    let s = r.execute_stream(&plan, req.clone()).await.unwrap();
    let chunks: Vec<_> = s.stream.collect().await;
    assert!(chunks.iter().all(|c| c.as_ref().unwrap().usage.is_none()));
    assert!(s.meter.snapshot().finished);

    // Leave after two chunks: the upstream call is dropped, usage so far is still known.
    let s = r.execute_stream(&plan, req).await.unwrap();
    let mut stream = s.stream;
    stream.next().await.unwrap().unwrap();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    let m = s.meter.snapshot();
    assert!(!m.finished);
    assert!(m.usage_counted);
    assert_eq!(m.usage.prompt_tokens, 3 + 4 + 2);
    assert_eq!(m.usage.completion_tokens, 1); // "Let "
}

fn two_upstreams(first: &str, second: &str, timeout_ms: u64) -> Router {
    router(&format!(
        r#"
        [providers.a]
        kind = "openai"
        base_url = "{first}/v1"
        timeout_ms = {timeout_ms}
        stream_idle_timeout_ms = {timeout_ms}
        [providers.b]
        kind = "openai"
        base_url = "{second}/v1"
        [catalog.m1]
        provider = "a"
        upstream_model = "model-one"
        input_price_per_mtok = "1"
        [catalog.m2]
        provider = "b"
        upstream_model = "model-two"
        input_price_per_mtok = "2"
        [tiers.basic]
        default = "m1"
        fallback = {{ m1 = ["m2"] }}
        "#
    ))
}

#[tokio::test]
async fn falls_back_to_the_next_model_when_the_first_answers_503() {
    let down = MockUpstream::start(|_| {
        Reply::Json(503, json!({"error": {"message": "model overloaded"}}))
    })
    .await;
    let up = MockUpstream::openai_compatible(MockConfig::default()).await;
    let r = two_upstreams(&down.url(), &up.url(), 2000);
    let plan = r
        .resolve(&tier("basic", &["default"]), None, "default")
        .unwrap();
    assert_eq!(plan.attempts.len(), 2);
    let a = r.execute(&plan, simple("default", "hi")).await.unwrap();
    assert_eq!(a.attempt.model, "m2");
    assert_eq!(a.response.model, "m2");
    assert_eq!(a.failures.len(), 1);
    assert_eq!(a.failures[0].model, "m1");
    assert!(matches!(
        a.failures[0].error,
        ProviderError::Upstream { status: 503, .. }
    ));
    assert_eq!(up.requests()[0].json()["model"], "model-two");
    assert_eq!(down.requests()[0].json()["model"], "model-one");

    // Streaming falls back the same way.
    let mut req = simple("default", "hi there");
    req.stream = Some(true);
    let s = r.execute_stream(&plan, req).await.unwrap();
    assert_eq!(s.attempt.model, "m2");
    let text: String = s
        .stream
        .map(|c| c.unwrap())
        .filter_map(|c| async move { c.choices.first()?.delta.content.clone() })
        .collect()
        .await;
    assert_eq!(text, "echo: hi there");
    let m = s.meter.snapshot();
    assert!(m.finished && !m.usage_counted);
}

#[tokio::test]
async fn a_request_the_upstream_refuses_is_not_retried_elsewhere() {
    let bad = MockUpstream::start(|_| {
        Reply::Json(400, json!({"error": {"message": "context too long"}}))
    })
    .await;
    let up = MockUpstream::openai_compatible(MockConfig::default()).await;
    let r = two_upstreams(&bad.url(), &up.url(), 2000);
    let plan = r
        .resolve(&tier("basic", &["default"]), None, "default")
        .unwrap();
    let e = r.execute(&plan, simple("default", "hi")).await.unwrap_err();
    assert_eq!(e.failures.len(), 1);
    assert_eq!(e.error().code(), ErrorCode::InvalidRequest);
    assert!(e.to_string().contains("context too long"));
    assert!(up.requests().is_empty());
}

async fn single(reply: Reply, stream: bool) -> (Result<Vec<ChatChunk>, ProviderError>, Duration) {
    let up = MockUpstream::start(move |_| reply.clone()).await;
    let r = router(&format!(
        r#"
        [providers.a]
        kind = "openai"
        base_url = "{}/v1"
        timeout_ms = 300
        stream_idle_timeout_ms = 300
        [catalog.m1]
        provider = "a"
        [tiers.basic]
        default = "m1"
        "#,
        up.url()
    ));
    let plan = r.resolve(&tier("basic", &["*"]), None, "default").unwrap();
    let started = Instant::now();
    let mut req = simple("default", "hi");
    if !stream {
        let out = r
            .execute(&plan, req)
            .await
            .map(|_| Vec::new())
            .map_err(|e| e.error().clone());
        return (out, started.elapsed());
    }
    req.stream = Some(true);
    let out = match r.execute_stream(&plan, req).await {
        Err(e) => Err(e.error().clone()),
        Ok(s) => {
            let mut chunks = Vec::new();
            let mut stream = s.stream;
            let mut result = Ok(());
            while let Some(c) = stream.next().await {
                match c {
                    Ok(c) => chunks.push(c),
                    Err(e) => result = Err(e),
                }
            }
            result.map(|()| chunks)
        }
    };
    (out, started.elapsed())
}

#[tokio::test]
async fn upstream_failures_become_classified_errors_quickly() {
    let quick = Duration::from_secs(3);

    let (r, t) = single(
        Reply::Json(500, json!({"error": {"message": "boom"}})),
        false,
    )
    .await;
    let e = r.unwrap_err();
    assert!(
        matches!(e, ProviderError::Upstream { status: 500, .. }),
        "{e:?}"
    );
    assert_eq!(e.code(), ErrorCode::UpstreamError);
    assert!(t < quick);

    let (r, t) = single(Reply::Hang, false).await;
    let e = r.unwrap_err();
    assert!(matches!(e, ProviderError::Timeout { .. }), "{e:?}");
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert!(t < quick);

    let (r, _) = single(Reply::Hang, true).await;
    assert!(matches!(r.unwrap_err(), ProviderError::Timeout { .. }));

    let malformed = Reply::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: b"{\"id\": \"x\", \"choices\": [tru".to_vec(),
    };
    let (r, t) = single(malformed, false).await;
    let e = r.unwrap_err();
    assert!(matches!(e, ProviderError::MalformedResponse(_)), "{e:?}");
    assert_eq!(e.code(), ErrorCode::UpstreamError);
    assert!(t < quick);

    let first = json!({"id":"chatcmpl-c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"par"},"finish_reason":null}]});
    let cut = Reply::CutAfter {
        content_type: "text/event-stream".into(),
        body: format!("data: {first}\n\ndata: {{\"id\":\"chatcmpl-c\",\"cho").into_bytes(),
    };
    let (r, t) = single(cut, true).await;
    let e = r.unwrap_err();
    assert!(matches!(e, ProviderError::StreamBroken(_)), "{e:?}");
    assert!(t < quick);

    let stall = Reply::StallAfter {
        content_type: "text/event-stream".into(),
        body: format!("data: {first}\n\n").into_bytes(),
    };
    let (r, t) = single(stall, true).await;
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            ProviderError::Timeout {
                what: "stream idle",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(t < quick);

    // A stream that ends without [DONE] or a finish reason is broken, not complete.
    let (r, _) = single(Reply::sse_data([first.to_string()]), true).await;
    assert!(matches!(r.unwrap_err(), ProviderError::StreamBroken(_)));
}

#[tokio::test]
async fn embeddings_through_an_openai_compatible_upstream_and_the_mock() {
    let up = MockUpstream::openai_compatible(MockConfig::default()).await;
    let r = router(&format!(
        r#"
        [providers.remote]
        kind = "openai"
        base_url = "{}/v1"
        [providers.mock]
        kind = "mock"
        embedding_dimensions = 8
        [catalog.embed-remote]
        provider = "remote"
        upstream_model = "nomic-embed"
        input_price_per_mtok = "0.02"
        [catalog.embed-mock]
        provider = "mock"
        "#,
        up.url()
    ));
    let t = tier("basic", &["*"]);
    let req: EmbeddingsRequest =
        serde_json::from_value(json!({"model": "embed-mock", "input": ["a b", "c"]})).unwrap();
    let plan = r.resolve(&t, None, "embed-mock").unwrap();
    let a = r.embeddings(&plan, req.clone()).await.unwrap();
    assert_eq!(a.response.data.len(), 2);
    assert_eq!(a.response.usage.prompt_tokens, 3);
    let EmbeddingVector::Float(v) = &a.response.data[0].embedding else {
        panic!("float expected")
    };
    assert_eq!(v.len(), 8);
    let norm: f32 = v.iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-4);
    let again = r.embeddings(&plan, req.clone()).await.unwrap();
    assert_eq!(again.response.data, a.response.data);

    let mut b64 = req;
    b64.encoding_format = Some("base64".into());
    let plan = r.resolve(&t, None, "embed-remote").unwrap();
    let a = r.embeddings(&plan, b64).await.unwrap();
    assert_eq!(a.response.model, "embed-remote");
    assert!(matches!(
        a.response.data[0].embedding,
        EmbeddingVector::Base64(_)
    ));
    assert_eq!(up.requests()[0].json()["model"], "nomic-embed");
    assert_eq!(up.requests()[0].path, "/v1/embeddings");
}

#[tokio::test]
async fn providers_without_embeddings_say_so() {
    let r = router(
        "[providers.c]\nkind = \"anthropic\"\napi_key_env = \"ANTHROPIC_API_KEY\"\n[catalog.claude]\nprovider = \"c\"\n",
    );
    let plan = r.resolve(&tier("basic", &["*"]), None, "claude").unwrap();
    let req: EmbeddingsRequest =
        serde_json::from_value(json!({"model": "claude", "input": "x"})).unwrap();
    let e = r.embeddings(&plan, req).await.unwrap_err();
    assert_eq!(e.error(), &ProviderError::Unsupported("embeddings"));
    assert_eq!(e.error().code(), ErrorCode::InvalidRequest);
}

#[tokio::test]
async fn usage_is_counted_when_the_upstream_reports_none() {
    let up = MockUpstream::start(|_| {
        Reply::Json(
            200,
            json!({"id": "chatcmpl-n", "object": "chat.completion", "created": 1, "model": "x",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "four token words here"},
                                "finish_reason": "stop"}]}),
        )
    })
    .await;
    let r = two_upstreams(&up.url(), &up.url(), 2000);
    let plan = r.resolve(&tier("basic", &["*"]), None, "default").unwrap();
    let a = r.execute(&plan, simple("default", "hi")).await.unwrap();
    assert!(a.usage_counted);
    assert_eq!(a.usage.completion_tokens, 1 + 2 + 2 + 1);
    assert_eq!(a.usage.prompt_tokens, 3 + 4 + 1);
    assert_eq!(a.response.usage.as_ref(), Some(&a.usage));
}

#[tokio::test]
async fn dropping_a_stream_cancels_the_upstream_call() {
    let parts: Vec<Vec<u8>> = (0..100)
        .map(|i| {
            let c = json!({"id":"chatcmpl-d","object":"chat.completion.chunk","created":1,"model":"m",
                           "choices":[{"index":0,"delta":{"content":format!("w{i} ")},"finish_reason":null}]});
            format!("data: {c}\n\n").into_bytes()
        })
        .collect();
    let up = MockUpstream::start(move |_| Reply::Stream {
        content_type: "text/event-stream".into(),
        parts: parts.clone(),
        pause: Duration::from_millis(10),
    })
    .await;
    let r = two_upstreams(&up.url(), &up.url(), 2000);
    let plan = r.resolve(&tier("basic", &["*"]), None, "default").unwrap();
    let mut req = simple("default", "hi");
    req.stream = Some(true);
    let s = r.execute_stream(&plan, req).await.unwrap();
    let mut stream = s.stream;
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    drop(stream);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_drop = up.stream_parts_sent();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(after_drop < 30, "{after_drop} parts were sent");
    assert_eq!(
        up.stream_parts_sent(),
        after_drop,
        "the upstream kept sending"
    );
    let m = s.meter.snapshot();
    assert!(!m.finished);
    assert_eq!(m.usage.completion_tokens, 3);
}

#[test]
fn router_futures_can_run_on_a_multi_threaded_server() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_sync<T: Send + Sync>() {}
    assert_sync::<Router>();
    let r = starter();
    let plan = r
        .resolve(&tier("premium", &["*"]), None, "default")
        .unwrap();
    assert_send(&r.execute(&plan, simple("m", "x")));
    assert_send(&r.execute_stream(&plan, simple("m", "x")));
    let req: EmbeddingsRequest = serde_json::from_value(json!({"input": "x"})).unwrap();
    assert_send(&r.embeddings(&plan, req));
}
