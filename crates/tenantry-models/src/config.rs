//! The `[models]` section of the server's configuration: providers, the model catalogue with
//! prices, routes per tier and overrides per tenant.
//!
//! Parsing refuses unknown keys; [`crate::Router::new`] validates the references between
//! sections and resolves credentials (from the value, or from the environment through an
//! injected lookup) with errors that name the key and the fix. This module never performs I/O,
//! and the `Debug` output of a credential is always redacted.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tenantry_core::{Money, TenantId, TierName};

/// The whole `[models]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Upstream providers by name: `[models.providers.NAME]`.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Models by public name: `[models.catalog.NAME]`.
    #[serde(default)]
    pub catalog: BTreeMap<String, CatalogEntry>,
    /// Routes by tier: `[models.tiers.TIER]`.
    #[serde(default)]
    pub tiers: BTreeMap<TierName, TierRoutes>,
    /// Initial per-tenant overrides: `[models.tenants.TENANT]`. The control plane may replace
    /// them at run time.
    #[serde(default)]
    pub tenants: BTreeMap<TenantId, TenantModels>,
    /// Output tokens assumed (and sent upstream as `max_tokens`) when neither the caller nor the
    /// tier says: the reservation for a request is its counted prompt plus this.
    #[serde(default = "default_max_output_tokens")]
    pub default_max_tokens: u32,
    /// A provider's concurrency shared fairly among tenants: `[models.queues.PROVIDER]`. A
    /// provider without one takes every call at once.
    #[serde(default)]
    pub queues: BTreeMap<String, QueueConfig>,
}

/// The fair queue in front of one provider: at most `max_concurrency` calls at once; when
/// they are all taken, waiting calls are served tenant by tenant in proportion to their
/// tiers' `fair_share_weight`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub max_concurrency: usize,
    /// Calls of one tenant that may wait at once; more are refused at once (429).
    #[serde(default = "default_max_waiting")]
    pub max_waiting_per_tenant: usize,
    /// How long a call may wait for a slot before it is refused (503 with `Retry-After`).
    #[serde(default = "default_queue_wait_ms")]
    pub max_wait_ms: u64,
}

fn default_max_waiting() -> usize {
    64
}

fn default_queue_wait_ms() -> u64 {
    10_000
}

fn default_max_output_tokens() -> u32 {
    1024
}

/// A model of the catalogue, or a tenant's private model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// Name of a provider in `[models.providers]`.
    pub provider: String,
    /// The model id the provider knows it by; the public name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_model: Option<String>,
    /// US dollars per million input (prompt) tokens.
    #[serde(default)]
    pub input_price_per_mtok: Money,
    /// US dollars per million output (completion) tokens.
    #[serde(default)]
    pub output_price_per_mtok: Money,
}

/// Which models a tier's tenants get: `[models.tiers.TIER]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRoutes {
    /// The model behind the `default` alias (and behind a request that names no model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Further aliases, e.g. `{ fast = "mock-small", smart = "mock-large" }`.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Ordered fallback models per model, tried on upstream 429/5xx/timeouts.
    #[serde(default)]
    pub fallback: BTreeMap<String, Vec<String>>,
    /// Output tokens assumed when the caller gives no `max_tokens`; overrides the global value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_max_tokens: Option<u32>,
}

/// A tenant's own routing, set by the operator: private models (e.g. fine-tuned) and
/// overrides of the tier's `default` and aliases. Stored as JSON by the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantModels {
    /// Overrides the tier's `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Overrides or adds aliases.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Models only this tenant sees and may use.
    #[serde(default)]
    pub models: BTreeMap<String, CatalogEntry>,
    /// Fallback chains that replace the tier's for the same model.
    #[serde(default)]
    pub fallback: BTreeMap<String, Vec<String>>,
}

/// A credential read from configuration. Its `Debug` never shows the value.
pub use tenantry_core::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Bedrock,
    Mock,
    Local,
}

impl ProviderKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Mock => "mock",
            ProviderKind::Local => "local",
        }
    }
}

/// `[models.providers.NAME]`, selected by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProviderConfig {
    /// Any OpenAI-compatible endpoint: OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM.
    Openai(OpenAiConfig),
    Anthropic(AnthropicConfig),
    Bedrock(BedrockConfig),
    /// Deterministic, offline answers for demos, tests and load tests.
    Mock(MockConfig),
    /// A sentence-transformer model run in-process (embeddings only).
    Local(LocalConfig),
}

impl ProviderConfig {
    pub fn kind(&self) -> ProviderKind {
        match self {
            ProviderConfig::Openai(_) => ProviderKind::Openai,
            ProviderConfig::Anthropic(_) => ProviderKind::Anthropic,
            ProviderConfig::Bedrock(_) => ProviderKind::Bedrock,
            ProviderConfig::Mock(_) => ProviderKind::Mock,
            ProviderConfig::Local(_) => ProviderKind::Local,
        }
    }
}

/// Deadlines of one provider's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For a whole answer, or for the response headers of a stream.
    pub request: Duration,
    /// Longest silence allowed between two pieces of a stream.
    pub stream_idle: Duration,
    pub connect: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            request: Duration::from_secs(120),
            stream_idle: Duration::from_secs(60),
            connect: Duration::from_secs(5),
        }
    }
}

macro_rules! timeouts_fn {
    () => {
        /// The deadlines, with defaults for the ones not set.
        pub fn timeouts(&self) -> Timeouts {
            let d = Timeouts::default();
            Timeouts {
                request: self.timeout_ms.map_or(d.request, Duration::from_millis),
                stream_idle: self
                    .stream_idle_timeout_ms
                    .map_or(d.stream_idle, Duration::from_millis),
                connect: self
                    .connect_timeout_ms
                    .map_or(d.connect, Duration::from_millis),
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    #[default]
    MaxTokens,
    MaxCompletionTokens,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Up to and including the version segment, e.g. `https://api.openai.com/v1` or
    /// `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Name of the environment variable holding the key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Extra headers sent on every call (e.g. `OpenAI-Organization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The field that carries the output limit upstream: `max_tokens` (understood by vLLM,
    /// Ollama, llama.cpp) or `max_completion_tokens` (required by OpenAI's reasoning models).
    #[serde(default)]
    pub max_tokens_field: MaxTokensField,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub stream_idle_timeout_ms: Option<u64>,
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
}

impl OpenAiConfig {
    timeouts_fn!();
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnthropicConfig {
    #[serde(default = "default_anthropic_url")]
    pub base_url: String,
    #[serde(default)]
    pub api_key: Option<Secret>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The `anthropic-version` header.
    #[serde(default = "default_anthropic_version")]
    pub version: String,
    /// `max_tokens` when the request gives none (Anthropic requires it).
    #[serde(default = "default_anthropic_max_tokens")]
    pub default_max_tokens: u32,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub stream_idle_timeout_ms: Option<u64>,
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
}

fn default_anthropic_url() -> String {
    "https://api.anthropic.com".into()
}

fn default_anthropic_version() -> String {
    "2023-06-01".into()
}

fn default_anthropic_max_tokens() -> u32 {
    4096
}

impl AnthropicConfig {
    timeouts_fn!();
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BedrockConfig {
    /// e.g. `us-east-1`.
    pub region: String,
    /// Overrides `https://bedrock-runtime.{region}.amazonaws.com` (a VPC endpoint, a test mock).
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    #[serde(default = "default_access_key_env")]
    pub access_key_id_env: String,
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    #[serde(default = "default_secret_key_env")]
    pub secret_access_key_env: String,
    #[serde(default)]
    pub session_token: Option<Secret>,
    #[serde(default = "default_session_token_env")]
    pub session_token_env: String,
    /// `maxTokens` when the request gives none.
    #[serde(default = "default_anthropic_max_tokens")]
    pub default_max_tokens: u32,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub stream_idle_timeout_ms: Option<u64>,
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
}

fn default_access_key_env() -> String {
    "AWS_ACCESS_KEY_ID".into()
}

fn default_secret_key_env() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}

fn default_session_token_env() -> String {
    "AWS_SESSION_TOKEN".into()
}

impl BedrockConfig {
    timeouts_fn!();
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockConfig {
    /// Canned replies. Empty: answer `echo: <last user message>`. Otherwise the reply for a
    /// conversation is `script[number of assistant messages so far]` (the last one once the
    /// script runs out), so a scripted tool call followed by a final answer plays out over turns.
    #[serde(default)]
    pub script: Vec<MockReply>,
    /// Fixed delay before every answer.
    #[serde(default)]
    pub latency_ms: u64,
    /// Further delay before the first token.
    #[serde(default)]
    pub ttft_ms: u64,
    /// Delay between two streamed words.
    #[serde(default)]
    pub token_interval_ms: u64,
    /// Length of the deterministic embedding vectors.
    #[serde(default = "default_embedding_dimensions")]
    pub embedding_dimensions: u32,
}

fn default_embedding_dimensions() -> u32 {
    64
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            script: Vec::new(),
            latency_ms: 0,
            ttft_ms: 0,
            token_interval_ms: 0,
            embedding_dimensions: default_embedding_dimensions(),
        }
    }
}

/// `kind = "local"`: a sentence-transformers directory (BERT weights in `model.safetensors`,
/// `tokenizer.json`, `config.json`) loaded at start-up and run in-process.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// The model directory.
    #[serde(default)]
    pub path: Option<std::path::PathBuf>,
    /// Name of the environment variable holding the model directory, instead of `path`.
    #[serde(default)]
    pub path_env: Option<String>,
    /// Tokens per text at most (default: the model's `sentence_bert_config.json`, else its
    /// position count); longer texts are cut.
    #[serde(default)]
    pub max_seq_length: Option<usize>,
    /// Threads one call may use (default: the machine's cores).
    #[serde(default)]
    pub threads: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockReply {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub tool_calls: Vec<MockToolCall>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockToolCall {
    pub name: String,
    /// The arguments object; sent to the caller as its JSON text.
    #[serde(default = "empty_object")]
    pub arguments: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// A `[models]` setting that is not valid; `key` is relative to `models.`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `models.{key}` is not valid: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// A model or alias name: 1 to 128 visible characters, no whitespace, no `*`.
pub(crate) fn check_model_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 128
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '*');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!(
                "{name:?} is not a usable model name: use 1 to 128 characters without spaces or '*'"
            ),
        ))
    }
}

/// Resolves a credential from its inline value or its environment variable.
pub(crate) fn resolve_secret(
    key: &str,
    inline: Option<&Secret>,
    env_name: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    match (inline, env_name) {
        (Some(_), Some(_)) => Err(invalid(
            key,
            "set either the value or the `_env` variable name, not both",
        )),
        (Some(s), None) => Ok(Some(s.clone())),
        (None, Some(var)) => match env(var) {
            Some(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
            Some(_) | None => Err(invalid(
                format!("{key}_env"),
                format!("environment variable {var} is not set; export it or set `{key}`"),
            )),
        },
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn provider_kinds_parse_and_refuse_unknown_keys() {
        let c: ModelsConfig = toml::from_str(
            r#"
            [providers.local]
            kind = "openai"
            base_url = "http://127.0.0.1:11434/v1"
            [providers.claude]
            kind = "anthropic"
            api_key_env = "ANTHROPIC_API_KEY"
            [providers.aws]
            kind = "bedrock"
            region = "eu-west-1"
            [providers.mock]
            kind = "mock"
            ttft_ms = 20
            "#,
        )
        .unwrap();
        assert_eq!(c.providers.len(), 4);
        assert_eq!(c.providers["aws"].kind(), ProviderKind::Bedrock);
        let bad = toml::from_str::<ModelsConfig>("[providers.m]\nkind = \"mock\"\nlatencyms = 3\n");
        assert!(bad.is_err());
        let bad = toml::from_str::<ModelsConfig>("[providers.m]\nkind = \"gemini\"\n");
        assert!(bad.is_err());
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let s = Secret::new("sk-very-secret");
        assert!(!format!("{s:?}").contains("very"));
        let c: OpenAiConfig =
            toml::from_str("base_url = \"http://x\"\napi_key = \"sk-very-secret\"\n").unwrap();
        assert!(!format!("{c:?}").contains("very"));
    }

    #[test]
    fn secrets_resolve_from_env() {
        let env = |k: &str| (k == "KEY").then(|| "abc".to_owned());
        let s = resolve_secret("providers.p.api_key", None, Some("KEY"), &env).unwrap();
        assert_eq!(s.map(|s| s.expose().to_owned()), Some("abc".into()));
        let e = resolve_secret("providers.p.api_key", None, Some("NOPE"), &env).unwrap_err();
        assert_eq!(e.key, "providers.p.api_key_env");
        assert!(e.message.contains("NOPE"));
    }
}
