//! Load generation for the benchmarks: an open-loop client that sends requests at a fixed
//! rate over keep-alive loopback connections, whatever the server's latency (open loop: a slow
//! server does not slow the sender down, so it cannot hide its stalls).
//!
//! Latency is measured from the moment a request is sent to its last response byte. The
//! timer that paces the sender has millisecond granularity, so each request also records its
//! dispatch lag (sent minus due); a run whose lag p99 exceeds 2 ms fell behind its schedule
//! and is reported as such.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
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
}

fn percentile(values: &[u64], p: f64) -> u64 {
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
    let report = Arc::new(Mutex::new(Report::default()));
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let total = (duration.as_secs_f64() * f64::from(rate)).round() as u64;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let client = client.clone();
        let target = target.clone();
        let report = report.clone();
        tasks.spawn(async move {
            let sent = Instant::now();
            let result = send(&client, &target).await;
            let latency = sent.elapsed().as_micros() as u64;
            let lag = sent.saturating_duration_since(due).as_micros() as u64;
            let mut r = report.lock().await;
            r.sent += 1;
            r.lag_us.push(lag);
            match result {
                Ok(()) => r.latencies_us.push(latency),
                Err(_) => r.errors += 1,
            }
        });
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let mut r = report.lock().await.clone();
    r.elapsed = start.elapsed();
    r
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
