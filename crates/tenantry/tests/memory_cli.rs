//! `tenantry memory` driven as an operator drives it against a running server: a tenant's
//! memory created with strategies, listed, a user's memory erased, the memory deleted; a
//! shared memory likewise; mistakes refused with the reason.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use serde_json::{Value, json};
use tenantry_testkit::TestServer;

mod support;

use support::BIN;

fn run(s: &TestServer, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--server", &s.url, "--admin-key", &s.admin_key])
        .env_remove("TENANTRY_CONFIG")
        .env_remove("TENANTRY_URL")
        .env_remove("TENANTRY_ADMIN_KEY")
        .output()
        .unwrap()
}

fn ok(s: &TestServer, args: &[&str]) -> Value {
    let out = run(s, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

// The commands block their thread; the server runs on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_manages_memories_from_the_command_line() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "standard").await;
    let created = ok(
        &s,
        &[
            "memory",
            "create",
            "support",
            "--tenant",
            "acme",
            "--strategy",
            "semantic:facts",
            "--strategy",
            "custom:pets",
            "--prompt",
            "Keep the user's pets.",
        ],
    );
    let m = &created["memory"];
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["eventExpiryDays"], 90);
    assert_eq!(m["strategies"][1]["type"], "CUSTOM");
    assert_eq!(m["strategies"][1]["prompt"], "Keep the user's pets.");

    let listed = ok(&s, &["memory", "list", "--tenant", "acme"]);
    assert_eq!(listed["memories"][0]["id"], id.as_str());

    // The tenant's backend writes alice's memory; the operator erases it.
    let key = s.create_api_key("acme", &[]).await.1;
    let r = s
        .send_json(
            "POST",
            &format!("/v1/memory/memories/{id}/events"),
            &key,
            json!({"actorId": "alice", "sessionId": "s1", "eventTimestamp": 1_760_000_000,
                   "payload": [{"conversational": {"content": {"text": "hi"}, "role": "USER"}}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let erased = ok(&s, &["memory", "erase-user", "alice", "--tenant", "acme"]);
    assert_eq!(erased["deleted"], json!({"events": 1, "records": 0}));

    let deleted = ok(&s, &["memory", "delete", &id, "--tenant", "acme"]);
    assert_eq!(deleted["status"], "DELETED");
    assert_eq!(
        ok(&s, &["memory", "list", "--tenant", "acme"])["memories"],
        json!([])
    );

    let shared = ok(
        &s,
        &[
            "memory",
            "create",
            "pool",
            "--shared",
            "--expiry-days",
            "30",
        ],
    );
    assert_eq!(shared["memory"]["shared"], true);
    assert_eq!(shared["memory"]["eventExpiryDays"], 30);
    assert_eq!(
        ok(&s, &["memory", "list", "--shared"])["memories"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Mistakes say what to fix.
    let out = run(
        &s,
        &[
            "memory",
            "create",
            "x",
            "--tenant",
            "acme",
            "--strategy",
            "facts",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("KIND:NAME"));
    let out = run(&s, &["memory", "create", "9bad", "--tenant", "acme"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid memory name"));
    let out = run(&s, &["memory", "list", "--tenant", "nobody"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_found"));
    s.stop().await;
}
