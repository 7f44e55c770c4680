//! The terms of a full-text query, taken from free text a caller typed: lowercase runs of
//! letters and digits, without the commonest English words, at most `MAX_QUERY_TERMS`.
//!
//! Both store dialects build their query from these terms only (FTS5 quotes each and joins
//! them with `OR`; PostgreSQL joins them with `|` into a `tsquery`), so no operator, column
//! filter or quote of the caller's text ever reaches a query parser.

/// The most terms a full-text query keeps.
pub const MAX_QUERY_TERMS: usize = 32;

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how",
    "i", "in", "is", "it", "of", "on", "or", "that", "the", "this", "to", "was", "what", "when",
    "where", "which", "who", "why", "with", "you", "your", "my", "we", "our", "there", "if",
];

/// The distinct query terms of `text`, in order of first appearance.
pub fn query_terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let w = word.to_lowercase();
        if STOPWORDS.contains(&w.as_str()) || out.contains(&w) {
            continue;
        }
        out.push(w);
        if out.len() == MAX_QUERY_TERMS {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_and_quotes_never_survive() {
        assert_eq!(
            query_terms(r#"How do I "rotate" keys? tenant_id:acme OR NEAR(x) -- *"#),
            ["rotate", "keys", "tenant", "id", "acme", "near", "x"]
        );
        assert!(query_terms("the of and").is_empty());
        assert_eq!(query_terms(&"w ".repeat(100)).len(), 1);
    }
}
