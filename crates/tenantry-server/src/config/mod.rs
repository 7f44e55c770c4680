//! The one typed configuration of a Tenantry server: a TOML file plus `TENANTRY_*` environment
//! overrides, validated at start-up with errors that name the key and the fix.
//!
//! The environment is read through an injected lookup function, so tests never mutate the
//! process environment. Relative paths in the file are resolved against the file's directory.

mod identity;
mod memory;
mod runtime;
mod server;
mod telemetry;
mod tools;

pub use identity::*;
pub use memory::MemorySection;
pub use runtime::*;
pub use server::*;
pub use telemetry::TelemetrySection;
pub use tools::*;

use runtime::valid_node_id;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tenantry_core::Tier;
use tenantry_identity::IssuerConfig;
use tenantry_models::{ModelsConfig, ProviderConfig};

/// The environment variable holding the vault's master key (base64 of 32 bytes); it wins over
/// `vault.master_key_file`.
pub const VAULT_MASTER_KEY_ENV: &str = "TENANTRY_VAULT_MASTER_KEY";

/// The hidden subcommand of `tenantry` that runs the sandbox helper.
pub const SANDBOX_HELPER_SUBCOMMAND: &str = "sandbox-helper";

/// Environment variables that override keys of the file, and the key each one sets.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("TENANTRY_LISTEN", "server.listen"),
    ("TENANTRY_PUBLIC_URL", "server.public_url"),
    ("TENANTRY_LOG_FORMAT", "server.log_format"),
    ("TENANTRY_DATABASE_URL", "database.url"),
    ("TENANTRY_ADMIN_KEY", "admin.key"),
    ("TENANTRY_LIMITS_URL", "limits.url"),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}. Create one with `tenantry init --dir DIR`.")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}` is not valid: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The whole configuration, as read from the file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub identity: IdentitySection,
    /// Tiers created at first start; afterwards the control plane is the source of truth.
    #[serde(default)]
    pub tiers: Vec<Tier>,
    /// The model gateway: providers, catalogue, and initial routes per tier and tenant (the
    /// control plane overrides routes at run time).
    #[serde(default)]
    pub models: ModelsConfig,
    /// The credential vault of the tool gateway.
    #[serde(default)]
    pub vault: VaultSection,
    /// The tool gateway (`/mcp`).
    #[serde(default)]
    pub tools: ToolsSection,
    /// Metrics.
    #[serde(default)]
    pub telemetry: TelemetrySection,
    /// Guardrail profiles created at first start (`[guardrails.profiles.NAME]`); afterwards the
    /// control plane is the source of truth, as for tiers.
    #[serde(default)]
    pub guardrails: GuardrailsSection,
    /// Memory: the extraction model and the expiry job.
    #[serde(default)]
    pub memory: MemorySection,
    /// Knowledge bases: chunking and the embedding model (`[knowledge]`).
    #[serde(default)]
    pub knowledge: crate::knowledge::KnowledgeSection,
    /// The values of the environment variables that `[models.providers]` name for credentials,
    /// read through the injected lookup when the file is loaded. Never serialised or logged.
    #[serde(skip)]
    pub models_env: ModelsEnv,
    /// Directory of the config file; relative paths are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl Config {
    /// Reads `path`, applies overrides from `env`, resolves relative paths and validates.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        // Absolute, so paths derived from it (sandbox mounts, sockets) never depend on the
        // working directory.
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            Some(_) | None => PathBuf::from("."),
        };
        let base = std::fs::canonicalize(&parent).unwrap_or(parent);
        Self::from_toml(&text, &base, env).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other @ (ConfigError::Read { .. } | ConfigError::Invalid { .. }) => other,
        })
    }

    pub fn from_toml(
        text: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let parse_err = |message: String| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message,
        };
        let mut value: toml::Table = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        for (var, key) in ENV_OVERRIDES {
            if let Some(v) = env(var) {
                set_path(&mut value, key, toml::Value::String(v));
            }
        }
        let mut config: Config = value
            .try_into()
            .map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
        config.base_dir = base_dir.to_path_buf();
        config.models_env = ModelsEnv::capture(&config.models, env);
        config.vault.master_key_env = Redacted::new(env(VAULT_MASTER_KEY_ENV));
        config.resolve_paths();
        config.validate()?;
        Ok(config)
    }

    fn resolve_paths(&mut self) {
        let base = self.base_dir.clone();
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = self.admin.key_file.as_mut() {
            abs(p);
        }
        for p in &mut self.identity.dev_issuer.key_files {
            abs(p);
        }
        abs(&mut self.identity.workload_key_file);
        abs(&mut self.identity.actor_key_file);
        abs(&mut self.vault.master_key_file);
        abs(&mut self.runtime.storage_dir);
        abs(&mut self.runtime.run_dir);
        if let Some(p) = self.runtime.helper.as_mut() {
            abs(p);
        }
        if let Some(rest) = self.database.url.strip_prefix("sqlite://")
            && !rest.starts_with('/')
            && !rest.starts_with(':')
        {
            self.database.url = format!("sqlite://{}", base.join(rest).display());
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if let Some(id) = &self.runtime.node_id
            && !valid_node_id(id)
        {
            return Err(invalid(
                "runtime.node_id",
                "use 1 to 64 letters, digits, '.', '-' or '_'",
            ));
        }
        if self.runtime.compute_sample_seconds == 0 {
            return Err(invalid(
                "runtime.compute_sample_seconds",
                "must be at least 1",
            ));
        }
        if let Some(url) = &self.server.public_url {
            let parsed = url::Url::parse(url).map_err(|e| {
                invalid(
                    "server.public_url",
                    format!("{e}; write a URL such as http://127.0.0.1:8700"),
                )
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid(
                    "server.public_url",
                    "use an http:// or https:// URL",
                ));
            }
        }
        if self.telemetry.metrics_tenant_cap == 0 {
            return Err(invalid(
                "telemetry.metrics_tenant_cap",
                "must be at least 1 (tenants past it are counted under `other`)",
            ));
        }
        if let Some(addr) = &self.telemetry.metrics_listen
            && addr.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(invalid(
                "telemetry.metrics_listen",
                "write an address and port such as 127.0.0.1:9464",
            ));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024"));
        }
        if self.server.model_max_body_bytes < 1024 {
            return Err(invalid(
                "server.model_max_body_bytes",
                "must be at least 1024",
            ));
        }
        let db = &self.database.url;
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                "use sqlite://FILE for the embedded store or postgres://USER@HOST/DB",
            ));
        }
        let limits = &self.limits.url;
        if !(limits == "memory://" || limits.starts_with("redis://")) {
            return Err(invalid(
                "limits.url",
                "use memory:// for one replica or redis://HOST:PORT/DB for several",
            ));
        }
        if self.admin.key.is_none() && self.admin.key_file.is_none() {
            return Err(invalid(
                "admin.key_file",
                "set admin.key_file (as `tenantry init` does) or TENANTRY_ADMIN_KEY",
            ));
        }
        if self.admin.key.as_deref().is_some_and(|k| k.len() < 16) {
            return Err(invalid(
                "admin.key",
                "an operator key must be at least 16 characters",
            ));
        }
        let dev = &self.identity.dev_issuer;
        if dev.enabled && dev.key_files.is_empty() {
            return Err(invalid(
                "identity.dev_issuer.key_files",
                "the development issuer needs a key file (run `tenantry init`) or set enabled = false",
            ));
        }
        for (i, issuer) in self.identity.issuers.iter().enumerate() {
            issuer.validate().map_err(|m| {
                invalid(
                    format!("identity.issuers[{i}] ({})", issuer.name),
                    m.to_string(),
                )
            })?;
        }
        if self.tools.max_body_bytes < 1024 {
            return Err(invalid("tools.max_body_bytes", "must be at least 1024"));
        }
        if self.tools.session_idle_timeout_seconds == 0 {
            return Err(invalid(
                "tools.session_idle_timeout_seconds",
                "must be at least 1",
            ));
        }
        for (name, profile) in &self.guardrails.profiles {
            if !tenantry_store::is_valid_profile_name(name) {
                return Err(invalid(
                    format!("guardrails.profiles.{name}"),
                    "name a profile with 1 to 64 lower-case letters, digits, '-' or '_'",
                ));
            }
            profile.validate().map_err(|e| {
                invalid(
                    format!("guardrails.profiles.{name}.{}", e.field),
                    e.message.clone(),
                )
            })?;
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, tier) in self.tiers.iter().enumerate() {
            tier.validate()
                .map_err(|m| invalid(format!("tiers[{i}] ({})", tier.name), m.to_string()))?;
            if !names.insert(tier.name.clone()) {
                return Err(invalid(
                    format!("tiers[{i}].name"),
                    format!("tier {} is defined twice", tier.name),
                ));
            }
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!(
                    "{:?} is not an address; write HOST:PORT such as 127.0.0.1:8700",
                    self.server.listen
                ),
            )
        })
    }

    /// The URL the server is reached at: `server.public_url`, or one derived from `listen`.
    pub fn public_url(&self) -> String {
        match &self.server.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let listen = self.server.listen.replace("0.0.0.0", "127.0.0.1");
                format!("http://{listen}")
            }
        }
    }

    /// The operator key, from `admin.key` or the first line of `admin.key_file`.
    pub fn admin_key(&self) -> Result<String, ConfigError> {
        if let Some(k) = &self.admin.key {
            return Ok(k.clone());
        }
        let path = self
            .admin
            .key_file
            .as_ref()
            .ok_or_else(|| invalid("admin.key_file", "no operator key configured"))?;
        let text = std::fs::read_to_string(path).map_err(|e| {
            invalid(
                "admin.key_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let key = text.lines().next().unwrap_or("").trim().to_string();
        if key.len() < 16 {
            return Err(invalid(
                "admin.key_file",
                format!(
                    "{} must hold an operator key of at least 16 characters",
                    path.display()
                ),
            ));
        }
        Ok(key)
    }

    /// The sandbox helper and its arguments: the configured one, or this program itself when
    /// it is the `tenantry` binary (which runs the helper as a hidden subcommand).
    pub fn sandbox_helper(&self) -> Option<(PathBuf, Vec<String>)> {
        if let Some(helper) = &self.runtime.helper {
            return Some((
                helper.clone(),
                self.runtime.helper_args.clone().unwrap_or_default(),
            ));
        }
        let exe = std::env::current_exe().ok()?;
        (exe.file_name()? == "tenantry").then(|| {
            let args = self
                .runtime
                .helper_args
                .clone()
                .unwrap_or_else(|| vec![SANDBOX_HELPER_SUBCOMMAND.to_string()]);
            (exe, args)
        })
    }

    /// This process's node id: `runtime.node_id`, else the one kept in `node.id` of the state
    /// directory (created on first use).
    pub fn node_id(&self) -> Result<String, ConfigError> {
        if let Some(id) = &self.runtime.node_id {
            return Ok(id.clone());
        }
        let path = self.base_dir.join("node.id");
        match std::fs::read_to_string(&path) {
            Ok(text) if valid_node_id(text.trim()) => return Ok(text.trim().to_string()),
            Ok(_) => {
                return Err(invalid(
                    "runtime.node_id",
                    format!("{} does not hold a node id; delete it", path.display()),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(invalid(
                    "runtime.node_id",
                    format!("cannot read {}: {e}", path.display()),
                ));
            }
        }
        let id = format!("node-{}", uuid::Uuid::now_v7().simple());
        let written = {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| writeln!(f, "{id}"))
        };
        written.map_err(|e| {
            invalid(
                "runtime.node_id",
                format!("cannot write {}: {e}", path.display()),
            )
        })?;
        Ok(id)
    }

    /// The development issuer's `iss`.
    pub fn dev_issuer_name(&self) -> String {
        self.identity
            .dev_issuer
            .issuer
            .clone()
            .unwrap_or_else(|| self.public_url())
    }

    /// The development issuer as configured (keys, `iss`, audience), whether or not it is
    /// enabled: callers that need it enabled check `identity.dev_issuer.enabled` first.
    pub fn load_dev_issuer(
        &self,
    ) -> Result<tenantry_identity::DevIssuer, tenantry_identity::IdentityError> {
        let dev = &self.identity.dev_issuer;
        tenantry_identity::DevIssuer::load(
            &dev.key_files,
            self.dev_issuer_name(),
            dev.audience.clone(),
        )
    }
}

/// Credentials from the environment for `[models.providers]`, captured when the config is
/// loaded so the model router is built (at start-up) from the same injected source. Its `Debug`
/// shows only the variable names.
#[derive(Clone, Default)]
pub struct ModelsEnv(std::collections::BTreeMap<String, String>);

impl std::fmt::Debug for ModelsEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl ModelsEnv {
    fn capture(models: &ModelsConfig, env: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut names: Vec<&str> = Vec::new();
        for p in models.providers.values() {
            match p {
                ProviderConfig::Openai(c) => names.extend(c.api_key_env.as_deref()),
                ProviderConfig::Anthropic(c) => names.extend(c.api_key_env.as_deref()),
                ProviderConfig::Bedrock(c) => names.extend([
                    c.access_key_id_env.as_str(),
                    c.secret_access_key_env.as_str(),
                    c.session_token_env.as_str(),
                ]),
                ProviderConfig::Mock(_) => {}
                ProviderConfig::Local(c) => names.extend(c.path_env.as_deref()),
            }
        }
        Self(
            names
                .into_iter()
                .filter_map(|n| env(n).map(|v| (n.to_owned(), v)))
                .collect(),
        )
    }

    /// The captured value of `name`.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    /// Sets a value, for tests and embedders that build a `Config` in code.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }
}

fn set_path(table: &mut toml::Table, dotted: &str, value: toml::Value) {
    let mut parts = dotted.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            current.insert(part.to_string(), value);
            return;
        }
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        match entry {
            toml::Value::Table(t) => current = t,
            toml::Value::String(_)
            | toml::Value::Integer(_)
            | toml::Value::Float(_)
            | toml::Value::Boolean(_)
            | toml::Value::Datetime(_)
            | toml::Value::Array(_) => return,
        }
    }
}

/// The starter configuration written by `tenantry init`, with three tiers.
pub fn starter_config(listen: &str) -> String {
    STARTER_CONFIG.replacen(
        "listen = \"127.0.0.1:8700\"",
        &format!("listen = \"{listen}\""),
        1,
    )
}

const STARTER_CONFIG: &str = include_str!("../../../../examples/tenantry.toml");

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn starter_config_is_valid() {
        let dir = Path::new("/state");
        let c = Config::from_toml(&starter_config("127.0.0.1:8700"), dir, &no_env).unwrap();
        assert_eq!(c.tiers.len(), 3);
        assert_eq!(c.database.url, "sqlite:///state/tenantry.db");
        assert_eq!(
            c.admin.key_file.as_deref(),
            Some(Path::new("/state/admin.key"))
        );
    }

    #[test]
    fn env_overrides_the_file() {
        let env = |k: &str| match k {
            "TENANTRY_DATABASE_URL" => Some("postgres://u@h/db".to_string()),
            "TENANTRY_LISTEN" => Some("127.0.0.1:9999".to_string()),
            _ => None,
        };
        let c =
            Config::from_toml(&starter_config("127.0.0.1:8700"), Path::new("/s"), &env).unwrap();
        assert_eq!(c.database.url, "postgres://u@h/db");
        assert_eq!(c.server.listen, "127.0.0.1:9999");
    }

    #[test]
    fn the_vault_master_key_comes_from_the_environment_and_never_prints() {
        let env =
            |k: &str| (k == VAULT_MASTER_KEY_ENV).then(|| "c2VjcmV0LW1hc3Rlci1rZXk".to_string());
        let c =
            Config::from_toml(&starter_config("127.0.0.1:8700"), Path::new("/s"), &env).unwrap();
        assert_eq!(
            c.vault.master_key_env.get(),
            Some("c2VjcmV0LW1hc3Rlci1rZXk")
        );
        assert_eq!(
            c.vault.master_key_file,
            Path::new("/s/keys/vault-master.key")
        );
        assert!(!format!("{c:?}").contains("c2VjcmV0"));
        let c =
            Config::from_toml(&starter_config("127.0.0.1:8700"), Path::new("/s"), &no_env).unwrap();
        assert_eq!(c.vault.master_key_env.get(), None);
        assert_eq!(c.tools.tools_cache_seconds, 60);
    }

    #[test]
    fn errors_name_the_key() {
        let bad = "[server]\nlisten = \"nowhere\"\n[admin]\nkey = \"0123456789abcdef\"\n";
        let e = Config::from_toml(bad, Path::new("/"), &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.listen"), "{e}");
        let unknown = "[server]\nlisten_on = \"x\"\n";
        let e = Config::from_toml(unknown, Path::new("/"), &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_on"), "{e}");
        let db = "[database]\nurl = \"mysql://x\"\n[admin]\nkey = \"0123456789abcdef\"\n";
        let e = Config::from_toml(db, Path::new("/"), &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("database.url"), "{e}");
    }
}
