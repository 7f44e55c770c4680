//! Helpers of the tests that drive the AWS-compatible surface with unmodified AWS clients
//! (boto3, the `bedrock-agentcore` SDK) in Python, signing with a tenant's access keys.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tenantry_testkit::TestServer;

pub const REQUIRE_ENV: &str = "TENANTRY_REQUIRE_AGENTCORE_SDK";

/// The vendored SDK (and its own boto3).
pub fn vendor() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/agents/agentcore/vendor")
}

pub fn importable(module: &str, pythonpath: Option<&PathBuf>) -> bool {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", &format!("import {module}")]);
    if let Some(p) = pythonpath {
        cmd.env("PYTHONPATH", p);
    }
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

/// Whether `module` imports; if not, a SKIP line naming `test`, or a failure under CI.
pub fn or_skip(test: &str, module: &str, pythonpath: Option<&PathBuf>) -> bool {
    if importable(module, pythonpath) {
        return true;
    }
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("{test}: python3 cannot import {module}; .ci/run installs it");
    }
    eprintln!(
        "SKIP {test}: python3 cannot import {module} (pip install boto3; the SDK is vendored \
         by `/usr/bin/python3 -m pip install --target examples/agents/agentcore/vendor \
         bedrock-agentcore`)"
    );
    false
}

/// Runs `script` with `env`; asserts it succeeded and printed OK; its last JSON line, if any.
pub async fn run_python(script: &str, env: Vec<(&'static str, String)>) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.py");
    std::fs::write(&path, script).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(&path)
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env)
            .output()
            .unwrap()
    });
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("the client script hung")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK"), "{stdout}\n{stderr}");
    eprintln!("{}", stdout.trim());
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null)
}

/// An access key pair of `tenant` for `user` with `roles`.
pub async fn access_key(
    s: &TestServer,
    tenant: &str,
    user: &str,
    roles: &[&str],
) -> (String, String) {
    let v = s
        .admin(
            "POST",
            &format!("/v1/admin/tenants/{tenant}/access-keys"),
            Some(json!({"name": "sdk", "user": user, "roles": roles})),
        )
        .await;
    (
        v["access_key_id"].as_str().unwrap().to_string(),
        v["secret_access_key"].as_str().unwrap().to_string(),
    )
}

/// The environment that points AWS SDKs at the server with a key pair.
pub fn aws_env(s: &TestServer, (id, secret): &(String, String)) -> Vec<(&'static str, String)> {
    vec![
        (
            "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE",
            format!("{}/aws/bedrock-agentcore", s.url),
        ),
        (
            "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL",
            format!("{}/aws/bedrock-agentcore-control", s.url),
        ),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", id.clone()),
        ("AWS_SECRET_ACCESS_KEY", secret.clone()),
    ]
}
