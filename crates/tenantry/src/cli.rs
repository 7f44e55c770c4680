//! The command line, as clap types. Every command and flag has help text that teaches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The default state directory, relative to the current directory.
pub const DEFAULT_DIR: &str = ".tenantry";

#[derive(Debug, Parser)]
#[command(
    name = "tenantry",
    version,
    about = "Multi-tenant platform for AI agents: run the server and manage tenants, tiers and keys.",
    long_about = "Multi-tenant platform for AI agents.\n\n\
        Start here:\n  tenantry serve                 # creates ./.tenantry on first run, then serves on 127.0.0.1:8700\n  \
        tenantry tenant create acme --tier standard\n  \
        tenantry token issue --tenant acme --user alice\n\n\
        Admin commands read the server URL and operator key from --config (default ./.tenantry/tenantry.toml),\n\
        or from --url/--admin-key (TENANTRY_URL/TENANTRY_ADMIN_KEY)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a state directory: config, operator key and development signing key.
    Init(InitArgs),
    /// Run the server (creates the default state directory first if there is none).
    Serve(ServeArgs),
    /// Manage tenants (operator).
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Manage tiers (operator).
    #[command(subcommand)]
    Tier(TierCmd),
    /// Manage tenant API keys (operator).
    #[command(subcommand)]
    Apikey(ApiKeyCmd),
    /// Manage tenant SigV4 access key pairs for AWS SDKs (operator).
    #[command(subcommand)]
    Accesskey(crate::accesskey_cmd::AccessKeyCmd),
    /// Development tokens signed by the state directory's key.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Manage runtimes: the agents the platform hosts (operator).
    #[command(subcommand)]
    Runtime(crate::runtime_cmd::RuntimeCmd),
    /// Invoke an agent as a tenant user; prints the response body on stdout and the session
    /// id on stderr.
    Invoke(crate::runtime_cmd::InvokeArgs),
    /// Start the platform on a fresh state directory, onboard three tenants (pool, silo,
    /// bridge), deploy the example agent and show isolation, storage and usage per tenant.
    Demo(crate::demo::DemoArgs),
    /// Model routing per tier and tenant: which model `default`, `fast`, `smart`... get, a
    /// tenant's own (fine-tuned) models, fallbacks. Changes apply without a restart (operator).
    #[command(subcommand)]
    Models(crate::models_cmd::ModelsCmd),
    /// A tenant's overrides of its tier's model limits: requests and tokens per minute, money
    /// per month, for the tenant and for each of its users (operator).
    #[command(subcommand)]
    Limits(crate::models_cmd::LimitsCmd),
    /// The usage ledger: calls, tokens and cost per tenant and model, user, runtime, day or
    /// kind (operator). A table by default, `--json` for scripts.
    Usage(crate::models_cmd::UsageArgs),
    /// A session's agent output (what the agent wrote to stdout and stderr), with timestamps;
    /// `--follow` keeps printing new lines (operator).
    Logs(crate::logs_cmd::LogsArgs),
    /// The audit log: control-plane changes and policy decisions, who, what, when (operator).
    /// A table by default, `--json` for scripts.
    Audit(crate::audit_cmd::AuditArgs),
    /// Tool targets behind the MCP endpoint (URL/mcp): upstream MCP servers and OpenAPI
    /// services, shared or of one tenant (operator).
    #[command(subcommand)]
    Tool(crate::tools_cmd::ToolCmd),
    /// Cedar policy sets deciding which tools callers see and may call, per tier, tenant or
    /// platform: upload (validated), list versions, roll back (operator).
    #[command(subcommand)]
    Policy(crate::tools_cmd::PolicyCmd),
    /// Tenants' credentials for tool targets, kept encrypted in the vault: write-only secrets,
    /// rotation, deletion (operator).
    #[command(subcommand, alias = "vault")]
    Credential(crate::tools_cmd::CredentialCmd),
    /// Guardrail profiles checking model and tool traffic, per named profile (tiers name one)
    /// and per tenant: upload from TOML or JSON, list versions, roll back; and check a text as
    /// a tenant's traffic would be checked (operator).
    #[command(subcommand)]
    Guardrail(crate::guardrail_cmd::GuardrailCmd),
    /// Memory of tenants and their agents: a tenant's memories or the shared ones (create with
    /// strategies, list, delete), and erasing one user's memory (operator).
    #[command(subcommand)]
    Memory(crate::memory_cmd::MemoryCmd),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to create.
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Address the server will listen on.
    #[arg(long, default_value = "127.0.0.1:8700")]
    pub listen: String,
    /// Overwrite the config and keys of an existing state directory (its database is kept).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file [default: ./.tenantry/tenantry.toml, created if missing].
    #[arg(long, env = "TENANTRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address, overriding server.listen (e.g. 127.0.0.1:0 for any free port).
    #[arg(long)]
    pub listen: Option<String>,
}

/// Where the admin commands find the server.
#[derive(Debug, Args, Clone)]
pub struct Target {
    /// Config file of the server [default: ./.tenantry/tenantry.toml].
    #[arg(long, env = "TENANTRY_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Server URL, overriding the one derived from the config.
    #[arg(long, env = "TENANTRY_URL", global = true)]
    pub url: Option<String>,
    /// Operator key, overriding the config's key file.
    #[arg(
        long,
        env = "TENANTRY_ADMIN_KEY",
        global = true,
        hide_env_values = true
    )]
    pub admin_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Onboard a tenant.
    Create {
        /// Tenant id: 2-63 lowercase letters, digits and '-'.
        id: String,
        /// Tier name (see `tenantry tier list`).
        #[arg(long)]
        tier: String,
        /// Display name [default: the id].
        #[arg(long)]
        name: Option<String>,
        /// Isolation preset: pool, silo or bridge.
        #[arg(long)]
        isolation: Option<String>,
        /// With --isolation bridge: components to silo (runtime, data, memory, knowledge, tools, model).
        #[arg(long = "silo", value_delimiter = ',')]
        silo: Vec<String>,
        /// Region label, e.g. eu-west-1.
        #[arg(long)]
        region: Option<String>,
        /// Feature flag, NAME or NAME=false; repeatable.
        #[arg(long = "feature")]
        features: Vec<String>,
        /// Entitlements as a JSON object.
        #[arg(long)]
        entitlements: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Show one tenant, with its effective isolation.
    Show {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Change a tenant; only the flags given change.
    Update {
        id: String,
        #[arg(long)]
        tier: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        isolation: Option<String>,
        #[arg(long = "silo", value_delimiter = ',')]
        silo: Vec<String>,
        #[arg(long)]
        region: Option<String>,
        /// Replace the feature flags: NAME or NAME=false; repeatable.
        #[arg(long = "feature")]
        features: Vec<String>,
        /// Replace the entitlements (a JSON object).
        #[arg(long)]
        entitlements: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Suspend a tenant: its tokens and API keys are refused until it is resumed.
    Suspend {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Resume a suspended tenant.
    Resume {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a tenant and everything of it: its sessions are stopped and their storage
    /// removed, its keys, credentials, policies, tool targets, runtimes and settings deleted.
    /// The usage ledger is kept for billing unless --purge-usage.
    Delete {
        id: String,
        /// Also delete the tenant's usage ledger.
        #[arg(long)]
        purge_usage: bool,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
pub enum TierCmd {
    /// List tiers.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Show one tier.
    Show {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Create or replace a tier from a JSON or TOML file (see `tier show` for the shape).
    Set {
        name: String,
        /// The tier definition (.json or .toml).
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCmd {
    /// Create an API key for a tenant; the key is printed once.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: Option<String>,
        /// The user the key acts as [default: the service principal svc:<name>].
        #[arg(long)]
        user: Option<String>,
        /// Role granted to the key; repeatable. The platform's tenant roles: tenant-admin.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Lifetime in seconds [default: no expiry].
        #[arg(long)]
        expires_in: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// List a tenant's API keys (never the keys themselves).
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        target: Target,
    },
    /// Revoke an API key.
    Revoke {
        #[arg(long)]
        tenant: String,
        key_id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Mint a JWT for a tenant user from the development issuer; prints only the token.
    Issue {
        /// Config file of the state directory [default: ./.tenantry/tenantry.toml].
        #[arg(long, env = "TENANTRY_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
        /// Role claim; repeatable.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Lifetime, e.g. 3600, 90s, 15m, 2h [default: identity.dev_issuer.default_ttl_seconds].
        #[arg(long)]
        ttl: Option<String>,
    },
}
