//! Files on the host are private: the state directory that `tenantry init` makes is 0700, and
//! every file `init` and `serve` write there (the config, the operator key, every signing and
//! encryption key, the database with its WAL and shared-memory files) is 0600, after `init`,
//! after `serve`, and after a session has run. A database left readable by others by an older
//! version is made private when the server opens it. (Session storage has rules of its own and
//! is not looked at here.)

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{BIN, python_agent_dir, sandboxes_available};

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("TENANTRY_CONFIG")
        .env_remove("TENANTRY_URL")
        .env_remove("TENANTRY_ADMIN_KEY")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "tenantry {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(config: &Path, port: u16) -> Serving {
    let child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("TENANTRY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let serving = Serving(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    serving
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every directory and regular file below `state` (but session storage) whose mode lets
/// anyone but the owner in, as `path mode` lines; the state directory itself must be 0700.
fn not_private(state: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if mode(state) != 0o700 {
        found.push(format!("{} {:o}", state.display(), mode(state)));
    }
    let mut stack = vec![state.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if path == state.join("sessions") {
                continue;
            }
            if meta.is_dir() {
                stack.push(path.clone());
            }
            let loose = if meta.is_dir() {
                // Directories holding keys or the database are the owner's alone.
                path == state.join("keys") && mode(&path) != 0o700
            } else {
                meta.is_file() && mode(&path) & 0o077 != 0
            };
            if loose {
                found.push(format!("{} {:o}", path.display(), mode(&path)));
            }
        }
    }
    found
}

#[test]
fn state_files_are_private_after_init_serve_and_a_session() {
    let dir = tempfile::tempdir().unwrap();
    // A directory init creates itself (not the private temporary directory of the test).
    let state = dir.path().join("state");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    ok(&[
        "init",
        "--dir",
        state.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    assert_eq!(not_private(&state), Vec::<String>::new(), "after init");
    for key in [
        "admin.key",
        "tenantry.toml",
        "keys/dev-issuer.pem",
        "keys/workload.key",
        "keys/actor.pem",
        "keys/vault-master.key",
    ] {
        assert_eq!(mode(&state.join(key)), 0o600, "{key}");
    }

    let config = state.join("tenantry.toml");
    let c = config.to_str().unwrap();
    let server = serve(&config, port);
    ok(&[
        "tenant", "create", "acme", "--tier", "standard", "--config", c,
    ]);
    for f in ["tenantry.db", "tenantry.db-wal", "tenantry.db-shm"] {
        assert!(state.join(f).exists(), "{f} after serve");
    }
    assert_eq!(not_private(&state), Vec::<String>::new(), "after serve");

    if sandboxes_available("state_files_are_private_after_init_serve_and_a_session (session part)")
    {
        ok(&[
            "runtime",
            "create",
            "py",
            "--workdir",
            &python_agent_dir(),
            "--config",
            c,
            "--",
            "python3",
            "agent.py",
        ]);
        let out = ok(&[
            "invoke",
            "py",
            "--config",
            c,
            "--tenant",
            "acme",
            "--user",
            "alice",
            "--data",
            "{\"prompt\": \"hi\"}",
        ]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("hi"));
        assert_eq!(not_private(&state), Vec::<String>::new(), "after a session");
    }
    drop(server);

    // A state directory and database left open to others (as older versions made them) are
    // made private when the server starts on them.
    for p in ["", "tenantry.db", "tenantry.db-wal", "tenantry.db-shm"] {
        let path = state.join(p);
        if path.exists() {
            let loose = if p.is_empty() { 0o755 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).unwrap();
        }
    }
    let _server = serve(&config, port);
    ok(&["tenant", "show", "acme", "--config", c]);
    assert_eq!(not_private(&state), Vec::<String>::new(), "after a restart");
}
