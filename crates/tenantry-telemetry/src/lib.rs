//! Per-tenant telemetry: the Prometheus metrics of one server process.
//!
//! Every series that concerns a tenant carries a `tenant` label, and that label is bounded: the
//! first `tenant_cap` tenants seen get their own value, every later one is counted under
//! `other`, so a platform with a hundred thousand tenants cannot make the exposition unbounded.
//! Model, tool and route names are bounded the same way. No user id, session id or request id
//! is ever a label: the methods below take none.
//!
//! The registry is per `Metrics` value (not process-global), so several servers in one process
//! (tests, the benchmarks) keep separate counts. `render` gives the Prometheus text exposition
//! format (0.0.4), which `promtool check metrics` accepts.

use std::collections::HashSet;
use std::sync::RwLock;
use std::time::Duration;

use prometheus::{
    CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The label value of everything past a label's cap.
pub const OTHER: &str = "other";

/// The content type of `render`'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The label values of one label, at most `cap` distinct ones; the rest are `other`.
#[derive(Debug)]
struct Bounded {
    cap: usize,
    seen: RwLock<HashSet<String>>,
}

impl Bounded {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            seen: RwLock::new(HashSet::new()),
        }
    }

    /// `value` itself if it has its own series (or can still get one), else `other`.
    fn label<'a>(&self, value: &'a str) -> &'a str {
        if let Ok(seen) = self.seen.read()
            && seen.contains(value)
        {
            return value;
        }
        let Ok(mut seen) = self.seen.write() else {
            return OTHER;
        };
        if seen.contains(value) {
            return value;
        }
        if seen.len() < self.cap && value != OTHER {
            seen.insert(value.to_string());
            return value;
        }
        OTHER
    }
}

/// How a session's sandbox was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxStart {
    /// Launched for the session.
    Cold,
    /// Taken from a warm pool.
    Warm,
}

impl SandboxStart {
    fn as_str(self) -> &'static str {
        match self {
            SandboxStart::Cold => "cold",
            SandboxStart::Warm => "warm",
        }
    }
}

/// Caps on label values (how many distinct values get their own series).
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub tenants: usize,
    pub models: usize,
    pub tools: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            tenants: 200,
            models: 100,
            tools: 500,
        }
    }
}

/// The metrics of one server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    tenants: Bounded,
    models: Bounded,
    tools: Bounded,
    routes: Bounded,
    categories: Bounded,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    http_errors: IntCounterVec,
    model_calls: IntCounterVec,
    model_tokens: IntCounterVec,
    model_cost: CounterVec,
    tool_calls: IntCounterVec,
    guardrail_decisions: IntCounterVec,
    sandbox_cpu: CounterVec,
    sandbox_memory: CounterVec,
    sandbox_starts: IntCounterVec,
    sandbox_start_seconds: HistogramVec,
    active_sessions: IntGaugeVec,
}

/// Latency buckets from 250 µs to about 16 s.
fn latency_buckets() -> Vec<f64> {
    (0..17).map(|i| 0.000_25 * 2f64.powi(i)).collect()
}

/// An error here is a programming error (a bad name or a duplicate registration), caught by the
/// unit tests: the names are constants.
fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    if let Err(e) = registry.register(Box::new(c.clone())) {
        debug_assert!(false, "metric registration: {e}");
    }
    c
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels);
    register(registry, vec.unwrap_or_else(|e| invalid(name, e)))
}

fn float_counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    let vec = CounterVec::new(Opts::new(name, help), labels);
    register(registry, vec.unwrap_or_else(|e| invalid(name, e)))
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(latency_buckets());
    let vec = HistogramVec::new(opts, labels);
    register(registry, vec.unwrap_or_else(|e| invalid(name, e)))
}

#[allow(clippy::panic)]
fn invalid(name: &str, e: prometheus::Error) -> ! {
    panic!("metric {name} is malformed: {e}")
}

impl Metrics {
    pub fn new(caps: Caps) -> Self {
        let r = Registry::new();
        Self {
            tenants: Bounded::new(caps.tenants),
            models: Bounded::new(caps.models),
            tools: Bounded::new(caps.tools),
            routes: Bounded::new(500),
            categories: Bounded::new(200),
            http_requests: counter(
                &r,
                "tenantry_http_requests_total",
                "HTTP requests answered, by tenant (`none` before authentication), route template, method and status.",
                &["tenant", "route", "method", "status"],
            ),
            http_duration: histogram(
                &r,
                "tenantry_http_request_duration_seconds",
                "Time from the request's arrival to its response head, by tenant and route template.",
                &["tenant", "route"],
            ),
            http_errors: counter(
                &r,
                "tenantry_http_errors_total",
                "Error answers by tenant and error code (throttles are rate_limited, budget refusals budget_exceeded).",
                &["tenant", "code"],
            ),
            model_calls: counter(
                &r,
                "tenantry_model_calls_total",
                "Model calls recorded in the ledger, by tenant, model and outcome.",
                &["tenant", "model", "outcome"],
            ),
            model_tokens: counter(
                &r,
                "tenantry_model_tokens_total",
                "Model tokens recorded in the ledger, by tenant, model and direction (input or output).",
                &["tenant", "model", "direction"],
            ),
            model_cost: float_counter(
                &r,
                "tenantry_model_cost_usd_total",
                "Cost of model calls in US dollars, by tenant and model.",
                &["tenant", "model"],
            ),
            tool_calls: counter(
                &r,
                "tenantry_tool_calls_total",
                "Tool calls recorded in the ledger, by tenant, tool and outcome (`ok` or the refusal's code).",
                &["tenant", "tool", "outcome"],
            ),
            guardrail_decisions: counter(
                &r,
                "tenantry_guardrail_decisions_total",
                "Guardrail findings by tenant, stage, category and action (block, mask or log).",
                &["tenant", "stage", "category", "action"],
            ),
            sandbox_cpu: float_counter(
                &r,
                "tenantry_sandbox_cpu_seconds_total",
                "CPU time used by the tenant's sandboxes.",
                &["tenant"],
            ),
            sandbox_memory: float_counter(
                &r,
                "tenantry_sandbox_memory_gigabyte_seconds_total",
                "Memory held by the tenant's sandboxes times the time held, in gigabyte-seconds.",
                &["tenant"],
            ),
            sandbox_starts: counter(
                &r,
                "tenantry_sandbox_starts_total",
                "Sandboxes started for sessions, by tenant and kind (cold launch or warm pool).",
                &["tenant", "kind"],
            ),
            sandbox_start_seconds: histogram(
                &r,
                "tenantry_sandbox_start_seconds",
                "Time to a session's ready agent, by kind (cold launch or warm pool).",
                &["kind"],
            ),
            active_sessions: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "tenantry_active_sessions",
                        "Sessions with a running sandbox on this server, by tenant.",
                    ),
                    &["tenant"],
                )
                .unwrap_or_else(|e| invalid("tenantry_active_sessions", e)),
            ),
            registry: r,
        }
    }

    /// The tenant label of `tenant` (`none` for a request not authenticated as a tenant).
    fn tenant<'a>(&self, tenant: Option<&'a str>) -> &'a str {
        tenant.map_or("none", |t| self.tenants.label(t))
    }

    /// One answered HTTP request. `route` is the matched route template (`/v1/sessions/{id}`),
    /// never the raw path.
    pub fn http_request(
        &self,
        tenant: Option<&str>,
        route: &str,
        method: &str,
        status: u16,
        elapsed: Duration,
    ) {
        let tenant = self.tenant(tenant);
        let route = self.routes.label(route);
        let status = status.to_string();
        self.http_requests
            .with_label_values(&[tenant, route, method, status.as_str()])
            .inc();
        self.http_duration
            .with_label_values(&[tenant, route])
            .observe(elapsed.as_secs_f64());
    }

    /// An error answer with its stable code (`rate_limited`, `budget_exceeded`...).
    pub fn http_error(&self, tenant: Option<&str>, code: &str) {
        let tenant = self.tenant(tenant);
        self.http_errors.with_label_values(&[tenant, code]).inc();
    }

    /// A model call as metered: its tokens and cost. `outcome` is `ok` or an error code.
    pub fn model_call(
        &self,
        tenant: &str,
        model: &str,
        outcome: &str,
        input_tokens: u64,
        output_tokens: u64,
        cost_usd: f64,
    ) {
        let tenant = self.tenants.label(tenant);
        let model = self.models.label(model);
        self.model_calls
            .with_label_values(&[tenant, model, outcome])
            .inc();
        self.model_tokens
            .with_label_values(&[tenant, model, "input"])
            .inc_by(input_tokens);
        self.model_tokens
            .with_label_values(&[tenant, model, "output"])
            .inc_by(output_tokens);
        if cost_usd > 0.0 {
            self.model_cost
                .with_label_values(&[tenant, model])
                .inc_by(cost_usd);
        }
    }

    /// A tool call as metered; `outcome` is `ok` or the refusal's or failure's code.
    pub fn tool_call(&self, tenant: &str, tool: &str, outcome: &str) {
        let tenant = self.tenants.label(tenant);
        let tool = self.tools.label(tool);
        self.tool_calls
            .with_label_values(&[tenant, tool, outcome])
            .inc();
    }

    /// A guardrail finding: its stage, category and the action taken.
    pub fn guardrail_decision(&self, tenant: &str, stage: &str, category: &str, action: &str) {
        let tenant = self.tenants.label(tenant);
        let category = self.categories.label(category);
        self.guardrail_decisions
            .with_label_values(&[tenant, stage, category, action])
            .inc();
    }

    /// Compute used by a tenant's sandbox since its last sample.
    pub fn sandbox_compute(&self, tenant: &str, cpu: Duration, memory_gb_seconds: f64) {
        let tenant = self.tenants.label(tenant);
        self.sandbox_cpu
            .with_label_values(&[tenant])
            .inc_by(cpu.as_secs_f64());
        if memory_gb_seconds > 0.0 {
            self.sandbox_memory
                .with_label_values(&[tenant])
                .inc_by(memory_gb_seconds);
        }
    }

    /// A session got its sandbox, cold or warm, after `elapsed`.
    pub fn sandbox_started(&self, tenant: &str, kind: SandboxStart, elapsed: Duration) {
        let tenant = self.tenants.label(tenant);
        self.sandbox_starts
            .with_label_values(&[tenant, kind.as_str()])
            .inc();
        self.sandbox_start_seconds
            .with_label_values(&[kind.as_str()])
            .observe(elapsed.as_secs_f64());
    }

    /// Sets the active-session gauge from a count per tenant taken now (tenants past the cap
    /// are summed under `other`).
    pub fn set_active_sessions<'a>(&self, counts: impl IntoIterator<Item = (&'a str, usize)>) {
        self.active_sessions.reset();
        for (tenant, n) in counts {
            let tenant = self.tenants.label(tenant);
            self.active_sessions
                .with_label_values(&[tenant])
                .add(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            return format!("# metrics could not be encoded: {e}\n");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tenants_past_the_cap_share_the_other_label() {
        let m = Metrics::new(Caps {
            tenants: 2,
            ..Caps::default()
        });
        for t in ["acme", "globex", "initech", "umbrella", "acme"] {
            m.http_request(Some(t), "/v1/me", "GET", 200, Duration::from_millis(1));
        }
        let text = m.render();
        assert!(text.contains(r#"tenant="acme""#));
        assert!(text.contains(r#"tenant="globex""#));
        assert!(!text.contains("initech") && !text.contains("umbrella"));
        assert!(text.contains(
            r#"tenantry_http_requests_total{method="GET",route="/v1/me",status="200",tenant="other"} 2"#
        ));
        assert!(text.contains(
            r#"tenantry_http_requests_total{method="GET",route="/v1/me",status="200",tenant="acme"} 2"#
        ));
    }

    #[test]
    fn each_server_counts_for_itself() {
        let a = Metrics::new(Caps::default());
        let b = Metrics::new(Caps::default());
        a.tool_call("acme", "search", "ok");
        assert!(a.render().contains("tenantry_tool_calls_total"));
        assert!(!b.render().contains(r#"tool="search""#));
    }

    #[test]
    fn active_sessions_are_a_snapshot() {
        let m = Metrics::new(Caps::default());
        m.set_active_sessions([("acme", 3), ("globex", 1)]);
        m.set_active_sessions([("acme", 1)]);
        let text = m.render();
        assert!(text.contains(r#"tenantry_active_sessions{tenant="acme"} 1"#));
        assert!(!text.contains(r#"tenant="globex""#));
    }
}
