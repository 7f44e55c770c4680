//! Golden tests of every wire translation, each through the real HTTP client against a local
//! mock of the upstream: what the upstream receives is snapshotted, and what the caller gets
//! back is snapshotted.
#![allow(clippy::unwrap_used)]

mod common;

/// A JSON snapshot with its object keys sorted, so the golden files do not depend on whether
/// serde_json keeps insertion order (`preserve_order`, which another crate of the workspace may
/// turn on through feature unification).
macro_rules! snapshot {
    ($name:expr, $value:expr $(,)?) => {
        insta::with_settings!({ sort_maps => true }, {
            insta::assert_json_snapshot!($name, $value);
        })
    };
}

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tenantry_models::eventstream::encode_event;
use tenantry_models::testing::{MockUpstream, Reply};
use tenantry_models::wire::ChatChunk;
use tenantry_models::{Provider, ProviderError};

async fn collect(p: &Provider, req: &tenantry_models::wire::ChatRequest) -> Vec<ChatChunk> {
    let mut s = p.chat_stream(req).await.unwrap();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.push(c.unwrap());
    }
    out
}

fn provider(r: &tenantry_models::Router, name: &str) -> std::sync::Arc<Provider> {
    r.provider(name).unwrap().clone()
}

fn anthropic_router(url: &str) -> tenantry_models::Router {
    router(&format!(
        r#"
        [providers.claude]
        kind = "anthropic"
        base_url = "{url}"
        api_key_env = "ANTHROPIC_API_KEY"
        timeout_ms = 3000
        "#
    ))
}

fn bedrock_router(url: &str) -> tenantry_models::Router {
    router(&format!(
        r#"
        [providers.aws]
        kind = "bedrock"
        region = "us-east-1"
        endpoint = "{url}"
        timeout_ms = 3000
        "#
    ))
}

fn openai_router(url: &str) -> tenantry_models::Router {
    router(&format!(
        r#"
        [providers.vllm]
        kind = "openai"
        base_url = "{url}/v1"
        api_key = "sk-upstream"
        timeout_ms = 3000
        "#
    ))
}

#[tokio::test]
async fn openai_compatible_passes_the_request_through() {
    let up = MockUpstream::start(|_| {
        Reply::Json(
            200,
            json!({
                "id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "qwen",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Yes."},
                             "finish_reason": "stop", "logprobs": null}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12,
                          "prompt_tokens_details": {"cached_tokens": 0}},
                "system_fingerprint": "fp"
            }),
        )
    })
    .await;
    let r = openai_router(&up.url());
    let mut req = tool_conversation();
    req.model = "Qwen/Qwen2.5-7B-Instruct".into();
    let resp = provider(&r, "vllm").chat(&req).await.unwrap();
    let got = &up.requests()[0];
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.header("authorization"), Some("Bearer sk-upstream"));
    snapshot!("openai_request", got.json());
    // Nothing the upstream sent is lost either.
    snapshot!(
        "openai_response",
        normalize(serde_json::to_value(resp).unwrap())
    );
}

#[tokio::test]
async fn openai_compatible_stream_parses_data_lines_until_done() {
    let up = MockUpstream::start(|_| {
        Reply::sse_data(
            [
                json!({"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}),
                json!({"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_9","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}),
                json!({"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]}),
                json!({"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}]}),
                json!({"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
                json!({"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":50,"completion_tokens":9,"total_tokens":59}}),
            ]
            .iter()
            .map(Value::to_string)
            .chain(["[DONE]".to_owned()]),
        )
    })
    .await;
    let r = openai_router(&up.url());
    let mut req = tool_conversation();
    req.stream = Some(true);
    let chunks = collect(&provider(&r, "vllm"), &req).await;
    let sent = up.requests()[0].json();
    assert_eq!(sent["stream"], json!(true));
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    snapshot!("openai_stream_chunks", chunks_json(&chunks));
}

#[tokio::test]
async fn anthropic_request_translation() {
    let up = MockUpstream::start(|_| {
        Reply::Json(
            200,
            json!({
                "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 120, "output_tokens": 30, "cache_read_input_tokens": 5}
            }),
        )
    })
    .await;
    let r = anthropic_router(&up.url());
    let mut req = tool_conversation();
    req.model = "claude-x".into();
    let resp = provider(&r, "claude").chat(&req).await.unwrap();
    let got = &up.requests()[0];
    assert_eq!(got.path, "/v1/messages");
    assert_eq!(got.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
    assert!(got.header("authorization").is_none());
    snapshot!("anthropic_request", got.json());
    snapshot!(
        "anthropic_response_as_openai",
        normalize(serde_json::to_value(resp).unwrap())
    );
}

fn anthropic_stream_events() -> Vec<(String, Value)> {
    [
        ("message_start", json!({"type":"message_start","message":{"id":"msg_02","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"usage":{"input_tokens":80,"output_tokens":1}}})),
        ("content_block_start", json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})),
        ("ping", json!({"type":"ping"})),
        ("content_block_delta", json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking"}})),
        ("content_block_delta", json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" now."}})),
        ("content_block_stop", json!({"type":"content_block_stop","index":0})),
        ("content_block_start", json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_02","name":"get_weather","input":{}}})),
        ("content_block_delta", json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}})),
        ("content_block_delta", json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Pa"}})),
        ("content_block_delta", json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ris\"}"}})),
        ("content_block_stop", json!({"type":"content_block_stop","index":1})),
        ("message_delta", json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":42}})),
        ("message_stop", json!({"type":"message_stop"})),
    ]
    .into_iter()
    .map(|(e, d)| (e.to_owned(), d))
    .collect()
}

#[tokio::test]
async fn anthropic_stream_translation_with_tool_calls() {
    let up = MockUpstream::start(|_| Reply::sse_events(anthropic_stream_events())).await;
    let r = anthropic_router(&up.url());
    let mut req = tool_conversation();
    req.stream = Some(true);
    let chunks = collect(&provider(&r, "claude"), &req).await;
    assert_eq!(up.requests()[0].json()["stream"], json!(true));
    snapshot!("anthropic_stream_as_openai_chunks", chunks_json(&chunks));
}

#[tokio::test]
async fn anthropic_stream_error_event_is_classified() {
    let up = MockUpstream::start(|_| {
        Reply::sse_events([
            ("message_start".to_owned(), json!({"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":1,"output_tokens":0}}})),
            ("error".to_owned(), json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})),
        ])
    })
    .await;
    let r = anthropic_router(&up.url());
    let mut s = provider(&r, "claude")
        .chat_stream(&simple("c", "hi"))
        .await
        .unwrap();
    assert!(s.next().await.unwrap().is_ok());
    let e = s.next().await.unwrap().unwrap_err();
    assert!(
        matches!(e, ProviderError::Upstream { status: 529, .. }),
        "{e:?}"
    );
    assert!(e.is_retryable_for_fallback());
    assert!(s.next().await.is_none());
}

#[tokio::test]
async fn bedrock_converse_translation_and_signature() {
    let up = MockUpstream::start(|_| {
        Reply::Json(
            200,
            json!({
                "output": {"message": {"role": "assistant", "content": [
                    {"text": "Take an umbrella."},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}
                ]}},
                "stopReason": "tool_use",
                "usage": {"inputTokens": 95, "outputTokens": 21, "totalTokens": 116},
                "metrics": {"latencyMs": 420}
            }),
        )
    })
    .await;
    let r = bedrock_router(&up.url());
    let mut req = tool_conversation();
    req.model = "anthropic.claude-3-haiku-20240307-v1:0".into();
    let resp = provider(&r, "aws").chat(&req).await.unwrap();
    let got = &up.requests()[0];
    assert_eq!(
        got.path,
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    assert_eq!(
        got.header("x-amz-security-token"),
        Some("session-token-test")
    );
    // Recompute the signature from what arrived on the wire.
    let amz_date = got.header("x-amz-date").unwrap().to_owned();
    let host = got.header("host").unwrap().to_owned();
    let headers = [
        ("content-type", got.header("content-type").unwrap()),
        ("host", host.as_str()),
        ("x-amz-date", amz_date.as_str()),
        ("x-amz-security-token", "session-token-test"),
    ];
    let expected = tenantry_models::sigv4::sign(
        &tenantry_models::sigv4::SignableRequest {
            method: "POST",
            uri: &got.path,
            headers: &headers,
            payload: &got.body,
        },
        &tenantry_models::sigv4::Credentials {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: tenantry_models::Secret::new("secret/test/key"),
            session_token: None,
        },
        "us-east-1",
        "bedrock",
        tenantry_models::sigv4::parse_amz_date(&amz_date).unwrap(),
    )
    .unwrap()
    .authorization;
    assert_eq!(got.header("authorization"), Some(expected.as_str()));
    assert!(expected.starts_with(&format!(
        "AWS4-HMAC-SHA256 Credential=AKIDTEST/{}/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=",
        &amz_date[..8]
    )));
    snapshot!("bedrock_request", got.json());
    snapshot!(
        "bedrock_response_as_openai",
        normalize(serde_json::to_value(resp).unwrap())
    );
}

fn bedrock_frames() -> Vec<u8> {
    [
        ("messageStart", json!({"role": "assistant", "p": "abc"})),
        ("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Take"}, "p": "ab"})),
        ("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": " an umbrella."}})),
        ("contentBlockStop", json!({"contentBlockIndex": 0})),
        ("contentBlockStart", json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_2", "name": "get_weather"}}})),
        ("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":"}}})),
        ("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Paris\"}"}}})),
        ("contentBlockStop", json!({"contentBlockIndex": 1})),
        ("messageStop", json!({"stopReason": "tool_use"})),
        ("metadata", json!({"usage": {"inputTokens": 95, "outputTokens": 25, "totalTokens": 120}, "metrics": {"latencyMs": 300}})),
    ]
    .iter()
    .flat_map(|(e, p)| encode_event(e, p).unwrap())
    .collect()
}

#[tokio::test]
async fn bedrock_event_stream_translation() {
    // Split into uneven writes so frames straddle reads.
    let bytes = bedrock_frames();
    let parts: Vec<Vec<u8>> = bytes.chunks(37).map(<[u8]>::to_vec).collect();
    let up = MockUpstream::start(move |_| Reply::Stream {
        content_type: "application/vnd.amazon.eventstream".into(),
        parts: parts.clone(),
        pause: std::time::Duration::ZERO,
    })
    .await;
    let r = bedrock_router(&up.url());
    let mut req = tool_conversation();
    req.model = "anthropic.claude-3-haiku-20240307-v1:0".into();
    req.stream = Some(true);
    let chunks = collect(&provider(&r, "aws"), &req).await;
    let got = &up.requests()[0];
    assert_eq!(
        got.path,
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"
    );
    assert_eq!(
        got.header("accept"),
        Some("application/vnd.amazon.eventstream")
    );
    snapshot!("bedrock_stream_as_openai_chunks", chunks_json(&chunks));
}

#[tokio::test]
async fn bedrock_stream_with_a_corrupted_frame_fails() {
    let mut bytes = bedrock_frames();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff; // inside the last frame's payload
    let up = MockUpstream::start(move |_| Reply::Raw {
        status: 200,
        content_type: "application/vnd.amazon.eventstream".into(),
        body: bytes.clone(),
    })
    .await;
    let r = bedrock_router(&up.url());
    let mut s = provider(&r, "aws")
        .chat_stream(&simple("m", "hi"))
        .await
        .unwrap();
    let mut last = None;
    while let Some(item) = s.next().await {
        last = Some(item);
    }
    let e = last.unwrap().unwrap_err();
    assert!(matches!(e, ProviderError::MalformedResponse(_)), "{e:?}");
    assert!(e.to_string().contains("checksum"), "{e}");
}

#[tokio::test]
async fn bedrock_exception_frame_is_classified() {
    let mut bytes = encode_event("messageStart", &json!({"role": "assistant"})).unwrap();
    bytes.extend(
        tenantry_models::eventstream::encode_frame(
            &[
                (":message-type", "exception"),
                (":exception-type", "throttlingException"),
                (":content-type", "application/json"),
            ],
            br#"{"message":"Too many requests, please wait."}"#,
        )
        .unwrap(),
    );
    let up = MockUpstream::start(move |_| Reply::Raw {
        status: 200,
        content_type: "application/vnd.amazon.eventstream".into(),
        body: bytes.clone(),
    })
    .await;
    let r = bedrock_router(&up.url());
    let mut s = provider(&r, "aws")
        .chat_stream(&simple("m", "hi"))
        .await
        .unwrap();
    assert!(s.next().await.unwrap().is_ok());
    let e = s.next().await.unwrap().unwrap_err();
    assert!(
        matches!(e, ProviderError::Upstream { status: 429, .. }),
        "{e:?}"
    );
}
