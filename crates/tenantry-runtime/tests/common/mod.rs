//! Shared pieces of the sandbox integration tests: skipping loudly where the host cannot run
//! sandboxes, temporary session directories, and small agents written as Python scripts.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use tenantry_core::{SandboxResources, TenantId};
use tenantry_runtime::{ProbeReport, ProcessSandbox, ProcessSandboxConfig, SandboxSpec};

pub const HELPER: &str = env!("CARGO_BIN_EXE_tenantry-sandbox");
/// The host's Python, at a path the sandbox's read-only view contains.
pub const PYTHON: &str = "/usr/bin/python3";

fn report() -> &'static ProbeReport {
    static REPORT: OnceLock<ProbeReport> = OnceLock::new();
    REPORT.get_or_init(tenantry_runtime::probe)
}

/// The backend, or `None` after printing why this host cannot run the test.
pub fn backend(test: &str) -> Option<ProcessSandbox> {
    let r = report();
    if !r.sandbox_supported() {
        println!(
            "SKIPPED {test}: process sandboxes are unavailable here: {}",
            r.missing().join("; ")
        );
        return None;
    }
    if !Path::new(PYTHON).exists() {
        println!("SKIPPED {test}: {PYTHON} is needed for the test agents");
        return None;
    }
    Some(ProcessSandbox::new(config()).unwrap())
}

pub fn config() -> ProcessSandboxConfig {
    let mut c = ProcessSandboxConfig::new(HELPER);
    c.start_timeout = Duration::from_secs(20);
    c
}

/// A fresh directory layout for one test: agent code, storage dirs, platform socket dir.
pub struct Dirs {
    pub root: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Self {
        Self {
            root: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Writes `agent.py` into `<root>/<name>/` and returns that directory.
    pub fn agent(&self, name: &str, code: &str) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("agent.py"), code).unwrap();
        dir
    }

    pub fn storage(&self, name: &str) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

pub fn tenant(t: &str) -> TenantId {
    TenantId::new(t).unwrap()
}

pub fn python_spec(session: &str, workdir: &Path, storage: &Path) -> SandboxSpec {
    let mut spec = SandboxSpec::new(
        format!("session-{session}"),
        tenant("acme"),
        vec![PYTHON.into(), "agent.py".into()],
        workdir,
        storage,
    );
    spec.resources = SandboxResources {
        memory_mb: 256,
        cpu_millis: 1000,
        max_processes: 32,
        storage_mb: 64,
        log_kb: 1024,
    };
    spec
}

/// Sends a bare HTTP/1.0 request over a stream and returns the whole response.
pub async fn http_get(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    path: &str,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: agent\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}
