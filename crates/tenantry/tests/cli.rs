//! The `tenantry` command driven as a user drives it: init a state directory, run the server,
//! manage tenants, tiers and keys through the admin commands, mint a token.

#![allow(clippy::unwrap_used)]

use std::process::Command;

mod support;

use support::{BIN, free_port, ok, run, serve};

#[test]
fn init_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let s = state.to_str().unwrap();
    let out = ok(&["init", "--dir", s]);
    assert!(out.contains("tenantry serve --config"), "{out}");
    for f in ["tenantry.toml", "admin.key", "keys/dev-issuer.pem"] {
        assert!(state.join(f).exists(), "{f} missing");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("admin.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the operator key must not be readable by others"
    );

    let key_before = std::fs::read_to_string(state.join("admin.key")).unwrap();
    let again = run(&["init", "--dir", s]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(
        std::fs::read_to_string(state.join("admin.key")).unwrap(),
        key_before
    );
    ok(&["init", "--dir", s, "--force"]);
    assert_ne!(
        std::fs::read_to_string(state.join("admin.key")).unwrap(),
        key_before
    );
}

#[test]
fn token_issue_refuses_what_could_never_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().to_str().unwrap();
    ok(&["init", "--dir", s]);
    let config = dir.path().join("tenantry.toml");
    let issue = |tenant: &str| {
        run(&[
            "token",
            "issue",
            "--config",
            config.to_str().unwrap(),
            "--tenant",
            tenant,
            "--user",
            "alice",
        ])
    };
    let unknown = issue("acme");
    assert!(!unknown.status.success());
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains("there is no tenant acme") && err.contains("tenantry tenant create acme"),
        "{err}"
    );
    let bad = issue("../x");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("tenant id"));
}

#[test]
fn admin_commands_drive_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
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

    let tiers: serde_json::Value =
        serde_json::from_str(&ok(&["tier", "list", "--config", c])).unwrap();
    assert_eq!(tiers["tiers"].as_array().unwrap().len(), 3);

    let created: serde_json::Value = serde_json::from_str(&ok(&[
        "tenant",
        "create",
        "acme",
        "--tier",
        "premium",
        "--isolation",
        "bridge",
        "--silo",
        "data",
        "--feature",
        "beta",
        "--config",
        c,
    ]))
    .unwrap();
    assert_eq!(created["effective_isolation"]["data"], "silo");
    assert_eq!(created["features"]["beta"], true);

    // A token of an existing tenant: the token alone on one line.
    let out = ok(&[
        "token", "issue", "--tenant", "acme", "--user", "alice", "--ttl", "5m", "--config", c,
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0].split('.').count(), 3);

    let bad = run(&[
        "tenant", "create", "initech", "--tier", "gold", "--config", c,
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown tier"));

    let key: serde_json::Value = serde_json::from_str(&ok(&[
        "apikey",
        "create",
        "--tenant",
        "acme",
        "--role",
        "tenant-admin",
        "--config",
        c,
    ]))
    .unwrap();
    assert!(key["key"].as_str().unwrap().starts_with("tk_acme_"));
    assert_eq!(
        key["user_id"], "svc:default",
        "a key no user bound is a service principal"
    );
    // A key carries only the tenant roles the platform defines.
    let bad = run(&[
        "apikey",
        "create",
        "--tenant",
        "acme",
        "--role",
        "platform-admin",
        "--user",
        "operator",
        "--config",
        c,
    ]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("invalid_request") && stderr.contains("platform-admin"),
        "{stderr}"
    );
    let bound: serde_json::Value = serde_json::from_str(&ok(&[
        "apikey", "create", "--tenant", "acme", "--user", "bob", "--config", c,
    ]))
    .unwrap();
    assert_eq!(
        bound["user_id"], "bob",
        "the operator may bind a key to a user"
    );
    let listed = ok(&["apikey", "list", "--tenant", "acme", "--config", c]);
    assert!(!listed.contains(key["key"].as_str().unwrap()));

    let tier_file = dir.path().join("gold.toml");
    std::fs::write(
        &tier_file,
        "display_name = \"Gold\"\nallowed_models = [\"*\"]\n[limits]\nrequests_per_second = 50\n",
    )
    .unwrap();
    let gold: serde_json::Value = serde_json::from_str(&ok(&[
        "tier",
        "set",
        "gold",
        "--file",
        tier_file.to_str().unwrap(),
        "--config",
        c,
    ]))
    .unwrap();
    assert_eq!(gold["limits"]["requests_per_second"], 50);
    ok(&["tenant", "update", "acme", "--tier", "gold", "--config", c]);

    let suspended: serde_json::Value =
        serde_json::from_str(&ok(&["tenant", "suspend", "acme", "--config", c])).unwrap();
    assert_eq!(suspended["status"], "suspended");
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&["tenant", "show", "acme", "--config", c])).unwrap();
    assert_eq!(
        (shown["status"].as_str(), shown["tier"].as_str()),
        (Some("suspended"), Some("gold"))
    );
    ok(&["tenant", "resume", "acme", "--config", c]);

    // The same commands find the server from TENANTRY_URL and TENANTRY_ADMIN_KEY.
    let admin_key = std::fs::read_to_string(dir.path().join("admin.key")).unwrap();
    let out = Command::new(BIN)
        .args(["tenant", "list"])
        .env("TENANTRY_URL", format!("http://{listen}"))
        .env("TENANTRY_ADMIN_KEY", admin_key.trim())
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"acme\""));

    let key_id = key["id"].as_str().unwrap();
    let revoked: serde_json::Value = serde_json::from_str(&ok(&[
        "apikey", "revoke", "--tenant", "acme", key_id, "--config", c,
    ]))
    .unwrap();
    assert!(revoked["revoked_at"].is_i64());
    // The audit log, as the operator reads it: a table by default, JSON for scripts, filtered
    // by tenant, action and age.
    let table = ok(&["audit", "--since", "1h", "--config", c]);
    assert!(table.starts_with("TIME"), "{table}");
    assert!(
        table.contains("DELETE tenants/{id}/api-keys/{key_id}"),
        "{table}"
    );
    let events: serde_json::Value = serde_json::from_str(&ok(&[
        "audit", "--tenant", "acme", "--action", "DELETE", "--json", "--config", c,
    ]))
    .unwrap();
    let events = events.as_array().unwrap();
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|e| e["tenant"] == "acme" && e["action"].as_str().unwrap().starts_with("DELETE")),
        "{events:?}"
    );
    let one: serde_json::Value =
        serde_json::from_str(&ok(&["audit", "--limit", "1", "--json", "--config", c])).unwrap();
    assert_eq!(one.as_array().unwrap().len(), 1);
    let bad = run(&["audit", "--since", "yesterday", "--config", c]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since"));

    let removed: serde_json::Value = serde_json::from_str(&ok(&[
        "tenant",
        "delete",
        "acme",
        "--purge-usage",
        "--config",
        c,
    ]))
    .unwrap();
    assert_eq!(removed["tenant"], "acme", "{removed}");
    assert_eq!(removed["usage_purged"], true, "{removed}");
    assert!(
        removed["rows"]["api_keys"].as_u64().unwrap() >= 1,
        "{removed}"
    );
    let gone = run(&["tenant", "show", "acme", "--config", c]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("not_found"));
}

#[test]
fn admin_commands_explain_an_unreachable_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    ok(&[
        "init",
        "--dir",
        dir.path().to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    let config = dir.path().join("tenantry.toml");
    let out = run(&["tenant", "list", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tenantry serve"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn help_teaches() {
    let out = ok(&["--help"]);
    for word in ["serve", "init", "tenant", "tier", "apikey", "token"] {
        assert!(out.contains(word), "{word} missing from --help");
    }
    let out = ok(&["tenant", "create", "--help"]);
    assert!(out.contains("--isolation"));
}
