//! `tenantry demo`: the platform end to end on one machine, in about a second.
//!
//! It creates a fresh state directory, starts the server on embedded defaults, onboards three
//! tenants (one per isolation model), deploys the example agent (shared, and dedicated to the
//! silo tenant), runs sessions for each tenant, tries to cross tenant boundaries, and prints
//! what held and what each tenant used.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::{Value, json};
use tenantry_core::{TenantId, UserId};
use tenantry_store::{UsageGroup, UsageQuery};

use crate::client::install_crypto;

/// The example agent, shipped inside the binary so the demo runs from anywhere.
const AGENT_PY: &str = include_str!("../../../examples/agents/python/agent.py");

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory to create the demo in: its state directory (`state/`) and the example agent
    /// (`agents/echo/`) [default: a new temporary directory, kept afterwards].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep serving after the demo, until Ctrl-C.
    #[arg(long)]
    pub serve: bool,
}

struct Demo {
    url: String,
    admin: String,
    http: reqwest::Client,
    issuer: tenantry_identity::DevIssuer,
    checks: Vec<(String, bool)>,
}

impl Demo {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value, Option<String>)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(bearer);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling {path}"))?;
        let status = resp.status().as_u16();
        let session = resp
            .headers()
            .get("x-tenantry-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            session,
        ))
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value> {
        let (status, v, _) = self
            .call(method, path, &self.admin.clone(), Some(body), &[])
            .await?;
        if !(200..300).contains(&status) {
            bail!("{path} answered {status}: {v}");
        }
        Ok(v)
    }

    fn token(&self, tenant: &str, user: &str) -> Result<String> {
        Ok(self.issuer.mint(
            &TenantId::new(tenant)?,
            &UserId::new(user)?,
            &[],
            Duration::from_secs(3600),
        )?)
    }

    async fn invoke(
        &self,
        runtime: &str,
        token: &str,
        session: &str,
        body: Value,
        extra: &[(&str, &str)],
    ) -> Result<(u16, Value)> {
        let mut headers = vec![("X-Tenantry-Session-Id", session)];
        headers.extend_from_slice(extra);
        let (status, v, _) = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/runtimes/{runtime}/invocations"),
                token,
                Some(body),
                &headers,
            )
            .await?;
        Ok((status, v))
    }

    fn check(&mut self, what: impl Into<String>, ok: bool) {
        let what = what.into();
        println!("  [{}] {what}", if ok { "ok" } else { "FAILED" });
        self.checks.push((what, ok));
    }
}

fn session_for(tenant: &str, user: &str) -> String {
    format!("demo-{tenant}-{user}-{}", uuid_suffix())
}

fn uuid_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:024x}")
}

pub async fn run(args: DemoArgs) -> Result<()> {
    install_crypto();
    let probe = tenantry_runtime::probe();
    if !probe.sandbox_supported() {
        bail!(
            "this host cannot run agent sandboxes: {}. The demo needs user namespaces and cgroups.",
            probe.missing().join("; ")
        );
    }
    let root = match args.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("tenantry-demo-{}", std::process::id())),
    };
    // The state directory and the agent beside it: an agent's directory is visible in its
    // sandboxes, so it never holds (or lies in) the state directory.
    let dir = root.join("state");
    println!("Tenantry demo");
    println!(
        "1. State directory {} (config, operator key, signing keys, SQLite)",
        dir.display()
    );
    // The config names the default address, for `tenantry serve` afterwards; the demo's own
    // server takes any free port.
    tenantry_server::statedir::init(&dir, "127.0.0.1:8700", false)?;
    let agent_dir = root.join("agents/echo");
    std::fs::create_dir_all(&agent_dir)?;
    std::fs::write(agent_dir.join("agent.py"), AGENT_PY)?;
    let agent_dir = std::fs::canonicalize(&agent_dir)?;

    let config = tenantry_server::Config::load(&dir.join("tenantry.toml"), &|_| None)
        .map_err(|e| anyhow!("{e}"))?;
    let admin = config.admin_key().map_err(|e| anyhow!("{e}"))?;
    let issuer = config.load_dev_issuer()?;
    let server = tenantry_server::Server::start(config, Some(([127, 0, 0, 1], 0).into())).await?;
    let mut demo = Demo {
        url: server.url(),
        admin,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
        issuer,
        checks: Vec::new(),
    };
    println!(
        "2. Server listening on {} (store: SQLite, limits: in-process)",
        demo.url
    );

    println!("3. Tenants on the starter tiers, one per isolation model:");
    let tenants = [
        (
            "acme",
            "basic",
            json!({"preset": "pool"}),
            "pool: shares everything, row-level separation",
        ),
        (
            "globex",
            "premium",
            json!({"preset": "silo"}),
            "silo: dedicated runtime and capacity",
        ),
        (
            "initech",
            "standard",
            json!({"preset": "bridge", "overrides": {"memory": "silo", "knowledge": "silo"}}),
            "bridge: pooled runtime, siloed memory and knowledge",
        ),
    ];
    for (id, tier, isolation, what) in &tenants {
        demo.admin(
            reqwest::Method::POST,
            "/v1/admin/tenants",
            json!({"id": id, "name": id, "tier": tier, "isolation": isolation}),
        )
        .await?;
        println!("   {id:<8} tier {tier:<9} {what}");
    }

    println!("4. The example agent (Python, standard library only) deployed twice:");
    demo.admin(
        reqwest::Method::POST,
        "/v1/admin/runtimes",
        json!({"name": "echo", "command": ["python3", "agent.py"], "workdir": agent_dir, "allowed_headers": ["X-Tenantry-Custom-Plan"]}),
    )
    .await?;
    demo.admin(
        reqwest::Method::POST,
        "/v1/admin/runtimes",
        json!({"name": "echo-globex", "command": ["python3", "agent.py"], "workdir": agent_dir, "tenancy": {"dedicated": "globex"}}),
    )
    .await?;
    println!("   echo         shared by all tenants (pool)");
    println!("   echo-globex  dedicated to globex (silo)");

    println!(
        "5. Sessions (one sandbox each: own namespaces, cgroup, read-only host, private storage):"
    );
    let mut sessions = Vec::new();
    for (tenant, _, _, _) in &tenants {
        let runtime = if *tenant == "globex" {
            "echo-globex"
        } else {
            "echo"
        };
        let token = demo.token(tenant, "alice")?;
        let session = session_for(tenant, "alice");
        let started = Instant::now();
        let (status, first) = demo
            .invoke(
                runtime,
                &token,
                &session,
                json!({"prompt": format!("hello from {tenant}"), "call_platform": true}),
                &[],
            )
            .await?;
        let cold = started.elapsed();
        if status != 200 {
            bail!("invoking {runtime} for {tenant} answered {status}: {first}");
        }
        let started = Instant::now();
        let (_, second) = demo
            .invoke(runtime, &token, &session, json!({"prompt": "again"}), &[])
            .await?;
        let warm = started.elapsed();
        println!(
            "   {tenant:<8} session started in {:>4} ms, next call {:>3} ms; agent saw tenant={} tier={}",
            cold.as_millis(),
            warm.as_millis(),
            first["context"]["X-Tenantry-Tenant-Id"]
                .as_str()
                .unwrap_or("?"),
            first["context"]["X-Tenantry-Tier"].as_str().unwrap_or("?"),
        );
        let platform_tenant = first["platform"]["body"]["tenant"]["tenant_id"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        demo.check(
            format!("{tenant}: the agent's call back to the platform was attributed to {tenant}"),
            platform_tenant == *tenant,
        );
        demo.check(
            format!("{tenant}: session storage counts 2 invocations"),
            second["invocations_in_session"] == 2,
        );
        sessions.push((tenant.to_string(), runtime, token, session));
    }

    println!("6. Trying to cross tenant boundaries:");
    let (_, acme_runtime, acme_token, acme_session) = sessions[0].clone();
    let globex_token = sessions[1].2.clone();
    let (status, _, _) = demo
        .call(
            reqwest::Method::GET,
            &format!("/v1/sessions/{acme_session}"),
            &globex_token,
            None,
            &[],
        )
        .await?;
    demo.check("globex reading acme's session: 404", status == 404);
    let (status, v) = demo
        .invoke(acme_runtime, &globex_token, &acme_session, json!({}), &[])
        .await?;
    demo.check(
        "globex using acme's session id gets a fresh session of its own, not acme's storage",
        status == 200
            && v["invocations_in_session"] == 1
            && v["context"]["X-Tenantry-Tenant-Id"] == "globex",
    );
    let (status, _) = demo
        .invoke(
            "echo-globex",
            &acme_token,
            &session_for("acme", "alice"),
            json!({}),
            &[],
        )
        .await?;
    demo.check(
        "acme invoking globex's dedicated runtime: 404",
        status == 404,
    );
    let bob = demo.token("acme", "bob")?;
    let (status, _) = demo
        .invoke(acme_runtime, &bob, &acme_session, json!({}), &[])
        .await?;
    demo.check(
        "another acme user invoking alice's session: 404",
        status == 404,
    );
    let (status, v) = demo
        .invoke(
            acme_runtime,
            &acme_token,
            &acme_session,
            json!({}),
            &[
                ("X-Tenantry-Tenant-Id", "globex"),
                ("X-Tenantry-Tier", "premium"),
            ],
        )
        .await?;
    demo.check(
        "client-sent X-Tenantry-Tenant-Id/Tier headers are ignored",
        status == 200
            && v["context"]["X-Tenantry-Tenant-Id"] == "acme"
            && v["context"]["X-Tenantry-Tier"] == "basic",
    );

    println!("7. Stop and resume: storage persists across sandboxes:");
    for (tenant, runtime, token, session) in &sessions {
        demo.call(
            reqwest::Method::DELETE,
            &format!("/v1/sessions/{session}"),
            token,
            None,
            &[],
        )
        .await?;
        let (status, v) = demo.invoke(runtime, token, session, json!({}), &[]).await?;
        let count = v["invocations_in_session"].as_u64().unwrap_or(0);
        demo.check(
            format!("{tenant}: resumed in a new sandbox, counter went on to {count}"),
            status == 200 && count >= 3,
        );
        demo.call(
            reqwest::Method::DELETE,
            &format!("/v1/sessions/{session}"),
            token,
            None,
            &[],
        )
        .await?;
    }

    println!(
        "8. Usage per tenant, from the ledger (sandbox compute, metered from each session's cgroup):"
    );
    let rows = server
        .state
        .store
        .usage_report(
            server
                .state
                .admin
                .verify(&demo.admin)
                .ok_or_else(|| anyhow!("the demo's admin key does not open its own server"))?,
            &UsageQuery {
                tenant: None,
                from: 0,
                to: i64::MAX,
                group_by: UsageGroup::Kind,
            },
        )
        .await?;
    println!(
        "   {:<8} {:<8} {:>10} {:>14}",
        "tenant", "kind", "cpu ms", "memory MB·s"
    );
    for r in &rows {
        println!(
            "   {:<8} {:<8} {:>10} {:>14.1}",
            r.tenant_id.as_str(),
            r.group,
            r.cpu_ms,
            r.memory_mb_ms as f64 / 1000.0
        );
    }
    demo.check(
        "every tenant's compute is in the ledger",
        tenants.iter().all(|(t, ..)| {
            rows.iter()
                .any(|r| r.tenant_id.as_str() == *t && r.cpu_ms > 0)
        }),
    );

    let failed = demo.checks.iter().filter(|(_, ok)| !ok).count();
    println!();
    println!("{} checks, {} failed.", demo.checks.len(), failed);
    if args.serve {
        println!(
            "Serving on {} until Ctrl-C (operator key: {}).",
            demo.url,
            dir.join("admin.key").display()
        );
        tokio::signal::ctrl_c().await?;
    } else {
        let config = dir.join("tenantry.toml");
        println!(
            "Explore: tenantry serve --config {} (on 127.0.0.1:8700), then e.g. \
             tenantry tenant list --config {}",
            config.display(),
            config.display()
        );
    }
    server.shutdown().await;
    if failed > 0 {
        bail!("{failed} demo checks failed");
    }
    Ok(())
}
