//! Upstreams that are down, slow, forgetful or streaming; metering records and refusals; a
//! vault that cannot answer. Every failure is an MCP error within the target's timeout.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Harness, MapVault, RecordingMeter, allow_all, mcp_target, openapi_target, text};
use serde_json::json;
use tenantry_core::{ErrorCode, Money};
use tenantry_tools::CallStatus;
use tenantry_tools::testing::{MockMcpOptions, MockMcpServer, MockOpenApi};

/// A port nothing listens on.
async fn closed_port_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/mcp")
}

/// A server that accepts connections and never answers.
async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (format!("http://{addr}/mcp"), task)
}

#[tokio::test]
async fn down_and_silent_upstreams_give_errors_in_time_and_do_not_hide_the_others() {
    let kit = MockMcpServer::start().await;
    let (hole, _hole_task) = black_hole().await;
    let h = Harness::start(
        vec![
            mcp_target("kit", &kit.url(), json!({})),
            mcp_target(
                "down",
                &closed_port_url().await,
                json!({"timeout_ms": 5000}),
            ),
            mcp_target("hole", &hole, json!({"timeout_ms": 400})),
        ],
        allow_all(),
        MapVault::with(&[]),
    )
    .await;
    let mut c = h.client("acme:ann:basic");
    c.initialize("2025-06-18").await;

    let t = Instant::now();
    let tools = c.tool_names().await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "tools/list took {:?}",
        t.elapsed()
    );
    assert!(
        tools.iter().all(|t| t.starts_with("kit___")) && tools.len() == 4,
        "{tools:?}"
    );

    let t = Instant::now();
    let down = c.call("down___echo", json!({})).await;
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(down.body["error"]["code"], json!(-32011), "{down:?}");
    assert_eq!(
        down.body["error"]["data"]["reason"],
        json!("upstream_unreachable")
    );
    assert_eq!(down.body["error"]["data"]["retryable"], json!(true));

    let t = Instant::now();
    let silent = c.call("hole___echo", json!({})).await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        silent.body["error"]["data"]["reason"],
        json!("upstream_timeout"),
        "{silent:?}"
    );
    assert!(
        silent.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("within 400ms")
    );
}

#[tokio::test]
async fn slow_tools_time_out_at_the_targets_deadline() {
    let mcp = MockMcpServer::start().await;
    let api = MockOpenApi::start().await;
    let h = Harness::start(
        vec![
            mcp_target("kit", &mcp.url(), json!({"timeout_ms": 300})),
            openapi_target(
                "pets",
                &api.spec(),
                &api.base_url(),
                json!({"timeout_ms": 300}),
            ),
        ],
        allow_all(),
        MapVault::with(&[]),
    )
    .await;
    let mut c = h.client("acme:ann:basic");
    c.initialize("2025-06-18").await;
    c.tool_names().await;
    for (tool, args) in [
        ("kit___slow", json!({"ms": 10_000})),
        ("pets___slow", json!({"ms": 10_000})),
    ] {
        let t = Instant::now();
        let a = c.call(tool, args).await;
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(2000),
            "{tool}: {took:?}"
        );
        assert_eq!(a.body["error"]["code"], json!(-32011), "{tool}: {a:?}");
        assert_eq!(a.body["error"]["data"]["reason"], json!("upstream_timeout"));
    }
    // A fast call on the same target still works afterwards.
    assert_eq!(text(&c.call("kit___slow", json!({"ms": 1})).await), "done");
}

#[tokio::test]
async fn a_forgotten_upstream_session_is_reopened() {
    let mcp = MockMcpServer::start().await;
    let h = Harness::start(
        vec![mcp_target("kit", &mcp.url(), json!({}))],
        allow_all(),
        MapVault::with(&[]),
    )
    .await;
    let mut c = h.client("acme:ann:basic");
    c.initialize("2025-06-18").await;
    assert_eq!(
        text(&c.call("kit___add", json!({"a": 1, "b": 1})).await),
        "2"
    );
    mcp.forget_sessions();
    assert_eq!(
        text(&c.call("kit___add", json!({"a": 2, "b": 2})).await),
        "4"
    );
    let inits = mcp
        .requests()
        .iter()
        .filter(|r| r.rpc_method().as_deref() == Some("initialize"))
        .count();
    assert_eq!(inits, 2);
    let initialized = mcp
        .requests()
        .iter()
        .filter(|r| r.rpc_method().as_deref() == Some("notifications/initialized"))
        .count();
    assert_eq!(initialized, 2);
    // Every request after initialize carried the negotiated version.
    for r in mcp
        .requests()
        .iter()
        .filter(|r| r.rpc_method().as_deref() != Some("initialize"))
    {
        assert_eq!(r.header("mcp-protocol-version"), Some("2025-06-18"));
    }
}

#[tokio::test]
async fn an_upstream_answering_with_event_streams_works() {
    let mcp = MockMcpServer::start_with(MockMcpOptions {
        sse: true,
        ..Default::default()
    })
    .await;
    let h = Harness::start(
        vec![mcp_target("kit", &mcp.url(), json!({}))],
        allow_all(),
        MapVault::with(&[]),
    )
    .await;
    let mut c = h.client("acme:ann:basic");
    c.initialize("2025-06-18").await;
    assert_eq!(c.tool_names().await.len(), 4);
    assert_eq!(
        text(&c.call("kit___add", json!({"a": 20, "b": 22})).await),
        "42"
    );
    let refused = c.call("kit___add", json!({"a": "x"})).await;
    assert_eq!(refused.body["error"]["code"], json!(-32602));
}

#[tokio::test]
async fn every_admitted_call_is_recorded_and_the_meter_can_refuse() {
    let mcp = MockMcpServer::start().await;
    let meter = Arc::new(RecordingMeter {
        limit: Some(4),
        ..Default::default()
    });
    let h = Harness::start_with_meter(
        vec![mcp_target(
            "kit",
            &mcp.url(),
            json!({"price_per_call": "0.002", "timeout_ms": 300}),
        )],
        allow_all(),
        MapVault::with(&[]),
        meter.clone(),
    )
    .await;
    let mut c = h.client("acme:ann:basic");
    c.initialize("2025-06-18").await;
    c.call("kit___add", json!({"a": 1, "b": 2})).await;
    c.call("kit___fail", json!({})).await;
    c.call("kit___slow", json!({"ms": 5000})).await;
    c.call("ghost___x", json!({})).await;
    let refused = c.call("kit___add", json!({"a": 1, "b": 2})).await;
    assert_eq!(refused.body["error"]["code"], json!(-32012), "{refused:?}");
    assert_eq!(
        refused.body["error"]["data"],
        json!({"code": "rate_limited", "reason": "tool_rate_limited", "retryable": true, "retry_after_secs": 7})
    );
    assert_eq!(
        mcp.calls().len(),
        3,
        "the refused call must not reach the upstream"
    );

    let records = meter.records();
    let statuses: Vec<(String, CallStatus, Option<Money>)> = records
        .iter()
        .map(|r| (r.tool.clone(), r.status, r.price))
        .collect();
    let price = Some(Money::from_micros(2_000));
    assert_eq!(
        statuses,
        vec![
            ("kit___add".into(), CallStatus::Ok, price),
            ("kit___fail".into(), CallStatus::ToolError, price),
            (
                "kit___slow".into(),
                CallStatus::Failed {
                    code: ErrorCode::Unavailable,
                    reason: "upstream_timeout"
                },
                None
            ),
        ]
    );
    for r in &records {
        assert_eq!(
            (r.tenant.as_str(), r.user.as_str(), r.target.as_str()),
            ("acme", "ann", "kit")
        );
        assert_eq!(r.session, c.session);
    }
    assert!(records[2].latency >= Duration::from_millis(300));
    assert_eq!(records[2].status.ledger_status(), "error:unavailable");
}

#[tokio::test]
async fn a_vault_that_cannot_answer_fails_closed() {
    let mcp = MockMcpServer::start().await;
    let vault = Arc::new(common::MapVault {
        secrets: [("acme".to_owned(), "acme-key".to_owned())].into(),
        broken: vec!["acme".into()],
    });
    let h = Harness::start(
        vec![mcp_target(
            "kit",
            &mcp.url(),
            json!({"credential": {"placement": "bearer"}}),
        )],
        allow_all(),
        vault,
    )
    .await;
    let mut c = h.client("acme:ann:basic");
    c.initialize("2025-06-18").await;
    assert!(c.tool_names().await.is_empty());
    let a = c.call("kit___echo", json!({})).await;
    assert_eq!(a.body["error"]["code"], json!(-32011), "{a:?}");
    assert_eq!(
        a.body["error"]["data"]["reason"],
        json!("credential_unavailable")
    );
    assert!(mcp.requests().is_empty());
}

#[tokio::test]
async fn openapi_documents_from_a_url_are_fetched_once_and_kept_inline() {
    let api = MockOpenApi::start().await;
    let catalog = tenantry_tools::Catalog::new().unwrap();
    let spec: tenantry_tools::TargetSpec = serde_json::from_value(json!({
        "name": "pets",
        "kind": {"type": "openapi", "spec": {"url": api.spec_url()}, "base_url": api.base_url()}
    }))
    .unwrap();
    let resolved = catalog.resolve_spec(spec).await.unwrap();
    assert!(matches!(
        &resolved.kind,
        tenantry_tools::TargetKind::Openapi { spec: tenantry_tools::SpecSource::Inline(t), .. } if t.contains("listPets")
    ));
    let bad: tenantry_tools::TargetSpec = serde_json::from_value(json!({
        "name": "pets",
        "kind": {"type": "openapi", "spec": {"url": format!("{}/nope.json", api.base_url())}, "base_url": api.base_url()}
    }))
    .unwrap();
    let err = catalog.upsert(bad).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UpstreamError);
    assert!(err.to_string().contains("HTTP 404"), "{err}");
    let down: tenantry_tools::TargetSpec = serde_json::from_value(json!({
        "name": "pets",
        "kind": {"type": "openapi", "spec": {"url": closed_port_url().await}, "base_url": api.base_url()}
    }))
    .unwrap();
    assert!(catalog.upsert(down).await.is_err());
    assert!(catalog.specs().is_empty());
    catalog.upsert(resolved).await.unwrap();
    assert_eq!(catalog.specs().len(), 1);
}
