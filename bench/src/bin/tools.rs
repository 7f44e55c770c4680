//! Tool gateway benchmark: MCP `tools/call` through Tenantry's `/mcp` (authentication, ingress
//! rate check, MCP session, Cedar policy with an input condition, the tenant's credential from
//! the vault injected, the tool-call rate check, the ledger entry) against the same call made
//! directly to the upstream MCP server, interleaved in one run at a fixed rate each. Prints
//! percentiles and the latency Tenantry adds.
//!
//! Three runtimes in this process: the server's (multi-threaded, access log on into a sink),
//! the upstream mock's (one thread) and the load generator's (one thread).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tenantry_bench::{HEADER, Report, row};
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
#[command(
    about = "tools/call through Tenantry's /mcp against the same call made directly to the upstream"
)]
struct Args {
    /// Calls per second on each path (direct and through Tenantry, interleaved).
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Seconds of measurement (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Worker threads of the server's runtime.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    /// Authenticate with a tenant API key instead of a development-issuer JWT.
    #[arg(long)]
    api_key: bool,
}

type PostClient = Client<HttpConnector, Full<Bytes>>;

/// One MCP endpoint with an open session.
#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    bearer: String,
    session: String,
}

fn post_client() -> PostClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector)
}

async fn post(
    http: &PostClient,
    url: &str,
    bearer: &str,
    session: Option<&str>,
    body: &Value,
) -> Result<(u16, Option<String>, Value)> {
    let mut req = http::Request::post(url)
        .header("authorization", format!("Bearer {bearer}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let resp = http
        .request(req.body(Full::new(Bytes::from(body.to_string())))?)
        .await
        .context("request")?;
    let status = resp.status().as_u16();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = resp.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, sid, value))
}

/// `initialize` and `notifications/initialized` at `url`.
async fn open(http: &PostClient, url: &str, bearer: &str) -> Result<Endpoint> {
    let (status, sid, body) = post(
        http,
        url,
        bearer,
        None,
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "tenantry-bench", "version": "1"}}}),
    )
    .await?;
    let Some(session) = sid else {
        bail!("initialize at {url} answered {status}: {body}");
    };
    post(
        http,
        url,
        bearer,
        Some(&session),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await?;
    Ok(Endpoint {
        url: url.to_owned(),
        bearer: bearer.to_owned(),
        session,
    })
}

/// One `tools/call`; an error unless it is a result without `isError`.
async fn call(http: &PostClient, e: &Endpoint, tool: &str) -> Result<(), String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": tool, "arguments": {"message": "hello"}}});
    match post(http, &e.url, &e.bearer, Some(&e.session), &body).await {
        Ok((200, _, v)) if v.get("result").is_some() && v["result"]["isError"] != json!(true) => {
            Ok(())
        }
        Ok((status, _, v)) => Err(format!("{status}: {v}")),
        Err(err) => Err(err.to_string()),
    }
}

/// Sends `rate` calls per second to each of `paths` for `duration`, interleaved (path 0, path
/// 1, path 0, ... each at its due time, open loop), and waits for all.
async fn interleaved(
    http: &PostClient,
    paths: &[(Endpoint, &'static str)],
    rate: u32,
    duration: Duration,
) -> Vec<Report> {
    let n = paths.len().max(1);
    let reports: Arc<Vec<Mutex<Report>>> =
        Arc::new((0..n).map(|_| Mutex::new(Report::default())).collect());
    let interval = Duration::from_secs_f64(1.0 / (f64::from(rate.max(1)) * n as f64));
    let total = (duration.as_secs_f64() * f64::from(rate) * n as f64).round() as u64;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let which = (i as usize) % n;
        let (endpoint, tool) = paths[which].clone();
        let (http, reports, first_error) = (http.clone(), reports.clone(), first_error.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let result = call(&http, &endpoint, tool).await;
            let latency = sent.elapsed().as_micros() as u64;
            let lag = sent.saturating_duration_since(due).as_micros() as u64;
            let mut r = reports[which].lock().await;
            r.sent += 1;
            r.lag_us.push(lag);
            match result {
                Ok(()) => r.latencies_us.push(latency),
                Err(e) => {
                    r.errors += 1;
                    first_error.lock().await.get_or_insert(e);
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    if let Some(e) = first_error.lock().await.as_ref() {
        eprintln!("first error: {e}");
    }
    let elapsed = start.elapsed();
    let mut out = Vec::new();
    for r in reports.iter() {
        let mut r = r.lock().await.clone();
        r.elapsed = elapsed;
        out.push(r);
    }
    out
}

async fn admin(
    http: &PostClient,
    base: &str,
    key: &str,
    method: &str,
    path: &str,
    body: Value,
) -> Result<Value> {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let resp = http.request(req).await.context("control plane call")?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{method} {path} answered {status}: {value}");
    }
    Ok(value)
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Logging at info, as in production (the access log and the audit log of every decision),
    // into a sink so the terminal stays readable.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .try_init();

    // The upstream MCP server, on a runtime and thread of its own.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("upstream runtime");
        rt.block_on(async {
            let upstream = tenantry_tools::testing::MockMcpServer::start().await;
            let _ = tx.send(upstream.url());
            std::future::pending::<()>().await;
        });
    });
    let upstream_url = rx.recv().context("the upstream mock did not start")?;

    let dir = tempfile::tempdir()?;
    tenantry_server::statedir::init(dir.path(), "127.0.0.1:0", false)?;
    let config_path = dir.path().join(tenantry_server::statedir::CONFIG_FILE);
    let config = tenantry_server::Config::load(&config_path, &|_| None)?;
    let tenantry_bench::InProcessServer {
        runtime: server_rt,
        server,
        admin_key,
        issuer,
    } = tenantry_bench::InProcessServer::start(config, args.server_threads)?;
    let base = server.url();

    let load_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    load_rt.block_on(async {
        let http = post_client();
        let secret = "bench-upstream-key";
        // A tier whose limits are checked on every call but never reached, a tenant, the
        // target with a bearer credential, the tenant's credential in the vault, and a tenant
        // policy with an input condition (evaluated on every call, never refusing here).
        admin(&http, &base, &admin_key, "PUT", "/v1/admin/tiers/bench",
              json!({"limits": {"requests_per_second": 1_000_000, "burst": 1_000_000}})).await?;
        admin(&http, &base, &admin_key, "POST", "/v1/admin/tenants",
              json!({"id": "bench", "tier": "bench"})).await?;
        admin(&http, &base, &admin_key, "POST", "/v1/admin/tool-targets",
              json!({"name": "kit", "kind": {"type": "mcp", "url": upstream_url},
                     "credential": {"placement": "bearer"}, "timeout_ms": 10000})).await?;
        admin(&http, &base, &admin_key, "PUT", "/v1/admin/tenants/bench/credentials/kit",
              json!({"kind": "api_key", "value": secret})).await?;
        admin(&http, &base, &admin_key, "POST", "/v1/admin/policies",
              json!({"tenant": "bench", "mode": "enforce", "text":
                     "@id(\"no-forbidden-messages\")\nforbid (principal, action == Tenantry::Action::\"kit___echo\", resource)\nwhen { context.input has message && context.input.message == \"forbidden\" };\n"})).await?;
        let bearer = if args.api_key {
            let created = admin(&http, &base, &admin_key, "POST",
                                "/v1/admin/tenants/bench/api-keys", json!({})).await?;
            created["key"].as_str().unwrap_or_default().to_owned()
        } else {
            issuer.mint(
                &tenantry_core::TenantId::new("bench")?,
                &tenantry_core::UserId::new("load")?,
                &[],
                Duration::from_secs(3600),
            )?
        };
        let direct = open(&http, &upstream_url, secret).await?;
        let gateway = open(&http, &format!("{base}/mcp"), &bearer).await?;
        call(&http, &gateway, "kit___echo").await.map_err(anyhow::Error::msg)?;
        let paths = [(direct, "echo"), (gateway, "kit___echo")];

        println!(
            "rate {} calls/s on each path (interleaved), {} s, server threads {}, auth {}",
            args.rate,
            args.seconds,
            args.server_threads,
            if args.api_key { "API key" } else { "JWT (EdDSA)" }
        );
        interleaved(&http, &paths, args.rate, Duration::from_secs(2)).await;
        let r = interleaved(&http, &paths, args.rate, Duration::from_secs(args.seconds)).await;
        let (direct, through) = (&r[0], &r[1]);
        println!("{HEADER}");
        println!("{}", row("tools/call direct to the upstream (baseline)", direct));
        println!("{}", row("tools/call through Tenantry /mcp", through));
        let added = |p: f64| (through.percentile(p) as f64 - direct.percentile(p) as f64) / 1000.0;
        println!(
            "added by Tenantry: p50 {:.3} ms, p99 {:.3} ms",
            added(50.0),
            added(99.0)
        );
        if !(direct.kept_schedule() && through.kept_schedule()) {
            println!("warning: the load generator fell behind its schedule (lag p99 > 2 ms); the machine is too busy for this rate");
        }
        let met = added(99.0) < 2.0 && through.errors == 0 && direct.errors == 0;
        println!(
            "target (added p99 < 2 ms at {} calls/s, no errors): {}",
            args.rate,
            if met { "met" } else { "NOT met" }
        );
        Ok::<_, anyhow::Error>(())
    })?;
    server_rt.block_on(server.shutdown());
    Ok(())
}
