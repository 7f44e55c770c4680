//! `tenantry models`, `tenantry limits` and `tenantry usage` driven as an operator drives them,
//! against `tenantry serve` on a fresh state directory: the quickstart answers offline through
//! the mock, routing changes take effect in the running server, and the ledger is reported.

#![allow(clippy::unwrap_used)]

use std::net::TcpListener;

use serde_json::{Value, json};

mod support;

use support::{ok, run, serve};

fn json_of(args: &[&str]) -> Value {
    let out = ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

fn chat(url: &str, key: &str, model: &str) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let resp = reqwest::Client::new()
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi there"}]}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    })
}

#[test]
fn operator_routes_models_sets_limits_and_reads_usage() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    ok(&[
        "init",
        "--dir",
        dir.path().to_str().unwrap(),
        "--listen",
        &listen,
    ]);
    let config = dir.path().join("tenantry.toml");
    let c = config.to_str().unwrap();
    let _server = serve(&config, port);
    let url = format!("http://{listen}");

    ok(&[
        "tenant", "create", "acme", "--tier", "standard", "--config", c,
    ]);
    let key = json_of(&["apikey", "create", "--tenant", "acme", "--config", c])["key"]
        .as_str()
        .unwrap()
        .to_owned();

    // A fresh state directory answers offline through the mock provider.
    let (status, body) = chat(&url, &key, "default");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "mock-small");

    // The overview shows the mock provider and where each tier's routes come from.
    let list = json_of(&["models", "list", "--config", c]);
    assert_eq!(list["providers"]["mock"], "mock");
    assert_eq!(list["tiers"]["standard"]["source"], "config");

    // Route the tier's default to the large model: the running server uses it at once.
    let v = json_of(&[
        "models",
        "tier",
        "set",
        "standard",
        "--default",
        "mock-large",
        "--config",
        c,
    ]);
    assert_eq!(v["source"], "control_plane");
    // Flags change only what they name: the aliases are still there.
    assert_eq!(v["routes"]["aliases"]["smart"], "mock-large");
    assert_eq!(chat(&url, &key, "default").1["model"], "mock-large");

    // A tenant's own model for `default`, with its prices.
    let v = json_of(&[
        "models",
        "tenant",
        "set",
        "acme",
        "--model",
        "acme-ft=mock:acme-ft-v2",
        "--price",
        "acme-ft=0.5/1.5",
        "--default",
        "acme-ft",
        "--config",
        c,
    ]);
    assert_eq!(
        v["models"]["models"]["acme-ft"]["upstream_model"],
        "acme-ft-v2"
    );
    assert_eq!(chat(&url, &key, "default").1["model"], "acme-ft");
    // A bad route is refused with the key that is wrong.
    let bad = run(&[
        "models",
        "tier",
        "set",
        "standard",
        "--alias",
        "fast=gpt-9",
        "--config",
        c,
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("aliases.fast"));
    json_of(&["models", "tenant", "reset", "acme", "--config", c]);
    json_of(&["models", "tier", "reset", "standard", "--config", c]);
    assert_eq!(chat(&url, &key, "default").1["model"], "mock-small");

    // A tenant limit override: one model call per minute per user (on a tenant that has made
    // no calls yet: a rate limit remembers the calls made under its previous value).
    ok(&[
        "tenant", "create", "globex", "--tier", "standard", "--config", c,
    ]);
    let globex = json_of(&["apikey", "create", "--tenant", "globex", "--config", c])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = json_of(&[
        "limits",
        "set",
        "globex",
        "--user-model-requests-per-minute",
        "1",
        "--budget-per-month",
        "12.5",
        "--config",
        c,
    ]);
    assert_eq!(v["effective"]["per_user"]["model_requests_per_minute"], 1);
    assert_eq!(v["effective"]["tenant"]["budget_per_month"], "12.5");
    assert_eq!(chat(&url, &globex, "default").0, 200);
    let (status, body) = chat(&url, &globex, "default");
    assert_eq!(status, 429, "{body}");
    assert_eq!(chat(&url, &key, "default").0, 200);
    json_of(&["limits", "reset", "globex", "--config", c]);

    // The ledger, as a table and as JSON.
    let table = ok(&["usage", "--tenant", "acme", "--config", c]);
    assert!(table.contains("mock-small"), "{table}");
    assert!(table.contains("acme-ft"), "{table}");
    assert!(table.contains("TOTAL"), "{table}");
    let report = json_of(&[
        "usage",
        "--tenant",
        "acme",
        "--group-by",
        "user",
        "--json",
        "--config",
        c,
    ]);
    assert_eq!(report["totals"]["calls"], 5);
    let by_day = ok(&[
        "usage",
        "--group-by",
        "day",
        "--from",
        "2020-01-01",
        "--config",
        c,
    ]);
    assert!(by_day.contains("2020-01-01"), "{by_day}");
    let bad = run(&["usage", "--group-by", "color", "--config", c]);
    assert!(!bad.status.success());

    // Compute columns beside tokens; CSV for spreadsheets, `--by` for short.
    assert!(
        table.contains("CPU S") && table.contains("MEMORY GB·S"),
        "{table}"
    );
    let csv = ok(&[
        "usage", "--tenant", "acme", "--by", "kind", "--csv", "--config", c,
    ]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("tenant,kind,calls,input_tokens,output_tokens,cpu_seconds,memory_gb_seconds,cost_usd")
    );
    let model = lines
        .find(|l| l.starts_with("acme,model,"))
        .unwrap_or_else(|| panic!("{csv}"));
    assert_eq!(model.split(',').nth(2), Some("5"), "{csv}");
    assert!(
        !run(&["usage", "--csv", "--json", "--config", c])
            .status
            .success()
    );
}
