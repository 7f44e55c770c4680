//! Ingress benchmark: an authenticated `GET /v1/me` (JWT signature check, registry lookup,
//! tenant context), and the same with a tenant API key, against `GET /healthz` (same
//! middleware, no authentication) in the same run, at a fixed request rate from a loopback
//! client. Prints percentiles and the ratios.
//!
//! The server runs in this process on its own multi-threaded runtime with the access log on
//! (written to a sink), the load generator on a separate single-threaded runtime.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;
use tenantry_bench::{HEADER, Target, client, fixed_rate, row};

#[derive(Debug, Parser)]
#[command(about = "Authenticated ingress latency against /healthz, at a fixed request rate")]
struct Args {
    /// Requests per second for each phase.
    #[arg(long, default_value_t = 2000)]
    rate: u32,
    /// Seconds of measurement per phase (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Worker threads of the server's runtime.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Access logging at info, as in production, but into a sink so the terminal stays readable.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .try_init();

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
        let http = client(256);
        // Onboard a tenant through the control plane, as an operator would, on a tier whose
        // rate limit is checked on every request but never reached.
        let tier = json!({"limits": {"requests_per_second": 1_000_000, "burst": 1_000_000}});
        let (status, _) =
            admin_send(&base, &admin_key, "PUT", "/v1/admin/tiers/bench", tier).await?;
        anyhow::ensure!(status == 201, "creating the tier answered {status}");
        let tenant = json!({"id": "bench", "tier": "bench"});
        let (status, _) =
            admin_send(&base, &admin_key, "POST", "/v1/admin/tenants", tenant).await?;
        anyhow::ensure!(status == 201, "creating the tenant answered {status}");
        let path = "/v1/admin/tenants/bench/api-keys";
        let (status, created) =
            admin_send(&base, &admin_key, "POST", path, json!({"user": "load"})).await?;
        anyhow::ensure!(status == 201, "creating an API key answered {status}");
        let api_key = created["key"]
            .as_str()
            .context("the created API key has no `key`")?
            .to_string();
        let token = issuer.mint(
            &tenantry_core::TenantId::new("bench")?,
            &tenantry_core::UserId::new("load")?,
            &[],
            Duration::from_secs(3600),
        )?;
        let health = Target {
            url: format!("{base}/healthz"),
            bearer: None,
        };
        let me = Target {
            url: format!("{base}/v1/me"),
            bearer: Some(token),
        };
        let me_key = Target {
            url: format!("{base}/v1/me"),
            bearer: Some(api_key),
        };
        let measure = Duration::from_secs(args.seconds);
        let warm = Duration::from_secs(2);

        println!(
            "rate {} req/s, {} s per phase, server threads {}",
            args.rate, args.seconds, args.server_threads
        );
        fixed_rate(&http, &health, args.rate, warm).await;
        let baseline = fixed_rate(&http, &health, args.rate, measure).await;
        fixed_rate(&http, &me, args.rate, warm).await;
        let authed = fixed_rate(&http, &me, args.rate, measure).await;
        fixed_rate(&http, &me_key, args.rate, warm).await;
        let keyed = fixed_rate(&http, &me_key, args.rate, measure).await;

        println!("{HEADER}");
        println!("{}", row("GET /healthz (baseline)", &baseline));
        println!("{}", row("GET /v1/me (JWT, EdDSA)", &authed));
        println!("{}", row("GET /v1/me (API key)", &keyed));
        for (name, run) in [("JWT", &authed), ("API key", &keyed)] {
            let ratio = |p: f64| run.percentile(p) as f64 / baseline.percentile(p).max(1) as f64;
            println!(
                "ratio /v1/me ({name}) over /healthz: p50 {:.2}x, p99 {:.2}x; added p99 {:.3} ms",
                ratio(50.0),
                ratio(99.0),
                (run.percentile(99.0) as f64 - baseline.percentile(99.0) as f64) / 1000.0
            );
        }
        if ![&baseline, &authed, &keyed].iter().all(|r| r.kept_schedule()) {
            println!("warning: the load generator fell behind its schedule (lag p99 > 2 ms); the machine is too busy for this rate");
        }
        let target_met = [&authed, &keyed]
            .iter()
            .all(|r| r.percentile(99.0) < 1000 && r.errors == 0);
        println!(
            "target (authenticated p99 < 1 ms at {} req/s, no errors): {}",
            args.rate,
            if target_met { "met" } else { "NOT met" }
        );
        Ok::<_, anyhow::Error>(())
    })?;
    server_rt.block_on(server.shutdown());
    Ok(())
}

async fn admin_send(
    base: &str,
    key: &str,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> Result<(u16, serde_json::Value)> {
    use http_body_util::{BodyExt, Full};
    let c: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let req = http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.to_string())))?;
    let resp = c.request(req).await.context("control plane call")?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
}
