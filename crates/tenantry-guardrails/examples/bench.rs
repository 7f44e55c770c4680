//! The added latency of a profile with every local check on, per 1 KB and per 100 KB of text,
//! blocking (one call on the whole text) and streaming (the text pushed in 8-byte chunks, as
//! a model streams), p50 and p99, beside a plain regex-set baseline over the same text in the
//! same run.
//!
//! Run: `cargo run --release -p tenantry-guardrails --example bench` (results are recorded in
//! `bench/README.md` and `bench/results/guardrails.txt`).

use std::sync::Arc;
use std::time::Instant;

use regex::RegexSet;
use tenantry_core::TenantId;
use tenantry_guardrails::{Context, Guard, LeakIndex, Profile, Stage, Step, StreamScanner};

const ALL_LOCAL: &str = r#"{"checks":[
    {"kind":"sensitive_info","action":"mask"},
    {"kind":"denied_topics","action":"block","topics":[
        {"name":"weapons","phrases":["build a bomb","make a bomb","pipe bomb","buy a gun illegally"]},
        {"name":"malware","phrases":["write ransomware","keylogger code","steal passwords"]}]},
    {"kind":"word_filter","action":"mask","words":["ass","bastard","bullshit","wanker"]},
    {"kind":"prompt_attack","action":"log","threshold":0.5},
    {"kind":"cross_tenant_leak","action":"mask"}]}"#;

fn text_of(bytes: usize) -> String {
    let corpus = include_str!("../corpus/benign.txt");
    let mut t = String::with_capacity(bytes + 256);
    let mut lines = corpus.lines().cycle();
    let mut i = 0;
    while t.len() < bytes {
        t.push_str(lines.next().unwrap_or_default());
        i += 1;
        // Some findings, so masking is measured too.
        if i % 10 == 0 {
            t.push_str(" Contact jo.doe@example.com, card 4111 1111 1111 1111.");
        }
        t.push('\n');
    }
    let mut cut = bytes;
    while !t.is_char_boundary(cut) {
        cut -= 1;
    }
    t.truncate(cut);
    t
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.99))
}

fn main() {
    let profile = Profile::from_json(ALL_LOCAL).expect("profile");
    let guard = Arc::new(Guard::compile("profile:bench".into(), 1, &profile).expect("compiles"));
    let me = TenantId::new("acme").expect("id");
    let other = TenantId::new("globex").expect("id");
    let ids: Vec<String> = (0..200).map(|i| format!("Globex Project {i}")).collect();
    let leak = LeakIndex::new([(&other, &ids[..])]);
    let ctx = Context {
        tenant: &me,
        leak: &leak,
        remote: None,
    };
    let baseline = RegexSet::new([
        r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+",
        r"[0-9](?:[ \-]?[0-9]){12,18}",
        r"[0-9]{3}-[0-9]{2}-[0-9]{4}",
        r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}",
        r"(?i)\bignore (?:all )?previous instructions\b",
        r"(?i)\b(?:build a bomb|pipe bomb)\b",
    ])
    .expect("baseline");
    println!("| text | mode | p50 ms | p99 ms | p50 ms/KB | p99 ms/KB | baseline p50 ms/KB |");
    println!("|---|---|---|---|---|---|---|");
    for (label, bytes, runs) in [("1 KB", 1024usize, 2000usize), ("100 KB", 100 * 1024, 60)] {
        let text = text_of(bytes);
        let kb = bytes as f64 / 1024.0;
        let mut base = Vec::new();
        let mut blocking = Vec::new();
        let mut streaming = Vec::new();
        // One unmeasured round first: the built-in patterns compile on first use.
        std::hint::black_box(guard.check_local(Stage::ModelOutput, &text, &ctx));
        for _ in 0..runs {
            let t = Instant::now();
            let n = baseline.matches(&text).iter().count();
            std::hint::black_box(n);
            base.push(t.elapsed().as_secs_f64() * 1000.0);

            let t = Instant::now();
            std::hint::black_box(guard.check_local(Stage::ModelOutput, &text, &ctx));
            blocking.push(t.elapsed().as_secs_f64() * 1000.0);

            let t = Instant::now();
            let mut s = StreamScanner::new(guard.clone(), Stage::ModelOutput, &ctx);
            let mut out = 0usize;
            let mut i = 0;
            while i < text.len() {
                let mut j = (i + 8).min(text.len());
                while !text.is_char_boundary(j) {
                    j += 1;
                }
                if let Step::Emit(e) = s.push(&text[i..j], &ctx) {
                    out += e.len();
                }
                i = j;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("rt");
            if let Step::Emit(e) = rt.block_on(s.finish(&ctx)) {
                out += e.len();
            }
            std::hint::black_box(out);
            streaming.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (b50, _) = percentiles(base);
        for (mode, v) in [
            ("blocking", blocking),
            ("streaming (8-byte chunks)", streaming),
        ] {
            let (p50, p99) = percentiles(v);
            println!(
                "| {label} | {mode} | {p50:.3} | {p99:.3} | {:.4} | {:.4} | {:.4} |",
                p50 / kb,
                p99 / kb,
                b50 / kb
            );
        }
    }
}
