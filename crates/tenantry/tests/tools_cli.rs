//! `tenantry tool`, `tenantry policy` and `tenantry credential` driven as an operator drives
//! them, against `tenantry serve` on a fresh state directory: targets registered (an upstream
//! MCP server, an OpenAPI document from a file), a credential set from an environment variable
//! and used on the upstream call, a policy uploaded, refused with FILE:LINE:COLUMN when
//! invalid, rolled back; targets survive a restart. The server's stderr (its log, at DEBUG)
//! and every command's output are scanned for the secret.

#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::{Command, Output};

use serde_json::{Value, json};
use tenantry_tools::testing::{MockMcpServer, MockOpenApi, openapi_document};

mod support;

use support::{BIN, serve_logging};
const SECRET: &str = "cli-kit-secret-2c4e81";

struct Cli {
    config: String,
    outputs: Vec<String>,
}

impl Cli {
    fn run(&mut self, args: &[&str]) -> Output {
        // `--config` goes before a `--` (after it, everything is the agent's command).
        let mut full: Vec<&str> = args.to_vec();
        let at = full.iter().position(|a| *a == "--").unwrap_or(full.len());
        full.splice(at..at, ["--config", self.config.as_str()]);
        let out = Command::new(BIN)
            .args(&full)
            .env_remove("TENANTRY_CONFIG")
            .env_remove("TENANTRY_URL")
            .env_remove("TENANTRY_ADMIN_KEY")
            .env("KIT_SECRET", SECRET)
            .output()
            .unwrap();
        self.outputs
            .push(String::from_utf8_lossy(&out.stdout).into_owned());
        self.outputs
            .push(String::from_utf8_lossy(&out.stderr).into_owned());
        out
    }

    fn ok(&mut self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tenantry {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

/// initialize, then one request on the session; the JSON-RPC answer.
async fn mcp(url: &str, key: &str, method: &str, params: Value) -> Value {
    let http = reqwest::Client::new();
    let post = |session: Option<String>, body: Value| {
        let mut req = http
            .post(format!("{url}/mcp"))
            .bearer_auth(key)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        req.send()
    };
    let init = post(
        None,
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "cli-test", "version": "1"}}}),
    )
    .await
    .unwrap();
    assert_eq!(init.status(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    post(
        Some(session.clone()),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await
    .unwrap();
    post(
        Some(session),
        json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

fn tool_names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_registers_tools_sets_credentials_and_policies_from_the_cli() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let upstream = MockMcpServer::start().await;
    let api = MockOpenApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}");
    let mut cli = Cli {
        config: dir.path().join("tenantry.toml").display().to_string(),
        outputs: Vec::new(),
    };
    let init = Command::new(BIN)
        .args([
            "init",
            "--dir",
            dir.path().to_str().unwrap(),
            "--listen",
            &listen,
        ])
        .output()
        .unwrap();
    assert!(init.status.success());
    // tenantry init writes the vault's master key, readable by its owner only.
    let key_file = dir.path().join("keys/vault-master.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let log = dir.path().join("serve.log");
    let config = dir.path().join("tenantry.toml");
    let server = serve_logging(&config, port, Some(&log));

    cli.ok(&["tenant", "create", "acme", "--tier", "standard"]);
    let key = cli.ok(&["apikey", "create", "--tenant", "acme"])["key"]
        .as_str()
        .unwrap()
        .to_owned();

    // Targets: an upstream MCP server, and an OpenAPI document from a file.
    let kit = cli.ok(&[
        "tool",
        "add-mcp",
        "kit",
        "--url",
        &upstream.url(),
        "--credential",
        "bearer",
        "--timeout-ms",
        "5000",
    ]);
    assert_eq!(kit["kind"]["url"], json!(upstream.url()));
    let spec_file = dir.path().join("pets.json");
    std::fs::write(&spec_file, openapi_document().to_string()).unwrap();
    let pets = cli.ok(&[
        "tool",
        "add-openapi",
        "pets",
        "--spec",
        spec_file.to_str().unwrap(),
        "--base-url",
        &api.base_url(),
    ]);
    assert_eq!(pets["kind"]["type"], "openapi");
    let again = cli.run(&["tool", "add-mcp", "kit", "--url", &upstream.url()]);
    assert!(!again.status.success(), "a taken name is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("conflict"));
    let list = cli.ok(&["tool", "list"]);
    assert_eq!(list["targets"].as_array().unwrap().len(), 2);
    assert_eq!(
        cli.ok(&["tool", "show", "kit"])["credential"]["placement"],
        "bearer"
    );

    // An MCP server hosted as a runtime: refused until the runtime exists, then registered.
    let missing = cli.run(&["tool", "add-runtime", "notes", "--runtime", "notes-mcp"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("unknown runtime"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let example = std::fs::canonicalize(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/mcp/python"
    ))
    .unwrap();
    cli.ok(&[
        "runtime",
        "create",
        "notes-mcp",
        "--protocol",
        "mcp",
        "--workdir",
        example.to_str().unwrap(),
        "--",
        "python3",
        "server.py",
    ]);
    let notes = cli.ok(&["tool", "add-runtime", "notes", "--runtime", "notes-mcp"]);
    assert_eq!(
        notes["kind"],
        json!({"type": "runtime", "runtime": "notes-mcp"})
    );
    let in_use = cli.run(&["runtime", "delete", "notes-mcp"]);
    assert!(!in_use.status.success(), "a runtime serving a target stays");
    cli.run(&["tool", "remove", "notes"]);
    cli.run(&["runtime", "delete", "notes-mcp"]);

    // Without a credential, acme does not see kit's tools; with one, its call carries it.
    let listed = tool_names(&mcp(&url, &key, "tools/list", json!({})).await);
    assert!(
        !listed.iter().any(|t| t.starts_with("kit___")),
        "{listed:?}"
    );
    assert!(listed.contains(&"pets___listPets".to_owned()));
    let stored = cli.ok(&[
        "credential",
        "set",
        "--tenant",
        "acme",
        "kit",
        "--value-env",
        "KIT_SECRET",
    ]);
    assert_eq!(
        (stored["kind"].as_str(), stored["version"].as_i64()),
        (Some("api_key"), Some(1))
    );
    let creds = cli.ok(&["credential", "list", "--tenant", "acme"]);
    assert_eq!(creds["credentials"][0]["name"], "kit");
    let echo = mcp(
        &url,
        &key,
        "tools/call",
        json!({"name": "kit___echo", "arguments": {}}),
    )
    .await;
    let seen: Value =
        serde_json::from_str(echo["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(seen["authorization"], json!(format!("Bearer {SECRET}")));

    // A policy for the tenant, enforced; an invalid one refused with its position.
    let deny = dir.path().join("deny.cedar");
    std::fs::write(
        &deny,
        "@id(\"no-echo\")\nforbid (principal, action == Tenantry::Action::\"kit___echo\", resource);\n",
    )
    .unwrap();
    let v1 = cli.ok(&[
        "policy",
        "set",
        "--tenant",
        "acme",
        "--file",
        deny.to_str().unwrap(),
    ]);
    assert_eq!(v1["version"], 1);
    let refused = mcp(
        &url,
        &key,
        "tools/call",
        json!({"name": "kit___echo", "arguments": {}}),
    )
    .await;
    assert_eq!(refused["error"]["code"], -32010, "{refused}");
    let bad = dir.path().join("bad.cedar");
    std::fs::write(
        &bad,
        "permit (principal, action, resource);\nforbid (principal action, resource);\n",
    )
    .unwrap();
    let out = cli.run(&[
        "policy",
        "set",
        "--tier",
        "standard",
        "--file",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2:", bad.display())),
        "{stderr}"
    );
    // log_only as version 2, then back to version 1.
    let v2 = cli.ok(&[
        "policy",
        "set",
        "--tenant",
        "acme",
        "--file",
        deny.to_str().unwrap(),
        "--mode",
        "log_only",
    ]);
    assert_eq!(
        (v2["version"].as_i64(), v2["mode"].as_str()),
        (Some(2), Some("log_only"))
    );
    let allowed = mcp(
        &url,
        &key,
        "tools/call",
        json!({"name": "kit___echo", "arguments": {}}),
    )
    .await;
    assert!(allowed.get("result").is_some(), "{allowed}");
    let versions = cli.ok(&["policy", "list", "--tenant", "acme"]);
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
    let back = cli.ok(&["policy", "rollback", "--tenant", "acme"]);
    assert_eq!(back["version"], 1);
    let refused = mcp(
        &url,
        &key,
        "tools/call",
        json!({"name": "kit___echo", "arguments": {}}),
    )
    .await;
    assert_eq!(refused["error"]["code"], -32010, "{refused}");
    let active = cli.ok(&["policy", "list"]);
    assert_eq!(active["platform"], "starter");
    let schema = cli.ok(&["policy", "schema"]);
    assert!(schema.as_str().unwrap().contains("kit___echo"));

    // Targets and policies survive a restart; removal takes a target's tools away.
    drop(server);
    let _server = serve_logging(&config, port, Some(&log));
    let names: Vec<String> = cli.ok(&["tool", "list"])["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["kit", "pets"]);
    let refused = mcp(
        &url,
        &key,
        "tools/call",
        json!({"name": "kit___echo", "arguments": {}}),
    )
    .await;
    assert_eq!(
        refused["error"]["code"], -32010,
        "the policy is kept: {refused}"
    );
    cli.ok(&["tool", "remove", "kit"]);
    let listed = tool_names(&mcp(&url, &key, "tools/list", json!({})).await);
    assert!(
        !listed.iter().any(|t| t.starts_with("kit___")),
        "{listed:?}"
    );
    let deleted = cli.ok(&["credential", "delete", "--tenant", "acme", "kit"]);
    assert_eq!(deleted["deleted"], 1);

    // No command's output and no line of the server's log holds the secret.
    for o in &cli.outputs {
        assert!(!o.contains(SECRET), "a command printed the secret: {o}");
    }
    let server_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        server_log.contains("tool_policy_decision"),
        "the log is at DEBUG"
    );
    assert!(!server_log.contains(SECRET), "the server logged the secret");
    assert!(
        !server_log.contains('\u{1b}'),
        "a log written to a file has no terminal colour codes"
    );
    assert!(!server_log.contains(&key), "the server logged an API key");
}
