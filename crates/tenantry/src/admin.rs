//! What each command does.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::Method;
use serde_json::{Value, json};
use tenantry_core::{TenantId, UserId};

use crate::cli::{ApiKeyCmd, Cli, Command, InitArgs, ServeArgs, TenantCmd, TierCmd, TokenCmd};
use crate::client::{AdminClient, default_config_path, load_config};

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init(args) => init(args),
        Command::Serve(args) => serve(args).await,
        Command::Tenant(cmd) => tenant(cmd).await,
        Command::Tier(cmd) => tier(cmd).await,
        Command::Apikey(cmd) => apikey(cmd).await,
        Command::Accesskey(cmd) => crate::accesskey_cmd::accesskey(cmd).await,
        Command::Token(cmd) => token(cmd).await,
        Command::Runtime(cmd) => crate::runtime_cmd::runtime(cmd).await,
        Command::Invoke(args) => crate::runtime_cmd::invoke(args).await,
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Models(cmd) => crate::models_cmd::models(cmd).await,
        Command::Limits(cmd) => crate::models_cmd::limits(cmd).await,
        Command::Usage(args) => crate::models_cmd::usage(args).await,
        Command::Logs(args) => crate::logs_cmd::logs(args).await,
        Command::Audit(args) => crate::audit_cmd::audit(args).await,
        Command::Tool(cmd) => crate::tools_cmd::tool(cmd).await,
        Command::Policy(cmd) => crate::tools_cmd::policy(cmd).await,
        Command::Credential(cmd) => crate::tools_cmd::credential(cmd).await,
        Command::Guardrail(cmd) => crate::guardrail_cmd::guardrail(cmd).await,
        Command::Memory(cmd) => crate::memory_cmd::memory(cmd).await,
    }
}

pub fn print(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn init(args: InitArgs) -> Result<()> {
    let report = tenantry_server::statedir::init(&args.dir, &args.listen, args.force)?;
    let config = report.config.display();
    println!(
        "Created a Tenantry state directory in {}:",
        report.dir.display()
    );
    println!("  {config}  the configuration (edit tiers, issuers, database here)");
    println!(
        "  {}  the operator key (keep it secret)",
        report.admin_key_file.display()
    );
    println!(
        "  {}  the development issuer's signing key",
        report.signing_key.display()
    );
    println!();
    println!("Next:");
    println!("  tenantry serve --config {config}");
    println!("  tenantry tenant create acme --tier standard --config {config}");
    println!("  tenantry token issue --tenant acme --user alice --config {config}");
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<()> {
    let path = match args.config {
        Some(p) => p,
        None => {
            let p = default_config_path();
            if !p.exists() {
                let dir = p
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_default();
                tenantry_server::statedir::init(&dir, "127.0.0.1:8700", false)?;
                eprintln!(
                    "Created the state directory {} (config, operator key, signing key).",
                    dir.display()
                );
            }
            p
        }
    };
    let config = load_config(Some(&path))?;
    tenantry_server::init_logging(config.server.log_format);
    let listen = match args.listen {
        Some(l) => Some(
            l.parse()
                .map_err(|_| anyhow!("--listen {l:?} is not HOST:PORT"))?,
        ),
        None => None,
    };
    let admin_key_file = config.admin.key_file.clone();
    let server = tenantry_server::Server::start(config, listen).await?;
    eprintln!(
        "Tenantry is listening on {} (store: {}).",
        server.url(),
        server.state.store.backend()
    );
    if let Some(f) = admin_key_file {
        eprintln!("Operator key: {}", f.display());
    }
    eprintln!("Press Ctrl-C to stop.");
    let url = server.url();
    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            r.context("cannot listen for Ctrl-C")?;
            eprintln!("Stopping {url}...");
            server.shutdown().await;
        }
        r = wait_terminate() => {
            r?;
            eprintln!("Stopping {url}...");
            server.shutdown().await;
        }
    }
    Ok(())
}

async fn wait_terminate() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    term.recv().await;
    Ok(())
}

fn parse_features(items: &[String]) -> Result<BTreeMap<String, bool>> {
    let mut out = BTreeMap::new();
    for item in items {
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => {
                let v = v
                    .parse::<bool>()
                    .map_err(|_| anyhow!("--feature {item:?}: the value must be true or false"))?;
                (n, v)
            }
            None => (item.as_str(), true),
        };
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

fn isolation(preset: Option<&str>, silo: &[String]) -> Result<Option<Value>> {
    let Some(preset) = preset else {
        if !silo.is_empty() {
            bail!("--silo goes with --isolation bridge");
        }
        return Ok(None);
    };
    if !matches!(preset, "pool" | "silo" | "bridge") {
        bail!("--isolation must be pool, silo or bridge");
    }
    let mut overrides = serde_json::Map::new();
    for c in silo {
        if !matches!(
            c.as_str(),
            "runtime" | "data" | "memory" | "knowledge" | "tools" | "model"
        ) {
            bail!("--silo {c:?}: components are runtime, data, memory, knowledge, tools, model");
        }
        overrides.insert(c.clone(), json!("silo"));
    }
    Ok(Some(json!({"preset": preset, "overrides": overrides})))
}

fn entitlements(raw: Option<&str>) -> Result<Option<Value>> {
    raw.map(|s| {
        let v: Value = serde_json::from_str(s).context("--entitlements must be a JSON object")?;
        if !v.is_object() {
            bail!("--entitlements must be a JSON object, e.g. '{{\"seats\": 10}}'");
        }
        Ok(v)
    })
    .transpose()
}

fn tenant_path(id: &str) -> Result<String> {
    let id = TenantId::new(id)?;
    Ok(format!("/v1/admin/tenants/{id}"))
}

async fn tenant(cmd: TenantCmd) -> Result<()> {
    match cmd {
        TenantCmd::Create {
            id,
            tier,
            name,
            isolation: iso,
            silo,
            region,
            features,
            entitlements: ent,
            target,
        } => {
            let client = AdminClient::new(&target)?;
            TenantId::new(&id)?;
            let mut body = json!({"id": id, "tier": tier, "features": parse_features(&features)?});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(i) = isolation(iso.as_deref(), &silo)? {
                body["isolation"] = i;
            }
            if let Some(r) = region {
                body["region"] = json!(r);
            }
            if let Some(e) = entitlements(ent.as_deref())? {
                body["entitlements"] = e;
            }
            print(
                &client
                    .call(Method::POST, "/v1/admin/tenants", Some(&body))
                    .await?,
            )
        }
        TenantCmd::List { target } => {
            let v = AdminClient::new(&target)?.get("/v1/admin/tenants").await?;
            print(&v)
        }
        TenantCmd::Show { id, target } => {
            let v = AdminClient::new(&target)?.get(&tenant_path(&id)?).await?;
            print(&v)
        }
        TenantCmd::Update {
            id,
            tier,
            name,
            isolation: iso,
            silo,
            region,
            features,
            entitlements: ent,
            target,
        } => {
            let client = AdminClient::new(&target)?;
            let mut body = serde_json::Map::new();
            if let Some(t) = tier {
                body.insert("tier".into(), json!(t));
            }
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if let Some(i) = isolation(iso.as_deref(), &silo)? {
                body.insert("isolation".into(), i);
            }
            if let Some(r) = region {
                body.insert("region".into(), json!(r));
            }
            if !features.is_empty() {
                body.insert("features".into(), json!(parse_features(&features)?));
            }
            if let Some(e) = entitlements(ent.as_deref())? {
                body.insert("entitlements".into(), e);
            }
            if body.is_empty() {
                bail!(
                    "nothing to change: give at least one of --tier, --name, --isolation, --region, --feature, --entitlements"
                );
            }
            let v = client
                .call(
                    Method::PATCH,
                    &tenant_path(&id)?,
                    Some(&Value::Object(body)),
                )
                .await?;
            print(&v)
        }
        TenantCmd::Suspend { id, target } => set_status(&id, "suspended", &target).await,
        TenantCmd::Resume { id, target } => set_status(&id, "active", &target).await,
        TenantCmd::Delete {
            id,
            purge_usage,
            target,
        } => {
            let mut path = tenant_path(&id)?;
            if purge_usage {
                path.push_str("?purge=usage");
            }
            let removed = AdminClient::new(&target)?
                .call(Method::DELETE, &path, None)
                .await?;
            eprintln!(
                "Deleted tenant {id}: {} session(s) stopped, its storage and data removed; usage ledger {}.",
                removed["sessions"]["sessions_stopped"],
                if purge_usage { "purged" } else { "kept" }
            );
            print(&removed)
        }
    }
}

async fn set_status(id: &str, status: &str, target: &crate::cli::Target) -> Result<()> {
    let v = AdminClient::new(target)?
        .call(
            Method::PATCH,
            &tenant_path(id)?,
            Some(&json!({"status": status})),
        )
        .await?;
    print(&v)
}

async fn tier(cmd: TierCmd) -> Result<()> {
    match cmd {
        TierCmd::List { target } => {
            print(&AdminClient::new(&target)?.get("/v1/admin/tiers").await?)
        }
        TierCmd::Show { name, target } => {
            let name = tenantry_core::TierName::new(name)?;
            print(
                &AdminClient::new(&target)?
                    .get(&format!("/v1/admin/tiers/{name}"))
                    .await?,
            )
        }
        TierCmd::Set { name, file, target } => {
            let name = tenantry_core::TierName::new(name)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let body: Value = if file.extension().is_some_and(|e| e == "toml") {
                toml::from_str(&text)
                    .with_context(|| format!("{} is not valid TOML", file.display()))?
            } else {
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not valid JSON", file.display()))?
            };
            let client = AdminClient::new(&target)?;
            print(
                &client
                    .call(Method::PUT, &format!("/v1/admin/tiers/{name}"), Some(&body))
                    .await?,
            )
        }
    }
}

async fn apikey(cmd: ApiKeyCmd) -> Result<()> {
    match cmd {
        ApiKeyCmd::Create {
            tenant,
            name,
            user,
            roles,
            expires_in,
            target,
        } => {
            let client = AdminClient::new(&target)?;
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
            let v = client
                .call(
                    Method::POST,
                    &format!("{}/api-keys", tenant_path(&tenant)?),
                    Some(&body),
                )
                .await?;
            eprintln!("Store the key now: it is shown only once.");
            print(&v)
        }
        ApiKeyCmd::List { tenant, target } => {
            let v = AdminClient::new(&target)?
                .get(&format!("{}/api-keys", tenant_path(&tenant)?))
                .await?;
            print(&v)
        }
        ApiKeyCmd::Revoke {
            tenant,
            key_id,
            target,
        } => {
            let path = format!("{}/api-keys/{key_id}", tenant_path(&tenant)?);
            print(
                &AdminClient::new(&target)?
                    .call(Method::DELETE, &path, None)
                    .await?,
            )
        }
    }
}

/// Parses `3600`, `90s`, `15m`, `2h` or `1d`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| anyhow!("{s:?} is not a duration: write 3600, 90s, 15m, 2h or 1d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => bail!("{s:?} is not a duration: write 3600, 90s, 15m, 2h or 1d"),
    };
    if secs == 0 || secs > 30 * 86400 {
        bail!("the lifetime must be between 1 second and 30 days");
    }
    Ok(Duration::from_secs(secs))
}

async fn token(cmd: TokenCmd) -> Result<()> {
    match cmd {
        TokenCmd::Issue {
            config,
            tenant,
            user,
            roles,
            ttl,
        } => {
            let config = load_config(config.as_deref())?;
            let dev = &config.identity.dev_issuer;
            if !dev.enabled {
                bail!(
                    "the development issuer is disabled in this config (identity.dev_issuer.enabled = false)"
                );
            }
            let issuer = config.load_dev_issuer()?;
            let ttl = match ttl {
                Some(t) => parse_duration(&t)?,
                None => Duration::from_secs(dev.default_ttl_seconds),
            };
            let tenant = TenantId::new(tenant)?;
            let user = UserId::new(user)?;
            // A token for a tenant that does not exist would only ever be refused.
            let store = tenantry_store::Store::connect(&config.database.url)
                .await
                .with_context(|| {
                    format!(
                        "cannot open the store at {} to check the tenant",
                        tenantry_server::redact_url(&config.database.url)
                    )
                })?;
            if store.get_tenant(&tenant).await?.is_none() {
                bail!(
                    "there is no tenant {tenant}; create it first: tenantry tenant create {tenant} --tier TIER"
                );
            }
            println!("{}", issuer.mint(&tenant, &user, &roles, ttl)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m").ok(), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("3600").ok(), Some(Duration::from_secs(3600)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("abc").is_err());
    }
}
