//! `tenantry guardrail ...`: guardrail profiles through the control plane (upload from a TOML or
//! JSON file, list, show, activate, roll back), and the standalone check
//! (`POST /v1/guardrails/apply`) run as one of a tenant's users, so an operator can see what a
//! profile does to a text before tenants' traffic meets it.
//!
//! The check is a tenant's call, not the operator's: it runs with a tenant credential, read from
//! an environment variable, or a short-lived token of the development issuer; never from the
//! command line.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use tenantry_core::{TenantId, UserId};
use tenantry_store::GuardrailScope;

use crate::admin::print;
use crate::client::{AdminClient, load_config};
use crate::tools_cmd::Server;

/// Whose profile: exactly one of the flags.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Scope {
    /// A named profile (tiers name it in `guardrail_profile`).
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// One tenant's override (it may `inherit` its tier's checks).
    #[arg(long, value_name = "ID")]
    tenant: Option<String>,
}

/// An optional scope, for listings.
#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct MaybeScope {
    /// The versions of a named profile.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// The versions of a tenant's override.
    #[arg(long, value_name = "ID")]
    tenant: Option<String>,
}

fn scope_path(profile: Option<&str>, tenant: Option<&str>) -> Result<Option<String>> {
    let raw = match (profile, tenant) {
        (Some(p), None) => format!("profile:{p}"),
        (None, Some(t)) => format!("tenant:{}", TenantId::new(t)?),
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => bail!("give only one of --profile and --tenant"),
    };
    let scope = GuardrailScope::parse(&raw).ok_or_else(|| {
        anyhow!(
            "--profile {:?}: a profile name is lower-case letters, digits, '-' and '_'",
            profile.unwrap_or_default()
        )
    })?;
    Ok(Some(scope.to_string()))
}

impl Scope {
    /// `profile:NAME` or `tenant:ID`, checked.
    fn path(&self) -> Result<String> {
        scope_path(self.profile.as_deref(), self.tenant.as_deref())?
            .ok_or_else(|| anyhow!("give --profile or --tenant"))
    }
}

#[derive(Debug, Subcommand)]
#[command(after_long_help = "Examples:\n  \
    tenantry guardrail set --profile strict --file strict.toml\n  \
    tenantry guardrail list                        # active versions, decisions per tenant\n  \
    tenantry guardrail list --profile strict       # every version, newest first\n  \
    tenantry guardrail show --profile strict --version 1\n  \
    tenantry guardrail rollback --profile strict   # the version before the active one\n  \
    tenantry guardrail apply --tenant acme --source output \"mail jo@example.com\"\n  \
    cat reply.txt | tenantry guardrail apply --tenant acme --source output")]
pub enum GuardrailCmd {
    /// Upload a profile for a named profile or a tenant's override, from a TOML (.toml) or JSON
    /// file: it is validated (a refusal names the field, e.g. checks[0].action), stored as the
    /// scope's next version and applied at once.
    #[command(after_long_help = "A profile (TOML):\n  \
        description = \"Mask personal data, block prompt attacks\"\n  \
        [[checks]]\n  \
        kind = \"sensitive_info\"          # also denied_topics, word_filter, prompt_attack,\n  \
        action = \"mask\"                  #   cross_tenant_leak, model_judge, webhook\n  \
        on = [\"model_output\", \"tool_result\"]   # default: every stage\n  \
        [[checks]]\n  \
        kind = \"prompt_attack\"\n  \
        action = \"block\"\n  \
        threshold = 0.5\n\n\
        A tenant's override may add `inherit = true` (its tier's checks run first) and\n\
        `protected_identifiers = [...]` (other tenants' cross_tenant_leak checks look for them).\n\
        See docs/API.md, \"Guardrails\", for every kind and its fields.")]
    Set {
        #[command(flatten)]
        scope: Scope,
        /// The profile: TOML when the file name ends in .toml, JSON otherwise.
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        server: Server,
    },
    /// Without a scope: the active version of every scope, and the decisions counted per
    /// tenant, category, action and stage. With one: every version of that scope, newest
    /// first, with its profile.
    List {
        #[command(flatten)]
        scope: MaybeScope,
        #[command(flatten)]
        server: Server,
    },
    /// Print one version's profile (JSON): the active one, or --version.
    Show {
        #[command(flatten)]
        scope: Scope,
        /// The version to show [default: the active one].
        #[arg(long)]
        version: Option<i64>,
        #[command(flatten)]
        server: Server,
    },
    /// Make a version of a scope the active one.
    Activate {
        #[command(flatten)]
        scope: Scope,
        /// The version to activate.
        #[arg(long)]
        version: i64,
        #[command(flatten)]
        server: Server,
    },
    /// Make the version before the active one active again (or --version).
    Rollback {
        #[command(flatten)]
        scope: Scope,
        /// The version to activate [default: the newest one older than the active version].
        #[arg(long)]
        version: Option<i64>,
        #[command(flatten)]
        server: Server,
    },
    /// Check a text as one of a tenant's users would (POST /v1/guardrails/apply): prints the
    /// decision (pass, masked, blocked), the categories found and the masked text. The text is
    /// the argument, or standard input when there is none (or it is `-`). Exits 0 when the text
    /// passes or is masked, 2 when it is blocked, 1 on an error.
    Apply(ApplyArgs),
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The text to check [default: standard input].
    text: Option<String>,
    /// The tenant whose profile applies.
    #[arg(long)]
    tenant: String,
    /// Where the text would be: model input, model output, a tool call's arguments, a tool's
    /// result.
    #[arg(long, default_value = "input",
          value_parser = ["input", "output", "tool_input", "tool_result"])]
    source: String,
    /// Check with this named profile instead of the tenant's own; only the tenant's tier's
    /// profile may be named.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// The user the development issuer's token names.
    #[arg(long, default_value = "operator")]
    user: String,
    /// Call with the tenant API key or JWT in this environment variable instead of a token of
    /// the development issuer (from --config).
    #[arg(long, value_name = "VAR")]
    key_env: Option<String>,
    #[command(flatten)]
    server: Server,
}

/// The profile in `file` as the JSON the API takes.
fn read_profile(file: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if file.extension().is_some_and(|e| e == "toml") {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| anyhow!("{} is not TOML: {}", file.display(), e))?;
        return serde_json::to_value(table).context("converting the TOML profile to JSON");
    }
    serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{}:{}:{}: not JSON: {e} (name a TOML profile FILE.toml)",
            file.display(),
            e.line(),
            e.column()
        )
    })
}

/// An API error as `code (status): message`.
fn api_error(status: u16, answer: &Value) -> anyhow::Error {
    match (
        answer.pointer("/error/code").and_then(Value::as_str),
        answer.pointer("/error/message").and_then(Value::as_str),
    ) {
        (Some(code), Some(message)) => anyhow!("{code} ({status}): {message}"),
        (Some(_) | None, _) => anyhow!("the server answered {status}: {answer}"),
    }
}

pub async fn guardrail(cmd: GuardrailCmd) -> Result<()> {
    match cmd {
        GuardrailCmd::Set {
            scope,
            file,
            server,
        } => {
            let path = scope.path()?;
            let body = read_profile(&file)?;
            let (status, answer) = server
                .client()?
                .send(
                    Method::PUT,
                    &format!("/v1/admin/guardrails/{path}"),
                    Some(&body),
                )
                .await?;
            if (200..300).contains(&status) {
                return print(&answer);
            }
            // The server's message names the field (checks[0].action): say which file it is in.
            Err(api_error(status, &answer)).with_context(|| format!("{} refused", file.display()))
        }
        GuardrailCmd::List { scope, server } => {
            let client = server.client()?;
            match scope_path(scope.profile.as_deref(), scope.tenant.as_deref())? {
                Some(p) => print(&client.get(&format!("/v1/admin/guardrails/{p}")).await?),
                None => print(&client.get("/v1/admin/guardrails").await?),
            }
        }
        GuardrailCmd::Show {
            scope,
            version,
            server,
        } => {
            let path = scope.path()?;
            let answer = server
                .client()?
                .get(&format!("/v1/admin/guardrails/{path}"))
                .await?;
            let versions = answer["versions"].as_array().cloned().unwrap_or_default();
            let found = versions.iter().find(|v| match version {
                Some(n) => v["version"].as_i64() == Some(n),
                None => v["active"] == json!(true),
            });
            match (found, version) {
                (Some(v), _) => print(v),
                (None, Some(n)) => bail!(
                    "{path} has no version {n}; `tenantry guardrail list --{}` lists them",
                    path.replacen(':', " ", 1)
                ),
                (None, None) => bail!("{path} has no active version"),
            }
        }
        GuardrailCmd::Activate {
            scope,
            version,
            server,
        } => {
            let path = scope.path()?;
            print(
                &server
                    .client()?
                    .call(
                        Method::POST,
                        &format!("/v1/admin/guardrails/{path}/activate"),
                        Some(&json!({"version": version})),
                    )
                    .await?,
            )
        }
        GuardrailCmd::Rollback {
            scope,
            version,
            server,
        } => {
            let path = scope.path()?;
            let answer = server
                .client()?
                .roll_back(&format!("/v1/admin/guardrails/{path}"), version)
                .await?;
            print(&answer)
        }
        GuardrailCmd::Apply(args) => apply(args).await,
    }
}

/// The server's URL and a credential of the tenant: the key from `--key-env`, or a token
/// minted by the development issuer of `--config`.
fn tenant_client(args: &ApplyArgs, tenant: &TenantId) -> Result<AdminClient> {
    let needs_config = args.key_env.is_none() || args.server.server.is_none();
    let config = if needs_config {
        Some(load_config(args.server.config.as_deref()).context(
            "the check runs as a tenant user: pass --config DIR/tenantry.toml (its development \
             issuer signs the token), or --server URL and --key-env VAR with a tenant API key \
             or JWT",
        )?)
    } else {
        None
    };
    let url = match (&args.server.server, &config) {
        (Some(url), _) => url.clone(),
        (None, Some(c)) => c.public_url(),
        (None, None) => bail!("give --server URL or --config"),
    };
    let key = match (&args.key_env, &config) {
        (Some(var), _) => {
            let key = std::env::var(var)
                .map_err(|_| anyhow!("the environment variable {var} is not set"))?;
            let key = key.trim().to_owned();
            if key.is_empty() {
                bail!("the environment variable {var} is empty");
            }
            key
        }
        (None, Some(config)) => {
            if !config.identity.dev_issuer.enabled {
                bail!(
                    "the development issuer is disabled; pass --key-env VAR with a tenant API \
                     key or a token from your identity provider"
                );
            }
            config.load_dev_issuer()?.mint(
                tenant,
                &UserId::new(&args.user)?,
                &[],
                Duration::from_secs(300),
            )?
        }
        (None, None) => bail!("give --key-env VAR or --config"),
    };
    AdminClient::with_key(&url, key)
}

/// The exit status of `guardrail apply` when the text is blocked.
const BLOCKED_EXIT: i32 = 2;

async fn apply(args: ApplyArgs) -> Result<()> {
    let tenant = TenantId::new(&args.tenant)?;
    let text = match args.text.as_deref() {
        Some(t) if t != "-" => t.to_owned(),
        Some(_) | None => {
            let mut t = String::new();
            std::io::stdin()
                .read_to_string(&mut t)
                .context("cannot read the text from standard input")?;
            t
        }
    };
    let mut body = json!({"text": text, "source": args.source});
    if let Some(p) = &args.profile {
        body["profile"] = json!(p);
    }
    let (status, answer) = tenant_client(&args, &tenant)?
        .send(Method::POST, "/v1/guardrails/apply", Some(&body))
        .await?;
    if !(200..300).contains(&status) {
        return Err(api_error(status, &answer));
    }
    print(&answer)?;
    if answer["decision"] == "blocked" {
        // A block is this command's failure, distinct from an error (1), so a script can
        // branch on it; the decision above is its explanation.
        std::io::Write::flush(&mut std::io::stdout())?;
        std::process::exit(BLOCKED_EXIT);
    }
    Ok(())
}
