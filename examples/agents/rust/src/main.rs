//! An example Tenantry agent in Rust. It serves the runtime contract (the same as AWS Bedrock
//! AgentCore's) on `PORT` (8080): `POST /invocations` answers JSON, or Server-Sent Events when
//! the request says `"stream": true`; `GET /ping` answers `Healthy`, or `HealthyBusy` while a
//! requested busy period lasts.
//!
//! Each invocation echoes the tenant context Tenantry injected, bumps a counter file in the
//! session storage (`SESSION_DIR`), and with `"call_platform": true` calls
//! `TENANTRY_ENDPOINT/v1/me` with the session's workload token.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

const CONTEXT_HEADERS: &[&str] = &[
    "x-tenantry-tenant-id",
    "x-tenantry-tier",
    "x-tenantry-user-id",
    "x-tenantry-session-id",
    "x-tenantry-region",
    "x-tenantry-features",
    "x-tenantry-entitlements",
    "x-amzn-bedrock-agentcore-runtime-session-id",
];
const CUSTOM_PREFIXES: &[&str] = &[
    "x-tenantry-custom-",
    "x-amzn-bedrock-agentcore-runtime-custom-",
];

struct Agent {
    session_dir: String,
    busy_until_ms: AtomicU64,
    counter_lock: tokio::sync::Mutex<()>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn ping(State(agent): State<Arc<Agent>>) -> axum::Json<Value> {
    let busy = now_ms() < agent.busy_until_ms.load(Ordering::Relaxed);
    axum::Json(json!({"status": if busy { "HealthyBusy" } else { "Healthy" }}))
}

/// Increments the session's counter file (written atomically by rename).
async fn bump_counter(agent: &Agent) -> std::io::Result<u64> {
    let _guard = agent.counter_lock.lock().await;
    let path = format!("{}/counter", agent.session_dir);
    let n = match tokio::fs::read_to_string(&path).await {
        Ok(s) => s.trim().parse::<u64>().unwrap_or(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    } + 1;
    let tmp = format!("{path}.tmp");
    tokio::fs::write(&tmp, n.to_string()).await?;
    tokio::fs::rename(&tmp, &path).await?;
    Ok(n)
}

async fn call_platform(token: &str) -> Value {
    let Ok(endpoint) = std::env::var("TENANTRY_ENDPOINT") else {
        return json!({"error": "TENANTRY_ENDPOINT is not set"});
    };
    let url = format!("{}/v1/me", endpoint.trim_end_matches('/'));
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let req = match hyper::Request::get(&url)
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::new())
    {
        Ok(r) => r,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let result = tokio::time::timeout(Duration::from_secs(5), async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let body: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        Ok::<_, String>(json!({"status": status, "body": body}))
    })
    .await;
    match result {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => json!({"error": e}),
        Err(_) => json!({"error": "timed out"}),
    }
}

async fn invocations(State(agent): State<Arc<Agent>>, headers: HeaderMap, body: Bytes) -> Response {
    let payload: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(Value::Object(o)) => Value::Object(o),
            Ok(other) => json!({"prompt": other}),
            Err(_) => {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": "the body must be JSON"})),
                )
                    .into_response();
            }
        }
    };
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut context = serde_json::Map::new();
    for h in CONTEXT_HEADERS {
        if let Some(v) = header_str(h) {
            context.insert((*h).to_string(), json!(v));
        }
    }
    let mut custom = serde_json::Map::new();
    for (name, value) in &headers {
        if CUSTOM_PREFIXES.iter().any(|p| name.as_str().starts_with(p))
            && let Ok(v) = value.to_str()
        {
            custom.insert(name.as_str().to_string(), json!(v));
        }
    }
    let token = header_str("x-tenantry-workload-token")
        .or_else(|| header_str("x-amzn-bedrock-agentcore-runtime-workload-accesstoken"))
        .map(str::to_string)
        .or_else(|| std::env::var("OPENAI_API_KEY").ok())
        .unwrap_or_default();
    if let Some(secs) = payload.get("busy_seconds").and_then(Value::as_f64) {
        agent
            .busy_until_ms
            .store(now_ms() + (secs * 1000.0) as u64, Ordering::Relaxed);
    }
    let count = match bump_counter(&agent).await {
        Ok(n) => json!(n),
        Err(e) => json!(format!("error: {e}")),
    };
    let prompt = payload
        .get("prompt")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut answer = json!({
        "agent": "rust-example",
        "echo": prompt,
        "context": context,
        "custom_headers": custom,
        "invocations_in_session": count,
        "has_workload_token": !token.is_empty(),
    });
    if payload.get("call_platform").and_then(Value::as_bool) == Some(true) {
        answer["platform"] = call_platform(&token).await;
    }
    let wants_stream = payload.get("stream").and_then(Value::as_bool) == Some(true)
        || header_str("accept").is_some_and(|a| a.contains("text/event-stream"));
    if !wants_stream {
        return axum::Json(answer).into_response();
    }
    let mut events: Vec<Result<Bytes, Infallible>> = prompt
        .split_whitespace()
        .map(|w| Ok(Bytes::from(format!("data: {}\n\n", json!({"delta": w})))))
        .collect();
    events.push(Ok(Bytes::from(format!(
        "data: {}\n\n",
        json!({"done": answer})
    ))));
    let stream = futures_util::stream::iter(events);
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let agent = Arc::new(Agent {
        session_dir: std::env::var("SESSION_DIR").unwrap_or_else(|_| "/mnt/session".into()),
        busy_until_ms: AtomicU64::new(0),
        counter_lock: tokio::sync::Mutex::new(()),
    });
    let app = Router::new()
        .route("/ping", get(ping))
        .route("/invocations", post(invocations))
        .with_state(agent);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
