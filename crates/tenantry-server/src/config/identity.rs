//! `[admin]`, `[identity]` (the development issuer, issuers, workload and actor keys) and
//! `[vault]`: everything about who may call and the keys that prove it.

use super::*;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// File holding the operator key on its first line.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The operator key itself; prefer `key_file` or `TENANTRY_ADMIN_KEY`.
    #[serde(default)]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevIssuerConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Ed25519 private keys; the first signs, all are published (for rotation).
    #[serde(default)]
    pub key_files: Vec<PathBuf>,
    /// `iss` of minted tokens; defaults to `server.public_url`.
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default = "default_audience")]
    pub audience: String,
    #[serde(default = "default_ttl")]
    pub default_ttl_seconds: u64,
}

fn yes() -> bool {
    true
}

fn default_audience() -> String {
    "tenantry".into()
}

fn default_ttl() -> u64 {
    3600
}

impl Default for DevIssuerConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            key_files: Vec::new(),
            issuer: None,
            audience: default_audience(),
            default_ttl_seconds: default_ttl(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// Least time between two JWKS fetches of one issuer triggered by tokens with an unknown
    /// key id (a flood of forged `kid`s must not hammer the identity provider).
    #[serde(default = "default_jwks_refresh")]
    pub jwks_min_refresh_seconds: u64,
    /// The platform secret that signs agents' workload tokens (created if missing). Every
    /// replica of one deployment must share it.
    #[serde(default = "default_workload_key")]
    pub workload_key_file: PathBuf,
    /// The P-256 key (PKCS#8 PEM) that signs actor tokens, the agents' identity in token
    /// exchanges, published in the JWKS (created if missing). Every replica must share it.
    #[serde(default = "default_actor_key")]
    pub actor_key_file: PathBuf,
    #[serde(default)]
    pub dev_issuer: DevIssuerConfig,
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
}

fn default_jwks_refresh() -> u64 {
    10
}

fn default_workload_key() -> PathBuf {
    PathBuf::from("keys/workload.key")
}

fn default_actor_key() -> PathBuf {
    PathBuf::from("keys/actor.pem")
}

impl Default for IdentitySection {
    fn default() -> Self {
        Self {
            jwks_min_refresh_seconds: default_jwks_refresh(),
            workload_key_file: default_workload_key(),
            actor_key_file: default_actor_key(),
            dev_issuer: DevIssuerConfig::default(),
            issuers: Vec::new(),
        }
    }
}

/// The credential vault: where its master key comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSection {
    /// The master key that wraps every tenant's data key: base64 of 32 random bytes in a file
    /// of mode 0600 (created by `tenantry init`, and at start if missing).
    /// `TENANTRY_VAULT_MASTER_KEY` takes precedence. Every replica must share it.
    #[serde(default = "default_vault_master_key")]
    pub master_key_file: PathBuf,
    /// The value of `TENANTRY_VAULT_MASTER_KEY`, read through the injected lookup when the file
    /// is loaded. Never serialised or logged.
    #[serde(skip)]
    pub master_key_env: Redacted,
}

fn default_vault_master_key() -> PathBuf {
    PathBuf::from("keys/vault-master.key")
}

impl Default for VaultSection {
    fn default() -> Self {
        Self {
            master_key_file: default_vault_master_key(),
            master_key_env: Redacted::default(),
        }
    }
}

/// A secret value from the environment; its `Debug` never shows it.
#[derive(Clone, Default)]
pub struct Redacted(Option<String>);

impl Redacted {
    pub fn new(value: Option<String>) -> Self {
        Self(value.filter(|v| !v.trim().is_empty()))
    }

    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "<set>" } else { "<unset>" })
    }
}
