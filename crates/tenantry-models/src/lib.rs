//! The model gateway engine of Tenantry, independent of HTTP serving.
//!
//! This crate owns the OpenAI-compatible wire types agents speak ([`wire`]), the clients of each
//! upstream wire format ([`Provider`]: any OpenAI-compatible endpoint, Anthropic Messages,
//! Amazon Bedrock Converse, and the deterministic `mock`), the classification of their failures
//! ([`ProviderError`]), the `[models]` configuration ([`ModelsConfig`]), routing by tier and
//! tenant with entitlement checks and fallback ([`Router`]), token counting when an upstream
//! reports no usage ([`tokens`]) and pricing in exact micro-dollars ([`Pricing`]).
//!
//! It must never decide a model from anything but the tier, the tenant's overrides and the
//! caller's entitlement; never buffer a whole streamed answer; never wait on an upstream
//! without a deadline; and never log, echo or `Debug`-print a provider credential. It does not
//! meter into the ledger or enforce budgets: it reports usage, latency and cost for the caller
//! (the server) to record.

#![forbid(unsafe_code)]

mod config;
mod error;
pub mod eventstream;
mod http;
mod providers;
mod router;
pub mod sigv4;
mod sse;
mod starter;
pub mod tokens;
pub mod wire;

#[cfg(feature = "test-util")]
pub mod testing;

pub use config::{
    AnthropicConfig, BedrockConfig, CatalogEntry, ConfigError, LocalConfig, MaxTokensField,
    MockConfig, MockReply, MockToolCall, ModelsConfig, OpenAiConfig, ProviderConfig, ProviderKind,
    QueueConfig, Secret, TenantModels, TierRoutes, Timeouts,
};
pub use error::{ProviderError, RouteError};
pub use providers::{
    AnthropicProvider, BedrockProvider, ChatStream, LocalProvider, MockProvider, OpenAiProvider,
    Provider,
};
pub use router::{
    Answer, Attempt, EmbeddingsAnswer, ExecFailure, FailedAttempt, Pricing, RoutePlan, Router,
    StreamAnswer, StreamMeter, StreamUsage,
};
pub use starter::STARTER_CONFIG;
