//! `tenantry memory ...`: the operator's view of memory through the control plane: a tenant's
//! memories or the ones shared by every tenant (create, list, delete), and erasing everything
//! a tenant's memories hold of one user.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use tenantry_core::TenantId;

use crate::admin::print;
use crate::tools_cmd::Server;

/// Whose memories: one tenant's, or the shared ones.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Owner {
    /// The tenant's own memories.
    #[arg(long, value_name = "ID")]
    tenant: Option<String>,
    /// The memories the operator shares with every tenant (each sees only its own events and
    /// records in them).
    #[arg(long)]
    shared: bool,
}

impl Owner {
    /// The control plane's collection of these memories.
    fn base(&self) -> Result<String> {
        match (&self.tenant, self.shared) {
            (Some(t), false) => Ok(format!(
                "/v1/admin/tenants/{}/memories",
                TenantId::new(t.as_str())?
            )),
            (None, true) => Ok("/v1/admin/memories".into()),
            (Some(_), true) | (None, false) => bail!("give --tenant ID or --shared"),
        }
    }
}

#[derive(Debug, Subcommand)]
#[command(after_long_help = "Examples:\n  \
    tenantry memory create support --tenant acme --strategy semantic:facts --strategy summary:recap\n  \
    tenantry memory create pool --shared --expiry-days 30\n  \
    tenantry memory list --tenant acme\n  \
    tenantry memory delete support-AbCdEfGhIj --tenant acme\n  \
    tenantry memory erase-user alice --tenant acme")]
pub enum MemoryCmd {
    /// Create a memory: its name, event expiry and long-term strategies.
    Create {
        /// A letter, then up to 47 letters, digits or `_`.
        name: String,
        #[command(flatten)]
        owner: Owner,
        /// Days after which events are deleted [default: the tenant's tier's
        /// memory_event_expiry_days, 90 for shared memories].
        #[arg(long)]
        expiry_days: Option<u32>,
        /// A strategy as KIND:NAME, KIND one of semantic, summary, preference, custom
        /// (repeatable).
        #[arg(long = "strategy", value_name = "KIND:NAME")]
        strategies: Vec<String>,
        /// The extraction instructions of the custom strategies.
        #[arg(long)]
        prompt: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        server: Server,
    },
    /// List memories with their strategies.
    List {
        #[command(flatten)]
        owner: Owner,
        #[command(flatten)]
        server: Server,
    },
    /// Delete a memory with all its events and records.
    Delete {
        memory_id: String,
        #[command(flatten)]
        owner: Owner,
        #[command(flatten)]
        server: Server,
    },
    /// Delete every event and record of one user (actor) in all of a tenant's memories,
    /// shared ones included.
    EraseUser {
        user: String,
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        server: Server,
    },
}

/// `KIND:NAME` as the API's strategy.
fn strategy(spec: &str, prompt: Option<&str>) -> Result<Value> {
    let Some((kind, name)) = spec.split_once(':') else {
        bail!("--strategy {spec:?}: give KIND:NAME, e.g. semantic:facts");
    };
    let kind = match kind {
        "semantic" => "SEMANTIC",
        "summary" | "summarization" => "SUMMARIZATION",
        "preference" | "user_preference" => "USER_PREFERENCE",
        "custom" => "CUSTOM",
        other => bail!(
            "--strategy {spec:?}: unknown kind {other:?}; use semantic, summary, preference or custom"
        ),
    };
    let mut s = json!({"name": name, "type": kind});
    if kind == "CUSTOM" {
        match prompt {
            Some(p) => s["prompt"] = json!(p),
            None => bail!("a custom strategy needs --prompt"),
        }
    }
    Ok(s)
}

pub async fn memory(cmd: MemoryCmd) -> Result<()> {
    match cmd {
        MemoryCmd::Create {
            name,
            owner,
            expiry_days,
            strategies,
            prompt,
            description,
            server,
        } => {
            let strategies = strategies
                .iter()
                .map(|s| strategy(s, prompt.as_deref()))
                .collect::<Result<Vec<_>>>()?;
            let mut body = json!({"name": name, "description": description,
                                  "strategies": strategies});
            if let Some(d) = expiry_days {
                body["eventExpiryDays"] = json!(d);
            }
            let v = server
                .client()?
                .call(Method::POST, &owner.base()?, Some(&body))
                .await?;
            print(&v)
        }
        MemoryCmd::List { owner, server } => print(&server.client()?.get(&owner.base()?).await?),
        MemoryCmd::Delete {
            memory_id,
            owner,
            server,
        } => {
            let path = format!("{}/{memory_id}", owner.base()?);
            print(&server.client()?.call(Method::DELETE, &path, None).await?)
        }
        MemoryCmd::EraseUser {
            user,
            tenant,
            server,
        } => {
            let path = format!(
                "/v1/admin/tenants/{}/memory/users/{user}",
                TenantId::new(tenant.as_str())?
            );
            print(&server.client()?.call(Method::DELETE, &path, None).await?)
        }
    }
}
