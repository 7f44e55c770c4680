//! Law 7 at the model gateway: 200 concurrent calls of one tenant whose money budget fits
//! exactly 10 of them: exactly 10 reach the upstream and succeed, the ledger holds exactly the
//! upstream's usage, and another tenant's calls at the same moment are unaffected.

#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::sync::{Arc, Mutex};

use gateway_support::*;
use serde_json::json;
use tenantry_models::testing::{MockUpstream, Reply};
use tenantry_models::tokens::PromptBound;
use tenantry_models::wire::ChatRequest;

#[tokio::test]
async fn two_hundred_concurrent_calls_on_a_budget_for_ten() {
    // The upstream uses exactly the prompt's upper bound (its model's tokenizer is not one the
    // gateway ships, so the bound is the prompt's bytes and framing) and max_tokens, so a call
    // costs exactly its estimate, and it sums up the usage it reported.
    let reported = Arc::new(Mutex::new((0u64, 0u64, 0u64)));
    let tally = reported.clone();
    let up = MockUpstream::start(move |r| {
        let req: ChatRequest = serde_json::from_slice(&r.body).unwrap();
        let prompt = PromptBound::Bytes.prompt(&req);
        let completion = u64::from(req.max_tokens.unwrap());
        let mut t = tally.lock().unwrap();
        *t = (t.0 + 1, t.1 + prompt, t.2 + completion);
        Reply::Json(
            200,
            json!({
                "id": "chatcmpl-b", "object": "chat.completion", "created": 1, "model": req.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}
            }),
        )
    })
    .await;
    let s = server_with(&upstream_models(&up.url(), &["priced"])).await;

    let mut body = chat("default", "what does this cost");
    body["max_tokens"] = json!(20);
    let req: ChatRequest = serde_json::from_value(body.clone()).unwrap();
    let (p, m) = (PromptBound::Bytes.prompt(&req), 20u64);
    // 1 micro-dollar per input token, 2 per output token.
    let cost = p + 2 * m;
    let budget = tenantry_core::Money::from_micros(i64::try_from(10 * cost).unwrap());
    tier(
        &s,
        "metered",
        open_limits(json!({"budget_per_month": budget.to_string()})),
        json!({"default": "priced"}),
    )
    .await;
    s.create_tenant("acme", "metered").await;
    s.create_tenant("globex", "metered").await;
    let acme = s.token("acme", "alice", &[]);
    let globex = s.token("globex", "bob", &[]);

    let mut calls = tokio::task::JoinSet::new();
    let s = Arc::new(s);
    for i in 0..205 {
        let (s, body) = (s.clone(), body.clone());
        // 5 calls of globex among 200 of acme.
        let (who, token) = if i % 41 == 7 {
            ("globex", globex.clone())
        } else {
            ("acme", acme.clone())
        };
        calls.spawn(async move {
            (
                who,
                s.send_json("POST", "/v1/chat/completions", &token, body)
                    .await,
            )
        });
    }
    let (mut ok, mut refused, mut globex_ok) = (0, 0, 0);
    while let Some(done) = calls.join_next().await {
        let (who, r) = done.unwrap();
        match (who, r.status) {
            ("globex", 200) => globex_ok += 1,
            ("acme", 200) => ok += 1,
            ("acme", 429) => {
                assert_eq!(r.code(), "budget_exceeded", "{}", r.text);
                assert!(r.header("retry-after").is_some());
                assert_eq!(r.header("ratelimit-remaining"), Some("0"));
                assert_eq!(
                    r.header("ratelimit-limit"),
                    Some(budget.micros().to_string().as_str())
                );
                refused += 1;
            }
            (who, status) => panic!("{who} got {status}: {}", r.text),
        }
    }
    assert_eq!(ok, 10, "exactly the budget's worth of calls succeed");
    assert_eq!(refused, 190);
    assert_eq!(globex_ok, 5, "another tenant is unaffected");
    let (upstream_calls, upstream_in, upstream_out) = *reported.lock().unwrap();
    assert_eq!(upstream_calls, 15, "refused calls never reach the upstream");

    // The ledger holds exactly what the upstream reported, per tenant.
    let a = usage(&s, "acme", "model").await;
    let g = usage(&s, "globex", "model").await;
    for (report, n) in [(&a, 10u64), (&g, 5)] {
        let t = &report["totals"];
        assert_eq!(t["calls"], n);
        assert_eq!(t["input_tokens"], n * p);
        assert_eq!(t["output_tokens"], n * m);
        assert_eq!(
            t["cost"],
            tenantry_core::Money::from_micros(i64::try_from(n * cost).unwrap()).to_string()
        );
    }
    assert_eq!(upstream_in, 15 * p);
    assert_eq!(upstream_out, 15 * m);
    assert_eq!(a["totals"]["cost"], budget.to_string());
    // And the budget is spent: the next call is refused too.
    let r = s
        .send_json("POST", "/v1/chat/completions", &acme, body)
        .await;
    assert_eq!(r.status, 429);
}
