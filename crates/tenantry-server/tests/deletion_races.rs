//! A write that races the deletion of the row it names (its tenant, its tier, its runtime...)
//! is answered 404 or 409 with a clear message, never 500: the store's foreign keys refuse the
//! write, and that refusal is classified, on SQLite and on PostgreSQL.
//!
//! One task deletes and re-creates a tenant in a loop while others keep writing what belongs
//! to it: policy sets, its own models and limit overrides, API keys, vault credentials, a
//! runtime dedicated to it, a tool target of its own. Every answer must be below 500.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenantry_testkit::{RequestBody, TestServer};

const TENANT: &str = "racer";
const CYCLES: usize = 25;

/// One kind of write naming the tenant: method, path and body for the `n`th attempt.
type Write = fn(usize) -> (&'static str, String, Value);

fn writes() -> Vec<(&'static str, Write)> {
    vec![
        ("policy upload", |_| {
            (
                "POST",
                "/v1/admin/policies".into(),
                json!({"tenant": TENANT, "text": "permit (principal, action, resource);"}),
            )
        }),
        ("tenant models", |_| {
            (
                "PUT",
                format!("/v1/admin/tenants/{TENANT}/models"),
                json!({"default": "mock-small"}),
            )
        }),
        ("tenant limits", |n| {
            (
                "PUT",
                format!("/v1/admin/tenants/{TENANT}/limits"),
                json!({"model_requests_per_minute": 100 + n}),
            )
        }),
        ("api key", |_| {
            (
                "POST",
                format!("/v1/admin/tenants/{TENANT}/api-keys"),
                json!({"name": "ci"}),
            )
        }),
        ("credential", |n| {
            (
                "PUT",
                format!("/v1/admin/tenants/{TENANT}/credentials/crm"),
                json!({"kind": "api_key", "value": format!("secret-value-{n}")}),
            )
        }),
        ("dedicated runtime", |n| {
            (
                "POST",
                "/v1/admin/runtimes".into(),
                json!({"name": format!("rt-{n}"), "command": ["python3", "agent.py"],
                       "workdir": env!("CARGO_MANIFEST_DIR"), "tenancy": {"dedicated": TENANT}}),
            )
        }),
        ("tenant tool target", |n| {
            (
                "POST",
                "/v1/admin/tool-targets".into(),
                json!({"name": format!("own-{n}"), "tenant": TENANT,
                       "kind": {"type": "mcp", "url": "http://127.0.0.1:9/mcp"}}),
            )
        }),
    ]
}

async fn race_deletion(s: &TestServer) {
    s.create_tenant(TENANT, "standard").await;
    let s = Arc::new(s);
    let done = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answers: BTreeMap<(&str, u16), usize> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();

    let deleter = async {
        let mut seen: Vec<(&str, u16, String)> = Vec::new();
        for _ in 0..CYCLES {
            let r = s
                .request(
                    "DELETE",
                    &format!("/v1/admin/tenants/{TENANT}"),
                    Some(&s.admin_key),
                    &[],
                    None,
                )
                .await;
            seen.push(("delete tenant", r.status, r.text));
            let r = s
                .request(
                    "POST",
                    "/v1/admin/tenants",
                    Some(&s.admin_key),
                    &[],
                    Some(RequestBody::Json(json!({"id": TENANT, "tier": "standard"}))),
                )
                .await;
            seen.push(("create tenant", r.status, r.text));
            tokio::task::yield_now().await;
        }
        done.store(true, Ordering::SeqCst);
        seen
    };
    let writers = writes().into_iter().map(|(what, write)| {
        let s = s.clone();
        let done = done.clone();
        async move {
            let mut seen: Vec<(u16, String)> = Vec::new();
            let mut n = 0;
            while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
                let (method, path, body) = write(n);
                let r = s
                    .request(
                        method,
                        &path,
                        Some(&s.admin_key),
                        &[],
                        Some(RequestBody::Json(body)),
                    )
                    .await;
                seen.push((r.status, r.text));
                n += 1;
            }
            (what, seen)
        }
    });
    let (deleted, written) = tokio::join!(deleter, futures_util::future::join_all(writers));
    for (what, status, text) in deleted {
        *answers.entry((what, status)).or_default() += 1;
        if status >= 500 {
            failures.push(format!("{what}: {status} {text}"));
        }
    }
    for (what, seen) in written {
        for (status, text) in seen {
            *answers.entry((what, status)).or_default() += 1;
            if status >= 500 {
                failures.push(format!("{what}: {status} {text}"));
            } else if status == 404 || status == 409 {
                let code =
                    serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)["error"]["message"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned();
                assert!(
                    !code.is_empty(),
                    "{what}: {status} without a message: {text}"
                );
            }
        }
    }
    eprintln!("answers (write, status) → count: {answers:?}");
    failures.sort();
    failures.dedup();
    assert!(
        failures.is_empty(),
        "{} answers of 5xx, e.g.:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The race happened: every kind of write succeeded at least once.
    for (what, _) in writes() {
        assert!(
            answers
                .iter()
                .any(|((w, status), _)| *w == what && (200..300).contains(status)),
            "{what} never succeeded: {answers:?}"
        );
    }
}

#[tokio::test]
async fn writes_racing_a_tenant_deletion_are_never_500_sqlite() {
    let s = TestServer::start().await;
    race_deletion(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn writes_racing_a_tenant_deletion_are_never_500_postgres() {
    let Some(url) = tenantry_testkit::postgres_url_or_skip(
        "writes_racing_a_tenant_deletion_are_never_500_postgres",
    ) else {
        return;
    };
    let (db_url, _guard) = tenantry_store::testing::fresh_postgres_unprivileged(&url)
        .await
        .unwrap();
    let s = TestServer::builder().database_url(db_url).start().await;
    race_deletion(&s).await;
    s.stop().await;
}
