//! `[guardrails]` and `[tools]`: profiles seeded at start and the tool gateway's limits.

use super::*;

/// Guardrails: named profiles seeded into the store at start (a name that already has versions
/// there is left alone).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailsSection {
    #[serde(default)]
    pub profiles: std::collections::BTreeMap<String, tenantry_guardrails::Profile>,
}

/// The tool gateway (`/mcp`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsSection {
    /// An MCP session unused this long is forgotten (its client initializes again).
    #[serde(default = "default_mcp_idle")]
    pub session_idle_timeout_seconds: u64,
    /// Largest `/mcp` request body.
    #[serde(default = "default_mcp_body")]
    pub max_body_bytes: usize,
    /// How long an upstream MCP server's tool list is reused before it is asked again.
    #[serde(default = "default_tools_ttl")]
    pub tools_cache_seconds: u64,
}

fn default_mcp_idle() -> u64 {
    3600
}

fn default_mcp_body() -> usize {
    4 * 1024 * 1024
}

fn default_tools_ttl() -> u64 {
    60
}

impl Default for ToolsSection {
    fn default() -> Self {
        Self {
            session_idle_timeout_seconds: default_mcp_idle(),
            max_body_bytes: default_mcp_body(),
            tools_cache_seconds: default_tools_ttl(),
        }
    }
}
