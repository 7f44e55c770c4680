//! The model gateway when upstreams misbehave: fallback to the next model on a 503, and a
//! provider error, a timeout, malformed JSON, a broken or stalled stream each become a clear
//! error for the caller and a ledger entry with its status, never a hang. A caller that goes
//! away in the middle of a stream cancels the upstream call and is billed for what it got.

#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::time::{Duration, Instant};

use gateway_support::*;
use serde_json::{Value, json};
use tenantry_models::testing::{MockUpstream, Recorded, Reply};
use tenantry_testkit::TestServer;

fn answer(model: &str, prompt: u64, completion: u64) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine thanks"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion}
    })
}

fn chunk(content: &str, finish: Option<&str>) -> String {
    json!({
        "id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]
    })
    .to_string()
}

fn sse(parts: &[String]) -> Vec<u8> {
    parts
        .iter()
        .map(|p| format!("data: {p}\n\n"))
        .collect::<String>()
        .into_bytes()
}

/// One upstream for every scenario, chosen by the upstream model id.
fn scripted(r: &Recorded) -> Reply {
    let body = r.json();
    let stream = body["stream"] == true;
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let error = |status: u16, msg: &str| {
        Reply::Json(
            status,
            json!({"error": {"message": msg, "type": "server_error"}}),
        )
    };
    match (model.trim_end_matches("-upstream"), stream) {
        ("flaky", _) => error(503, "overloaded, try later"),
        ("refusing", _) => error(400, "context too long for this model"),
        ("broken", _) => error(500, "internal failure upstream"),
        ("slow", _) => Reply::Hang,
        ("garbled", false) => Reply::Raw {
            status: 200,
            content_type: "application/json".into(),
            body: b"{\"id\": \"x\", \"choices\": [ this is not json".to_vec(),
        },
        ("good", false) => Reply::Json(200, answer(&model, 12, 3)),
        ("good", true) => Reply::sse_data(vec![
            chunk("fine ", None),
            chunk("thanks", Some("stop")),
            "[DONE]".to_owned(),
        ]),
        ("cut", true) => Reply::CutAfter {
            content_type: "text/event-stream".into(),
            body: sse(&[chunk("half an ans", None)]),
        },
        ("stall", true) => Reply::StallAfter {
            content_type: "text/event-stream".into(),
            body: sse(&[chunk("and then ", None)]),
        },
        ("drip", true) => {
            let mut parts: Vec<Vec<u8>> = (0..300)
                .map(|_| format!("data: {}\n\n", chunk("word ", None)).into_bytes())
                .collect();
            parts.push(
                format!("data: {}\n\ndata: [DONE]\n\n", chunk("end", Some("stop"))).into_bytes(),
            );
            Reply::Stream {
                content_type: "text/event-stream".into(),
                parts,
                pause: Duration::from_millis(20),
            }
        }
        _ => error(404, "no such model"),
    }
}

const MODELS: &[&str] = &[
    "flaky", "refusing", "broken", "slow", "garbled", "good", "cut", "stall", "drip",
];

async fn setup() -> (TestServer, MockUpstream, String) {
    let up = MockUpstream::start(scripted).await;
    let s = server_with(&upstream_models(&up.url(), MODELS)).await;
    tier(
        &s,
        "lab",
        open_limits(json!({})),
        json!({"default": "good", "fallback": {"flaky": ["good"]}}),
    )
    .await;
    s.create_tenant("acme", "lab").await;
    let token = s.token("acme", "alice", &[]);
    (s, up, token)
}

/// A call that must finish within 10 s.
async fn bounded(s: &TestServer, token: &str, body: Value) -> tenantry_testkit::Response {
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        s.send_json("POST", "/v1/chat/completions", token, body),
    )
    .await
    .expect("the gateway must never hang");
    assert!(started.elapsed() < Duration::from_secs(8));
    r
}

fn statuses(entries: &[tenantry_store::UsageRecord]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|e| (e.resource.clone().unwrap_or_default(), e.status.clone()))
        .collect()
}

#[tokio::test]
async fn fallback_to_the_next_model_when_the_first_answers_503() {
    let (s, up, token) = setup().await;
    let r = bounded(&s, &token, chat("flaky", "how are you")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["model"], "good");
    assert_eq!(r.body["usage"]["prompt_tokens"], 12);
    let tried: Vec<String> = up
        .requests()
        .iter()
        .map(|q| q.json()["model"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tried, ["flaky-upstream", "good-upstream"]);
    let entries = ledger(&s, "acme").await;
    assert_eq!(
        statuses(&entries),
        [
            ("flaky".into(), "error:upstream_server_error".into()),
            ("good".into(), "ok".into())
        ]
    );
    assert_eq!(entries[0].input_tokens, 0);
    assert_eq!(entries[0].cost.micros(), 0);
    assert_eq!((entries[1].input_tokens, entries[1].output_tokens), (12, 3));
    assert_eq!(entries[1].cost.micros(), 12 + 2 * 3);
    s.stop().await;
}

#[tokio::test]
async fn upstream_failures_are_clear_errors_and_ledger_entries() {
    let (s, _up, token) = setup().await;
    // (model, HTTP status, code, words of the message, ledger status)
    let cases = [
        (
            "refusing",
            400,
            "invalid_request",
            "context too long",
            "error:upstream_refused",
        ),
        (
            "broken",
            502,
            "upstream_error",
            "internal failure upstream",
            "error:upstream_server_error",
        ),
        (
            "slow",
            503,
            "unavailable",
            "did not answer",
            "error:upstream_timeout",
        ),
        (
            "garbled",
            502,
            "upstream_error",
            "malformed",
            "error:upstream_malformed",
        ),
    ];
    for (model, status, code, words, _) in cases {
        let r = bounded(&s, &token, chat(model, "hi")).await;
        assert_eq!(r.status, status, "{model}: {}", r.text);
        assert_eq!(r.code(), code, "{model}");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{model}: {message}");
        assert!(message.contains(model), "{model}: {message}");
        assert!(!message.contains("sk-upstream-secret"));
        assert!(r.body["error"]["type"].is_string());
        assert!(
            r.body["error"]["request_id"]
                .as_str()
                .unwrap()
                .starts_with("req_")
        );
    }
    let entries = ledger(&s, "acme").await;
    let expected: Vec<(String, String)> = cases
        .iter()
        .map(|c| (c.0.to_owned(), c.4.to_owned()))
        .collect();
    assert_eq!(statuses(&entries), expected);
    assert!(entries.iter().all(|e| e.latency_ms.is_some()));
    s.stop().await;
}

#[tokio::test]
async fn broken_and_stalled_streams_end_with_an_error_event() {
    let (s, _up, token) = setup().await;
    for (model, code, status) in [
        ("cut", "upstream_error", "error:upstream_stream_broken"),
        ("stall", "unavailable", "error:upstream_timeout"),
        ("good", "", "ok"),
    ] {
        let mut body = chat(model, "tell me");
        body["stream"] = json!(true);
        let r = bounded(&s, &token, body).await;
        assert_eq!(r.status, 200, "{model}: {}", r.text);
        let events = sse_payloads(&r.text);
        let first: Value = serde_json::from_str(&events[0]).unwrap();
        assert!(
            first["choices"][0]["delta"]["content"].is_string(),
            "{model}"
        );
        let last = events.last().unwrap();
        if code.is_empty() {
            assert_eq!(last, "[DONE]");
        } else {
            // The error event OpenAI clients raise on, and no [DONE].
            let e: Value = serde_json::from_str(last).unwrap();
            assert_eq!(e["error"]["code"], code, "{model}: {last}");
            assert!(e["error"]["message"].as_str().unwrap().contains("stream"));
            assert!(!events.iter().any(|e| e == "[DONE]"));
        }
        let entries = ledger(&s, "acme").await;
        let entry = entries.last().unwrap();
        assert_eq!(entry.resource.as_deref(), Some(model));
        assert_eq!(entry.status, status, "{model}");
        // Usage so far is counted when the upstream reported none.
        assert!(entry.output_tokens > 0, "{model}: {entry:?}");
        assert!(entry.input_tokens > 0, "{model}: {entry:?}");
        assert!(entry.ttft_ms.is_some(), "{model}");
    }
    s.stop().await;
}

/// Waits until the current minute has at least `need` seconds left, so a per-minute budget
/// window does not renew in the middle of a test.
async fn with_minute_left(need: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if 60 - now % 60 < need {
        tokio::time::sleep(Duration::from_secs(60 - now % 60 + 1)).await;
    }
}

#[tokio::test]
async fn a_caller_that_goes_away_mid_stream_is_billed_for_what_it_got() {
    let (s, up, token) = setup().await;
    let mut body = chat("drip", "count for me");
    body["stream"] = json!(true);
    body["max_tokens"] = json!(400);
    let prompt: tenantry_models::wire::ChatRequest = serde_json::from_value(body.clone()).unwrap();
    // Neither model is one whose tokenizer ships: their prompts are bounded by bytes.
    let estimate = tenantry_models::tokens::PromptBound::Bytes.prompt(&prompt) + 400;
    // Room for one call's reservation, not two.
    tier(
        &s,
        "lab",
        open_limits(json!({"tokens_per_minute": 2 * estimate - 1})),
        json!({"default": "good"}),
    )
    .await;
    with_minute_left(20).await;

    let http = reqwest::Client::new();
    let mut resp = http
        .post(format!("{}/v1/chat/completions", s.url))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = String::new();
    while got.matches("word").count() < 5 {
        let piece = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push_str(std::str::from_utf8(&piece).unwrap());
    }
    // While the stream holds its reservation, a second call of the same size does not fit.
    let mut same = body.clone();
    same["model"] = json!("good");
    same["stream"] = json!(false);
    let r = s
        .send_json("POST", "/v1/chat/completions", &token, same.clone())
        .await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.code(), "budget_exceeded");
    assert_eq!(r.body["error"]["type"], "insufficient_quota");
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));

    // The caller goes away.
    drop(resp);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = up.stream_parts_sent();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(up.stream_parts_sent(), sent, "the upstream call goes on");
    assert!(sent < 301, "the whole stream was read: {sent}");

    let entries = ledger(&s, "acme").await;
    let entry = entries.last().unwrap();
    assert_eq!(entry.status, "cancelled");
    assert_eq!(entry.resource.as_deref(), Some("drip"));
    // Each "word " counts one token; what was read upstream is what is billed.
    assert!(entry.output_tokens >= 5, "{entry:?}");
    assert!(entry.output_tokens < 300, "{entry:?}");
    assert_eq!(
        entry.cost.micros(),
        entry.input_tokens + 2 * entry.output_tokens
    );
    // The reservation was settled with that usage: the same call fits again.
    let r = s
        .send_json("POST", "/v1/chat/completions", &token, same)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    s.stop().await;
}
