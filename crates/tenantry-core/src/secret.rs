//! [`Secret`]: a credential (an API key, a token, a provider's key) held as a string.
//!
//! Its `Debug` never shows the value and it has no `Serialize` or `Display`, so it cannot
//! reach a log line or an API response by accident; it deserializes from a plain string so
//! configuration can hold one.

use std::fmt;

use serde::Deserialize;

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s: Secret = serde_json::from_str("\"sk-live-123\"").unwrap_or_else(|_| Secret::new(""));
        assert_eq!(s.expose(), "sk-live-123");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }
}
