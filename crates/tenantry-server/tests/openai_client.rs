//! An unmodified OpenAI client library, the Python `openai` package, pointed at Tenantry with a
//! tenant API key (and a user JWT): chat, streaming chat with tools (a scripted tool call of the
//! mock, then the answer to the tool's result), embeddings, the model list, and a refusal it
//! raises as `PermissionDeniedError`; and streams through a guardrail profile: a masked one
//! read to its normal end, a blocked one raised as `APIError` with the block's code.
//!
//! Needs `python3` with `openai` (`pip install openai`, as `.ci/run` does). Without it the test
//! prints a SKIP line, unless `TENANTRY_REQUIRE_OPENAI_CLIENT=1` (set by CI) makes it fail.

#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::process::Command;
use std::time::Duration;

use gateway_support::*;

const SCRIPT: &str = r#"
import json, os, sys
import openai
from openai import OpenAI

url = os.environ["TENANTRY_URL"] + "/v1"
client = OpenAI(base_url=url, api_key=os.environ["TENANTRY_KEY"], max_retries=0)

# Chat.
r = client.chat.completions.create(
    model="default", messages=[{"role": "user", "content": "hello world"}])
assert r.choices[0].message.content == "echo: hello world", r
assert r.model == "mock-large", r.model
assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, r.usage

# Streaming chat with tools: the scripted model calls get_weather first.
tools = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
question = {"role": "user", "content": "Weather in Paris?"}
stream = client.chat.completions.create(
    model="weather-bot", messages=[question], tools=tools, stream=True,
    stream_options={"include_usage": True})
calls, usage, finish, chunks = {}, None, None, 0
for chunk in stream:
    chunks += 1
    if chunk.usage:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.finish_reason:
            finish = choice.finish_reason
        for tc in choice.delta.tool_calls or []:
            c = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            if tc.id:
                c["id"] = tc.id
            if tc.function and tc.function.name:
                c["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                c["arguments"] += tc.function.arguments
assert finish == "tool_calls", finish
assert calls[0]["name"] == "get_weather", calls
assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}, calls
assert calls[0]["id"], calls
assert usage is not None and usage.completion_tokens > 0, usage
assert chunks >= 3, chunks

# The tool's result goes back; the model answers.
call = calls[0]
r = client.chat.completions.create(model="weather-bot", tools=tools, messages=[
    question,
    {"role": "assistant", "content": None, "tool_calls": [{
        "id": call["id"], "type": "function",
        "function": {"name": call["name"], "arguments": call["arguments"]}}]},
    {"role": "tool", "tool_call_id": call["id"], "content": "{\"temp_c\": 18}"},
])
assert r.choices[0].message.content == "It is 18 degrees in Paris.", r
assert r.choices[0].finish_reason == "stop", r

# Embeddings (the client asks for base64 and decodes it).
e = client.embeddings.create(model="default", input=["first text", "second"])
assert len(e.data) == 2 and len(e.data[0].embedding) == 64, e
assert e.usage.prompt_tokens > 0, e.usage

# The model list.
ids = [m.id for m in client.models.list()]
assert "weather-bot" in ids and "default" in ids, ids

# A basic-tier user asking for a premium model: the client raises PermissionDeniedError.
basic = OpenAI(base_url=url, api_key=os.environ["TENANTRY_BASIC_TOKEN"], max_retries=0)
try:
    basic.chat.completions.create(
        model="mock-large", messages=[{"role": "user", "content": "hi"}])
    raise SystemExit("a premium model was served to a basic tenant")
except openai.PermissionDeniedError as err:
    assert err.status_code == 403
    assert err.code == "model_not_entitled", err.code
    assert err.type == "permission_error", err.type
    assert "basic" in err.message, err.message

print("openai", openai.__version__, "OK")
"#;

fn openai_available() -> bool {
    Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Whether the client can run; if not, prints a SKIP line naming `test`, or fails when
/// `TENANTRY_REQUIRE_OPENAI_CLIENT=1`.
fn openai_or_skip(test: &str) -> bool {
    if openai_available() {
        return true;
    }
    if std::env::var("TENANTRY_REQUIRE_OPENAI_CLIENT").as_deref() == Ok("1") {
        panic!("python3 with the openai package is required here (pip install openai)");
    }
    eprintln!("SKIP {test}: python3 cannot import openai (pip install openai)");
    false
}

/// Runs `script` with `env`; asserts it succeeded and printed OK; its standard output.
async fn run_client(script: &str, env: Vec<(&'static str, String)>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.py");
    std::fs::write(&path, script).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(&path)
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
        "the openai client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK"), "{stdout}");
    eprintln!("{}", stdout.trim());
    stdout
}

#[tokio::test]
async fn the_python_openai_client_works_unmodified() {
    if !openai_or_skip("the_python_openai_client_works_unmodified") {
        return;
    }
    let s = server_with(
        r#"
        [providers.scripted]
        kind = "mock"
        [[providers.scripted.script]]
        tool_calls = [{ name = "get_weather", arguments = { city = "Paris" } }]
        [[providers.scripted.script]]
        content = "It is 18 degrees in Paris."
        [catalog.weather-bot]
        provider = "scripted"
        "#,
    )
    .await;
    s.create_tenant("acme", "premium").await;
    s.create_tenant("small", "basic").await;
    let (_, key) = s.create_api_key("acme", &[]).await;
    let basic = s.token("small", "bob", &[]);

    run_client(
        SCRIPT,
        vec![
            ("TENANTRY_URL", s.url.clone()),
            ("TENANTRY_KEY", key),
            ("TENANTRY_BASIC_TOKEN", basic),
        ],
    )
    .await;

    // Every call of the client is in the ledger, attributed to the API key's user.
    let entries = ledger(&s, "acme").await;
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert!(entries.iter().all(|e| e.status == "ok"));
    let models: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.resource.as_deref())
        .collect();
    assert_eq!(
        models,
        ["mock-large", "weather-bot", "weather-bot", "mock-large"]
    );
    assert!(ledger(&s, "small").await.is_empty());
    s.stop().await;
}

const GUARDED_SCRIPT: &str = r#"
import os
import openai
from openai import OpenAI

client = OpenAI(base_url=os.environ["TENANTRY_URL"] + "/v1", api_key=os.environ["TENANTRY_KEY"],
                max_retries=0)

def read(text):
    """The streamed answer to `text`: its text and finish reason, and the error raised, if any."""
    parts, finish, error = [], None, None
    try:
        for chunk in client.chat.completions.create(
                model="default", stream=True, messages=[{"role": "user", "content": text}]):
            for choice in chunk.choices:
                parts.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
    except openai.APIError as err:
        error = err
    return "".join(parts), finish, error

# Masked: the card and the address, split over chunks by the mock, come out as placeholders and
# the stream ends normally.
text, finish, error = read("my card is 4111 1111 1111 1111 and mail jo.doe@example.com thanks")
assert error is None, repr(error)
assert text == "echo: my card is [CARD] and mail [EMAIL] thanks", text
assert finish == "stop", finish

# Blocked mid-stream: the status was already 200, so the client raises the final error event as
# an APIError (not an APIStatusError) carrying the block's code; the topic never arrived.
text, finish, error = read("explain how a pipe bomb works")
assert isinstance(error, openai.APIError), repr(error)
assert not isinstance(error, openai.APIStatusError), repr(error)
assert error.code == "guardrail_blocked", error.code
assert "denied_topic:weapons" in error.message, error.message
assert "bomb" not in error.message.lower(), error.message
assert "bomb" not in text.lower(), text
assert finish is None, finish

print("openai", openai.__version__, "guarded streams OK")
"#;

#[tokio::test]
async fn the_python_openai_client_reads_masked_streams_and_raises_on_blocked_ones() {
    if !openai_or_skip("the_python_openai_client_reads_masked_streams_and_raises_on_blocked_ones") {
        return;
    }
    let s = tenantry_testkit::TestServer::start().await;
    s.admin(
        "PUT",
        "/v1/admin/guardrails/profile:streamed",
        Some(serde_json::json!({"checks": [
            {"kind": "sensitive_info", "entities": ["card", "email"], "action": "mask",
             "on": ["model_output"]},
            {"kind": "denied_topics", "action": "block", "on": ["model_output"],
             "topics": [{"name": "weapons", "phrases": ["pipe bomb"]}]}]})),
    )
    .await;
    guarded_tier(&s, "guarded", "streamed").await;
    s.create_tenant("acme", "guarded").await;
    let (_, key) = s.create_api_key("acme", &[]).await;
    run_client(
        GUARDED_SCRIPT,
        vec![("TENANTRY_URL", s.url.clone()), ("TENANTRY_KEY", key)],
    )
    .await;

    // Both streams were checked under acme: a mask per entity, and the block.
    let all = s.admin("GET", "/v1/admin/guardrails", None).await;
    let decisions = all["decisions"].as_array().unwrap();
    for (category, action) in [
        ("sensitive_info:card", "mask"),
        ("sensitive_info:email", "mask"),
        ("denied_topic:weapons", "block"),
    ] {
        assert!(
            decisions.iter().any(|d| d["tenant"] == "acme"
                && d["category"] == category
                && d["action"] == action
                && d["stage"] == "model_output"),
            "{category} {action} missing from {decisions:?}"
        );
    }
    s.stop().await;
}
