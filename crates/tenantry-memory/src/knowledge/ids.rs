//! Knowledge-base and document ids.
//!
//! A base id is what Bedrock's Retrieve names in its path: 1 to 10 ASCII letters and digits
//! (the platform generates ten uppercase ones). A document id is chosen by the caller: 1 to
//! 128 characters of letters, digits, `.`, `_` and `-`, not starting with `.`, so it is safe in
//! a path and never contains the `:` that separates it from a chunk's number.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use tenantry_core::IdError;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct KnowledgeBaseId(String);

impl KnowledgeBaseId {
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        if (1..=10).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(Self(value))
        } else {
            Err(IdError {
                kind: "knowledge base id",
                value: value.chars().take(80).collect(),
                rule: "use 1 to 10 ASCII letters and digits",
            })
        }
    }

    /// A fresh id: ten uppercase letters and digits from `seed` (random bytes).
    pub fn generate(seed: &[u8; 16]) -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let id = seed[..10]
            .iter()
            .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
            .collect();
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct DocumentId(String);

impl DocumentId {
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        let ok = (1..=128).contains(&value.len())
            && !value.starts_with('.')
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
        if ok {
            Ok(Self(value))
        } else {
            Err(IdError {
                kind: "document id",
                value: value.chars().take(80).collect(),
                rule: "use 1 to 128 letters, digits, '.', '_' and '-', not starting with '.'",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! text_id {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_id!(KnowledgeBaseId);
text_id!(DocumentId);

/// A chunk's id within its base and tenant: `DOCUMENT:SEQ`.
pub fn chunk_id(document: &DocumentId, seq: usize) -> String {
    format!("{document}:{seq}")
}

/// The document and number of a chunk id; `None` if it is not one.
pub fn split_chunk_id(id: &str) -> Option<(DocumentId, usize)> {
    let (doc, seq) = id.rsplit_once(':')?;
    Some((DocumentId::new(doc).ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_what_could_escape_a_path() {
        assert!(KnowledgeBaseId::new("KB12345678").is_ok());
        for bad in ["", "KB123456789", "kb-1", "../x", "a b"] {
            assert!(KnowledgeBaseId::new(bad).is_err(), "{bad}");
        }
        assert!(DocumentId::new("guide_v2.md").is_ok());
        for bad in ["", ".hidden", "a/b", "a:b", "..", "x%2Fy"] {
            assert!(DocumentId::new(bad).is_err(), "{bad}");
        }
        let id = KnowledgeBaseId::generate(&[7; 16]);
        assert_eq!(id.as_str().len(), 10);
        assert!(KnowledgeBaseId::new(id.as_str()).is_ok());
    }

    #[test]
    fn chunk_ids_round_trip() {
        let d = DocumentId::new("doc-1").ok();
        let id = d.as_ref().map(|d| chunk_id(d, 3));
        assert_eq!(id.as_deref(), Some("doc-1:3"));
        assert_eq!(split_chunk_id("doc-1:3").map(|(_, n)| n), Some(3));
        assert!(split_chunk_id("nope").is_none());
    }
}
