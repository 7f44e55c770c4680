//! Targets: what the operator registers so their tools appear behind `/mcp`.
//!
//! A [`TargetSpec`] is plain data for the control plane and the store (serde, unknown fields
//! refused). [`TargetSpec::validate`] checks what serde cannot and names the field at fault.
//! A spec never holds a secret: where a credential goes is configuration
//! ([`CredentialPlacement`]), the credential itself comes from the vault per tenant on each call.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use tenantry_core::{Money, RuntimeName, TenantId};

use crate::error::TargetError;

/// Longest time a target may be given to answer.
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// Timeout of a target that does not set one.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The separator of exported tool names: `{target}___{tool}`.
pub const TOOL_SEPARATOR: &str = "___";

/// A target's name: 2 to 63 characters, lowercase letters, digits and `-`, starting with a
/// letter and not ending with `-`. It has no `_`, so `{target}___{tool}` splits unambiguously.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TargetName(String);

impl TargetName {
    pub fn new(value: impl Into<String>) -> Result<Self, TargetError> {
        let value = value.into();
        let b = value.as_bytes();
        let ok = (2..=63).contains(&b.len())
            && b[0].is_ascii_lowercase()
            && b[b.len() - 1] != b'-'
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if ok {
            Ok(Self(value))
        } else {
            Err(TargetError::invalid(
                "name",
                format!(
                    "{:?} is not a target name: use 2 to 63 characters (lowercase letters, digits \
                     and '-'), starting with a letter and not ending with '-'",
                    value.chars().take(80).collect::<String>()
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TargetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TargetName {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, TargetError> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for TargetName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// A target as the operator registers it (`/v1/admin/tool-targets`, `tenantry tool ...`).
///
/// ```json
/// {"name": "crm", "kind": {"type": "mcp", "url": "https://crm.example/mcp"},
///  "tenant": "acme", "credential": {"placement": "bearer"}, "timeout_ms": 10000,
///  "price_per_call": "0.002"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub name: TargetName,
    pub kind: TargetKind,
    /// `None`: shared by every tenant (pool). `Some`: that tenant's alone (silo); other tenants
    /// cannot see or call it. Names are unique across the platform either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    /// Where the tenant's credential goes on each upstream call; `None`: no credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialPlacement>,
    /// Deadline of one call (credential lookup and upstream answer), in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Price of one call that reached the upstream, for the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_call: Option<Money>,
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// What kind of upstream a target is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetKind {
    /// An MCP server speaking streamable HTTP; its tools are re-exported.
    Mcp { url: String },
    /// An OpenAPI 3 document (JSON); each operation becomes a tool, called at `base_url`.
    Openapi { spec: SpecSource, base_url: String },
    /// An MCP server hosted as a Tenantry runtime (protocol `mcp`), run in one sandbox per
    /// tenant session; its tools are re-exported.
    Runtime { runtime: RuntimeName },
}

/// Where an OpenAPI document comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SpecSource {
    /// The document's text (JSON).
    Inline(String),
    /// Fetched once when the target is registered (see `Catalog::resolve_spec`).
    Url(String),
}

/// Where the tenant's credential is put on an upstream request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "placement", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialPlacement {
    /// A header of this name, with the credential as its whole value (e.g. `X-Api-Key`).
    Header { name: String },
    /// `Authorization: Bearer <credential>`.
    Bearer,
    /// A query parameter of this name (e.g. `api_key`).
    Query { name: String },
}

/// Header names the platform sets on requests to its sandboxes; a credential for a
/// runtime-hosted server cannot take them.
const PLATFORM_HEADER_PREFIXES: &[&str] = &[
    "x-tenantry-",
    "x-amzn-bedrock-agentcore-",
    "workloadaccesstoken",
    "traceparent",
    "tracestate",
    "baggage",
];

/// Headers a credential may not be placed in: they frame the request or the MCP session.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
];

impl TargetSpec {
    /// The per-call deadline.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Checks what serde cannot: URLs, the timeout, the price and the credential placement.
    pub fn validate(&self) -> Result<(), TargetError> {
        match &self.kind {
            TargetKind::Mcp { url } => {
                check_url("kind.url", url)?;
            }
            TargetKind::Openapi { spec, base_url } => {
                let base = check_url("kind.base_url", base_url)?;
                if base.query().is_some() || base.fragment().is_some() {
                    return Err(TargetError::invalid(
                        "kind.base_url",
                        "must not have a query or fragment; operations' paths are appended to it",
                    ));
                }
                match spec {
                    SpecSource::Inline(text) => {
                        if text.trim().is_empty() {
                            return Err(TargetError::invalid(
                                "kind.spec.inline",
                                "is empty; give the OpenAPI document's JSON text",
                            ));
                        }
                    }
                    SpecSource::Url(url) => {
                        check_url("kind.spec.url", url)?;
                    }
                }
            }
            TargetKind::Runtime { .. } => match &self.credential {
                Some(CredentialPlacement::Query { .. }) => {
                    return Err(TargetError::invalid(
                        "credential.placement",
                        "a runtime-hosted server takes its credential in a header or as a bearer \
                         token, not in the query",
                    ));
                }
                Some(CredentialPlacement::Header { name })
                    if PLATFORM_HEADER_PREFIXES
                        .iter()
                        .any(|p| name.to_ascii_lowercase().starts_with(p)) =>
                {
                    return Err(TargetError::invalid(
                        "credential.name",
                        format!(
                            "the header {name} is one the platform sets for a hosted server (its \
                             tenant context and token); use another name"
                        ),
                    ));
                }
                None | Some(_) => {}
            },
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err(TargetError::invalid(
                "timeout_ms",
                format!("must be between 1 and {MAX_TIMEOUT_MS}"),
            ));
        }
        if self.price_per_call.is_some_and(|p| p.micros() < 0) {
            return Err(TargetError::invalid(
                "price_per_call",
                "must not be negative",
            ));
        }
        match &self.credential {
            None | Some(CredentialPlacement::Bearer) => {}
            Some(CredentialPlacement::Header { name }) => {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(TargetError::invalid(
                        "credential.name",
                        format!("{name:?} is not a valid HTTP header name"),
                    ));
                }
                if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    return Err(TargetError::invalid(
                        "credential.name",
                        format!("the header {name} cannot carry a credential; use another name"),
                    ));
                }
            }
            Some(CredentialPlacement::Query { name }) => {
                if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                    return Err(TargetError::invalid(
                        "credential.name",
                        "must be 1 to 128 characters without control characters",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_url(field: &'static str, value: &str) -> Result<url::Url, TargetError> {
    let url = url::Url::parse(value).map_err(|e| {
        TargetError::invalid(
            field,
            format!("{value:?} is not a URL ({e}); write http(s)://host/path"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(TargetError::invalid(
            field,
            "must be an http:// or https:// URL with a host",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::invalid(
            field,
            "must not carry credentials; register them in the vault and set `credential`",
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(v: serde_json::Value) -> Result<TargetSpec, serde_json::Error> {
        serde_json::from_value::<TargetSpec>(v)
    }

    #[test]
    fn specs_round_trip_and_default() {
        let s = parse(serde_json::json!({
            "name": "crm",
            "kind": {"type": "mcp", "url": "http://127.0.0.1:1/mcp"},
            "tenant": "acme",
            "credential": {"placement": "header", "name": "X-Api-Key"},
            "price_per_call": "0.002"
        }))
        .unwrap();
        assert_eq!(s.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(s.price_per_call, Some(Money::from_micros(2_000)));
        s.validate().unwrap();
        let back = parse(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let o = parse(serde_json::json!({
            "name": "pets",
            "kind": {"type": "openapi", "spec": {"url": "http://x/openapi.json"}, "base_url": "http://x/"},
            "credential": {"placement": "bearer"}
        }))
        .unwrap();
        o.validate().unwrap();
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert!(
            parse(serde_json::json!({"name": "a_b", "kind": {"type": "mcp", "url": "http://x"}}))
                .is_err()
        );
        assert!(parse(serde_json::json!({"name": "ab", "kind": {"type": "mcp", "url": "http://x"}, "extra": 1})).is_err());
        assert!(parse(serde_json::json!({"name": "ab", "kind": {"type": "mcp", "url": "http://x", "spec": "y"}})).is_err());
        assert!(parse(serde_json::json!({"name": "ab", "kind": {"type": "mcp", "url": "http://x"}, "credential": {"placement": "cookie"}})).is_err());
        let bad = |v| parse(v).unwrap().validate().unwrap_err().to_string();
        assert!(
            bad(serde_json::json!({"name": "ab", "kind": {"type": "mcp", "url": "ftp://x"}}))
                .contains("kind.url")
        );
        assert!(
            bad(serde_json::json!({"name": "ab", "kind": {"type": "mcp", "url": "http://u:p@x"}}))
                .contains("credentials")
        );
        assert!(bad(serde_json::json!({"name": "ab", "kind": {"type": "mcp", "url": "http://x"}, "timeout_ms": 0})).contains("timeout_ms"));
        assert!(bad(serde_json::json!({"name": "ab", "kind": {"type": "mcp", "url": "http://x"}, "credential": {"placement": "header", "name": "Host"}})).contains("credential.name"));
        assert!(bad(serde_json::json!({"name": "ab", "kind": {"type": "mcp", "url": "http://x"}, "credential": {"placement": "header", "name": "bad header"}})).contains("credential.name"));
        assert!(bad(serde_json::json!({"name": "ab", "kind": {"type": "openapi", "spec": {"inline": " "}, "base_url": "http://x"}})).contains("kind.spec.inline"));
        assert!(bad(serde_json::json!({"name": "ab", "kind": {"type": "runtime", "runtime": "notes"}, "credential": {"placement": "query", "name": "k"}})).contains("credential.placement"));
        assert!(
            parse(serde_json::json!({"name": "ab", "kind": {"type": "runtime", "runtime": "Not A Name"}}))
                .is_err()
        );
        parse(serde_json::json!({"name": "ab", "kind": {"type": "runtime", "runtime": "notes"}, "credential": {"placement": "bearer"}}))
            .unwrap()
            .validate()
            .unwrap();
    }
}
