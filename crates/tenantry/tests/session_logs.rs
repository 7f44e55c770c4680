//! What an agent prints is kept per session and readable from outside: by the session's owner
//! and the tenant's admins at `GET /v1/sessions/{id}/logs` (the last lines as JSON, or followed
//! as server-sent events), by the operator under `/v1/admin/tenants/{t}/sessions/{id}/logs`,
//! and by nobody else (404, as for a session that does not exist). The log survives a stop and
//! goes with the session's storage.
//!
//! On a host without sandbox support these tests print a SKIP line saying why.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenantry_testkit::TestServer;

mod support;

use support::{acme_and_globex_with_runtime, invoke_ok, python_agent_dir, run, session_id};

fn runtime() -> Value {
    json!({"name": "py", "command": ["python3", "agent.py"], "workdir": python_agent_dir()})
}

/// The texts of the session's log lines, as `token` reads them (asserting a 200).
async fn texts(s: &TestServer, path: &str, token: &str) -> Vec<String> {
    let r = s.get(path, token).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body: Value = serde_json::from_str(&r.text).unwrap();
    body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert!(l["time_ms"].as_i64().unwrap() > 1_700_000_000_000, "{l}");
            l["text"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Waits (at most 10 s) until the log at `path` holds a line with `needle`.
async fn wait_for_line(s: &TestServer, path: &str, token: &str, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = texts(s, path, token).await;
        if lines.iter().any(|l| l.contains(needle)) {
            return lines;
        }
        assert!(Instant::now() < deadline, "{needle:?} not in {lines:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn session_logs_are_the_owners_the_admins_and_the_operators_only() {
    let test = "session_logs_are_the_owners_the_admins_and_the_operators_only";
    let Some(s) = acme_and_globex_with_runtime(test, runtime()).await else {
        return;
    };
    let alice = s.token("acme", "alice", &[]);
    let bob = s.token("acme", "bob", &[]);
    let admin = s.token("acme", "carol", &["tenant-admin"]);
    let globex = s.token("globex", "alice", &["tenant-admin"]);
    let session = session_id("logs");
    let path = format!("/v1/sessions/{session}/logs");

    invoke_ok(
        &s,
        "py",
        &alice,
        &session,
        json!({"log": "first line from alice"}),
    )
    .await;
    wait_for_line(&s, &path, &alice, "first line from alice").await;

    // The tenant's admin and the operator read it too; another user of the tenant, another
    // tenant (even its admin) and a session that never existed are all the same 404.
    wait_for_line(&s, &path, &admin, "first line from alice").await;
    let operator = format!("/v1/admin/tenants/acme/sessions/{session}/logs");
    wait_for_line(&s, &operator, &s.admin_key, "first line from alice").await;
    let missing = s
        .get(
            "/v1/sessions/never-existed-0000000000000000000000000/logs",
            &alice,
        )
        .await;
    for (who, token) in [("bob", &bob), ("globex", &globex)] {
        let r = s.get(&path, token).await;
        assert_eq!(
            (r.status, r.code()),
            (404, "not_found"),
            "{who}: {}",
            r.text
        );
        let message =
            |text: &str| serde_json::from_str::<Value>(text).unwrap()["error"]["message"].clone();
        assert_eq!(message(&r.text), message(&missing.text), "{who}");
    }
    let r = s
        .get(
            &format!("/v1/admin/tenants/globex/sessions/{session}/logs"),
            &s.admin_key,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);

    // `tail` bounds what comes back; a silly one is the caller's mistake.
    invoke_ok(&s, "py", &alice, &session, json!({"log": "second line"})).await;
    wait_for_line(&s, &path, &alice, "second line").await;
    let last = texts(&s, &format!("{path}?tail=1"), &alice).await;
    assert_eq!(last, ["second line"]);
    // The operator's command prints the same lines, timestamped.
    let cli = |args: Vec<String>| {
        let (url, key) = (s.url.clone(), s.admin_key.clone());
        tokio::task::spawn_blocking(move || {
            let mut all = vec![
                "logs".to_string(),
                "--url".into(),
                url,
                "--admin-key".into(),
                key,
            ];
            all.extend(args);
            run(&all.iter().map(String::as_str).collect::<Vec<_>>())
        })
    };
    let out = cli(vec![
        "--tenant".into(),
        "acme".into(),
        session.clone(),
        "--tail".into(),
        "1".into(),
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("20") && stdout.trim_end().ends_with("  second line"),
        "{stdout}"
    );
    let out = cli(vec!["--tenant".into(), "globex".into(), session.clone()])
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not_found"),
        "{out:?}"
    );

    let r = s.get(&format!("{path}?tail=100000"), &alice).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = s.get(&format!("{path}?lines=3"), &alice).await;
    assert_eq!(r.status, 400, "{}", r.text);

    // Kept across a stop; gone with the storage.
    let r = s.delete(&format!("/v1/sessions/{session}"), &alice).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        texts(&s, &path, &alice)
            .await
            .contains(&"second line".to_string())
    );
    let r = s
        .delete(&format!("/v1/sessions/{session}?storage=true"), &alice)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(texts(&s, &path, &alice).await, Vec::<String>::new());
}

#[tokio::test]
async fn following_a_session_log_streams_new_lines_as_they_come() {
    let test = "following_a_session_log_streams_new_lines_as_they_come";
    let Some(s) = acme_and_globex_with_runtime(test, runtime()).await else {
        return;
    };
    let alice = s.token("acme", "alice", &[]);
    let session = session_id("follow");
    invoke_ok(
        &s,
        "py",
        &alice,
        &session,
        json!({"log": "before following"}),
    )
    .await;
    wait_for_line(
        &s,
        &format!("/v1/sessions/{session}/logs"),
        &alice,
        "before following",
    )
    .await;

    let response = reqwest::Client::new()
        .get(format!(
            "{}/v1/sessions/{session}/logs?follow=true&tail=5",
            s.url
        ))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut body = response;
    let mut seen = String::new();
    let mut read_until = async |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, body.chunk())
                .await
                .unwrap_or_else(|_| panic!("{needle:?} not streamed; got {seen}"))
                .unwrap()
                .expect("the stream goes on");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        seen.clone()
    };
    // The last lines first, then what the agent prints while we follow.
    read_until("before following").await;
    invoke_ok(
        &s,
        "py",
        &alice,
        &session,
        json!({"log": "while following"}),
    )
    .await;
    let all = read_until("while following").await;
    let events: Vec<Value> = all
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("event: log\ndata: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let texts: Vec<&str> = events.iter().map(|e| e["text"].as_str().unwrap()).collect();
    let before = texts.iter().position(|t| *t == "before following").unwrap();
    let after = texts.iter().position(|t| *t == "while following").unwrap();
    assert!(before < after, "{texts:?}");
    assert_eq!(
        texts.iter().filter(|t| **t == "while following").count(),
        1,
        "{texts:?}"
    );
}
