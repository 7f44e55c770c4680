//! Load generation for the benchmarks: an open-loop client that sends requests at a fixed
//! rate over keep-alive loopback connections, whatever the server's latency (open loop: a slow
//! server does not slow the sender down, so it cannot hide its stalls).
//!
//! Latency is measured from the moment a request is sent to its last response byte. The
//! timer that paces the sender has millisecond granularity, so each request also records its
//! dispatch lag (sent minus due); a run whose lag p99 exceeds 2 ms fell behind its schedule
//! and is reported as such.
//!
//! Two kinds of request: `Target`, a `GET` with an optional bearer token (the ingress
//! benchmark), and `Call`, any method with headers and a body (invocations, the control plane).

#![forbid(unsafe_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Mutex;

/// One request to send repeatedly.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub bearer: Option<String>,
}

/// Latencies of one run, in microseconds, and how many requests failed.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub latencies_us: Vec<u64>,
    /// How late each request was sent against its schedule.
    pub lag_us: Vec<u64>,
    pub errors: u64,
    /// What went wrong with the first failed request, for the report.
    pub first_error: Option<String>,
    pub sent: u64,
    pub elapsed: Duration,
}

impl Report {
    pub fn percentile(&self, p: f64) -> u64 {
        percentile(&self.latencies_us, p)
    }

    pub fn lag_percentile(&self, p: f64) -> u64 {
        percentile(&self.lag_us, p)
    }

    /// Whether the sender kept to its schedule (dispatch lag p99 within 2 ms).
    pub fn kept_schedule(&self) -> bool {
        self.lag_percentile(99.0) <= 2000
    }

    pub fn achieved_rate(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Adds the samples of another run of the same request (runs interleaved with a baseline).
    pub fn merge(&mut self, other: Report) {
        self.latencies_us.extend(other.latencies_us);
        self.lag_us.extend(other.lag_us);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.sent += other.sent;
        self.elapsed += other.elapsed;
    }
}

/// The `p`th percentile (nearest rank) of `values`, 0 when there are none.
pub fn percentile(values: &[u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[rank.min(v.len() - 1)]
}

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub fn client(max_idle: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .build(connector)
}

async fn send(client: &HttpClient, target: &Target) -> Result<(), String> {
    let mut req = http::Request::get(&target.url);
    if let Some(b) = &target.bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// Sends `rate` requests per second for `duration`, each at its due time, and waits for all.
pub async fn fixed_rate(
    client: &HttpClient,
    target: &Target,
    rate: u32,
    duration: Duration,
) -> Report {
    paced(rate, duration, || {
        let client = client.clone();
        let target = target.clone();
        async move { send(&client, &target).await }
    })
    .await
}

/// The open-loop schedule: starts `request()` every `1/rate` s for `duration`, each in its own
/// task so that a slow answer never delays the next request, and collects the latencies.
async fn paced<F, Fut>(rate: u32, duration: Duration, request: F) -> Report
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    paced_slots(rate, duration, 1, |_| (0, request()))
        .await
        .pop()
        .unwrap_or_default()
}

/// `paced` for several kinds of request in one schedule: `request(i)` says which of `slots`
/// reports the `i`th request counts in, and returns it.
async fn paced_slots<F, Fut>(rate: u32, duration: Duration, slots: usize, request: F) -> Vec<Report>
where
    F: Fn(u64) -> (usize, Fut),
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let reports: Vec<_> = (0..slots.max(1))
        .map(|_| Arc::new(Mutex::new(Report::default())))
        .collect();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let total = (duration.as_secs_f64() * f64::from(rate)).round() as u64;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (slot, pending) = request(i);
        let report = reports[slot.min(reports.len() - 1)].clone();
        tasks.spawn(async move {
            let sent = Instant::now();
            let result = pending.await;
            let latency = sent.elapsed().as_micros() as u64;
            let lag = sent.saturating_duration_since(due).as_micros() as u64;
            let mut r = report.lock().await;
            r.sent += 1;
            r.lag_us.push(lag);
            match result {
                Ok(()) => r.latencies_us.push(latency),
                Err(e) => {
                    r.errors += 1;
                    if r.first_error.is_none() {
                        r.first_error = Some(e);
                    }
                }
            }
        });
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let mut out = Vec::with_capacity(reports.len());
    for r in reports {
        let mut r = r.lock().await.clone();
        r.elapsed = elapsed;
        out.push(r);
    }
    out
}

/// A request with a method, headers and a body (`Target` is the `GET`-only kind).
#[derive(Debug, Clone)]
pub struct Call {
    pub method: http::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Call {
    pub fn new(method: http::Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A `POST` of a JSON document.
    pub fn post_json(url: impl Into<String>, body: &serde_json::Value) -> Self {
        Self::new(http::Method::POST, url)
            .header("content-type", "application/json")
            .body(Bytes::from(body.to_string()))
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    pub fn body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }
}

/// A whole response: status, headers and the body read to its end.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub type BodyClient = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive loopback client for `Call`s.
pub fn body_client(max_idle: usize) -> BodyClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .build(connector)
}

/// Sends one `Call` and reads the whole response; an error only when no response came.
pub async fn call(client: &BodyClient, c: &Call) -> Result<Answer, String> {
    let mut req = http::Request::builder()
        .method(c.method.clone())
        .uri(&c.url);
    for (k, v) in &c.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Full::new(c.body.clone()))
        .map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// `fixed_rate` for a `Call`: a request counts as successful only with a 2xx status.
pub async fn fixed_rate_calls(
    client: &BodyClient,
    c: &Call,
    rate: u32,
    duration: Duration,
) -> Report {
    paced(rate, duration, || checked_call(client.clone(), c.clone())).await
}

/// Sends each of `calls` `rate` times per second for `duration`, taking turns request by
/// request (so a baseline and the path under test see the same moments of the machine), and
/// returns one report per call.
pub async fn fixed_rate_interleaved(
    client: &BodyClient,
    calls: &[Call],
    rate: u32,
    duration: Duration,
) -> Vec<Report> {
    let n = calls.len().max(1);
    let total_rate = rate.saturating_mul(n as u32);
    paced_slots(total_rate, duration, n, |i| {
        let slot = (i % n as u64) as usize;
        (slot, checked_call(client.clone(), calls[slot].clone()))
    })
    .await
}

async fn checked_call(client: BodyClient, c: Call) -> Result<(), String> {
    let a = call(&client, &c).await?;
    if a.status.is_success() {
        Ok(())
    } else {
        let text = a.text();
        Err(format!(
            "status {}: {}",
            a.status,
            text.chars().take(200).collect::<String>()
        ))
    }
}

/// One line of a results table: p50, p99, p99.9 and max in milliseconds.
pub fn row(name: &str, r: &Report) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "{name:<28} {:>8} {:>9.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>7} {:>9.3}",
        r.sent,
        r.achieved_rate(),
        ms(r.percentile(50.0)),
        ms(r.percentile(99.0)),
        ms(r.percentile(99.9)),
        ms(r.latencies_us.iter().copied().max().unwrap_or(0)),
        r.errors,
        ms(r.lag_percentile(99.0))
    )
}

pub const HEADER: &str =
    "endpoint                         sent    req/s   p50 ms   p99 ms  p99.9 ms   max ms  errors";

/// A benchmark's server, running in this process on a runtime of its own, and what the
/// benchmark drives it with: the operator key and the development issuer for tenants' JWTs.
pub struct InProcessServer {
    pub runtime: tokio::runtime::Runtime,
    pub server: tenantry_server::Server,
    pub admin_key: String,
    pub issuer: tenantry_identity::DevIssuer,
}

impl InProcessServer {
    /// Starts the server of `config` on a multi-threaded runtime of `threads` workers. Stop it
    /// with `runtime.block_on(server.shutdown())`.
    pub fn start(config: tenantry_server::Config, threads: usize) -> anyhow::Result<Self> {
        let admin_key = config.admin_key()?;
        let issuer = config.load_dev_issuer()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?;
        let server = runtime.block_on(tenantry_server::Server::start(config, None))?;
        Ok(Self {
            runtime,
            server,
            admin_key,
            issuer,
        })
    }
}

impl std::fmt::Debug for InProcessServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessServer")
            .field("url", &self.server.url())
            .finish_non_exhaustive()
    }
}
