//! Extraction: the prompt a strategy sends to the model gateway for new events, reading the
//! model's answer, and consolidation with the records the namespace already holds.
//!
//! The model is asked for JSON: `{"records": [{"text": "...", "replaces": "mem-..."}]}`. The
//! prompt lists the namespace's existing records with their ids, so the model can say that a
//! new statement restates or corrects one (`replaces`). Consolidation then decides, for each
//! extracted text:
//! 1. it names an existing record in `replaces` → that record is updated;
//! 2. its normalised text (lower case, letters and digits, single spaces) equals an existing
//!    record's → that record is updated (its time refreshed), not duplicated;
//! 3. a summarization strategy keeps one record per namespace (its template names the
//!    session): a new summary replaces the old;
//! 4. otherwise a new record is created.
//!
//! An answer that is not the expected JSON yields nothing (a summary strategy takes the
//! whole text as the summary), never a failure of the event that triggered it.

use serde::Deserialize;

use crate::ids::RecordId;
use crate::types::{MAX_RECORD_TEXT, Role, StrategyKind};

/// The most existing records shown to the model as candidates.
pub const MAX_CANDIDATES: usize = 50;

/// What a strategy of `kind` looks for.
fn instructions(kind: StrategyKind) -> &'static str {
    match kind {
        StrategyKind::Semantic => {
            "Extract the durable facts the conversation states about the user or their world, \
             one short self-contained sentence each."
        }
        StrategyKind::Summarization => {
            "Summarise the conversation so far in a few sentences: what was asked, decided and \
             left open. Answer with exactly one record."
        }
        StrategyKind::UserPreference => {
            "Extract the user's preferences (likes, dislikes, habits, how they want to be \
             answered), one short sentence each."
        }
        StrategyKind::Custom => "Extract what the instructions below ask for.",
    }
}

/// The system and user messages of one extraction.
pub fn prompt(
    kind: StrategyKind,
    own_prompt: Option<&str>,
    conversation: &[(Role, String)],
    existing: &[(RecordId, String)],
) -> (String, String) {
    let mut system = format!(
        "You maintain long-term memory for an assistant. {}\n",
        instructions(kind)
    );
    if let Some(p) = own_prompt.filter(|p| !p.trim().is_empty()) {
        system.push_str("Instructions: ");
        system.push_str(p.trim());
        system.push('\n');
    }
    system.push_str(
        "Answer with JSON only: {\"records\": [{\"text\": \"...\", \"replaces\": \"<id>\"}]}. \
         Use \"replaces\" with the id of an existing record when a new statement restates, \
         updates or contradicts it; omit it otherwise. Answer {\"records\": []} when there is \
         nothing to keep.",
    );
    let mut user = String::from("Existing records:\n");
    if existing.is_empty() {
        user.push_str("(none)\n");
    }
    for (id, text) in existing.iter().take(MAX_CANDIDATES) {
        user.push_str(&format!("- {id}: {text}\n"));
    }
    user.push_str("\nNew conversation:\n");
    for (role, text) in conversation {
        user.push_str(&format!("{}: {}\n", role.as_str(), text));
    }
    (system, user)
}

/// One record the model extracted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Extracted {
    pub text: String,
    #[serde(default)]
    pub replaces: Option<String>,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    records: Vec<Extracted>,
}

/// The records of a model's answer (the JSON may be wrapped in prose or a code fence).
pub fn parse_answer(kind: StrategyKind, answer: &str) -> Vec<Extracted> {
    let json = match (answer.find('{'), answer.rfind('}')) {
        (Some(a), Some(b)) if a < b => &answer[a..=b],
        _ => "",
    };
    let parsed: Option<Answer> = serde_json::from_str(json).ok();
    let mut out = match parsed {
        Some(a) => a.records,
        None if kind == StrategyKind::Summarization && !answer.trim().is_empty() => {
            vec![Extracted {
                text: answer.trim().to_string(),
                replaces: None,
            }]
        }
        None => Vec::new(),
    };
    out.retain(|e| !e.text.trim().is_empty());
    for e in &mut out {
        e.text = e.text.trim().chars().take(MAX_RECORD_TEXT).collect();
    }
    if kind == StrategyKind::Summarization {
        out.truncate(1);
    }
    out
}

/// The text consolidation compares: lower case, letters and digits, single spaces.
pub fn normalize(text: &str) -> String {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What to do with one extracted record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create(String),
    Update(RecordId, String),
}

/// Consolidates extracted records with the namespace's existing ones (`(id, text)`); see the
/// module comment for the rules.
pub fn consolidate(
    kind: StrategyKind,
    existing: &[(RecordId, String)],
    extracted: Vec<Extracted>,
) -> Vec<Action> {
    let mut actions: Vec<Action> = Vec::new();
    for e in extracted {
        let named = e
            .replaces
            .as_deref()
            .and_then(|r| existing.iter().find(|(id, _)| id.as_str() == r));
        let norm = normalize(&e.text);
        let same = existing.iter().find(|(_, t)| normalize(t) == norm);
        let target = named
            .or(same)
            .or_else(|| (kind == StrategyKind::Summarization).then(|| existing.first())?)
            .map(|(id, _)| id.clone());
        let action = match target {
            Some(id) => Action::Update(id, e.text),
            None => Action::Create(e.text),
        };
        // Two extracted texts restating each other within one answer make one record.
        let dup = actions.iter().any(|a| match (a, &action) {
            (Action::Create(x), Action::Create(y)) => normalize(x) == normalize(y),
            (Action::Update(x, _), Action::Update(y, _)) => x == y,
            _ => false,
        });
        if !dup {
            actions.push(action);
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_restated_fact_updates_its_record() {
        let id = RecordId::generate();
        let existing = vec![(id.clone(), "The user likes green tea.".to_string())];
        let got = parse_answer(
            StrategyKind::Semantic,
            "```json\n{\"records\":[{\"text\":\"the user likes  GREEN tea\"},{\"text\":\"Lives in Lyon\"}]}\n```",
        );
        let actions = consolidate(StrategyKind::Semantic, &existing, got);
        assert_eq!(
            actions,
            vec![
                Action::Update(id.clone(), "the user likes  GREEN tea".into()),
                Action::Create("Lives in Lyon".into())
            ]
        );
        let named = vec![Extracted {
            text: "The user now prefers black tea".into(),
            replaces: Some(id.to_string()),
        }];
        assert!(matches!(
            consolidate(StrategyKind::Semantic, &existing, named)[0],
            Action::Update(..)
        ));
        // An id the model invents is not an existing record: a new one is created.
        let invented = vec![Extracted {
            text: "x".into(),
            replaces: Some("mem-nope".into()),
        }];
        assert_eq!(
            consolidate(StrategyKind::Semantic, &existing, invented),
            vec![Action::Create("x".into())]
        );
    }

    #[test]
    fn summaries_replace_and_prose_is_tolerated() {
        let got = parse_answer(StrategyKind::Summarization, "They talked about tea.");
        assert_eq!(got.len(), 1);
        let id = RecordId::generate();
        let actions = consolidate(
            StrategyKind::Summarization,
            &[(id.clone(), "old".into())],
            got,
        );
        assert_eq!(
            actions,
            vec![Action::Update(id, "They talked about tea.".into())]
        );
        assert!(parse_answer(StrategyKind::Semantic, "no json here").is_empty());
        let (system, user) = prompt(
            StrategyKind::Custom,
            Some("Keep the user's pets."),
            &[(Role::User, "I have a cat".into())],
            &[],
        );
        assert!(system.contains("Keep the user's pets."));
        assert!(user.contains("USER: I have a cat"));
    }
}
