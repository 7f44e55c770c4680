//! The provider clients behind one enum, [`Provider`]: each speaks one upstream wire format and
//! translates to and from the OpenAI-compatible types of [`crate::wire`].
//!
//! A provider is told the upstream model id in `request.model` (the router has substituted
//! it); it must never choose a model itself, never buffer a whole stream, and never put its
//! credential anywhere but the request it signs or authorises.

pub(crate) mod anthropic;
pub(crate) mod bedrock;
pub(crate) mod local;
pub(crate) mod mock;
pub(crate) mod openai;

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::Stream;

use crate::config::{ConfigError, ProviderConfig, ProviderKind};
use crate::error::ProviderError;
use crate::wire::{ChatChunk, ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse};

pub use anthropic::AnthropicProvider;
pub use bedrock::BedrockProvider;
pub use local::LocalProvider;
pub use mock::MockProvider;
pub use openai::OpenAiProvider;

/// Chunks of a streamed answer, yielded as they arrive. Dropping the stream cancels the
/// upstream call. After an `Err` item the stream ends.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<ChatChunk, ProviderError>> + Send>>;

/// One configured upstream.
#[derive(Debug)]
pub enum Provider {
    Openai(OpenAiProvider),
    Anthropic(AnthropicProvider),
    Bedrock(BedrockProvider),
    Mock(MockProvider),
    Local(LocalProvider),
}

impl Provider {
    /// Builds the client of `[models.providers.NAME]`, reading credentials through `env`.
    pub fn from_config(
        name: &str,
        config: &ProviderConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let key = format!("providers.{name}");
        Ok(match config {
            ProviderConfig::Openai(c) => Provider::Openai(OpenAiProvider::new(&key, c, env)?),
            ProviderConfig::Anthropic(c) => {
                Provider::Anthropic(AnthropicProvider::new(&key, c, env)?)
            }
            ProviderConfig::Bedrock(c) => Provider::Bedrock(BedrockProvider::new(&key, c, env)?),
            ProviderConfig::Mock(c) => Provider::Mock(MockProvider::new(c.clone())),
            ProviderConfig::Local(c) => Provider::Local(LocalProvider::new(&key, c, env)?),
        })
    }

    pub fn kind(&self) -> ProviderKind {
        match self {
            Provider::Openai(_) => ProviderKind::Openai,
            Provider::Anthropic(_) => ProviderKind::Anthropic,
            Provider::Bedrock(_) => ProviderKind::Bedrock,
            Provider::Mock(_) => ProviderKind::Mock,
            Provider::Local(_) => ProviderKind::Local,
        }
    }

    /// A whole answer.
    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        match self {
            Provider::Openai(p) => p.chat(request).await,
            Provider::Anthropic(p) => p.chat(request).await,
            Provider::Bedrock(p) => p.chat(request).await,
            Provider::Mock(p) => p.chat(request).await,
            Provider::Local(_) => Err(ProviderError::Unsupported("chat")),
        }
    }

    /// A streamed answer. Returns once the upstream has accepted the call (its status is
    /// known), so a refusal can still fall back to another model.
    pub async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        match self {
            Provider::Openai(p) => p.chat_stream(request).await,
            Provider::Anthropic(p) => p.chat_stream(request).await,
            Provider::Bedrock(p) => p.chat_stream(request).await,
            Provider::Mock(p) => p.chat_stream(request).await,
            Provider::Local(_) => Err(ProviderError::Unsupported("chat")),
        }
    }

    pub async fn embeddings(
        &self,
        request: &EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        match self {
            Provider::Openai(p) => p.embeddings(request).await,
            Provider::Mock(p) => p.embeddings(request).await,
            Provider::Local(p) => p.embeddings(request).await,
            Provider::Anthropic(_) | Provider::Bedrock(_) => {
                Err(ProviderError::Unsupported("embeddings"))
            }
        }
    }
}

/// A fresh completion id, unique within the process and unlikely to repeat across processes.
pub(crate) fn completion_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("chatcmpl-{:x}{nanos:08x}{n:06x}", tenantry_core::unix_now())
}

/// A tool-call id for providers whose calls carry none.
pub(crate) fn tool_call_id(seed: &str, index: usize) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{seed}/{index}").as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("call_{hex}")
}
