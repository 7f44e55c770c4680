//! `tenantry runtime ...` (operator) and `tenantry invoke` (as a tenant user).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use tenantry_core::{RuntimeName, TenantId, UserId};

use crate::admin::print;
use crate::cli::Target;
use crate::client::{AdminClient, install_crypto, load_config};

#[derive(Debug, Subcommand)]
pub enum RuntimeCmd {
    /// Register an agent: `tenantry runtime create NAME --workdir DIR -- python3 agent.py`.
    Create {
        /// Runtime name: 2-63 lowercase letters, digits and '-'.
        name: String,
        /// Absolute directory holding the agent (its working directory in the sandbox).
        #[arg(long)]
        workdir: PathBuf,
        /// Only this tenant may use the runtime (silo); default: shared by all tenants (pool).
        #[arg(long)]
        dedicated: Option<String>,
        /// `http` (agents, port 8080) or `mcp` (tool servers, port 8000).
        #[arg(long, default_value = "http")]
        protocol: String,
        /// Environment variable for the agent, NAME=VALUE; repeatable.
        #[arg(long = "env")]
        env: Vec<String>,
        /// Caller header passed to the agent (X-Tenantry-Custom-*); repeatable.
        #[arg(long = "allow-header")]
        allow_headers: Vec<String>,
        /// Stop a session after this many idle seconds (60-28800) [default: 900].
        #[arg(long)]
        idle_timeout: Option<u64>,
        /// Stop a session this many seconds after it started (60-28800) [default: 28800].
        #[arg(long)]
        max_lifetime: Option<u64>,
        /// Pre-started sandboxes kept per tenant using the runtime [default: 0].
        #[arg(long)]
        warm_pool: Option<u32>,
        /// Where session storage appears in the sandbox [default: /mnt/session].
        #[arg(long)]
        mount_path: Option<String>,
        #[command(flatten)]
        target: Target,
        /// The agent's program and arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// List runtimes.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Show one runtime.
    Show {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Change a runtime: give a JSON object of the fields to change, e.g.
    /// '{"warm_pool": 2, "lifecycle": {"idle_timeout_seconds": 300, "max_lifetime_seconds": 3600}}'.
    Update {
        name: String,
        #[arg(long)]
        set: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a runtime; its running sessions are stopped.
    Delete {
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

fn runtime_path(name: &str) -> Result<String> {
    let name = RuntimeName::new(name)?;
    Ok(format!("/v1/admin/runtimes/{name}"))
}

pub async fn runtime(cmd: RuntimeCmd) -> Result<()> {
    match cmd {
        RuntimeCmd::Create {
            name,
            workdir,
            dedicated,
            protocol,
            env,
            allow_headers,
            idle_timeout,
            max_lifetime,
            warm_pool,
            mount_path,
            target,
            command,
        } => {
            RuntimeName::new(&name)?;
            let workdir = std::fs::canonicalize(&workdir)
                .with_context(|| format!("--workdir {} does not exist", workdir.display()))?;
            let mut envs = serde_json::Map::new();
            for e in env {
                let (k, v) = e
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--env {e:?}: write NAME=VALUE"))?;
                envs.insert(k.to_string(), json!(v));
            }
            let mut body = json!({
                "name": name,
                "protocol": protocol,
                "command": command,
                "workdir": workdir,
                "env": envs,
                "allowed_headers": allow_headers,
            });
            if let Some(t) = dedicated {
                body["tenancy"] = json!({"dedicated": TenantId::new(t)?});
            }
            if idle_timeout.is_some() || max_lifetime.is_some() {
                body["lifecycle"] = json!({
                    "idle_timeout_seconds": idle_timeout.unwrap_or(900),
                    "max_lifetime_seconds": max_lifetime.unwrap_or(28800),
                });
            }
            if let Some(w) = warm_pool {
                body["warm_pool"] = json!(w);
            }
            if let Some(m) = mount_path {
                body["storage"] = json!({"mount_path": m});
            }
            let client = AdminClient::new(&target)?;
            print(
                &client
                    .call(Method::POST, "/v1/admin/runtimes", Some(&body))
                    .await?,
            )
        }
        RuntimeCmd::List { target } => {
            print(&AdminClient::new(&target)?.get("/v1/admin/runtimes").await?)
        }
        RuntimeCmd::Show { name, target } => print(
            &AdminClient::new(&target)?
                .get(&runtime_path(&name)?)
                .await?,
        ),
        RuntimeCmd::Update { name, set, target } => {
            let patch: Value = serde_json::from_str(&set).context("--set must be a JSON object")?;
            if !patch.is_object() {
                bail!("--set must be a JSON object");
            }
            let client = AdminClient::new(&target)?;
            print(
                &client
                    .call(Method::PATCH, &runtime_path(&name)?, Some(&patch))
                    .await?,
            )
        }
        RuntimeCmd::Delete { name, target } => {
            AdminClient::new(&target)?
                .call(Method::DELETE, &runtime_path(&name)?, None)
                .await?;
            eprintln!("Deleted runtime {name}.");
            Ok(())
        }
    }
}

#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The runtime to invoke.
    pub runtime: String,
    /// Config file of the state directory (its development issuer signs the user's token)
    /// [default: ./.tenantry/tenantry.toml].
    #[arg(long, env = "TENANTRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Server URL [default: from the config].
    #[arg(long, env = "TENANTRY_URL")]
    pub url: Option<String>,
    #[arg(long)]
    pub tenant: String,
    #[arg(long)]
    pub user: String,
    /// Session to use or resume (33-256 characters); a new one is created when absent.
    #[arg(long)]
    pub session: Option<String>,
    /// Extra header, NAME:VALUE (e.g. X-Tenantry-Custom-Plan:gold); repeatable.
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// The JSON body passed to the agent.
    #[arg(long, default_value = "{}")]
    pub data: String,
}

pub async fn invoke(args: InvokeArgs) -> Result<()> {
    install_crypto();
    let config = load_config(args.config.as_deref())?;
    let dev = &config.identity.dev_issuer;
    if !dev.enabled {
        bail!(
            "the development issuer is disabled; call the API with a token from your identity provider"
        );
    }
    let issuer = config.load_dev_issuer()?;
    let token = issuer.mint(
        &TenantId::new(&args.tenant)?,
        &UserId::new(&args.user)?,
        &[],
        Duration::from_secs(600),
    )?;
    let body: Value = serde_json::from_str(&args.data).context("--data must be JSON")?;
    let runtime = RuntimeName::new(&args.runtime)?;
    let url = format!(
        "{}/v1/runtimes/{runtime}/invocations",
        args.url
            .unwrap_or_else(|| config.public_url())
            .trim_end_matches('/')
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(900))
        .build()?;
    let mut req = http.post(&url).bearer_auth(token).json(&body);
    if let Some(s) = &args.session {
        req = req.header("X-Tenantry-Session-Id", s);
    }
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| anyhow!("--header {h:?}: write NAME:VALUE"))?;
        req = req.header(k.trim(), v.trim());
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| anyhow!("cannot reach {url}: {e}; is `tenantry serve` running?"))?;
    let status = resp.status();
    if let Some(s) = resp
        .headers()
        .get("x-tenantry-session-id")
        .and_then(|v| v.to_str().ok())
    {
        eprintln!("session: {s}");
    }
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match (v.pointer("/error/code"), v.pointer("/error/message")) {
            (Some(c), Some(m)) => bail!(
                "{} ({}): {}",
                c.as_str().unwrap_or(""),
                status.as_u16(),
                m.as_str().unwrap_or("")
            ),
            _ => bail!("the server answered {status}: {text}"),
        }
    }
    // Stream the body as it arrives (an agent may answer with server-sent events).
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = resp.chunk().await.context("reading the agent's answer")? {
        out.write_all(&chunk)?;
        out.flush()?;
    }
    writeln!(out)?;
    Ok(())
}
