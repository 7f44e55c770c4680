//! `tenantry accesskey`: a tenant's SigV4 access key pairs (operator), for AWS SDKs such as
//! boto3 pointed at the platform's AWS-compatible endpoints.

use anyhow::Result;
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;
use tenantry_core::TenantId;

use crate::admin::print;
use crate::cli::Target;
use crate::client::AdminClient;

#[derive(Debug, Subcommand)]
pub enum AccessKeyCmd {
    /// Create an access key pair for a tenant; the secret access key is printed once.
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
    /// List a tenant's access keys (never the secrets).
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        target: Target,
    },
    /// Revoke an access key (at once); with --purge, delete it for good.
    Revoke {
        #[arg(long)]
        tenant: String,
        access_key_id: String,
        #[arg(long)]
        purge: bool,
        #[command(flatten)]
        target: Target,
    },
}

fn keys_path(tenant: &str) -> Result<String> {
    let id = TenantId::new(tenant)?;
    Ok(format!("/v1/admin/tenants/{id}/access-keys"))
}

pub async fn accesskey(cmd: AccessKeyCmd) -> Result<()> {
    match cmd {
        AccessKeyCmd::Create {
            tenant,
            name,
            user,
            roles,
            expires_in,
            target,
        } => {
            let mut body = json!({"roles": roles});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(u) = user {
                body["user"] = json!(u);
            }
            if let Some(e) = expires_in {
                body["expires_in_seconds"] = json!(e);
            }
            let v = AdminClient::new(&target)?
                .call(Method::POST, &keys_path(&tenant)?, Some(&body))
                .await?;
            eprintln!("Store the secret access key now: it is shown only once.");
            print(&v)
        }
        AccessKeyCmd::List { tenant, target } => {
            print(&AdminClient::new(&target)?.get(&keys_path(&tenant)?).await?)
        }
        AccessKeyCmd::Revoke {
            tenant,
            access_key_id,
            purge,
            target,
        } => {
            let mut path = format!("{}/{access_key_id}", keys_path(&tenant)?);
            if purge {
                path.push_str("?purge=true");
            }
            print(
                &AdminClient::new(&target)?
                    .call(Method::DELETE, &path, None)
                    .await?,
            )
        }
    }
}
