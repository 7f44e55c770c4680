//! A sandbox's life from the platform's side: the agent's HTTP server is reachable through the
//! bridge, storage outlives the sandbox, `stop()` (and dropping the handle) leaves nothing
//! behind, and failures to start are reported clearly.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use tenantry_runtime::{
    BackendKind, ProcessInstance, Sandbox, SandboxError, SandboxExit, SandboxStatus,
};

const HTTP_AGENT: &str = r#"
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "Healthy", "path": self.path,
                           "session_dir": os.environ["SESSION_DIR"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// The session manager holds an `Arc<dyn Sandbox>` and a backend-neutral `SandboxHandle`: the
/// agent is reachable through it, and the process details only through the backend's type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_neutral_handle_reaches_the_agent_and_hides_the_process() {
    let Some(backend) = backend("the_neutral_handle_reaches_the_agent_and_hides_the_process")
    else {
        return;
    };
    let backend: std::sync::Arc<dyn Sandbox> = std::sync::Arc::new(backend);
    assert_eq!(backend.kind(), BackendKind::Process);
    backend.check().unwrap();
    let dirs = Dirs::new();
    let workdir = dirs.agent("neutral", HTTP_AGENT);
    let storage = dirs.storage("storage");
    let handle = backend
        .launch(python_spec("neutral", &workdir, &storage))
        .await
        .unwrap();
    assert_eq!(handle.session_id(), "session-neutral");
    handle
        .wait_for_agent(Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("{e}; output: {:?}", handle.recent_output()));
    let response = http_get(handle.connect_agent().await.unwrap(), "/ping").await;
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");

    let process = handle
        .downcast_ref::<ProcessInstance>()
        .expect("a process backend's sandbox");
    assert_eq!(process.id(), handle.id());
    let seen = handle.host_path(Path::new("/mnt/session")).unwrap();
    assert_eq!(
        seen,
        Path::new(&format!("/proc/{}/root/mnt/session", process.init_pid()))
    );
    std::fs::write(seen.join("from-host"), "x").unwrap();
    assert!(storage.join("from-host").exists(), "the session's storage");

    let report = handle.stop().await.unwrap();
    assert_eq!(report.exit, SandboxExit::Stopped);
    assert_eq!(handle.status(), SandboxStatus::Ended(SandboxExit::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_http_server_is_reachable_through_connect_agent() {
    let Some(backend) = backend("the_agents_http_server_is_reachable_through_connect_agent") else {
        return;
    };
    let dirs = Dirs::new();
    let workdir = dirs.agent("http", HTTP_AGENT);
    let storage = dirs.storage("storage");
    let handle = backend
        .launch(python_spec("http", &workdir, &storage))
        .await
        .unwrap();
    handle
        .wait_for_agent(Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("{e}; output: {:?}", handle.recent_output()));
    assert!(handle.agent_socket_path().exists());
    let response = http_get(handle.connect_agent().await.unwrap(), "/ping").await;
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    assert!(response.contains(r#""status": "Healthy""#), "{response}");
    assert!(
        response.contains(r#""session_dir": "/mnt/session""#),
        "{response}"
    );

    // The connection is the agent's own TCP socket inside the sandbox, not a relay: the
    // init keeps no thread per open connection.
    let base_threads = thread_count(handle.init_pid());
    let mut open = Vec::new();
    for _ in 0..8 {
        let stream = handle.connect_agent().await.unwrap();
        let peer = stream.get_ref().peer_addr().unwrap();
        assert_eq!(peer.port(), handle.agent_port());
        assert!(peer.ip().is_loopback(), "{peer}");
        open.push(stream);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while thread_count(handle.init_pid()) > base_threads {
        assert!(
            std::time::Instant::now() < deadline,
            "the init keeps {} threads with 8 connections open (it had {base_threads})",
            thread_count(handle.init_pid())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Several connections at once.
    let mut joins = Vec::new();
    for (i, stream) in open.into_iter().enumerate() {
        joins.push(tokio::spawn(async move {
            http_get(stream, &format!("/n{i}")).await
        }));
    }
    for (i, j) in joins.into_iter().enumerate() {
        let r = j.await.unwrap();
        assert!(r.contains(&format!("/n{i}")), "{r}");
    }
    let report = handle.stop().await.unwrap();
    assert_eq!(report.exit, SandboxExit::Stopped);
    assert!(
        !handle.agent_socket_path().exists(),
        "run directory removed"
    );
    assert!(matches!(
        handle.connect_agent().await,
        Err(SandboxError::NotRunning(_))
    ));
}

fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_an_agent_that_does_not_listen_is_refused_at_once() {
    let Some(backend) = backend("connecting_to_an_agent_that_does_not_listen_is_refused_at_once")
    else {
        return;
    };
    let dirs = Dirs::new();
    let workdir = dirs.agent("deaf", "import time\ntime.sleep(30)\n");
    let handle = backend
        .launch(python_spec("deaf", &workdir, &dirs.storage("deaf-storage")))
        .await
        .unwrap();
    let start = std::time::Instant::now();
    match handle.connect_agent().await {
        Err(SandboxError::AgentConnect(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}")
        }
        other => panic!("expected a refused connection, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    handle.stop().await.unwrap();
}

/// The parent of a process (a sandbox's helper, for its init).
fn parent_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

async fn spares_settle(backend: &tenantry_runtime::ProcessSandbox, not: &[u32]) -> Vec<u32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let spares = backend.spare_helpers();
        if spares.len() == 1 && !not.contains(&spares[0]) {
            return spares;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no fresh spare helper: {spares:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spare_helpers_serve_one_launch_each_and_dead_ones_are_skipped() {
    let Some(backend) = backend("spare_helpers_serve_one_launch_each_and_dead_ones_are_skipped")
    else {
        return;
    };
    let dirs = Dirs::new();
    let code = "import time\ntime.sleep(30)\n";
    let workdir = dirs.agent("sleeper", code);
    // A spare is started when the backend is created; a launch takes it, and a new one is
    // started shortly after.
    let first = spares_settle(&backend, &[]).await;
    let a = backend
        .launch(python_spec("spare-a", &workdir, &dirs.storage("a")))
        .await
        .unwrap();
    assert_eq!(parent_of(a.init_pid()), Some(first[0]), "the spare ran it");
    let second = spares_settle(&backend, &first).await;
    // A spare that died is not handed out: the launch starts a helper of its own.
    let killed = std::process::Command::new("kill")
        .args(["-9", &second[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = backend
        .launch(python_spec("spare-b", &workdir, &dirs.storage("b")))
        .await
        .unwrap();
    let helper = parent_of(b.init_pid()).unwrap();
    assert_ne!(helper, second[0]);
    assert_ne!(helper, first[0]);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn storage_written_in_one_sandbox_is_there_in_the_next() {
    let Some(backend) = backend("storage_written_in_one_sandbox_is_there_in_the_next") else {
        return;
    };
    let dirs = Dirs::new();
    let code = r#"
import os
path = os.path.join(os.environ["SESSION_DIR"], "counter")
n = int(open(path).read()) if os.path.exists(path) else 0
os.makedirs(os.path.join(os.environ["SESSION_DIR"], "nested"), exist_ok=True)
open(path, "w").write(str(n + 1))
"#;
    let workdir = dirs.agent("counter", code);
    let storage = dirs.storage("storage");
    for expected in 1..=3 {
        let handle = backend
            .launch(python_spec("persist", &workdir, &storage))
            .await
            .unwrap();
        let exit = tokio::time::timeout(Duration::from_secs(20), handle.wait())
            .await
            .unwrap();
        assert_eq!(
            exit,
            SandboxExit::Exited { code: 0 },
            "{:?}",
            handle.recent_output()
        );
        handle.stop().await.unwrap();
        let n = std::fs::read_to_string(storage.join("counter")).unwrap();
        assert_eq!(n, expected.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_the_whole_tree_and_removes_the_cgroup() {
    let Some(backend) = backend("stop_kills_the_whole_tree_and_removes_the_cgroup") else {
        return;
    };
    let dirs = Dirs::new();
    // Children, grandchildren in their own sessions, and a process ignoring SIGTERM.
    let code = r#"
import os, signal, subprocess, time
for _ in range(3):
    subprocess.Popen(["/bin/sh", "-c", "sleep 1000 & sleep 1000"], start_new_session=True)
subprocess.Popen(["/usr/bin/python3", "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)"])
open(os.path.join(os.environ["SESSION_DIR"], "started"), "w").write("yes")
time.sleep(1000)
"#;
    let workdir = dirs.agent("tree", code);
    let storage = dirs.storage("storage");
    let handle = backend
        .launch(python_spec("tree", &workdir, &storage))
        .await
        .unwrap();
    let start = std::time::Instant::now();
    while !storage.join("started").exists() || handle.pids().len() < 9 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "tree never grew: {:?}",
            handle.pids()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pids = handle.pids();
    let cgroups = handle.cgroup_dirs();
    assert_eq!(
        handle.cgroup_version(),
        if cgroups.len() > 1 { "v1" } else { "v2" }
    );
    assert!(cgroups.iter().all(|d| d.exists()));
    let init = handle.init_pid();
    assert!(pids.contains(&init));

    let report = tokio::time::timeout(Duration::from_secs(10), handle.stop())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.exit, SandboxExit::Stopped);
    assert_eq!(handle.status(), SandboxStatus::Ended(SandboxExit::Stopped));
    for pid in &pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} survived stop()"
        );
    }
    for d in &cgroups {
        assert!(!d.exists(), "cgroup {} still exists", d.display());
    }
    // Idempotent.
    assert_eq!(handle.stop().await.unwrap().exit, SandboxExit::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_kills_the_sandbox() {
    let Some(backend) = backend("dropping_the_handle_kills_the_sandbox") else {
        return;
    };
    let dirs = Dirs::new();
    let workdir = dirs.agent("sleepy", "import time\ntime.sleep(1000)\n");
    let storage = dirs.storage("storage");
    let handle = backend
        .launch(python_spec("drop", &workdir, &storage))
        .await
        .unwrap();
    let init = handle.init_pid();
    let cgroups = handle.cgroup_dirs();
    drop(handle);
    let start = std::time::Instant::now();
    while Path::new(&format!("/proc/{init}")).exists() || cgroups.iter().any(|d| d.exists()) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "sandbox outlived its handle"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_agent_that_cannot_start_is_a_clear_error() {
    let Some(backend) = backend("an_agent_that_cannot_start_is_a_clear_error") else {
        return;
    };
    let dirs = Dirs::new();
    let workdir = dirs.agent("missing", "");
    let storage = dirs.storage("storage");
    let mut spec = python_spec("missing", &workdir, &storage);
    spec.command = vec!["no-such-agent-binary".into()];
    let err = backend.launch(spec).await.unwrap_err();
    assert!(matches!(err, SandboxError::AgentSpawn(_)), "{err}");
    assert!(err.to_string().contains("no-such-agent-binary"), "{err}");
    assert_eq!(err.code(), tenantry_core::ErrorCode::UpstreamError);

    let mut spec = python_spec("bad", &workdir, &storage);
    spec.mount_path = "/etc/session".into();
    let err = backend.launch(spec).await.unwrap_err();
    assert!(matches!(err, SandboxError::InvalidSpec(_)), "{err}");

    let spec = python_spec("gone", &workdir, &dirs.path("does-not-exist"));
    let err = backend.launch(spec).await.unwrap_err();
    assert!(err.to_string().contains("does-not-exist"), "{err}");
}

#[tokio::test]
async fn the_agent_exit_code_is_reported() {
    let Some(backend) = backend("the_agent_exit_code_is_reported") else {
        return;
    };
    let dirs = Dirs::new();
    let workdir = dirs.agent(
        "fail",
        "import sys\nprint('bye', file=sys.stderr)\nsys.exit(7)\n",
    );
    let storage = dirs.storage("storage");
    let handle = backend
        .launch(python_spec("exit", &workdir, &storage))
        .await
        .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(20), handle.wait())
        .await
        .unwrap();
    assert_eq!(exit, SandboxExit::Exited { code: 7 });
    assert!(matches!(
        handle.wait_for_agent(Duration::from_secs(1)).await,
        Err(SandboxError::NotRunning(_))
    ));
    handle.stop().await.unwrap();
    assert!(handle.recent_output().iter().any(|l| l == "bye"));
}
