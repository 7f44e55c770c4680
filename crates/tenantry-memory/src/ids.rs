//! The identifiers of memory and their syntax, the same as AgentCore Memory's so that its
//! clients' ids are accepted unchanged: memory and strategy ids `name-XXXXXXXXXX`, actor ids,
//! session ids, event ids `millis#hex`, record ids `mem-...`.
//!
//! None of them may contain `.`, `%`, `\` or whitespace, so an id substituted into a
//! namespace can never introduce `..` or an encoded slash.

use serde::{Deserialize, Serialize};

use crate::MemoryError;

fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Ten random letters and digits (the suffix of memory and strategy ids).
fn suffix() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..10]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self, MemoryError> {
                let value = value.into();
                if $check(&value) {
                    Ok(Self(value))
                } else {
                    Err(MemoryError::Invalid(format!(
                        concat!("invalid ", $what, " {:?}"),
                        value.chars().take(120).collect::<String>()
                    )))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = MemoryError;
            fn try_from(value: String) -> Result<Self, MemoryError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// `[a-zA-Z][a-zA-Z0-9-_]{0,99}-[a-zA-Z0-9]{10}`: a name, a dash, ten letters or digits.
fn is_named_id(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 12 || b.len() > 111 || !b[0].is_ascii_alphabetic() {
        return false;
    }
    let (head, tail) = b.split_at(b.len() - 10);
    tail.iter().all(|c| alnum(*c))
        && head.last() == Some(&b'-')
        && head.iter().all(|c| alnum(*c) || *c == b'-' || *c == b'_')
}

/// A memory or strategy name: `[a-zA-Z][a-zA-Z0-9_]{0,47}`.
pub fn is_valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=48).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| alnum(*c) || *c == b'_')
}

/// Actor ids: 1 to 255 of letters, digits, `-_/:`, starting with a letter or digit.
fn is_actor(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=255).contains(&b.len())
        && alnum(b[0])
        && b.iter().all(|c| alnum(*c) || b"-_/:".contains(c))
        && !s.contains("//")
}

/// Session ids: 1 to 100 of letters, digits, `-_`, starting with a letter or digit.
fn is_session(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=100).contains(&b.len()) && alnum(b[0]) && b.iter().all(|c| alnum(*c) || b"-_".contains(c))
}

/// Event ids: `digits#hex`.
fn is_event(s: &str) -> bool {
    match s.split_once('#') {
        Some((at, hex)) => {
            (1..=20).contains(&at.len())
                && at.bytes().all(|c| c.is_ascii_digit())
                && (1..=64).contains(&hex.len())
                && hex.bytes().all(|c| c.is_ascii_hexdigit())
        }
        None => false,
    }
}

/// Record ids: `mem-` then letters, digits, `-_`, 40 to 50 in all.
fn is_record(s: &str) -> bool {
    (40..=50).contains(&s.len())
        && s.starts_with("mem-")
        && s.bytes().all(|c| alnum(c) || c == b'-' || c == b'_')
}

id_type!(
    /// A memory resource: `name-XXXXXXXXXX`.
    MemoryId, "memory id", is_named_id
);
id_type!(
    /// A strategy of a memory: `name-XXXXXXXXXX`.
    StrategyId, "memory strategy id", is_named_id
);
id_type!(
    /// Whose memory it is: usually the end user.
    ActorId, "actor id", is_actor
);
id_type!(
    /// A conversation of an actor (not the runtime's session id, though agents often reuse it).
    MemorySessionId, "session id", is_session
);
id_type!(
    /// An event: `millis#hex`, so ids sort by time within a millisecond's digits.
    EventId, "event id", is_event
);
id_type!(
    /// A long-term record: `mem-` and a UUID.
    RecordId, "memory record id", is_record
);

impl MemoryId {
    /// A new id for a memory named `name` (already checked with `is_valid_name`).
    pub fn generate(name: &str) -> Self {
        Self(format!("{name}-{}", suffix()))
    }
}

impl StrategyId {
    pub fn generate(name: &str) -> Self {
        Self(format!("{name}-{}", suffix()))
    }
}

impl EventId {
    /// A new id for an event at `at_ms`.
    pub fn generate(at_ms: i64) -> Self {
        Self(format!(
            "{}#{}",
            at_ms.max(0),
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        ))
    }
}

impl RecordId {
    pub fn generate() -> Self {
        Self(format!("mem-{}", uuid::Uuid::now_v7()))
    }
}

impl ActorId {
    /// The actor of a user of the tenant (a user id is always a valid actor id or refused).
    pub fn of_user(user: &tenantry_core::UserId) -> Result<Self, MemoryError> {
        Self::new(user.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_follow_agentcore_syntax() {
        let m = MemoryId::generate("support_bot");
        assert!(MemoryId::new(m.as_str()).is_ok(), "{m}");
        assert!(MemoryId::new("abc").is_err());
        assert!(MemoryId::new("x-../../../a").is_err());
        let e = EventId::generate(1_700_000_000_000);
        assert!(EventId::new(e.as_str()).is_ok(), "{e}");
        assert!(RecordId::new(RecordId::generate().as_str()).is_ok());
        assert!(ActorId::new("user:alice/x").is_ok());
        for bad in ["", "../x", "a..b", "a%2Fb", "a b", "/a", "a//b"] {
            assert!(ActorId::new(bad).is_err(), "{bad}");
        }
        assert!(MemorySessionId::new("s-1_2").is_ok());
        assert!(MemorySessionId::new("s/1").is_err());
        assert!(is_valid_name("Facts_1"));
        assert!(!is_valid_name("1facts"));
    }
}
