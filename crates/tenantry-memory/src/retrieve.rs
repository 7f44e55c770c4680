//! Retrieval rules that need no store: checking metadata and filters, evaluating a filter on a
//! record or event, turning query text into search terms, and ranking candidates.
//!
//! The store finds candidates by full-text search (SQLite FTS5 or PostgreSQL `ts_rank`) within
//! the caller's tenant, memory, namespace prefix and reach; `rank` then orders them. `rank` is
//! the seam for vector similarity: given a query embedding and the candidates' embeddings it
//! will fuse both scores (`tenantry_memory::search`); without one the full-text score stands.

use std::collections::BTreeMap;

use crate::MemoryError;
use crate::types::{
    EventMetadataValue, FilterOperator, MetadataFilter, RecordMetadataValue, ScoredRecord,
};

const MAX_EVENT_METADATA: usize = 15;
const MAX_RECORD_METADATA: usize = 20;
const MAX_FILTERS: usize = 5;

fn meta_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c.is_whitespace() || "._:/=+@-".contains(c)
}

fn check_key(k: &str) -> Result<(), MemoryError> {
    if k.is_empty() || k.len() > 128 || !k.chars().all(meta_char) {
        return Err(MemoryError::Invalid(format!(
            "invalid metadata key {:?}: 1 to 128 letters, digits, spaces and ._:/=+@-",
            k.chars().take(60).collect::<String>()
        )));
    }
    Ok(())
}

/// An event's metadata: at most 15 entries, keys and values of AgentCore's alphabet.
pub fn check_event_metadata(m: &BTreeMap<String, EventMetadataValue>) -> Result<(), MemoryError> {
    if m.len() > MAX_EVENT_METADATA {
        return Err(MemoryError::invalid(
            "an event has at most 15 metadata entries",
        ));
    }
    for (k, v) in m {
        check_key(k)?;
        if v.string_value.len() > 256 || !v.string_value.chars().all(meta_char) {
            return Err(MemoryError::Invalid(format!(
                "invalid metadata value of {k:?}: at most 256 letters, digits, spaces and ._:/=+@-"
            )));
        }
    }
    Ok(())
}

/// A record's metadata: at most 20 entries.
pub fn check_record_metadata(m: &BTreeMap<String, RecordMetadataValue>) -> Result<(), MemoryError> {
    if m.len() > MAX_RECORD_METADATA {
        return Err(MemoryError::invalid(
            "a record has at most 20 metadata entries",
        ));
    }
    for (k, v) in m {
        check_key(k)?;
        let too_long = match v {
            RecordMetadataValue::StringValue(s) => s.len() > 1024,
            RecordMetadataValue::StringListValue(l) => {
                l.len() > 50 || l.iter().any(|s| s.len() > 1024)
            }
            RecordMetadataValue::NumberValue(n) => !n.is_finite(),
            RecordMetadataValue::DateTimeValue(_) => false,
        };
        if too_long {
            return Err(MemoryError::Invalid(format!(
                "metadata value of {k:?} is too long or not a finite number"
            )));
        }
    }
    Ok(())
}

/// Filters of a request: at most 5; events take only `EQUALS_TO`, `EXISTS`, `NOT_EXISTS`;
/// every operator but the existence ones needs a value.
pub fn check_filters(filters: &[MetadataFilter], for_events: bool) -> Result<(), MemoryError> {
    if filters.len() > MAX_FILTERS {
        return Err(MemoryError::invalid("at most 5 metadata filters"));
    }
    for f in filters {
        check_key(&f.left.metadata_key)?;
        let existence = matches!(
            f.operator,
            FilterOperator::Exists | FilterOperator::NotExists
        );
        let event_op = existence || f.operator == FilterOperator::EqualsTo;
        if for_events && !event_op {
            return Err(MemoryError::invalid(
                "event metadata filters take EQUALS_TO, EXISTS or NOT_EXISTS",
            ));
        }
        if !existence && f.right.is_none() {
            return Err(MemoryError::Invalid(format!(
                "the filter on {:?} needs a right-hand value",
                f.left.metadata_key
            )));
        }
    }
    Ok(())
}

fn compare(op: FilterOperator, have: &RecordMetadataValue, want: &RecordMetadataValue) -> bool {
    use RecordMetadataValue as V;
    let ord = match (have, want) {
        (V::StringValue(a), V::StringValue(b)) => Some(a.as_str().cmp(b.as_str())),
        (V::NumberValue(a), V::NumberValue(b)) => a.partial_cmp(b),
        (V::DateTimeValue(a), V::DateTimeValue(b)) => Some(a.cmp(b)),
        _ => None,
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    match op {
        FilterOperator::EqualsTo => ord == Some(Equal) || have == want,
        FilterOperator::Contains => match (have, want) {
            (V::StringValue(a), V::StringValue(b)) => a.contains(b.as_str()),
            (V::StringListValue(a), V::StringValue(b)) => a.iter().any(|x| x == b),
            _ => false,
        },
        FilterOperator::Before | FilterOperator::LessThan => ord == Some(Less),
        FilterOperator::After | FilterOperator::GreaterThan => ord == Some(Greater),
        FilterOperator::GreaterThanOrEquals => matches!(ord, Some(Greater | Equal)),
        FilterOperator::LessThanOrEquals => matches!(ord, Some(Less | Equal)),
        FilterOperator::Exists | FilterOperator::NotExists => false,
    }
}

/// Whether a record's metadata passes every filter.
pub fn record_passes(
    m: &BTreeMap<String, RecordMetadataValue>,
    filters: &[MetadataFilter],
) -> bool {
    filters.iter().all(|f| {
        let have = m.get(&f.left.metadata_key);
        match f.operator {
            FilterOperator::Exists => have.is_some(),
            FilterOperator::NotExists => have.is_none(),
            op @ (FilterOperator::EqualsTo
            | FilterOperator::Before
            | FilterOperator::After
            | FilterOperator::Contains
            | FilterOperator::GreaterThan
            | FilterOperator::GreaterThanOrEquals
            | FilterOperator::LessThan
            | FilterOperator::LessThanOrEquals) => match (have, &f.right) {
                (Some(h), Some(r)) => compare(op, h, &r.metadata_value),
                _ => false,
            },
        }
    })
}

/// Whether an event's metadata passes every filter.
pub fn event_passes(m: &BTreeMap<String, EventMetadataValue>, filters: &[MetadataFilter]) -> bool {
    let as_record: BTreeMap<String, RecordMetadataValue> = m
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                RecordMetadataValue::StringValue(v.string_value.clone()),
            )
        })
        .collect();
    record_passes(&as_record, filters)
}

/// The words of a query, lower-cased, letters and digits only (at most 32): what the store's
/// full-text search is given, so no query syntax of either engine can be injected.
pub fn query_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    terms.dedup();
    terms.truncate(32);
    terms
}

/// A candidate of retrieval: the record, its full-text score (0 to 1) and, when the store
/// keeps one, its embedding.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub record: ScoredRecord,
    pub embedding: Option<Vec<f32>>,
}

/// Orders candidates best first and keeps `top_k`.
///
/// The seam for vector similarity: with `query_embedding` (and candidates' embeddings), the
/// knowledge part's fusion (`tenantry_memory::search`) replaces the full-text order here; the
/// candidates never grow beyond those the store found within the caller's reach.
pub fn rank(
    mut candidates: Vec<Candidate>,
    query_embedding: Option<&[f32]>,
    top_k: usize,
) -> Vec<ScoredRecord> {
    // No embedder is wired to records yet: the full-text score decides.
    let _ = query_embedding;
    candidates.sort_by(|a, b| {
        b.record
            .score
            .total_cmp(&a.record.score)
            .then_with(|| b.record.record.updated_at.cmp(&a.record.record.updated_at))
    });
    candidates
        .into_iter()
        .take(top_k)
        .map(|c| c.record)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::types::{FilterLeft, FilterRight};

    fn f(key: &str, op: FilterOperator, v: Option<RecordMetadataValue>) -> MetadataFilter {
        MetadataFilter {
            left: FilterLeft {
                metadata_key: key.into(),
            },
            operator: op,
            right: v.map(|metadata_value| FilterRight { metadata_value }),
        }
    }

    #[test]
    fn filters_compare_by_type() {
        use RecordMetadataValue as V;
        let mut m = BTreeMap::new();
        m.insert("topic".to_string(), V::StringValue("billing".into()));
        m.insert("n".to_string(), V::NumberValue(3.0));
        assert!(record_passes(
            &m,
            &[f(
                "topic",
                FilterOperator::EqualsTo,
                Some(V::StringValue("billing".into()))
            )]
        ));
        assert!(!record_passes(
            &m,
            &[f(
                "topic",
                FilterOperator::EqualsTo,
                Some(V::StringValue("x".into()))
            )]
        ));
        assert!(record_passes(
            &m,
            &[f(
                "n",
                FilterOperator::GreaterThan,
                Some(V::NumberValue(2.0))
            )]
        ));
        assert!(record_passes(
            &m,
            &[f("zz", FilterOperator::NotExists, None)]
        ));
        assert!(check_filters(&[f("n", FilterOperator::GreaterThan, None)], false).is_err());
        assert!(
            check_filters(
                &[f(
                    "n",
                    FilterOperator::GreaterThan,
                    Some(V::NumberValue(1.0))
                )],
                true
            )
            .is_err()
        );
    }

    #[test]
    fn query_terms_carry_no_syntax() {
        assert_eq!(
            query_terms("Green TEA\" OR NEAR(x) * -y:z"),
            vec!["green", "tea", "or", "near", "x", "y", "z"]
        );
    }
}
