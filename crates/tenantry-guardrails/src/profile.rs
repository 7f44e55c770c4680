//! The guardrail profile as the operator writes it (JSON through the control plane, TOML in
//! the configuration file): a list of checks, each with an action and the stages it applies
//! to, plus the identifiers a tenant registers as its own (for other tenants' leak checks).
//!
//! This module only describes and validates the document; compiling it into something that
//! scans text is `engine`'s job. Validation errors name the field and the fix.

use serde::{Deserialize, Serialize};

/// Where in the traffic a check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Messages sent to a model (a `tool` message is a [`Stage::ToolResult`] instead).
    ModelInput,
    /// What a model answers, whole or streamed.
    ModelOutput,
    /// The arguments of a `tools/call`, before the tool sees them.
    ToolInput,
    /// What a tool answered, before the agent (and its model) sees it; also the `tool`
    /// messages of a chat request.
    ToolResult,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::ModelInput,
        Stage::ModelOutput,
        Stage::ToolInput,
        Stage::ToolResult,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::ModelInput => "model_input",
            Stage::ModelOutput => "model_output",
            Stage::ToolInput => "tool_input",
            Stage::ToolResult => "tool_result",
        }
    }

    /// Whether text at this stage comes into the platform from outside the model (a caller,
    /// a tool), where instructions planted for the model are an attack.
    pub fn is_inbound(self) -> bool {
        match self {
            Stage::ModelInput | Stage::ToolResult => true,
            Stage::ModelOutput | Stage::ToolInput => false,
        }
    }
}

/// What happens when a check finds something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The request (or the stream) is refused with `guardrail_blocked`.
    Block,
    /// The finding is replaced by a typed placeholder; the caller is not told.
    Mask,
    /// Nothing changes; the decision is counted and written to the audit log.
    Log,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Mask => "mask",
            Action::Log => "log",
        }
    }
}

/// What a remote check (judge, webhook) does when it cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// No answer counts as a finding (the check's action applies): the safe default.
    #[default]
    Closed,
    /// No answer counts as a pass; the failure is logged.
    Open,
}

/// A kind of sensitive information with a built-in detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Email,
    Phone,
    /// Payment card numbers (13 to 19 digits, a known issuer prefix, Luhn check digit).
    Card,
    /// International bank account numbers (country length, ISO 13616 mod-97 check).
    Iban,
    /// US social security numbers written `AAA-GG-SSSS` with a valid area, group and serial.
    UsSsn,
    /// IPv4 and IPv6 addresses.
    IpAddress,
    /// API keys and secrets: known prefixes, private-key blocks, JWTs, high-entropy tokens.
    Secret,
}

impl Entity {
    pub const ALL: [Entity; 7] = [
        Entity::Email,
        Entity::Phone,
        Entity::Card,
        Entity::Iban,
        Entity::UsSsn,
        Entity::IpAddress,
        Entity::Secret,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Email => "email",
            Entity::Phone => "phone",
            Entity::Card => "card",
            Entity::Iban => "iban",
            Entity::UsSsn => "us_ssn",
            Entity::IpAddress => "ip_address",
            Entity::Secret => "secret",
        }
    }

    /// The placeholder a masked finding becomes.
    pub fn placeholder(self) -> &'static str {
        match self {
            Entity::Email => "[EMAIL]",
            Entity::Phone => "[PHONE]",
            Entity::Card => "[CARD]",
            Entity::Iban => "[IBAN]",
            Entity::UsSsn => "[SSN]",
            Entity::IpAddress => "[IP]",
            Entity::Secret => "[SECRET]",
        }
    }
}

/// A custom pattern of a sensitive-information check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomPattern {
    /// Lower-case letters, digits and `_`; the category is `sensitive_info:NAME` and the
    /// placeholder `[NAME]` in upper case.
    pub name: String,
    /// A regular expression (Rust `regex` syntax: no look-around, linear time).
    pub pattern: String,
    /// The longest text a match can span, in characters: how much a stream holds back for it.
    #[serde(default = "default_custom_max_len")]
    pub max_len: usize,
}

fn default_custom_max_len() -> usize {
    64
}

/// A denied topic: a name (its category) and the phrases that mark it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topic {
    pub name: String,
    pub phrases: Vec<String>,
}

/// What one check looks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckKind {
    SensitiveInfo {
        /// The built-in detectors; all of them when absent.
        #[serde(default = "all_entities")]
        entities: Vec<Entity>,
        #[serde(default)]
        custom: Vec<CustomPattern>,
    },
    DeniedTopics {
        topics: Vec<Topic>,
    },
    WordFilter {
        words: Vec<String>,
    },
    PromptAttack {
        /// Score (0 to 1) at or above which the text is an attack.
        #[serde(default = "default_threshold")]
        threshold: f64,
    },
    /// Identifiers other tenants registered as theirs appearing in this tenant's traffic.
    CrossTenantLeak,
    /// A guard model of the gateway asked to classify the text.
    ModelJudge {
        /// A provider of `[models.providers]`.
        provider: String,
        /// The model id that provider is asked for.
        model: String,
        #[serde(default = "default_remote_timeout_ms")]
        timeout_ms: u64,
        #[serde(default)]
        fail: FailMode,
        /// Replaces the built-in instructions to the judge.
        #[serde(default)]
        instructions: Option<String>,
    },
    /// An external engine: the text is POSTed, a decision comes back.
    Webhook {
        url: String,
        #[serde(default = "default_remote_timeout_ms")]
        timeout_ms: u64,
        #[serde(default)]
        fail: FailMode,
    },
}

fn all_entities() -> Vec<Entity> {
    Entity::ALL.to_vec()
}

fn default_threshold() -> f64 {
    0.5
}

fn default_remote_timeout_ms() -> u64 {
    2000
}

fn all_stages() -> Vec<Stage> {
    Stage::ALL.to_vec()
}

/// One check of a profile. (Unknown fields are refused by `CheckKind`, which receives every
/// field `Check` does not take itself.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    #[serde(flatten)]
    pub kind: CheckKind,
    pub action: Action,
    /// The stages it runs at; all of them when absent.
    #[serde(default = "all_stages")]
    pub on: Vec<Stage>,
}

impl Check {
    /// `sensitive_info`, `denied_topics`, ...: the first part of its categories.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            CheckKind::SensitiveInfo { .. } => "sensitive_info",
            CheckKind::DeniedTopics { .. } => "denied_topic",
            CheckKind::WordFilter { .. } => "word_filter",
            CheckKind::PromptAttack { .. } => "prompt_attack",
            CheckKind::CrossTenantLeak => "cross_tenant_leak",
            CheckKind::ModelJudge { .. } => "model_judge",
            CheckKind::Webhook { .. } => "webhook",
        }
    }

    pub fn is_remote(&self) -> bool {
        match &self.kind {
            CheckKind::ModelJudge { .. } | CheckKind::Webhook { .. } => true,
            CheckKind::SensitiveInfo { .. }
            | CheckKind::DeniedTopics { .. }
            | CheckKind::WordFilter { .. }
            | CheckKind::PromptAttack { .. }
            | CheckKind::CrossTenantLeak => false,
        }
    }
}

/// A guardrail profile: a tier's (named, referred to by `Tier::guardrail_profile`) or a
/// tenant's override.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub checks: Vec<Check>,
    /// A tenant's override only: also run the checks of the tier's profile (before its own).
    #[serde(default)]
    pub inherit: bool,
    /// A tenant's override only: names and ids that are this tenant's and must never appear in
    /// another tenant's traffic (the other tenants' `cross_tenant_leak` checks look for them).
    #[serde(default)]
    pub protected_identifiers: Vec<String>,
}

/// The largest profile document accepted, in bytes of JSON.
pub const MAX_PROFILE_BYTES: usize = 256 * 1024;
/// Most checks in one profile.
pub const MAX_CHECKS: usize = 64;
/// Longest identifier, phrase or word, in characters.
pub const MAX_PHRASE_CHARS: usize = 200;
/// Most phrases, words or identifiers in one list.
pub const MAX_PHRASES: usize = 10_000;

/// Why a profile cannot be used; the message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ProfileError {
    pub field: String,
    pub message: String,
}

impl ProfileError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn check_phrases(field: &str, list: &[String]) -> Result<(), ProfileError> {
    if list.len() > MAX_PHRASES {
        return Err(ProfileError::new(
            field,
            format!("at most {MAX_PHRASES} entries"),
        ));
    }
    for (i, p) in list.iter().enumerate() {
        let n = p.chars().count();
        if n == 0 || n > MAX_PHRASE_CHARS || crate::normalize::fold(p).trim().is_empty() {
            return Err(ProfileError::new(
                format!("{field}[{i}]"),
                format!("must hold a letter or digit and be at most {MAX_PHRASE_CHARS} characters"),
            ));
        }
    }
    Ok(())
}

impl Profile {
    /// Parses and validates a JSON document.
    pub fn from_json(text: &str) -> Result<Self, ProfileError> {
        if text.len() > MAX_PROFILE_BYTES {
            return Err(ProfileError::new(
                "profile",
                format!("larger than {MAX_PROFILE_BYTES} bytes"),
            ));
        }
        let p: Profile =
            serde_json::from_str(text).map_err(|e| ProfileError::new("profile", e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    /// Checks what serde cannot: names, sizes, thresholds, actions a check can take, and that
    /// every pattern compiles.
    pub fn validate(&self) -> Result<(), ProfileError> {
        if self.checks.len() > MAX_CHECKS {
            return Err(ProfileError::new(
                "checks",
                format!("at most {MAX_CHECKS} checks"),
            ));
        }
        if self.description.chars().count() > 500 {
            return Err(ProfileError::new("description", "at most 500 characters"));
        }
        check_phrases("protected_identifiers", &self.protected_identifiers)?;
        for (i, c) in self.checks.iter().enumerate() {
            let at = |f: &str| format!("checks[{i}].{f}");
            if c.on.is_empty() {
                return Err(ProfileError::new(
                    at("on"),
                    "name at least one stage (or omit `on` for all of them)",
                ));
            }
            if c.is_remote() && c.action == Action::Mask {
                return Err(ProfileError::new(
                    at("action"),
                    "a remote check answers for the whole text and cannot mask; use block or log",
                ));
            }
            match &c.kind {
                CheckKind::SensitiveInfo { entities, custom } => {
                    if entities.is_empty() && custom.is_empty() {
                        return Err(ProfileError::new(
                            at("entities"),
                            "name at least one entity or custom pattern",
                        ));
                    }
                    for (j, p) in custom.iter().enumerate() {
                        if !is_name(&p.name) {
                            return Err(ProfileError::new(
                                at(&format!("custom[{j}].name")),
                                "use 1 to 64 lower-case letters, digits or `_`",
                            ));
                        }
                        if p.max_len == 0 || p.max_len > 4096 {
                            return Err(ProfileError::new(
                                at(&format!("custom[{j}].max_len")),
                                "must be between 1 and 4096",
                            ));
                        }
                        crate::sensitive::compile_custom(&p.pattern).map_err(|e| {
                            ProfileError::new(at(&format!("custom[{j}].pattern")), e.to_string())
                        })?;
                    }
                }
                CheckKind::DeniedTopics { topics } => {
                    if topics.is_empty() {
                        return Err(ProfileError::new(at("topics"), "name at least one topic"));
                    }
                    for (j, t) in topics.iter().enumerate() {
                        if !is_name(&t.name) {
                            return Err(ProfileError::new(
                                at(&format!("topics[{j}].name")),
                                "use 1 to 64 lower-case letters, digits or `_`",
                            ));
                        }
                        if t.phrases.is_empty() {
                            return Err(ProfileError::new(
                                at(&format!("topics[{j}].phrases")),
                                "give at least one phrase",
                            ));
                        }
                        check_phrases(&at(&format!("topics[{j}].phrases")), &t.phrases)?;
                    }
                }
                CheckKind::WordFilter { words } => {
                    if words.is_empty() {
                        return Err(ProfileError::new(at("words"), "give at least one word"));
                    }
                    check_phrases(&at("words"), words)?;
                }
                CheckKind::PromptAttack { threshold } => {
                    if !(threshold.is_finite() && *threshold > 0.0 && *threshold <= 1.0) {
                        return Err(ProfileError::new(
                            at("threshold"),
                            "must be above 0 and at most 1",
                        ));
                    }
                    if c.action == Action::Mask {
                        return Err(ProfileError::new(
                            at("action"),
                            "a prompt attack is judged on the whole text; use block or log",
                        ));
                    }
                }
                CheckKind::CrossTenantLeak => {}
                CheckKind::ModelJudge {
                    provider,
                    model,
                    timeout_ms,
                    ..
                } => {
                    if provider.is_empty() || model.is_empty() {
                        return Err(ProfileError::new(
                            at("provider"),
                            "name the provider and the model of the judge",
                        ));
                    }
                    check_timeout(&at("timeout_ms"), *timeout_ms)?;
                }
                CheckKind::Webhook {
                    url, timeout_ms, ..
                } => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(ProfileError::new(at("url"), "must be an http(s) URL"));
                    }
                    check_timeout(&at("timeout_ms"), *timeout_ms)?;
                }
            }
        }
        Ok(())
    }
}

fn check_timeout(field: &str, ms: u64) -> Result<(), ProfileError> {
    if ms == 0 || ms > 60_000 {
        return Err(ProfileError::new(field, "must be between 1 and 60000"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals() {
        let p = Profile::from_json(
            r#"{"checks":[{"kind":"sensitive_info","action":"mask"},
                          {"kind":"prompt_attack","action":"block","on":["model_input"]}]}"#,
        )
        .expect("valid");
        assert_eq!(p.checks[0].on.len(), 4);
        assert!(
            matches!(&p.checks[0].kind, CheckKind::SensitiveInfo { entities, .. } if entities.len() == 7)
        );
        let bad = Profile::from_json(
            r#"{"checks":[{"kind":"webhook","url":"http://x","action":"mask"}]}"#,
        )
        .expect_err("mask on a webhook");
        assert_eq!(bad.field, "checks[0].action");
        let bad = Profile::from_json(
            r#"{"checks":[{"kind":"sensitive_info","action":"mask","custom":[{"name":"x","pattern":"("}]}]}"#,
        )
        .expect_err("bad regex");
        assert_eq!(bad.field, "checks[0].custom[0].pattern");
        assert!(Profile::from_json(r#"{"checks":[],"bogus":1}"#).is_err());
    }
}
