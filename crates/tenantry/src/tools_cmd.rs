//! `tenantry tool ...` (tool targets), `tenantry policy ...` (Cedar policy sets per platform,
//! tier and tenant) and `tenantry credential ...` (tenants' vault credentials), all through the
//! control plane, so changes apply to the running server without a restart.
//!
//! Secrets never appear on a command line (where `ps` shows them): a credential's secret is
//! read from a file, an environment variable or standard input, and no command prints one.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use tenantry_core::{TenantId, TierName, UserId};

use crate::admin::print;
use crate::cli::Target;
use crate::client::AdminClient;

/// Where the tool commands find the server. `--url` is the upstream's URL in `tool add-mcp`,
/// so the server's URL is `--server` here.
#[derive(Debug, Args, Clone)]
pub struct Server {
    /// Config file of the server [default: ./.tenantry/tenantry.toml].
    #[arg(long, env = "TENANTRY_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Server URL, overriding the one derived from the config.
    #[arg(
        long = "server",
        env = "TENANTRY_URL",
        global = true,
        value_name = "URL"
    )]
    pub server: Option<String>,
    /// Operator key, overriding the config's key file.
    #[arg(
        long,
        env = "TENANTRY_ADMIN_KEY",
        global = true,
        hide_env_values = true
    )]
    pub admin_key: Option<String>,
}

impl Server {
    pub fn client(&self) -> Result<AdminClient> {
        AdminClient::new(&Target {
            config: self.config.clone(),
            url: self.server.clone(),
            admin_key: self.admin_key.clone(),
        })
    }
}

/// What every target takes besides its kind.
#[derive(Debug, Args)]
pub struct TargetFlags {
    /// Only this tenant sees and calls the target (silo); default: shared by all tenants.
    #[arg(long)]
    tenant: Option<String>,
    /// Where each tenant's vault credential named like the target goes on upstream calls:
    /// `bearer`, `header:NAME` (e.g. header:X-Api-Key) or `query:NAME`; default: none.
    #[arg(long, value_name = "PLACEMENT")]
    credential: Option<String>,
    /// Deadline of one call, in milliseconds [default: 30000].
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Price of one call that reached the upstream, in US dollars (e.g. 0.002), for the ledger.
    #[arg(long)]
    price: Option<String>,
    /// Replace a target of this name (same owner) instead of refusing.
    #[arg(long)]
    replace: bool,
}

#[derive(Debug, Subcommand)]
pub enum ToolCmd {
    /// Register an upstream MCP server (streamable HTTP); its tools appear behind /mcp as
    /// NAME___TOOL.
    #[command(name = "add-mcp")]
    AddMcp {
        /// Target name: 2-63 lowercase letters, digits and '-'.
        name: String,
        /// The upstream's MCP endpoint, e.g. https://crm.example/mcp.
        #[arg(long)]
        url: String,
        #[command(flatten)]
        flags: TargetFlags,
        #[command(flatten)]
        server: Server,
    },
    /// Register an HTTP API from its OpenAPI 3 document (JSON); each operation becomes a tool
    /// NAME___OPERATION, and a call becomes the HTTP request.
    #[command(name = "add-openapi")]
    AddOpenapi {
        /// Target name: 2-63 lowercase letters, digits and '-'.
        name: String,
        /// The document: a file, or an http(s) URL the server fetches once at registration.
        #[arg(long, value_name = "FILE_OR_URL")]
        spec: String,
        /// Where the operations' paths are appended, e.g. https://api.example/v1.
        #[arg(long)]
        base_url: String,
        #[command(flatten)]
        flags: TargetFlags,
        #[command(flatten)]
        server: Server,
    },
    /// Register an MCP server hosted as a Tenantry runtime (created with `tenantry runtime
    /// create NAME --protocol mcp ...`, serving streamable HTTP on port 8000 at /mcp). Each
    /// tenant session gets its own sandbox of it: an agent's calls run in one per agent
    /// session, other callers' in one per MCP session. Its tools appear as NAME___TOOL.
    #[command(name = "add-runtime")]
    AddRuntime {
        /// Target name: 2-63 lowercase letters, digits and '-'.
        name: String,
        /// The runtime that serves the tools (protocol mcp; shared, or dedicated to --tenant).
        #[arg(long)]
        runtime: String,
        #[command(flatten)]
        flags: TargetFlags,
        #[command(flatten)]
        server: Server,
    },
    /// List the targets (shared ones and every tenant's).
    List {
        #[command(flatten)]
        server: Server,
    },
    /// Show one target.
    Show {
        name: String,
        #[command(flatten)]
        server: Server,
    },
    /// Remove a target: its tools disappear from /mcp at once.
    Remove {
        name: String,
        #[command(flatten)]
        server: Server,
    },
}

fn check_target_name(name: &str) -> Result<()> {
    tenantry_tools::TargetName::new(name).map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

fn placement(raw: &str) -> Result<Value> {
    match raw.split_once(':') {
        None if raw == "bearer" => Ok(json!({"placement": "bearer"})),
        Some(("header", name)) if !name.is_empty() => {
            Ok(json!({"placement": "header", "name": name}))
        }
        Some(("query", name)) if !name.is_empty() => {
            Ok(json!({"placement": "query", "name": name}))
        }
        None | Some(_) => {
            bail!("--credential {raw:?}: write bearer, header:NAME or query:NAME")
        }
    }
}

async fn add_target(name: String, kind: Value, flags: TargetFlags, server: Server) -> Result<()> {
    check_target_name(&name)?;
    let mut body = json!({"name": name, "kind": kind});
    if let Some(t) = flags.tenant {
        body["tenant"] = json!(TenantId::new(t)?);
    }
    if let Some(c) = flags.credential {
        body["credential"] = placement(&c)?;
    }
    if let Some(t) = flags.timeout_ms {
        body["timeout_ms"] = json!(t);
    }
    if let Some(p) = flags.price {
        body["price_per_call"] = json!(p);
    }
    let client = server.client()?;
    let answer = if flags.replace {
        client
            .call(
                Method::PUT,
                &format!("/v1/admin/tool-targets/{name}"),
                Some(&body),
            )
            .await?
    } else {
        client
            .call(Method::POST, "/v1/admin/tool-targets", Some(&body))
            .await?
    };
    if let Some(warnings) = answer["warnings"].as_array() {
        for w in warnings {
            eprintln!("warning: {}", w.as_str().unwrap_or_default());
        }
    }
    print(&answer)
}

pub async fn tool(cmd: ToolCmd) -> Result<()> {
    match cmd {
        ToolCmd::AddMcp {
            name,
            url,
            flags,
            server,
        } => add_target(name, json!({"type": "mcp", "url": url}), flags, server).await,
        ToolCmd::AddOpenapi {
            name,
            spec,
            base_url,
            flags,
            server,
        } => {
            let source = if spec.starts_with("http://") || spec.starts_with("https://") {
                json!({"url": spec})
            } else {
                let text = std::fs::read_to_string(&spec)
                    .with_context(|| format!("cannot read the OpenAPI document {spec}"))?;
                serde_json::from_str::<Value>(&text).with_context(|| {
                    format!("{spec} is not JSON; give the OpenAPI document in JSON")
                })?;
                json!({"inline": text})
            };
            let kind = json!({"type": "openapi", "spec": source, "base_url": base_url});
            add_target(name, kind, flags, server).await
        }
        ToolCmd::AddRuntime {
            name,
            runtime,
            flags,
            server,
        } => {
            tenantry_core::RuntimeName::new(&runtime).map_err(|e| anyhow!("--runtime: {e}"))?;
            let kind = json!({"type": "runtime", "runtime": runtime});
            add_target(name, kind, flags, server).await
        }
        ToolCmd::List { server } => print(&server.client()?.get("/v1/admin/tool-targets").await?),
        ToolCmd::Show { name, server } => {
            check_target_name(&name)?;
            print(
                &server
                    .client()?
                    .get(&format!("/v1/admin/tool-targets/{name}"))
                    .await?,
            )
        }
        ToolCmd::Remove { name, server } => {
            check_target_name(&name)?;
            server
                .client()?
                .call(
                    Method::DELETE,
                    &format!("/v1/admin/tool-targets/{name}"),
                    None,
                )
                .await?;
            eprintln!("Removed tool target {name}.");
            Ok(())
        }
    }
}

// ---- policies -----------------------------------------------------------------------------------

/// Whose policy set: exactly one of the flags.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Scope {
    /// The set of a tier (applies to every tenant on it).
    #[arg(long)]
    tier: Option<String>,
    /// The set of one tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// The platform set (applies to everyone; replaces the starter policy).
    #[arg(long)]
    platform: bool,
}

/// An optional scope, for listings.
#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct MaybeScope {
    /// The versions of a tier's set.
    #[arg(long)]
    tier: Option<String>,
    /// The versions of a tenant's set.
    #[arg(long)]
    tenant: Option<String>,
    /// The versions of the platform set.
    #[arg(long)]
    platform: bool,
}

impl Scope {
    /// `platform`, `tier:NAME` or `tenant:ID`, checked.
    fn path(&self) -> Result<String> {
        scope_path(self.tier.as_deref(), self.tenant.as_deref(), self.platform)?
            .ok_or_else(|| anyhow!("give --tier, --tenant or --platform"))
    }
}

fn scope_path(tier: Option<&str>, tenant: Option<&str>, platform: bool) -> Result<Option<String>> {
    Ok(match (tier, tenant, platform) {
        (Some(t), None, false) => Some(format!("tier:{}", TierName::new(t)?)),
        (None, Some(t), false) => Some(format!("tenant:{}", TenantId::new(t)?)),
        (None, None, true) => Some("platform".to_owned()),
        (None, None, false) => None,
        (Some(_), Some(_), _) | (Some(_), None, true) | (None, Some(_), true) => {
            bail!("give only one of --tier, --tenant and --platform")
        }
    })
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Upload a Cedar policy set for a tier, a tenant or the platform: it is validated against
    /// the schema of the tools known now (problems are printed as FILE:LINE:COLUMN), stored as
    /// the scope's next version and applied at once. `tenantry policy schema` shows the schema.
    Set {
        #[command(flatten)]
        scope: Scope,
        /// The policy set (Cedar).
        #[arg(long)]
        file: PathBuf,
        /// `enforce` applies the set; `log_only` only logs what it would decide.
        #[arg(long, default_value = "enforce", value_parser = ["enforce", "log_only"])]
        mode: String,
        #[command(flatten)]
        server: Server,
    },
    /// Without a scope: the active set of every scope (the platform's is the starter policy
    /// until one is uploaded). With one: every version of that scope's set, newest first.
    List {
        #[command(flatten)]
        scope: MaybeScope,
        #[command(flatten)]
        server: Server,
    },
    /// Make an earlier version active again: the one before the active version, or --version.
    Rollback {
        #[command(flatten)]
        scope: Scope,
        /// The version to activate [default: the one before the active version].
        #[arg(long)]
        version: Option<i64>,
        #[command(flatten)]
        server: Server,
    },
    /// Leave a scope without a set (the platform falls back to the starter policy); its
    /// versions stay for a later rollback.
    Clear {
        #[command(flatten)]
        scope: Scope,
        #[command(flatten)]
        server: Server,
    },
    /// Print the Cedar schema policies are validated against (the base and one action per
    /// tool known now).
    Schema {
        #[command(flatten)]
        server: Server,
    },
}

pub async fn policy(cmd: PolicyCmd) -> Result<()> {
    match cmd {
        PolicyCmd::Set {
            scope,
            file,
            mode,
            server,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let mut body = json!({"text": text, "mode": mode});
            match scope_path(
                scope.tier.as_deref(),
                scope.tenant.as_deref(),
                scope.platform,
            )? {
                Some(p) if p == "platform" => body["platform"] = json!(true),
                Some(p) => {
                    let (kind, name) = p.split_once(':').unwrap_or(("", ""));
                    body[kind] = json!(name);
                }
                None => bail!("give --tier, --tenant or --platform"),
            }
            let (status, answer) = server
                .client()?
                .send(Method::POST, "/v1/admin/policies", Some(&body))
                .await?;
            if (200..300).contains(&status) {
                if let Some(warnings) = answer["warnings"].as_array() {
                    for w in warnings {
                        eprintln!(
                            "{}:{}:{}: warning: {}",
                            file.display(),
                            w["line"].as_u64().unwrap_or(0),
                            w["column"].as_u64().unwrap_or(0),
                            w["message"].as_str().unwrap_or_default()
                        );
                    }
                }
                return print(&answer);
            }
            if let Some(diagnostics) = answer
                .pointer("/error/diagnostics")
                .and_then(Value::as_array)
            {
                for d in diagnostics {
                    let at = match (d["line"].as_u64(), d["column"].as_u64()) {
                        (Some(l), Some(c)) => format!("{}:{l}:{c}", file.display()),
                        (Some(_), None) | (None, Some(_) | None) => file.display().to_string(),
                    };
                    eprintln!("{at}: {}", d["message"].as_str().unwrap_or_default());
                    if let Some(help) = d["help"].as_str() {
                        eprintln!("  help: {help}");
                    }
                }
            }
            bail!(
                "{} ({status}): {}",
                answer
                    .pointer("/error/code")
                    .and_then(Value::as_str)
                    .unwrap_or("error"),
                answer
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            )
        }
        PolicyCmd::List { scope, server } => {
            let client = server.client()?;
            match scope_path(
                scope.tier.as_deref(),
                scope.tenant.as_deref(),
                scope.platform,
            )? {
                Some(p) => print(&client.get(&format!("/v1/admin/policies/{p}")).await?),
                None => print(&client.get("/v1/admin/policies").await?),
            }
        }
        PolicyCmd::Rollback {
            scope,
            version,
            server,
        } => {
            let path = scope.path()?;
            let answer = server
                .client()?
                .roll_back(&format!("/v1/admin/policies/{path}"), version)
                .await?;
            print(&answer)
        }
        PolicyCmd::Clear { scope, server } => {
            let path = scope.path()?;
            server
                .client()?
                .call(Method::DELETE, &format!("/v1/admin/policies/{path}"), None)
                .await?;
            eprintln!("{path} has no active policy set now.");
            Ok(())
        }
        PolicyCmd::Schema { server } => {
            let (status, answer) = server
                .client()?
                .send(Method::GET, "/v1/admin/policies/schema", None)
                .await?;
            match (status, answer.as_str()) {
                (200, Some(text)) => {
                    println!("{text}");
                    Ok(())
                }
                _ => bail!("the server answered {status}: {answer}"),
            }
        }
    }
}

// ---- credentials --------------------------------------------------------------------------------

/// Where the secret comes from: never the command line.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SecretSource {
    /// An API key (kind api_key) read from this file (its first line).
    #[arg(long, value_name = "FILE")]
    value_file: Option<PathBuf>,
    /// An API key (kind api_key) read from this environment variable.
    #[arg(long, value_name = "VAR")]
    value_env: Option<String>,
    /// An API key (kind api_key) read from standard input (its first line).
    #[arg(long)]
    value_stdin: bool,
    /// The whole credential as JSON, any kind, e.g. {"kind": "oauth2_client_credentials",
    /// "token_url": ..., "client_id": ..., "client_secret": ...} or {"kind": "token_exchange",
    /// ...} (see docs/API.md).
    #[arg(long, value_name = "JSON_FILE")]
    json_file: Option<PathBuf>,
}

impl SecretSource {
    fn body(&self) -> Result<Value> {
        let first_line = |text: String| text.lines().next().unwrap_or("").trim().to_owned();
        let value = if let Some(f) = &self.json_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            // serde's message could quote a value: say only where the JSON is broken.
            return serde_json::from_str(&text).map_err(|e| {
                anyhow!(
                    "{} is not JSON (line {}, column {})",
                    f.display(),
                    e.line(),
                    e.column()
                )
            });
        } else if let Some(f) = &self.value_file {
            first_line(
                std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read {}", f.display()))?,
            )
        } else if let Some(var) = &self.value_env {
            std::env::var(var).map_err(|_| anyhow!("the environment variable {var} is not set"))?
        } else {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input")?;
            first_line(text)
        };
        if value.is_empty() {
            bail!("the secret is empty");
        }
        Ok(json!({"kind": "api_key", "value": value}))
    }
}

#[derive(Debug, Subcommand)]
pub enum CredentialCmd {
    /// Store a tenant's credential for a target (name it like the target), or rotate it (a new
    /// version; the older ones stay until deleted). The secret is never printed again.
    Set {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The credential's name: the target it is for.
        name: String,
        /// One user's own credential instead of the tenant's.
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        secret: SecretSource,
        #[command(flatten)]
        server: Server,
    },
    /// List a tenant's credentials: names, kinds, versions and metadata, never secrets.
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        server: Server,
    },
    /// Show one credential's metadata and versions.
    Show {
        #[arg(long)]
        tenant: String,
        name: String,
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        server: Server,
    },
    /// Delete a credential (every version, or --version).
    Delete {
        #[arg(long)]
        tenant: String,
        name: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        version: Option<i64>,
        #[command(flatten)]
        server: Server,
    },
}

fn credential_path(
    tenant: &str,
    name: &str,
    user: Option<&str>,
    version: Option<i64>,
) -> Result<String> {
    let tenant = TenantId::new(tenant)?;
    if name.is_empty() || name.contains(['/', '?', '#', '%']) {
        bail!(
            "{name:?}: a credential name here has no '/', '?', '#' or '%'; use the target's name"
        );
    }
    let mut query = Vec::new();
    if let Some(u) = user {
        let u = UserId::new(u)?;
        let encoded: String = url_encode(u.as_str());
        query.push(format!("user={encoded}"));
    }
    if let Some(v) = version {
        query.push(format!("version={v}"));
    }
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    Ok(format!("/v1/admin/tenants/{tenant}/credentials/{name}{q}"))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

pub async fn credential(cmd: CredentialCmd) -> Result<()> {
    match cmd {
        CredentialCmd::Set {
            tenant,
            name,
            user,
            secret,
            server,
        } => {
            let body = secret.body()?;
            let path = credential_path(&tenant, &name, user.as_deref(), None)?;
            print(
                &server
                    .client()?
                    .call(Method::PUT, &path, Some(&body))
                    .await?,
            )
        }
        CredentialCmd::List { tenant, server } => print(
            &server
                .client()?
                .get(&format!(
                    "/v1/admin/tenants/{}/credentials",
                    TenantId::new(tenant)?
                ))
                .await?,
        ),
        CredentialCmd::Show {
            tenant,
            name,
            user,
            server,
        } => {
            let path = credential_path(&tenant, &name, user.as_deref(), None)?;
            print(&server.client()?.get(&path).await?)
        }
        CredentialCmd::Delete {
            tenant,
            name,
            user,
            version,
            server,
        } => {
            let path = credential_path(&tenant, &name, user.as_deref(), version)?;
            print(&server.client()?.call(Method::DELETE, &path, None).await?)
        }
    }
}
