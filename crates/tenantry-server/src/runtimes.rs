//! Runtimes: the operator's registered agents (DESIGN section 5). A runtime is a program
//! (command, working directory, environment) with a protocol, a lifecycle, session storage
//! settings and a tenancy: `shared` by all tenants (pool) or `dedicated` to one (silo).
//!
//! The store keeps the spec as JSON (`RuntimeRecord::body`); this module owns its typed form
//! and its validation, so a bad spec is refused at the control plane, not at session start.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tenantry_core::{RuntimeName, TenantId};
use tenantry_store::RuntimeRecord;

pub const MIN_LIFETIME_SECONDS: u64 = 60;
pub const MAX_LIFETIME_SECONDS: u64 = 8 * 3600;

/// What a runtime's sandbox serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// An agent: `POST /invocations` and `GET /ping` on port 8080.
    #[default]
    Http,
    /// A tool server: streamable HTTP MCP on port 8000 at `/mcp`.
    Mcp,
}

impl Protocol {
    pub const fn port(self) -> u16 {
        match self {
            Protocol::Http => 8080,
            Protocol::Mcp => 8000,
        }
    }

    /// Where an invocation is sent inside the sandbox.
    pub const fn path(self) -> &'static str {
        match self {
            Protocol::Http => "/invocations",
            Protocol::Mcp => "/mcp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    /// A session with no invocation for this long is stopped (`HealthyBusy` on `/ping` keeps it).
    #[serde(default = "default_idle")]
    pub idle_timeout_seconds: u64,
    /// A session is stopped this long after its sandbox started, busy or not.
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_seconds: u64,
}

fn default_idle() -> u64 {
    900
}

fn default_max_lifetime() -> u64 {
    MAX_LIFETIME_SECONDS
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            idle_timeout_seconds: default_idle(),
            max_lifetime_seconds: default_max_lifetime(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// Where the session's persistent directory appears in the sandbox; under `/mnt/`.
    #[serde(default = "default_mount")]
    pub mount_path: PathBuf,
    /// Storage of a session unused this long is deleted (default 14 days).
    #[serde(default = "default_expiry")]
    pub idle_expiry_seconds: u64,
}

fn default_mount() -> PathBuf {
    PathBuf::from("/mnt/session")
}

fn default_expiry() -> u64 {
    14 * 24 * 3600
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            mount_path: default_mount(),
            idle_expiry_seconds: default_expiry(),
        }
    }
}

/// Who may run sessions on a runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Tenancy {
    /// Pool: every tenant's sessions share the runtime's capacity.
    #[default]
    Shared,
    /// Silo: only this tenant; its own capacity and warm pool.
    Dedicated(TenantId),
}

/// The typed spec of a runtime, stored as the record's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSpec {
    #[serde(default)]
    pub protocol: Protocol,
    /// Program and arguments, e.g. `["python3", "agent.py"]`.
    pub command: Vec<String>,
    /// Absolute host directory holding the agent; its working directory in the sandbox.
    pub workdir: PathBuf,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Caller headers passed to the agent: names starting with `X-Tenantry-Custom-` or
    /// `X-Amzn-Bedrock-AgentCore-Runtime-Custom-`.
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    #[serde(default)]
    pub lifecycle: Lifecycle,
    #[serde(default)]
    pub storage: StorageSettings,
    /// Pre-started sandboxes kept ready per tier of the tenants using the runtime.
    #[serde(default)]
    pub warm_pool: u32,
    /// Largest invocation body passed to the agent.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// How the runtime's agents use memory.
    #[serde(default)]
    pub memory: RuntimeMemory,
}

/// How a runtime's agents use memory (`/v1/memory/...` with their workload token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RuntimeMemory {
    /// `false` (the default): an agent names only its session's user as actor. `true`: it
    /// reaches every actor of its tenant's memories (an agent serving a whole team).
    #[serde(default)]
    pub tenant_wide: bool,
    /// `true`: the runtime's agents create, change and delete their tenant's memories (as a
    /// tenant-admin may), e.g. an agent that sets up its own memory on first start. Erasure
    /// stays within what they reach.
    #[serde(default)]
    pub manage_memories: bool,
    /// A shared memory (the operator's, pool) the runtime's agents use: told to them, each
    /// tenant's sessions see only their own tenant's events and records in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_memory_id: Option<String>,
}

fn default_max_body() -> u64 {
    100 * 1024 * 1024
}

/// Environment names the platform sets for the agent; a runtime cannot override them.
const RESERVED_ENV: &[&str] = &[
    "SESSION_DIR",
    "PORT",
    "TENANTRY_ENDPOINT",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
];

pub const CUSTOM_HEADER_PREFIXES: &[&str] = &[
    "x-tenantry-custom-",
    "x-amzn-bedrock-agentcore-runtime-custom-",
];

impl RuntimeSpec {
    pub fn validate(&self) -> Result<(), String> {
        if self.command.is_empty() || self.command[0].trim().is_empty() {
            return Err("command must name a program, e.g. [\"python3\", \"agent.py\"]".into());
        }
        if self.command.len() > 64
            || self
                .command
                .iter()
                .any(|a| a.len() > 4096 || a.contains('\0'))
        {
            return Err("command: at most 64 arguments of at most 4096 bytes, without NUL".into());
        }
        if !self.workdir.is_absolute() {
            return Err("workdir must be an absolute path on the host".into());
        }
        if !self.workdir.is_dir() {
            return Err(format!(
                "workdir {} is not a directory on this host",
                self.workdir.display()
            ));
        }
        if self.env.len() > 128 {
            return Err("env: at most 128 variables".into());
        }
        for (k, v) in &self.env {
            let ok = !k.is_empty()
                && k.len() <= 128
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !k.as_bytes()[0].is_ascii_digit();
            if !ok {
                return Err(format!("env: {k:?} is not a valid variable name"));
            }
            if RESERVED_ENV.contains(&k.as_str()) {
                return Err(format!(
                    "env: {k} is set by the platform and cannot be overridden"
                ));
            }
            if v.len() > 32 * 1024 || v.contains('\0') {
                return Err(format!("env: the value of {k} is too long or contains NUL"));
            }
        }
        for h in &self.allowed_headers {
            let lower = h.to_ascii_lowercase();
            let ok = CUSTOM_HEADER_PREFIXES
                .iter()
                .any(|p| lower.starts_with(p) && lower.len() > p.len())
                && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !ok {
                return Err(format!(
                    "allowed_headers: {h:?} must start with X-Tenantry-Custom- or X-Amzn-Bedrock-AgentCore-Runtime-Custom-"
                ));
            }
        }
        let range = MIN_LIFETIME_SECONDS..=MAX_LIFETIME_SECONDS;
        if !range.contains(&self.lifecycle.idle_timeout_seconds) {
            return Err("lifecycle.idle_timeout_seconds must be between 60 and 28800".into());
        }
        if !range.contains(&self.lifecycle.max_lifetime_seconds) {
            return Err("lifecycle.max_lifetime_seconds must be between 60 and 28800".into());
        }
        let mount = &self.storage.mount_path;
        let under_mnt = mount.starts_with("/mnt/")
            && mount != std::path::Path::new("/mnt/")
            && mount.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::RootDir | std::path::Component::Normal(_)
                )
            });
        if !under_mnt {
            return Err(
                "storage.mount_path must be a plain path under /mnt/, e.g. /mnt/session".into(),
            );
        }
        if self.storage.idle_expiry_seconds < 1 {
            return Err("storage.idle_expiry_seconds must be at least 1".into());
        }
        if self.warm_pool > 64 {
            return Err("warm_pool must be at most 64".into());
        }
        if self.max_body_bytes < 1024 {
            return Err("max_body_bytes must be at least 1024".into());
        }
        Ok(())
    }

    /// Whether a caller header goes through to the agent.
    pub fn allows_header(&self, name: &str) -> bool {
        self.allowed_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
    }
}

/// A runtime as the control plane and the session manager see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Runtime {
    pub name: RuntimeName,
    pub tenancy: Tenancy,
    #[serde(flatten)]
    pub spec: RuntimeSpec,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Runtime {
    pub fn from_record(record: RuntimeRecord) -> Result<Self, String> {
        let spec: RuntimeSpec = serde_json::from_value(record.body)
            .map_err(|e| format!("stored spec of runtime {} is unreadable: {e}", record.name))?;
        Ok(Self {
            name: record.name,
            tenancy: match record.dedicated_tenant {
                Some(t) => Tenancy::Dedicated(t),
                None => Tenancy::Shared,
            },
            spec,
            created_at: record.created_at,
            updated_at: record.updated_at,
        })
    }

    pub fn to_record(&self) -> Result<RuntimeRecord, serde_json::Error> {
        Ok(RuntimeRecord {
            name: self.name.clone(),
            dedicated_tenant: match &self.tenancy {
                Tenancy::Shared => None,
                Tenancy::Dedicated(t) => Some(t.clone()),
            },
            body: serde_json::to_value(&self.spec)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }

    /// Whether a tenant may use this runtime at all. For any other tenant a dedicated runtime
    /// does not exist.
    pub fn visible_to(&self, tenant: &TenantId) -> bool {
        match &self.tenancy {
            Tenancy::Shared => true,
            Tenancy::Dedicated(owner) => owner == tenant,
        }
    }
}
