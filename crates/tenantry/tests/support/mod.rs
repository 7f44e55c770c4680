//! What the `tenantry` crate's integration tests share: where the binary, the example agents
//! and the test agents are, and the check that skips a sandbox test, visibly, on a host that
//! cannot run sandboxes.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

/// The `tenantry` binary under test (also the sandbox helper: `tenantry sandbox-helper`).
pub const BIN: &str = env!("CARGO_BIN_EXE_tenantry");

/// A directory of the repository, given relative to this crate, as an absolute path.
pub fn dir(relative: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(relative)
        .canonicalize()
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
        .display()
        .to_string()
}

/// The test agents (hostile, broken, tool and model callers).
pub fn test_agents_dir() -> String {
    dir("tests/agents")
}

/// Whether this host can run sandboxes; if not, prints a SKIP line naming the test and what is
/// missing.
pub fn sandboxes_available(test: &str) -> bool {
    let report = tenantry_runtime::probe();
    if !report.sandbox_supported() {
        eprintln!(
            "SKIP {test}: this host cannot run sandboxes: {}",
            report.missing().join("; ")
        );
    }
    report.sandbox_supported()
}

/// The Python example agent.
pub fn python_agent_dir() -> String {
    dir("../../examples/agents/python")
}
