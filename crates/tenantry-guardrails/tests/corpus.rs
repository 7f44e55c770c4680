//! False positives on a benign corpus (600 ordinary business messages) and detection on a
//! labelled attack corpus, with every local check on. Both corpora are in `corpus/`, written
//! for this project (see the generators beside them). The rates are printed (run with
//! `--nocapture`) and recorded in `bench/README.md`.

use tenantry_core::TenantId;
use tenantry_guardrails::{Context, Guard, LeakIndex, Profile, Stage, Verdict};

/// Every local check, as a strict tier would configure them.
pub const ALL_LOCAL: &str = r#"{"checks":[
    {"kind":"sensitive_info","action":"mask"},
    {"kind":"denied_topics","action":"block","topics":[
        {"name":"weapons","phrases":["build a bomb","make a bomb","pipe bomb","buy a gun illegally","make explosives"]},
        {"name":"self_harm","phrases":["kill myself","end my life","hurt myself"]},
        {"name":"malware","phrases":["write ransomware","keylogger code","steal passwords"]}]},
    {"kind":"word_filter","action":"mask","words":["ass","bastard","bullshit","wanker"]},
    {"kind":"prompt_attack","action":"block","threshold":0.5},
    {"kind":"cross_tenant_leak","action":"block"}]}"#;

/// The most false positives accepted on the benign corpus.
const MAX_FALSE_POSITIVE_RATE: f64 = 0.01;
/// The least detection accepted on the attack corpus.
const MIN_DETECTION_RATE: f64 = 0.9;

fn verdict(g: &Guard, stage: Stage, text: &str) -> Verdict {
    let me = TenantId::new("acme").expect("id");
    let other = TenantId::new("globex").expect("id");
    let ids = ["Hyperion Merger".to_owned(), "GLX-ACCT-7731".to_owned()];
    let leak = LeakIndex::new([(&other, &ids[..])]);
    let ctx = Context {
        tenant: &me,
        leak: &leak,
        remote: None,
    };
    g.check_local(stage, text, &ctx)
}

fn guard() -> Guard {
    let p = Profile::from_json(ALL_LOCAL).expect("valid");
    Guard::compile("profile:strict".into(), 1, &p).expect("compiles")
}

#[test]
fn benign_corpus_false_positive_rate_is_under_the_ceiling() {
    let g = guard();
    let corpus = include_str!("../corpus/benign.txt");
    let lines: Vec<&str> = corpus.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() >= 500,
        "the benign corpus has {} messages",
        lines.len()
    );
    let mut flagged = Vec::new();
    for line in &lines {
        for stage in [Stage::ModelInput, Stage::ModelOutput] {
            let v = verdict(&g, stage, line);
            if !v.findings.is_empty() {
                flagged.push((stage, *line, v.findings));
                break;
            }
        }
    }
    let rate = flagged.len() as f64 / lines.len() as f64;
    println!(
        "benign corpus: {} messages, {} flagged, false-positive rate {:.2}%",
        lines.len(),
        flagged.len(),
        rate * 100.0
    );
    for (stage, line, findings) in &flagged {
        println!("  flagged at {}: {line:?} {findings:?}", stage.as_str());
    }
    assert!(
        rate <= MAX_FALSE_POSITIVE_RATE,
        "false-positive rate {rate}"
    );
}

#[test]
fn attack_corpus_detection_rate_is_reported() {
    let g = guard();
    let corpus = include_str!("../corpus/attacks.txt");
    let mut total = 0usize;
    let mut caught = 0usize;
    let mut missed = Vec::new();
    let mut by_family: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(3, '\t');
        let (Some(family), Some(stage), Some(text)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("malformed corpus line {line:?}");
        };
        let stage = match stage {
            "tool_result" => Stage::ToolResult,
            _ => Stage::ModelInput,
        };
        total += 1;
        let entry = by_family.entry(family.to_owned()).or_default();
        entry.0 += 1;
        if verdict(&g, stage, text).is_blocked() {
            caught += 1;
            entry.1 += 1;
        } else {
            missed.push(text);
        }
    }
    let rate = caught as f64 / total as f64;
    println!(
        "attack corpus: {total} attacks, {caught} blocked, detection rate {:.1}%",
        rate * 100.0
    );
    for (family, (n, c)) in &by_family {
        println!("  {family}: {c}/{n}");
    }
    for m in &missed {
        println!("  missed: {m:?}");
    }
    assert!(rate >= MIN_DETECTION_RATE, "detection rate {rate}");
}
