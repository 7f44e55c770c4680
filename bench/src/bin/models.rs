//! Model gateway benchmark: Tenantry's `/v1/chat/completions` and LiteLLM's proxy in front of
//! the same local OpenAI-compatible mock upstream, against calling the mock directly, at the
//! same fixed request rates from the same open-loop load generator.
//!
//! Tenantry runs with everything on: JWT authentication, the ingress rate check, the model
//! request rate per tenant and per user, token and money budgets reserved and settled per call
//! (tenant and user), routing by tier, metering into the SQLite ledger. LiteLLM runs in its
//! simplest documented configuration: `litellm --config config.yaml --port P` with one model
//! pointing at the mock and a master key (it refuses to start without one).
//!
//! Prints, for each, the latency it adds over the direct call (p50, p99) and the highest
//! request rate it sustains (every request answered successfully, throughput kept within 5 % of
//! the offered rate, p99 under 100 ms), and the ratio. The load generator's dispatch lag is
//! printed with each step: when it exceeds 2 ms the generator, not the server, is the limit.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tenantry_bench::{BodyClient, Call, HEADER, Report, body_client, fixed_rate_calls, row};

#[derive(Debug, Parser)]
#[command(about = "Tenantry's model gateway and LiteLLM's proxy against the same mock upstream")]
struct Args {
    /// Requests per second of the latency comparison (Tenantry and the direct call).
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Requests per second at which LiteLLM's added latency is measured (it does not sustain
    /// `--rate`); the direct call and Tenantry are measured at it too.
    #[arg(long, default_value_t = 50)]
    common_rate: u32,
    /// Seconds of measurement per latency phase (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds per step of the sustained-rate search.
    #[arg(long, default_value_t = 4)]
    step_seconds: u64,
    /// Worker threads of Tenantry's runtime.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    /// The `litellm` executable (from `pip install 'litellm[proxy]'`); `none` skips LiteLLM.
    #[arg(long, env = "LITELLM_BIN", default_value = "litellm")]
    litellm: String,
}

/// The mock upstream's one answer: a short completion with its usage.
const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":6,"total_tokens":20}}"#;

/// A minimal OpenAI-compatible upstream: reads the request body, answers `ANSWER`.
fn start_mock_upstream() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("mock-upstream".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("mock upstream runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let service =
                            service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                                let _ = req.into_body().collect().await;
                                Ok::<_, Infallible>(
                                    hyper::Response::builder()
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from_static(ANSWER.as_bytes())))
                                        .unwrap_or_default(),
                                )
                            });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })?;
    Ok(addr)
}

fn chat_body(model: &str) -> serde_json::Value {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello to the benchmark."}
        ],
        "max_tokens": 64
    })
}

fn post(url: String, bearer: &str, body: &serde_json::Value) -> Call {
    Call::new(http::Method::POST, url)
        .header("authorization", format!("Bearer {bearer}"))
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_string()))
}

/// A LiteLLM proxy process, killed when dropped.
struct LiteLlm {
    child: Child,
    url: String,
    key: String,
}

impl Drop for LiteLlm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_litellm(bin: &str, dir: &Path, upstream: SocketAddr) -> Result<LiteLlm> {
    let key = "sk-litellm-bench-9f8e7d6c5b4a39281706".to_owned();
    let config = dir.join("litellm.yaml");
    std::fs::write(
        &config,
        format!(
            "model_list:\n  - model_name: default\n    litellm_params:\n      model: openai/bench-model\n      \
             api_base: http://{upstream}/v1\n      api_key: sk-mock\ngeneral_settings:\n  master_key: {key}\n"
        ),
    )?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("litellm.log"))?;
    let child = Command::new(bin)
        .args(["--config"])
        .arg(&config)
        .args(["--port", &port.to_string(), "--host", "127.0.0.1"])
        // No network here: use the cost map bundled with the package instead of fetching it.
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("cannot start {bin}"))?;
    let proxy = LiteLlm {
        child,
        url: format!("http://127.0.0.1:{port}"),
        key,
    };
    let client = body_client(4);
    let probe = post(
        format!("{}/v1/chat/completions", proxy.url),
        &proxy.key,
        &chat_body("default"),
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(a) = tenantry_bench::call(&client, &probe).await
            && a.status.is_success()
        {
            return Ok(proxy);
        }
        if Instant::now() > deadline {
            bail!(
                "LiteLLM did not answer within 180 s; see {}",
                dir.join("litellm.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether a run sustained its rate.
fn sustained(r: &Report, rate: u32) -> bool {
    r.errors == 0
        && r.sent > 0
        && r.achieved_rate() >= 0.95 * f64::from(rate)
        && r.percentile(99.0) < 100_000
}

/// A run that cannot take longer than its duration plus a minute.
async fn run(client: &BodyClient, c: &Call, rate: u32, secs: u64) -> Report {
    let d = Duration::from_secs(secs);
    match tokio::time::timeout(
        d + Duration::from_secs(60),
        fixed_rate_calls(client, c, rate, d),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Report {
            errors: 1,
            first_error: Some("the run did not finish within a minute of its end".into()),
            ..Report::default()
        },
    }
}

/// Steps up through `ladder` until a rate is not sustained; the last sustained one, and
/// whether the top of the ladder was reached (then the load generator is the limit).
async fn highest_rate(
    name: &str,
    client: &BodyClient,
    c: &Call,
    ladder: &[u32],
    secs: u64,
) -> (u32, bool, u64) {
    let mut best = 0;
    let mut ok_requests = 0;
    for &rate in ladder {
        let r = run(client, c, rate, secs).await;
        ok_requests += r.latencies_us.len() as u64;
        let ok = sustained(&r, rate);
        println!(
            "  {name} at {rate:>6}/s: achieved {:>7.0}/s, p99 {:>8.3} ms, errors {}, lag p99 {:.3} ms -> {}{}",
            r.achieved_rate(),
            r.percentile(99.0) as f64 / 1000.0,
            r.errors,
            r.lag_percentile(99.0) as f64 / 1000.0,
            if ok { "sustained" } else { "NOT sustained" },
            r.first_error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
        if !ok {
            return (best, false, ok_requests);
        }
        best = rate;
        // Let queues drain before the next step.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (best, true, ok_requests)
}

/// `secs` seconds of each call at `rate`, taking turns in 2 s slices so that all see the same
/// background load of the machine.
async fn interleaved(client: &BodyClient, calls: &[&Call], rate: u32, secs: u64) -> Vec<Report> {
    let mut reports: Vec<Report> = calls.iter().map(|_| Report::default()).collect();
    for _ in 0..secs.div_ceil(2) {
        for (c, r) in calls.iter().zip(reports.iter_mut()) {
            r.merge(run(client, c, rate, 2).await);
        }
    }
    reports
}

fn added(name: &str, r: &Report, base: &Report) {
    let ms = |us: i64| us as f64 / 1000.0;
    let d = |p: f64| ms(r.percentile(p) as i64 - base.percentile(p) as i64);
    println!(
        "{name}: added latency over the direct call: p50 {:+.3} ms, p99 {:+.3} ms",
        d(50.0),
        d(99.0)
    );
}

/// The machine's load averages, to judge whether other work disturbed a run.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!("load average at start: {}", loadavg());
    // Access logging at info, as in production, into a sink.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .try_init();

    let upstream = start_mock_upstream()?;
    let dir = tempfile::tempdir()?;
    tenantry_server::statedir::init(dir.path(), "127.0.0.1:0", false)?;
    let config_path = dir.path().join(tenantry_server::statedir::CONFIG_FILE);
    // The mock upstream as an OpenAI-compatible provider, with a priced model.
    let mut text = std::fs::read_to_string(&config_path)?;
    text.push_str(&format!(
        "\n[models.providers.upstream]\nkind = \"openai\"\nbase_url = \"http://{upstream}/v1\"\n\
         api_key = \"sk-mock\"\n[models.catalog.bench-model]\nprovider = \"upstream\"\n\
         input_price_per_mtok = \"0.15\"\noutput_price_per_mtok = \"0.60\"\n"
    ));
    std::fs::write(&config_path, text)?;
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
    let result = load_rt.block_on(async {
        let http = body_client(1024);
        let admin = |method: &str, path: &str, body: serde_json::Value| {
            let c = Call::new(method.parse().unwrap_or(http::Method::GET), format!("{base}{path}"))
                .header("authorization", format!("Bearer {admin_key}"))
                .header("content-type", "application/json")
                .body(Bytes::from(body.to_string()));
            let http = http.clone();
            let path = path.to_owned();
            async move {
                let a = tenantry_bench::call(&http, &c).await.map_err(anyhow::Error::msg)?;
                anyhow::ensure!(a.status.is_success(), "{path} answered {}: {}", a.status, a.text());
                Ok(())
            }
        };
        // Every limit is checked on every call, set high enough never to refuse.
        admin("PUT", "/v1/admin/tiers/bench", json!({
            "allowed_models": ["default"],
            "limits": {
                "requests_per_second": 1_000_000, "burst": 1_000_000,
                "model_requests_per_minute": 1_000_000_000u32,
                "tokens_per_minute": 1_000_000_000_000u64, "budget_per_month": "1000000",
                "per_user": {"model_requests_per_minute": 1_000_000_000u32,
                             "tokens_per_minute": 1_000_000_000_000u64, "budget_per_month": "1000000"}
            }
        })).await?;
        admin("PUT", "/v1/admin/models/tiers/bench", json!({"default": "bench-model"})).await?;
        admin("POST", "/v1/admin/tenants", json!({"id": "bench", "tier": "bench"})).await?;
        let token = issuer.mint(
            &tenantry_core::TenantId::new("bench")?,
            &tenantry_core::UserId::new("load")?,
            &[],
            Duration::from_secs(7200),
        )?;

        let direct = post(format!("http://{upstream}/v1/chat/completions"), "sk-mock", &chat_body("bench-model"));
        let tenantry = post(format!("{base}/v1/chat/completions"), &token, &chat_body("default"));
        let secs = args.seconds;
        let mut tenantry_ok = 0u64;

        println!("mock upstream http://{upstream}; Tenantry {base} ({} server threads)", args.server_threads);
        println!("\n== latency at {} req/s ({} s each, interleaved in 2 s slices, after a 2 s warm-up)", args.rate, secs);
        // Interleaved in 2 s slices, so both see the same background load of the machine.
        run(&http, &direct, args.rate, 2).await;
        tenantry_ok += run(&http, &tenantry, args.rate, 2).await.latencies_us.len() as u64;
        let mut fast = interleaved(&http, &[&direct, &tenantry], args.rate, secs).await;
        let (tenantry_fast, base_fast) = (fast.remove(1), fast.remove(0));
        tenantry_ok += tenantry_fast.latencies_us.len() as u64;
        println!("{HEADER}    lag p99");
        println!("{}", row("direct to the mock", &base_fast));
        println!("{}", row("Tenantry gateway", &tenantry_fast));
        added("Tenantry", &tenantry_fast, &base_fast);
        let target_met = tenantry_fast.errors == 0
            && tenantry_fast.percentile(99.0) as i64 - (base_fast.percentile(99.0) as i64) < 1000;
        println!(
            "target (Tenantry added p99 < 1 ms at {} req/s, no errors): {}",
            args.rate,
            if target_met { "met" } else { "NOT met" }
        );
        if !(base_fast.kept_schedule() && tenantry_fast.kept_schedule()) {
            println!("warning: the load generator fell behind its schedule (lag p99 > 2 ms)");
        }

        println!("\n== highest sustained rate of Tenantry ({} s per step)", args.step_seconds);
        let ladder = [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 10000];
        let (t_max, t_top, n) = highest_rate("Tenantry", &http, &tenantry, &ladder, args.step_seconds).await;
        tenantry_ok += n;

        // Metering was on: every successful call is in the ledger.
        let usage = Call::new(http::Method::GET, format!("{base}/v1/admin/usage?tenant=bench&from=0"))
            .header("authorization", format!("Bearer {admin_key}"));
        let report = tenantry_bench::call(&http, &usage).await.map_err(anyhow::Error::msg)?.json();
        println!(
            "ledger: {} calls metered (the load generator counted {tenantry_ok} successful), cost ${}",
            report["totals"]["calls"],
            report["totals"]["cost"].as_str().unwrap_or("?")
        );

        let proxy = if args.litellm == "none" {
            None
        } else {
            println!("\n== LiteLLM ({})", args.litellm);
            match start_litellm(&args.litellm, dir.path(), upstream).await {
                Err(e) => {
                    println!("LiteLLM was not measured: {e:#}");
                    None
                }
                Ok(proxy) => {
                    let version = Command::new(&args.litellm)
                        .arg("--version")
                        .output()
                        .ok()
                        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                        .unwrap_or_default();
                    println!("{version}");
                    Some(proxy)
                }
            }
        };
        let lite = proxy.as_ref().map(|p| {
            post(format!("{}/v1/chat/completions", p.url), &p.key, &chat_body("default"))
        });

        let rate = args.common_rate;
        println!("\n== latency at {rate} req/s ({secs} s each, interleaved in 2 s slices, after a 2 s warm-up)");
        let mut calls = vec![&direct, &tenantry];
        if let Some(l) = &lite {
            run(&http, l, rate, 2).await;
            calls.push(l);
        }
        let slow = interleaved(&http, &calls, rate, secs).await;
        println!("{HEADER}    lag p99");
        println!("{}", row("direct to the mock", &slow[0]));
        println!("{}", row("Tenantry gateway", &slow[1]));
        added("Tenantry", &slow[1], &slow[0]);
        if let Some(l) = slow.get(2) {
            println!("{}", row("LiteLLM proxy", l));
            added("LiteLLM", l, &slow[0]);
        }

        let mut litellm_max = None;
        if let Some(lite) = &lite {
            println!("\n== highest sustained rate of LiteLLM ({} s per step)", args.step_seconds);
            let ladder = [25, 50, 75, 100, 150, 200, 300, 400, 600, 800, 1000, 1500, 2000];
            let (l_max, _, _) = highest_rate("LiteLLM", &http, lite, &ladder, args.step_seconds).await;
            litellm_max = Some(l_max);
        }
        drop(proxy);

        println!("\n== summary");
        println!(
            "Tenantry sustains {t_max} req/s{}",
            if t_top { " (the top of the ladder: the load generator is the limit)" } else { "" }
        );
        if let Some(l) = litellm_max {
            println!("LiteLLM sustains {l} req/s");
            if l > 0 {
                let ratio = f64::from(t_max) / f64::from(l);
                println!(
                    "ratio: {ratio:.1}x (target >= 10x: {})",
                    if ratio >= 10.0 { "met" } else { "NOT met" }
                );
            }
        }
        Ok::<_, anyhow::Error>(())
    });
    server_rt.block_on(server.shutdown());
    println!("load average at end: {}", loadavg());
    result
}
