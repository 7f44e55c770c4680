//! Nothing of the host reaches an agent through a descriptor: the real server, started by a
//! shell that left a descriptor open on a root-only file, runs an agent that lists the
//! descriptors it was started with and tries to read through the inherited one's number. It
//! must see stdin, stdout and stderr only; and no process the server started (spare helpers,
//! helpers, sandbox inits) holds the file either.
//!
//! Needs what sandboxes need; prints a SKIP line where the host lacks it.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;

mod support;

use support::{
    Remote, free_port, init_state, sandboxes_available, serve_holding, session_id, test_agents_dir,
};

/// Pids of every descendant of `root` (children found through `/proc/<pid>/stat`).
fn descendants(root: u32) -> Vec<u32> {
    let parent_of = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        rest.split_whitespace().nth(1)?.parse().ok()
    };
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    let mut found = vec![root];
    let mut grew = true;
    while grew {
        grew = false;
        for pid in &all {
            if !found.contains(pid) && parent_of(*pid).is_some_and(|p| found.contains(&p)) {
                found.push(*pid);
                grew = true;
            }
        }
    }
    found.retain(|p| *p != root);
    found
}

/// Whether process `pid` holds a descriptor on `file`.
fn holds(pid: u32, file: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == file))
    })
}

#[tokio::test]
async fn an_agent_inherits_no_descriptor_of_the_host() {
    if !sandboxes_available("an_agent_inherits_no_descriptor_of_the_host") {
        return;
    }
    tenantry_testkit::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = init_state(dir.path(), port);
    let secret = dir.path().join("host-secret");
    std::fs::write(&secret, "the host's secret").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = serve_holding(&config, port, 7, &secret);
    let server_pid = server.0.id();
    assert!(
        holds(server_pid, &secret),
        "the server was given the descriptor"
    );

    let remote = Remote::new(dir.path(), port);
    remote
        .create(
            "/v1/admin/tenants",
            json!({"id": "acme", "tier": "standard"}),
        )
        .await;
    remote
        .create(
            "/v1/admin/runtimes",
            json!({"name": "fds", "command": ["python3", "fds.py"], "workdir": test_agents_dir()}),
        )
        .await;
    let alice = remote.token("acme", "alice");
    let (status, answer) = remote
        .invoke(
            "fds",
            &alice,
            &session_id("fds"),
            json!({"read_fds": [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let at_start: Vec<&String> = answer["fds_at_start"].as_object().unwrap().keys().collect();
    assert_eq!(
        at_start,
        ["0", "1", "2"],
        "the agent starts with stdin, stdout and stderr only: {answer}"
    );
    for (fd, read) in answer["read"].as_object().unwrap() {
        let read = read.as_str().unwrap();
        assert!(
            read.starts_with("error"),
            "descriptor {fd} of the agent reads {read:?}"
        );
        assert!(!read.contains("secret"), "{answer}");
    }
    // Nothing the server started holds it: spare helpers, the session's helper, its init.
    let children = descendants(server_pid);
    assert!(!children.is_empty(), "the server runs helpers");
    for pid in children {
        assert!(
            !holds(pid, &secret),
            "process {pid} started by the server holds the host's descriptor"
        );
    }
    drop(server);
}
