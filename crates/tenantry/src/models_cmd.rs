//! `tenantry models ...` (model routing per tier and tenant), `tenantry limits ...` (a tenant's
//! overrides of its tier's model limits) and `tenantry usage` (the ledger's report), all through
//! the control plane, so changes apply to the running server without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};
use tenantry_core::{Money, TenantId, TierName};

use crate::admin::print;
use crate::cli::Target;
use crate::client::AdminClient;

#[derive(Debug, Subcommand)]
pub enum ModelsCmd {
    /// Show providers, the model catalogue with prices, and each tier's routes and where they
    /// come from (the config file or the control plane).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Routes of a tier: which model `default` and each alias get, and fallbacks.
    #[command(subcommand)]
    Tier(TierRoutesCmd),
    /// A tenant's own routing: its private (e.g. fine-tuned) models and overrides of its tier's
    /// `default` and aliases.
    #[command(subcommand)]
    Tenant(TenantModelsCmd),
}

/// Changes to routes given as flags; each flag changes only what it names.
#[derive(Debug, Args, Default)]
pub struct RouteFlags {
    /// The model behind `default` (and behind requests that name no model).
    #[arg(long)]
    default: Option<String>,
    /// An alias, NAME=MODEL (e.g. fast=mock-small); NAME= removes it. Repeatable.
    #[arg(long = "alias", value_name = "NAME=MODEL")]
    aliases: Vec<String>,
    /// A fallback chain, MODEL=NEXT[,NEXT...] tried in order on upstream 429/5xx/timeouts;
    /// MODEL= removes it. Repeatable.
    #[arg(long = "fallback", value_name = "MODEL=NEXT,...")]
    fallbacks: Vec<String>,
    /// Replace all the routes with this file (.json or .toml) instead of changing them.
    #[arg(long, conflicts_with_all = ["default", "aliases", "fallbacks"])]
    file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TierRoutesCmd {
    /// Show a tier's effective routes.
    Show {
        /// Tier name (see `tenantry tier list`).
        tier: String,
        #[command(flatten)]
        target: Target,
    },
    /// Change a tier's routes, e.g. `tenantry models tier set standard --alias smart=claude`.
    /// Flags change only what they name; the result replaces the routes in the control plane.
    Set {
        /// Tier name (see `tenantry tier list`).
        tier: String,
        #[command(flatten)]
        routes: RouteFlags,
        /// Output tokens assumed when a request gives no max_tokens.
        #[arg(long)]
        default_max_tokens: Option<u32>,
        #[command(flatten)]
        target: Target,
    },
    /// Drop the routes set through the control plane: the config file's apply again.
    Reset {
        /// Tier name (see `tenantry tier list`).
        tier: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantModelsCmd {
    /// Show a tenant's own routing and the models its callers can use.
    Show {
        /// Tenant id.
        tenant: String,
        #[command(flatten)]
        target: Target,
    },
    /// Give a tenant its own models and overrides, e.g.
    /// `tenantry models tenant set acme --model acme-ft=openai:ft:gpt-4o-mini:acme::x1 --default acme-ft`.
    /// Flags change only what they name.
    Set {
        /// Tenant id.
        tenant: String,
        #[command(flatten)]
        routes: RouteFlags,
        /// A private model, NAME=PROVIDER[:UPSTREAM_MODEL] (the upstream id defaults to NAME);
        /// NAME= removes it. Repeatable.
        #[arg(long = "model", value_name = "NAME=PROVIDER[:UPSTREAM]")]
        models: Vec<String>,
        /// Prices of a private model in US dollars per million tokens, NAME=INPUT/OUTPUT
        /// (e.g. acme-ft=0.30/1.20). Repeatable.
        #[arg(long = "price", value_name = "NAME=IN/OUT")]
        prices: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Remove the tenant's own routing: it gets its tier's models again.
    Reset {
        /// Tenant id.
        tenant: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
pub enum LimitsCmd {
    /// Show a tenant's model limits: its overrides and the effective values (tier + overrides).
    Show {
        /// Tenant id.
        tenant: String,
        #[command(flatten)]
        target: Target,
    },
    /// Override the tenant's tier limits for model calls; flags change only what they name.
    Set {
        /// Tenant id.
        tenant: String,
        /// Model calls per minute for the whole tenant.
        #[arg(long)]
        model_requests_per_minute: Option<u32>,
        /// Model tokens (input + output) per minute for the whole tenant.
        #[arg(long)]
        tokens_per_minute: Option<u64>,
        /// US dollars per calendar month for the whole tenant, e.g. 250 or 12.50.
        #[arg(long)]
        budget_per_month: Option<String>,
        /// Model calls per minute for each user of the tenant.
        #[arg(long)]
        user_model_requests_per_minute: Option<u32>,
        /// Model tokens per minute for each user.
        #[arg(long)]
        user_tokens_per_minute: Option<u64>,
        /// US dollars per calendar month for each user.
        #[arg(long)]
        user_budget_per_month: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Remove the overrides: the tier's limits apply again.
    Reset {
        /// Tenant id.
        tenant: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Only this tenant [default: every tenant].
    #[arg(long)]
    tenant: Option<String>,
    /// Group by model, user, runtime, day, kind or tenant.
    #[arg(long, alias = "by", default_value = "model")]
    group_by: String,
    /// From this day (YYYY-MM-DD, UTC), time (2026-11-01T08:00:00Z) or unix seconds
    /// [default: the first day of this month].
    #[arg(long)]
    from: Option<String>,
    /// Until this day, included (YYYY-MM-DD), or this time, excluded [default: now].
    #[arg(long)]
    to: Option<String>,
    /// Print the report as JSON instead of a table.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print the report as CSV (one line per tenant and group, no totals).
    #[arg(long)]
    csv: bool,
    #[command(flatten)]
    target: Target,
}

fn read_file(file: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if file.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", file.display()))
    } else {
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", file.display()))
    }
}

fn split_pair<'a>(flag: &str, item: &'a str) -> Result<(&'a str, &'a str)> {
    item.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| anyhow!("--{flag} {item:?}: write NAME=VALUE"))
}

fn object<'a>(v: &'a mut Value, key: &str) -> Result<&'a mut Map<String, Value>> {
    let root = v
        .as_object_mut()
        .ok_or_else(|| anyhow!("the body is not a JSON object"))?;
    let slot = root.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut()
        .ok_or_else(|| anyhow!("`{key}` is not a JSON object"))
}

fn must_be_object(v: Value, what: &str) -> Result<Value> {
    if v.is_object() {
        Ok(v)
    } else {
        bail!("{what} must hold a JSON object")
    }
}

/// Applies the flags to `current` (a `TierRoutes` or `TenantModels` body).
fn apply_flags(mut current: Value, f: &RouteFlags) -> Result<Value> {
    if !current.is_object() {
        current = json!({});
    }
    if let Some(d) = &f.default {
        current["default"] = json!(d);
    }
    for a in &f.aliases {
        let (name, model) = split_pair("alias", a)?;
        let aliases = object(&mut current, "aliases")?;
        if model.is_empty() {
            aliases.remove(name);
        } else {
            aliases.insert(name.to_owned(), json!(model));
        }
    }
    for fb in &f.fallbacks {
        let (model, chain) = split_pair("fallback", fb)?;
        let fallback = object(&mut current, "fallback")?;
        if chain.is_empty() {
            fallback.remove(model);
        } else {
            let chain: Vec<&str> = chain.split(',').map(str::trim).collect();
            fallback.insert(model.to_owned(), json!(chain));
        }
    }
    Ok(current)
}

fn tier_path(tier: &str) -> Result<String> {
    Ok(format!("/v1/admin/models/tiers/{}", TierName::new(tier)?))
}

fn tenant_path(tenant: &str, what: &str) -> Result<String> {
    Ok(format!(
        "/v1/admin/tenants/{}/{what}",
        TenantId::new(tenant)?
    ))
}

pub async fn models(cmd: ModelsCmd) -> Result<()> {
    match cmd {
        ModelsCmd::List { target } => {
            print(&AdminClient::new(&target)?.get("/v1/admin/models").await?)
        }
        ModelsCmd::Tier(TierRoutesCmd::Show { tier, target }) => {
            print(&AdminClient::new(&target)?.get(&tier_path(&tier)?).await?)
        }
        ModelsCmd::Tier(TierRoutesCmd::Set {
            tier,
            routes,
            default_max_tokens,
            target,
        }) => {
            let path = tier_path(&tier)?;
            let client = AdminClient::new(&target)?;
            let mut body = match &routes.file {
                Some(file) => must_be_object(read_file(file)?, &file.display().to_string())?,
                None => {
                    let current = client.get(&path).await?["routes"].clone();
                    apply_flags(current, &routes)?
                }
            };
            if let Some(n) = default_max_tokens {
                body["default_max_tokens"] = json!(n);
            }
            print(&client.call(Method::PUT, &path, Some(&body)).await?)
        }
        ModelsCmd::Tier(TierRoutesCmd::Reset { tier, target }) => print(
            &AdminClient::new(&target)?
                .call(Method::DELETE, &tier_path(&tier)?, None)
                .await?,
        ),
        ModelsCmd::Tenant(TenantModelsCmd::Show { tenant, target }) => print(
            &AdminClient::new(&target)?
                .get(&tenant_path(&tenant, "models")?)
                .await?,
        ),
        ModelsCmd::Tenant(TenantModelsCmd::Set {
            tenant,
            routes,
            models,
            prices,
            target,
        }) => {
            let path = tenant_path(&tenant, "models")?;
            let client = AdminClient::new(&target)?;
            let mut body = match &routes.file {
                Some(file) => must_be_object(read_file(file)?, &file.display().to_string())?,
                None => {
                    let current = client.get(&path).await?["models"].clone();
                    apply_flags(current, &routes)?
                }
            };
            for m in &models {
                let (name, spec) = split_pair("model", m)?;
                let own = object(&mut body, "models")?;
                if spec.is_empty() {
                    own.remove(name);
                    continue;
                }
                let (provider, upstream) = spec.split_once(':').unwrap_or((spec, name));
                let mut entry = own
                    .get(name)
                    .filter(|e| e.is_object())
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                entry["provider"] = json!(provider);
                entry["upstream_model"] = json!(upstream);
                own.insert(name.to_owned(), entry);
            }
            for p in &prices {
                let (name, pair) = split_pair("price", p)?;
                let (input, output) = pair
                    .split_once('/')
                    .ok_or_else(|| anyhow!("--price {p:?}: write NAME=INPUT/OUTPUT"))?;
                let (input, output) = (
                    Money::parse(input).map_err(|e| anyhow!("--price {p:?}: {e}"))?,
                    Money::parse(output).map_err(|e| anyhow!("--price {p:?}: {e}"))?,
                );
                let entry = object(&mut body, "models")?
                    .get_mut(name)
                    .filter(|e| e.is_object())
                    .ok_or_else(|| {
                        anyhow!("--price {name}: no model {name}; add it with --model")
                    })?;
                entry["input_price_per_mtok"] = json!(input.to_string());
                entry["output_price_per_mtok"] = json!(output.to_string());
            }
            print(&client.call(Method::PUT, &path, Some(&body)).await?)
        }
        ModelsCmd::Tenant(TenantModelsCmd::Reset { tenant, target }) => print(
            &AdminClient::new(&target)?
                .call(Method::DELETE, &tenant_path(&tenant, "models")?, None)
                .await?,
        ),
    }
}

fn money_flag(flag: &str, v: Option<&String>) -> Result<Option<String>> {
    v.map(|raw| {
        Money::parse(raw)
            .map(|m| m.to_string())
            .map_err(|e| anyhow!("--{flag}: {e}"))
    })
    .transpose()
}

pub async fn limits(cmd: LimitsCmd) -> Result<()> {
    match cmd {
        LimitsCmd::Show { tenant, target } => print(
            &AdminClient::new(&target)?
                .get(&tenant_path(&tenant, "limits")?)
                .await?,
        ),
        LimitsCmd::Set {
            tenant,
            model_requests_per_minute,
            tokens_per_minute,
            budget_per_month,
            user_model_requests_per_minute,
            user_tokens_per_minute,
            user_budget_per_month,
            target,
        } => {
            let path = tenant_path(&tenant, "limits")?;
            let client = AdminClient::new(&target)?;
            let mut body = client.get(&path).await?["overrides"].clone();
            if !body.is_object() {
                body = json!({});
            }
            let mut set = |key: &str, v: Option<Value>| {
                if let Some(v) = v {
                    body[key] = v;
                }
            };
            set(
                "model_requests_per_minute",
                model_requests_per_minute.map(|v| json!(v)),
            );
            set("tokens_per_minute", tokens_per_minute.map(|v| json!(v)));
            set(
                "budget_per_month",
                money_flag("budget-per-month", budget_per_month.as_ref())?.map(|v| json!(v)),
            );
            let user = object(&mut body, "per_user")?;
            if let Some(v) = user_model_requests_per_minute {
                user.insert("model_requests_per_minute".into(), json!(v));
            }
            if let Some(v) = user_tokens_per_minute {
                user.insert("tokens_per_minute".into(), json!(v));
            }
            if let Some(v) = money_flag("user-budget-per-month", user_budget_per_month.as_ref())? {
                user.insert("budget_per_month".into(), json!(v));
            }
            print(&client.call(Method::PUT, &path, Some(&body)).await?)
        }
        LimitsCmd::Reset { tenant, target } => print(
            &AdminClient::new(&target)?
                .call(Method::DELETE, &tenant_path(&tenant, "limits")?, None)
                .await?,
        ),
    }
}

fn query_string(args: &UsageArgs) -> Result<String> {
    let mut q: BTreeMap<&str, String> = BTreeMap::new();
    if let Some(t) = &args.tenant {
        q.insert("tenant", TenantId::new(t)?.to_string());
    }
    q.insert("group_by", args.group_by.clone());
    if let Some(f) = &args.from {
        q.insert("from", f.clone());
    }
    if let Some(t) = &args.to {
        q.insert("to", t.clone());
    }
    let pairs: Vec<String> = q
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    Ok(format!("/v1/admin/usage?{}", pairs.join("&")))
}

/// Percent-encodes a query value (everything but unreserved characters).
pub(crate) fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// `(year, month, day, seconds into the day)` of a Unix time, UTC (the server's civil-date
/// arithmetic).
fn civil(unix: i64) -> (i64, i64, i64, i64) {
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, unix.rem_euclid(86_400))
}

fn day_of(unix: i64) -> String {
    match civil(unix) {
        (y, m, d, 0) => format!("{y:04}-{m:02}-{d:02}"),
        _ => utc_time(unix),
    }
}

/// `2026-12-03T14:05:09Z`.
pub(crate) fn utc_time(unix: i64) -> String {
    let (y, m, d, secs) = civil(unix);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The report as a table a person reads: one line per tenant and group, then the totals.
pub fn render_usage(report: &Value) -> String {
    let group = report["group_by"].as_str().unwrap_or("group");
    let mut out = format!(
        "Usage from {} to {} (UTC, end excluded), by {group}\n\n",
        day_of(int(&report["from"])),
        day_of(int(&report["to"]))
    );
    let header = format!(
        "{:<20} {:<28} {:>8} {:>14} {:>14} {:>10} {:>12} {:>14}",
        "TENANT",
        group.to_uppercase(),
        "CALLS",
        "INPUT TOKENS",
        "OUTPUT TOKENS",
        "CPU S",
        "MEMORY GB·S",
        "COST (USD)"
    );
    out.push_str(&header);
    out.push('\n');
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        out.push_str("(no usage in this window)\n");
    }
    let line = |tenant: &str, group: &str, r: &Value| {
        let c = usage_cells(r);
        format!(
            "{tenant:<20} {group:<28} {:>8} {:>14} {:>14} {:>10} {:>12} {:>14}\n",
            c[0], c[1], c[2], c[3], c[4], c[5]
        )
    };
    for r in &rows {
        let name = r["group"].as_str().unwrap_or("");
        let name = if name.is_empty() { "-" } else { name };
        out.push_str(&line(r["tenant_id"].as_str().unwrap_or(""), name, r));
    }
    out.push_str(&line("TOTAL", "", &report["totals"]));
    out
}

/// A row's figures as printed: calls, input and output tokens, CPU seconds, memory GB-seconds
/// (compute is metered in CPU milliseconds and MB-milliseconds), cost.
fn usage_cells(r: &Value) -> [String; 6] {
    [
        int(&r["calls"]).to_string(),
        int(&r["input_tokens"]).to_string(),
        int(&r["output_tokens"]).to_string(),
        format!("{:.1}", int(&r["cpu_ms"]) as f64 / 1000.0),
        format!("{:.1}", int(&r["memory_mb_ms"]) as f64 / 1024.0 / 1000.0),
        r["cost"].as_str().unwrap_or("0").to_string(),
    ]
}

/// The report as CSV: a header, one line per tenant and group, no totals.
pub fn usage_csv(report: &Value) -> String {
    let group = report["group_by"].as_str().unwrap_or("group");
    let mut out = format!(
        "tenant,{group},calls,input_tokens,output_tokens,cpu_seconds,memory_gb_seconds,cost_usd\n"
    );
    let quote = |v: &str| {
        if v.contains([',', '"', '\n']) {
            format!("\"{}\"", v.replace('"', "\"\""))
        } else {
            v.to_string()
        }
    };
    for r in report["rows"].as_array().into_iter().flatten() {
        let c = usage_cells(r);
        out.push_str(&format!(
            "{},{},{}\n",
            quote(r["tenant_id"].as_str().unwrap_or("")),
            quote(r["group"].as_str().unwrap_or("")),
            c.join(",")
        ));
    }
    out
}

pub async fn usage(args: UsageArgs) -> Result<()> {
    if !matches!(
        args.group_by.as_str(),
        "model" | "user" | "runtime" | "day" | "kind" | "tenant"
    ) {
        bail!("--group-by must be model, user, runtime, day, kind or tenant");
    }
    let report = AdminClient::new(&args.target)?
        .get(&query_string(&args)?)
        .await?;
    if args.json {
        print(&report)
    } else if args.csv {
        print!("{}", usage_csv(&report));
        Ok(())
    } else {
        print!("{}", render_usage(&report));
        Ok(())
    }
}
