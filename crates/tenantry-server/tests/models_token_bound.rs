//! Law 7 with reservations that are upper bounds (issue 10, item 9): concurrent calls against a
//! small tokens-per-minute budget never spend more than it, whatever the provider reports,
//! as long as it reports no more than the model can count: for an OpenAI model, the prompt as
//! its real BPE encoding counts it (with OpenAI's own framing, which is less than the
//! gateway's bound) and any number of output tokens up to `max_tokens`; for a model whose
//! tokenizer the gateway does not ship, anything up to the prompt's bytes.

#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_support::*;
use serde_json::json;
use tenantry_models::testing::{MockUpstream, Reply};
use tenantry_models::wire::{ChatRequest, Content};

/// What the upstream reported in all: (calls, tokens).
type Tally = Arc<Mutex<(u64, u64)>>;

/// Tokens of `text` in OpenAI's o200k encoding (GPT-4o).
fn o200k(text: &str) -> u64 {
    tiktoken_rs::o200k_base_singleton().count_ordinary(text) as u64
}

fn text_of(req: &ChatRequest) -> Vec<String> {
    req.messages
        .iter()
        .filter_map(|m| match &m.content {
            Some(Content::Text(t)) => Some(t.clone()),
            Some(Content::Parts(_)) | None => None,
        })
        .collect()
}

/// An upstream that answers with `prompt(req)` input tokens and a varying share of
/// `max_tokens` as output (1, then up to all of it), and adds up what it reported.
async fn upstream(tally: Tally, prompt: fn(&ChatRequest) -> u64) -> MockUpstream {
    let n = Arc::new(AtomicU64::new(0));
    MockUpstream::start(move |r| {
        let req: ChatRequest = serde_json::from_slice(&r.body).unwrap();
        let max = u64::from(req.max_output_tokens().unwrap());
        let i = n.fetch_add(1, Ordering::SeqCst);
        let completion = 1 + (i * 7) % max;
        let prompt = prompt(&req);
        let mut t = tally.lock().unwrap();
        *t = (t.0 + 1, t.1 + prompt + completion);
        Reply::Json(
            200,
            json!({
                "id": "chatcmpl-t", "object": "chat.completion", "created": 1, "model": req.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                             "finish_reason": "length"}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}
            }),
        )
    })
    .await
}

/// Waits for a new minute if fewer than `need` seconds are left of this one, so one budget
/// window holds the whole test.
async fn with_minute_left(need: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if 60 - now % 60 < need {
        tokio::time::sleep(Duration::from_secs(60 - now % 60 + 1)).await;
    }
}

/// 60 concurrent calls (each with its own prompt) of one tenant on a tokens-per-minute budget
/// that fits a handful; returns (calls answered 200, tokens in the ledger).
async fn flood(model: &str, upstream_model: &str, tally: &Tally, up: &MockUpstream) -> (u64, u64) {
    let config = format!(
        "[providers.up]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"sk-up\"\n\
         [catalog.{model}]\nprovider = \"up\"\nupstream_model = \"{upstream_model}\"\n\
         input_price_per_mtok = \"1\"\noutput_price_per_mtok = \"2\"\n",
        up.url()
    );
    let s = Arc::new(server_with(&config).await);
    let budget = 600u64;
    tier(
        &s,
        "small",
        open_limits(json!({"tokens_per_minute": budget})),
        json!({"default": model}),
    )
    .await;
    s.create_tenant("acme", "small").await;
    let token = s.token("acme", "alice", &[]);
    with_minute_left(20).await;

    let mut calls = tokio::task::JoinSet::new();
    for i in 0..60 {
        let (s, token) = (s.clone(), token.clone());
        let words = [
            "internationalization",
            "naïve café",
            "日本語",
            "🎉",
            "tokens",
        ];
        let text = format!("request {i}: {}", words[i % words.len()].repeat(1 + i % 4));
        let mut body = chat("default", &text);
        body["max_tokens"] = json!(40);
        calls.spawn(async move {
            s.send_json("POST", "/v1/chat/completions", &token, body)
                .await
        });
    }
    let mut ok = 0;
    while let Some(done) = calls.join_next().await {
        let r = done.unwrap();
        match r.status {
            200 => ok += 1,
            429 => assert_eq!(r.code(), "budget_exceeded", "{}", r.text),
            other => panic!("{other}: {}", r.text),
        }
    }
    let report = usage(&s, "acme", "model").await;
    let t = &report["totals"];
    let ledger = t["input_tokens"].as_u64().unwrap() + t["output_tokens"].as_u64().unwrap();
    let (upstream_calls, reported) = *tally.lock().unwrap();
    assert_eq!(
        upstream_calls, ok,
        "every call the upstream served was answered"
    );
    assert_eq!(
        ledger, reported,
        "the ledger holds what the upstream reported"
    );
    assert!(
        ledger <= budget,
        "{ok} calls spent {ledger} tokens of a budget of {budget}"
    );
    (ok, ledger)
}

#[tokio::test]
async fn concurrent_calls_of_an_openai_model_never_overspend_a_token_budget() {
    // OpenAI's own framing: 3 tokens per message and 3 to prime the reply.
    fn real_count(req: &ChatRequest) -> u64 {
        3 + text_of(req).iter().map(|t| 3 + o200k(t)).sum::<u64>()
    }
    let tally = Tally::default();
    let up = upstream(tally.clone(), real_count).await;
    let (ok, spent) = flood("gpt", "gpt-4o-mini", &tally, &up).await;
    assert!(
        ok >= 5,
        "the budget is used, not refused outright: {ok} calls, {spent} tokens"
    );
}

#[tokio::test]
async fn concurrent_calls_of_an_unknown_model_never_overspend_a_token_budget() {
    // A tokenizer the gateway does not ship may make up to one token per byte, plus framing.
    fn per_byte(req: &ChatRequest) -> u64 {
        text_of(req).iter().map(|t| 8 + t.len() as u64).sum::<u64>()
    }
    let tally = Tally::default();
    let up = upstream(tally.clone(), per_byte).await;
    let (ok, spent) = flood("other", "llama-3.1-8b", &tally, &up).await;
    assert!(
        ok >= 2,
        "the budget is used, not refused outright: {ok} calls, {spent} tokens"
    );
}
