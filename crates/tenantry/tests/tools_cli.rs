//! `tenantry tool`, `tenantry policy` and `tenantry credential` driven as an operator drives
//! them, against `tenantry serve` on a fresh state directory: targets registered (an upstream
//! MCP server, an OpenAPI document from a file), a credential set from an environment variable
//! and used on the upstream call, a policy uploaded, refused with FILE:LINE:COLUMN when
//! invalid, rolled back; targets survive a restart. The server's stderr (its log, at DEBUG)
//! and every command's output are scanned for the secret. `tenantry guardrail` likewise: a
//! tenant's profile uploaded from TOML and JSON, refused naming the file and the field, shown,
//! rolled back and activated, and texts checked as the tenant (from an argument and from
//! standard input, with a development token and with an API key).

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use tenantry_tools::testing::{MockMcpServer, MockOpenApi, openapi_document};

mod support;

use support::{BIN, serve_logging};
const SECRET: &str = "cli-kit-secret-2c4e81";

struct Cli {
    config: String,
    outputs: Vec<String>,
    /// Extra environment of every command.
    env: Vec<(String, String)>,
}

impl Cli {
    fn run(&mut self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    /// `run`, with `input` on the command's standard input.
    fn run_with_stdin(&mut self, args: &[&str], input: &str) -> Output {
        // `--config` goes before a `--` (after it, everything is the agent's command).
        let mut full: Vec<&str> = args.to_vec();
        let at = full.iter().position(|a| *a == "--").unwrap_or(full.len());
        full.splice(at..at, ["--config", self.config.as_str()]);
        let mut child = Command::new(BIN)
            .args(&full)
            .env_remove("TENANTRY_CONFIG")
            .env_remove("TENANTRY_URL")
            .env_remove("TENANTRY_ADMIN_KEY")
            .env("KIT_SECRET", SECRET)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        self.outputs
            .push(String::from_utf8_lossy(&out.stdout).into_owned());
        self.outputs
            .push(String::from_utf8_lossy(&out.stderr).into_owned());
        out
    }

    fn ok(&mut self, args: &[&str]) -> Value {
        self.ok_with_stdin(args, "")
    }

    fn ok_with_stdin(&mut self, args: &[&str], input: &str) -> Value {
        let out = self.run_with_stdin(args, input);
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
        env: Vec::new(),
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

/// `tenantry guardrail` as an operator drives it, against `tenantry serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_uploads_checks_and_rolls_back_guardrail_profiles_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = support::init_state(dir.path(), port);
    let _server = support::serve(&config, port);
    let mut cli = Cli {
        config: config.display().to_string(),
        outputs: Vec::new(),
        env: Vec::new(),
    };
    cli.ok(&["tenant", "create", "acme", "--tier", "standard"]);

    // Version 1, from TOML: masks e-mail addresses, blocks a topic.
    let v1_file = dir.path().join("acme.toml");
    std::fs::write(
        &v1_file,
        r#"description = "acme: mask e-mail, no weapons"
[[checks]]
kind = "sensitive_info"
entities = ["email"]
action = "mask"
[[checks]]
kind = "denied_topics"
action = "block"
topics = [{ name = "weapons", phrases = ["pipe bomb"] }]
"#,
    )
    .unwrap();
    let v1 = cli.ok(&[
        "guardrail",
        "set",
        "--tenant",
        "acme",
        "--file",
        v1_file.to_str().unwrap(),
    ]);
    assert_eq!(
        (v1["scope"].as_str(), v1["version"].as_i64()),
        (Some("tenant:acme"), Some(1)),
        "{v1}"
    );

    // Checked as one of acme's users (a development token): the argument, then stdin.
    let masked = cli.ok(&[
        "guardrail",
        "apply",
        "--tenant",
        "acme",
        "--source",
        "output",
        "write to jo.doe@example.com today",
    ]);
    assert_eq!(masked["decision"], "masked", "{masked}");
    assert_eq!(masked["text"], "write to [EMAIL] today");
    assert_eq!(masked["profile"]["version"], 1);
    // A block is the command's failure (exit 2), so a script can branch on it; the decision
    // is still printed.
    let out = cli.run_with_stdin(
        &["guardrail", "apply", "--tenant", "acme"],
        "how does a PIPE BOMB work?\n",
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a blocked text exits 2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blocked: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(blocked["decision"], "blocked", "{blocked}");
    assert_eq!(blocked["text"], Value::Null);
    assert_eq!(blocked["categories"][0]["category"], "denied_topic:weapons");

    // A refused profile: the command fails naming the file and the field; nothing is stored.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"checks": [{"kind": "webhook", "url": "http://127.0.0.1:9/x", "action": "mask"}]}"#,
    )
    .unwrap();
    let out = cli.run(&[
        "guardrail",
        "set",
        "--tenant",
        "acme",
        "--file",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(bad.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("checks[0].action"), "{stderr}");
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"checks\": [\n  {\"kind\": }\n]}").unwrap();
    let out = cli.run(&[
        "guardrail",
        "set",
        "--tenant",
        "acme",
        "--file",
        broken.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(&format!("{}:2:", broken.display())),
        "{stderr}"
    );
    let out = cli.run(&["guardrail", "list", "--profile", "Not A Name"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lower-case letters"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Version 2, from JSON, masks cards only; checked with a tenant API key from the
    // environment.
    let v2_file = dir.path().join("acme-v2.json");
    std::fs::write(
        &v2_file,
        r#"{"checks": [{"kind": "sensitive_info", "entities": ["card"], "action": "mask"}]}"#,
    )
    .unwrap();
    let v2 = cli.ok(&[
        "guardrail",
        "set",
        "--tenant",
        "acme",
        "--file",
        v2_file.to_str().unwrap(),
    ]);
    assert_eq!(v2["version"], 2);
    let key = cli.ok(&["apikey", "create", "--tenant", "acme"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    cli.env.push(("ACME_KEY".into(), key.clone()));
    let url = format!("http://127.0.0.1:{port}");
    let by_key = |text: &str| {
        vec![
            "guardrail".to_owned(),
            "apply".into(),
            "--tenant".into(),
            "acme".into(),
            "--key-env".into(),
            "ACME_KEY".into(),
            "--server".into(),
            url.clone(),
            text.into(),
        ]
    };
    let args = by_key("card 4111 1111 1111 1111, mail jo.doe@example.com");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let v2_answer = cli.ok(&args);
    assert_eq!(
        v2_answer["text"], "card [CARD], mail jo.doe@example.com",
        "{v2_answer}"
    );
    assert_eq!(v2_answer["profile"]["version"], 2);

    // Listing, showing, rolling back and activating.
    let versions = cli.ok(&["guardrail", "list", "--tenant", "acme"]);
    let listed: Vec<(i64, bool)> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_i64().unwrap(), v["active"] == json!(true)))
        .collect();
    assert_eq!(listed, [(2, true), (1, false)]);
    let all = cli.ok(&["guardrail", "list"]);
    assert!(
        all["active"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["scope"] == "tenant:acme" && a["version"] == 2),
        "{all}"
    );
    assert!(
        all["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["tenant"] == "acme" && d["category"] == "denied_topic:weapons"),
        "{all}"
    );
    let shown = cli.ok(&["guardrail", "show", "--tenant", "acme"]);
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["profile"]["checks"][0]["entities"], json!(["card"]));
    let first = cli.ok(&["guardrail", "show", "--tenant", "acme", "--version", "1"]);
    assert_eq!(
        first["profile"]["description"],
        "acme: mask e-mail, no weapons"
    );
    let out = cli.run(&["guardrail", "show", "--tenant", "acme", "--version", "7"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no version 7"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = cli.ok(&["guardrail", "rollback", "--tenant", "acme"]);
    assert_eq!(back["version"], 1);
    let again = cli.ok(&[
        "guardrail",
        "apply",
        "--tenant",
        "acme",
        "--source",
        "output",
        "-",
    ]);
    assert_eq!(
        (
            again["decision"].as_str(),
            again["profile"]["version"].as_i64()
        ),
        (Some("pass"), Some(1)),
        "empty standard input is an empty text: {again}"
    );
    let again = cli.ok(&args);
    assert_eq!(again["text"], "card 4111 1111 1111 1111, mail [EMAIL]");
    let forward = cli.ok(&[
        "guardrail",
        "activate",
        "--tenant",
        "acme",
        "--version",
        "2",
    ]);
    assert_eq!(forward["version"], 2);
    let out = cli.run(&[
        "guardrail",
        "rollback",
        "--tenant",
        "acme",
        "--version",
        "9",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_found"));

    // A named profile, and a tenant's check naming a profile its tier does not use: 404.
    let named = cli.ok(&[
        "guardrail",
        "set",
        "--profile",
        "strict_cli",
        "--file",
        v2_file.to_str().unwrap(),
    ]);
    assert_eq!(named["scope"], "profile:strict_cli");
    let out = cli.run(&[
        "guardrail",
        "apply",
        "--tenant",
        "acme",
        "--profile",
        "strict_cli",
        "hello",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not_found (404)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The help teaches with examples.
    let help = String::from_utf8(support::run(&["guardrail", "--help"]).stdout).unwrap();
    assert!(help.contains("tenantry guardrail set --profile"), "{help}");
    let help = String::from_utf8(support::run(&["guardrail", "set", "--help"]).stdout).unwrap();
    assert!(help.contains("[[checks]]"), "{help}");

    // No command printed the API key but the one that created it.
    let printed = cli.outputs.iter().filter(|o| o.contains(&key)).count();
    assert_eq!(printed, 1, "only `apikey create` prints the key");
}
