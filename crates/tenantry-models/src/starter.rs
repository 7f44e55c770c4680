//! The starter `[models]` configuration that `tenantry init` writes: the `mock` provider, two
//! mock models, and every starter tier's aliases routed to them, so the quickstart works
//! offline. Real providers are added next to it (examples in the comments).

/// TOML for the server's configuration file, starting at `[models]`.
pub const STARTER_CONFIG: &str = r#"[models]
# Output tokens assumed (and sent upstream as max_tokens) when a request gives none; a request's
# token and money reservation is its counted prompt plus this.
default_max_tokens = 1024

# The mock provider answers deterministically and offline ("echo: <your message>"), with
# realistic token counts. Set latency_ms / ttft_ms / token_interval_ms to imitate a real model.
[models.providers.mock]
kind = "mock"
latency_ms = 0
ttft_ms = 0
token_interval_ms = 0

# Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server):
# [models.providers.openai]
# kind = "openai"
# base_url = "https://api.openai.com/v1"
# api_key_env = "OPENAI_API_KEY"
#
# [models.providers.anthropic]
# kind = "anthropic"
# api_key_env = "ANTHROPIC_API_KEY"
#
# [models.providers.bedrock]
# kind = "bedrock"
# region = "us-east-1"   # credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN

[models.catalog.mock-small]
provider = "mock"
upstream_model = "mock-small"
input_price_per_mtok = "0.10"
output_price_per_mtok = "0.40"

[models.catalog.mock-large]
provider = "mock"
upstream_model = "mock-large"
input_price_per_mtok = "3.00"
output_price_per_mtok = "15.00"

# [models.catalog.claude-sonnet]
# provider = "anthropic"
# upstream_model = "claude-sonnet-4-5"
# input_price_per_mtok = "3.00"
# output_price_per_mtok = "15.00"

[models.tiers.basic]
default = "mock-small"
aliases = { fast = "mock-small" }

[models.tiers.standard]
default = "mock-small"
aliases = { fast = "mock-small", smart = "mock-large" }
fallback = { mock-large = ["mock-small"] }

[models.tiers.premium]
default = "mock-large"
aliases = { fast = "mock-small", smart = "mock-large" }
fallback = { mock-large = ["mock-small"] }

# A tenant's own model (e.g. fine-tuned) for `default`; the control plane can set this too.
# [models.tenants.acme]
# default = "acme-ft"
# [models.tenants.acme.models.acme-ft]
# provider = "openai"
# upstream_model = "ft:gpt-4o-mini:acme::abc123"
"#;
