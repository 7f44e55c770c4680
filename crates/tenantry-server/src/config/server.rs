//! `[server]`, `[database]` and `[limits]`: where the server listens, what it accepts, and
//! where its store and limiter live.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The URL clients and agents use to reach this server; also the development issuer's `iss`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Largest request body accepted by the control plane and other small JSON endpoints.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Largest request body accepted by the model gateway (`/v1/chat/completions`,
    /// `/v1/embeddings`): long conversations and inline images are larger than control-plane
    /// calls.
    #[serde(default = "default_model_max_body")]
    pub model_max_body_bytes: usize,
    #[serde(default)]
    pub log_format: LogFormat,
}

fn default_listen() -> String {
    "127.0.0.1:8700".into()
}

fn default_max_body() -> usize {
    1024 * 1024
}

fn default_model_max_body() -> usize {
    10 * 1024 * 1024
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            max_body_bytes: default_max_body(),
            model_max_body_bytes: default_model_max_body(),
            log_format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` (relative to the config file) or `postgres://USER@HOST/DB`.
    #[serde(default = "default_db_url")]
    pub url: String,
}

fn default_db_url() -> String {
    "sqlite://tenantry.db".into()
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: default_db_url(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// `memory://` (one replica) or `redis://HOST:PORT/DB` (shared by replicas).
    #[serde(default = "default_limits_url")]
    pub url: String,
}

fn default_limits_url() -> String {
    "memory://".into()
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            url: default_limits_url(),
        }
    }
}
