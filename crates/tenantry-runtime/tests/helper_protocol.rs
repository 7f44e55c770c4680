//! The helper executable on its own: a bad or missing spec is reported as one JSON line, never
//! a hang or a half-built sandbox.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use tenantry_runtime::protocol::{HelperEvent, SetupStage};

fn run_helper(stdin: &[u8]) -> (Vec<HelperEvent>, Option<i32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantry-sandbox"))
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let events = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (events, out.status.code())
}

#[test]
fn a_malformed_spec_is_refused_with_one_event() {
    let (events, code) = run_helper(b"{\"not\": \"a spec\"}\n");
    assert_eq!(code, Some(1));
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(
        &events[0],
        HelperEvent::SetupFailed { stage: SetupStage::Spec, message } if message.contains("invalid helper spec")
    ));
}

#[test]
fn no_spec_at_all_is_refused() {
    let (events, code) = run_helper(b"");
    assert_eq!(code, Some(1));
    assert!(matches!(
        &events[..],
        [HelperEvent::SetupFailed {
            stage: SetupStage::Spec,
            ..
        }]
    ));
}
