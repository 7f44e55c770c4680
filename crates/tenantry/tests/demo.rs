//! The README's main command, run as a user runs it, and the runtime and invoke commands.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{BIN, sandboxes_available};

#[test]
fn demo_runs_and_every_check_holds() {
    if !sandboxes_available("demo_runs_and_every_check_holds") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["demo", "--dir", dir.path().join("demo").to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("15 checks, 0 failed."), "{stdout}");
    // The hint names a server the CLI can reach (not the demo's own ephemeral port).
    assert!(stdout.contains("(on 127.0.0.1:8700)"), "{stdout}");
    for tenant in ["acme", "globex", "initech"] {
        assert!(
            stdout.contains(&format!("agent saw tenant={tenant}")),
            "{stdout}"
        );
    }
}

#[test]
fn runtime_and_invoke_commands() {
    if !sandboxes_available("runtime_and_invoke_commands") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let state = dir.path().join("state");
    let run = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    assert!(
        run(&[
            "init",
            "--dir",
            state.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}")
        ])
        .status
        .success()
    );
    let config = state.join("tenantry.toml");
    let c = config.to_str().unwrap();
    let mut server = Command::new(BIN)
        .args(["serve", "--config", c])
        .env("TENANTRY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let agent =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/agents/python");
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    ok(&[
        "tenant", "create", "acme", "--tier", "standard", "--config", c,
    ]);
    ok(&[
        "runtime",
        "create",
        "py",
        "--workdir",
        agent.to_str().unwrap(),
        "--allow-header",
        "X-Tenantry-Custom-Plan",
        "--idle-timeout",
        "300",
        "--config",
        c,
        "--",
        "python3",
        "agent.py",
    ]);
    let listed = String::from_utf8(ok(&["runtime", "list", "--config", c]).stdout).unwrap();
    assert!(listed.contains("\"py\""));
    let shown: serde_json::Value =
        serde_json::from_slice(&ok(&["runtime", "show", "py", "--config", c]).stdout).unwrap();
    assert_eq!(shown["lifecycle"]["idle_timeout_seconds"], 300);
    ok(&[
        "runtime",
        "update",
        "py",
        "--set",
        "{\"warm_pool\": 1}",
        "--config",
        c,
    ]);

    let session = "cli-session-0123456789-0123456789-0123456789";
    let out = ok(&[
        "invoke",
        "py",
        "--config",
        c,
        "--tenant",
        "acme",
        "--user",
        "alice",
        "--session",
        session,
        "--header",
        "X-Tenantry-Custom-Plan:gold",
        "--data",
        "{\"prompt\": \"hi\"}",
    ]);
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["custom_headers"]["x-tenantry-custom-plan"], "gold");
    assert_eq!(body["invocations_in_session"], 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains(session));

    // Without --session a new session is created and named on stderr.
    let out = ok(&[
        "invoke", "py", "--config", c, "--tenant", "acme", "--user", "alice",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("session: sess-"), "{err}");

    // Streaming: the agent's server-sent events come through as they are.
    let out = ok(&[
        "invoke",
        "py",
        "--config",
        c,
        "--tenant",
        "acme",
        "--user",
        "alice",
        "--session",
        session,
        "--data",
        "{\"prompt\": \"one two\", \"stream\": true}",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("data: {\"delta\": \"one\"}") && text.contains("\"done\""),
        "{text}"
    );

    let bad = run(&[
        "invoke", "nope", "--config", c, "--tenant", "acme", "--user", "alice",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not_found"));
    ok(&["runtime", "delete", "py", "--config", c]);
    let _ = server.kill();
    let _ = server.wait();
}
