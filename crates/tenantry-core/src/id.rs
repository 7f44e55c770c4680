//! Validated identifiers. A value of these types has passed validation, so code that holds one
//! never re-checks it, and a path segment such as `../x` can never become an id.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Why a string is not a valid identifier; the message says what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {rule}")]
pub struct IdError {
    pub kind: &'static str,
    pub value: String,
    pub rule: &'static str,
}

const SLUG_RULE: &str = "use 2 to 63 characters: lowercase letters, digits and '-', starting with a letter and not ending with '-'";

fn check_slug(kind: &'static str, value: &str) -> Result<(), IdError> {
    let bytes = value.as_bytes();
    let ok = (2..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(IdError {
            kind,
            value: value.chars().take(80).collect(),
            rule: SLUG_RULE,
        })
    }
}

macro_rules! slug_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check_slug($kind, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
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

slug_id!(
    /// A tenant's id: a slug, unique across the platform, chosen by the operator.
    TenantId,
    "tenant id"
);
slug_id!(
    /// A tier's name, e.g. `basic`, `standard`, `premium`.
    TierName,
    "tier name"
);
slug_id!(
    /// A runtime's name (an agent or tool server registered by the operator), e.g. `support-bot`.
    RuntimeName,
    "runtime name"
);

/// A tenant's internal identity: minted once when the tenant is created and never reused or
/// changed (32 lowercase hex digits, a UUIDv7). Everything a tenant owns at run time (session
/// storage, warm pools, live sessions, workload tokens) is keyed by it, so a tenant deleted and
/// created again under the same `TenantId` is a different tenant by construction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TenantUid(String);

impl TenantUid {
    /// A new, never-used identity.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().simple().to_string())
    }

    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        let ok = value.len() == 32
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(IdError {
                kind: "tenant uid",
                value: value.chars().take(80).collect(),
                rule: "32 lowercase hexadecimal digits",
            });
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantUid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// The prefix of a service principal's user id, `svc:NAME`: what a tenant API key acts as when
/// no user bound it to themself. No identity provider's token may name a user with it, so a
/// service principal never shares a user's sessions.
pub const SERVICE_PRINCIPAL_PREFIX: &str = "svc:";

/// A user within a tenant, as the tenant's identity provider names it (the `sub` claim by
/// default). Opaque, but bounded and free of control characters so it is safe in headers and logs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
            return Err(IdError {
                kind: "user id",
                value: value.chars().take(80).collect(),
                rule: "use 1 to 256 characters without control characters",
            });
        }
        Ok(Self(value))
    }

    /// The service principal `svc:{name}`.
    pub fn service(name: &str) -> Result<Self, IdError> {
        Self::new(format!("{SERVICE_PRINCIPAL_PREFIX}{name}"))
    }

    /// Whether this is a service principal (`svc:NAME`) rather than a person.
    pub fn is_service(&self) -> bool {
        self.0.starts_with(SERVICE_PRINCIPAL_PREFIX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_refuse_path_tricks_and_odd_characters() {
        for bad in [
            "", "a", "../x", "a/b", "A-corp", "-acme", "acme-", "1acme", "ac me", "ac.me",
        ] {
            assert!(TenantId::new(bad).is_err(), "{bad:?} must be refused");
        }
        for good in ["acme", "acme-corp", "t1", "a-1-b"] {
            assert!(TenantId::new(good).is_ok(), "{good:?} must be accepted");
        }
        assert!(TenantId::new("a".repeat(64)).is_err());
    }

    #[test]
    fn tenant_uids_are_fresh_and_validated() {
        let a = TenantUid::generate();
        let b = TenantUid::generate();
        assert_ne!(a, b);
        assert_eq!(TenantUid::new(a.as_str()).ok(), Some(a.clone()));
        for bad in [
            "",
            "../x",
            &"A".repeat(32),
            &"0".repeat(31),
            &"g".repeat(32),
        ] {
            assert!(TenantUid::new(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn user_ids_refuse_control_characters() {
        assert!(UserId::new("alice@example.com").is_ok());
        assert!(UserId::new("a\nb").is_err());
        assert!(UserId::new("").is_err());
    }

    #[test]
    fn service_principals_are_recognisable() {
        let svc = UserId::service("ci").expect("a valid service name");
        assert_eq!(svc.as_str(), "svc:ci");
        assert!(svc.is_service());
        assert!(!UserId::new("alice").expect("a valid user id").is_service());
        assert!(UserId::service("a\nb").is_err());
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<TenantId>("\"../etc\"").is_err());
        assert_eq!(
            serde_json::from_str::<TenantId>("\"acme\"").ok(),
            TenantId::new("acme").ok()
        );
    }
}

const SESSION_RULE: &str =
    "use 33 to 256 characters: letters, digits, '-', '_' and '.' (e.g. a UUID with a prefix)";

/// A session's id: chosen by the caller (the AgentCore contract asks for at least 33
/// characters) or generated by the platform. The one rule for session ids everywhere: the
/// request's header, the store's row and the sandbox's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        if Self::is_valid(&value) {
            Ok(Self(value))
        } else {
            Err(IdError {
                kind: "session id",
                value: value.chars().take(80).collect(),
                rule: SESSION_RULE,
            })
        }
    }

    /// A fresh id, for a caller that did not choose one.
    pub fn generate() -> Self {
        Self(format!("sess-{}", uuid::Uuid::new_v4()))
    }

    /// Whether `id` is a valid session id (see `SessionId`).
    pub fn is_valid(id: &str) -> bool {
        (33..=256).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SessionId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod session_id_tests {
    use super::SessionId;

    #[test]
    fn session_ids_have_one_rule() {
        assert!(!SessionId::is_valid(&"a".repeat(32)));
        assert!(SessionId::is_valid(&"a".repeat(33)));
        assert!(SessionId::is_valid(&"a".repeat(256)));
        assert!(!SessionId::is_valid(&"a".repeat(257)));
        assert!(!SessionId::is_valid(&"é".repeat(40)));
        assert!(!SessionId::is_valid(&format!("{}\t", "a".repeat(40))));
        assert!(!SessionId::is_valid(&format!("../{}", "a".repeat(40))));
        assert!(SessionId::is_valid(SessionId::generate().as_str()));
        let err = SessionId::new("short").expect_err("a 5-character id is refused");
        assert!(err.to_string().contains("33 to 256"), "{err}");
    }
}
