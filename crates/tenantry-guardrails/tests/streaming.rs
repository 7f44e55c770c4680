//! The streaming scanner: masks a secret split across chunks at every possible boundary, blocks
//! as soon as a blocking match is complete, and releases text long before the end.

use std::sync::Arc;

use tenantry_core::TenantId;
use tenantry_guardrails::{
    Context, Guard, LeakIndex, Outcome, Profile, Stage, Step, StreamScanner,
};

fn guard(json: &str) -> Arc<Guard> {
    let p = Profile::from_json(json).expect("valid profile");
    Arc::new(Guard::compile("profile:test".into(), 3, &p).expect("compiles"))
}

const MASKING: &str = r#"{"checks":[
    {"kind":"sensitive_info","action":"mask"},
    {"kind":"word_filter","words":["darn"],"action":"mask"}]}"#;

async fn run(g: &Arc<Guard>, chunks: &[&str]) -> (String, Option<String>) {
    let t = TenantId::new("acme").expect("id");
    let leak = LeakIndex::default();
    let ctx = Context {
        tenant: &t,
        leak: &leak,
        remote: None,
    };
    let mut s = StreamScanner::new(g.clone(), Stage::ModelOutput, &ctx);
    let mut out = String::new();
    for c in chunks {
        match s.push(c, &ctx) {
            Step::Emit(t) => out.push_str(&t),
            Step::Blocked { category } => return (out, Some(category)),
        }
    }
    match s.finish(&ctx).await {
        Step::Emit(t) => out.push_str(&t),
        Step::Blocked { category } => return (out, Some(category)),
    }
    (out, None)
}

fn whole(g: &Guard, text: &str) -> String {
    let t = TenantId::new("acme").expect("id");
    let leak = LeakIndex::default();
    let ctx = Context {
        tenant: &t,
        leak: &leak,
        remote: None,
    };
    match g.check_local(Stage::ModelOutput, text, &ctx).outcome {
        Outcome::Masked(m) => m,
        Outcome::Pass => text.to_owned(),
        Outcome::Blocked { category } => panic!("blocked {category}"),
    }
}

#[tokio::test]
async fn a_secret_split_at_every_boundary_is_masked_whole() {
    let g = guard(MASKING);
    let text = "Key AKIAIOSFODNN7EXAMPLE, card 4111 1111 1111 1111, mail jo.doe@example.com, darn.";
    let expected = whole(&g, text);
    assert_eq!(
        expected,
        "Key [SECRET], card [CARD], mail [EMAIL], [FILTERED]."
    );
    let bounds: Vec<usize> = (0..=text.len())
        .filter(|i| text.is_char_boundary(*i))
        .collect();
    for &i in &bounds {
        let (out, blocked) = run(&g, &[&text[..i], &text[i..]]).await;
        assert_eq!(blocked, None);
        assert_eq!(out, expected, "split at {i}");
    }
    // Three pieces: every pair of boundaries around the card.
    let card = text.find("4111").expect("card");
    for &i in bounds.iter().filter(|&&i| i >= card && i <= card + 19) {
        for &j in bounds.iter().filter(|&&j| j >= i && j <= card + 19) {
            let (out, _) = run(&g, &[&text[..i], &text[i..j], &text[j..]]).await;
            assert_eq!(out, expected, "split at {i} and {j}");
        }
    }
    // One character at a time, as a model streams.
    let pieces: Vec<String> = text.chars().map(String::from).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    assert_eq!(run(&g, &refs).await.0, expected);
}

#[tokio::test]
async fn text_is_released_before_the_end_and_holds_back_at_most_the_window() {
    let g = guard(MASKING);
    let t = TenantId::new("acme").expect("id");
    let leak = LeakIndex::default();
    let ctx = Context {
        tenant: &t,
        leak: &leak,
        remote: None,
    };
    let mut s = StreamScanner::new(g.clone(), Stage::ModelOutput, &ctx);
    let window = s.window();
    assert!(window > 0 && window <= 512, "window {window}");
    let word = "lorem ";
    let mut sent = 0usize;
    let mut released = 0usize;
    for _ in 0..1000 {
        sent += word.len();
        if let Step::Emit(t) = s.push(word, &ctx) {
            released += t.len();
        }
        // Held back: at most the window plus one scanning step.
        assert!(sent - released <= window + window / 2 + word.len() + 64);
    }
    assert!(released > sent / 2, "released {released} of {sent}");
}

#[tokio::test]
async fn a_blocking_match_ends_the_stream_before_it_is_sent() {
    let g = guard(
        r#"{"checks":[{"kind":"denied_topics","action":"block",
            "topics":[{"name":"weapons","phrases":["build a bomb"]}]}]}"#,
    );
    let filler = "All good here. ".repeat(40);
    let text = format!("{filler}Now, how to build a bomb: step one");
    let pieces: Vec<String> = text
        .chars()
        .collect::<Vec<_>>()
        .chunks(3)
        .map(|c| c.iter().collect())
        .collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let (out, blocked) = run(&g, &refs).await;
    assert_eq!(blocked.as_deref(), Some("denied_topic:weapons"));
    assert!(!out.contains("bomb"), "the phrase was sent: {out:?}");
    assert!(
        out.starts_with("All good here."),
        "earlier text was released"
    );
}
