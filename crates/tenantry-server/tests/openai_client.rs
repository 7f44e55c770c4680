//! An unmodified OpenAI client library, the Python `openai` package, pointed at Tenantry with a
//! tenant API key (and a user JWT): chat, streaming chat with tools (a scripted tool call of the
//! mock, then the answer to the tool's result), embeddings, the model list, and a refusal it
//! raises as `PermissionDeniedError`.
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

#[tokio::test]
async fn the_python_openai_client_works_unmodified() {
    if !openai_available() {
        if std::env::var("TENANTRY_REQUIRE_OPENAI_CLIENT").as_deref() == Ok("1") {
            panic!("python3 with the openai package is required here (pip install openai)");
        }
        eprintln!(
            "SKIP the_python_openai_client_works_unmodified: python3 cannot import openai \
             (pip install openai)"
        );
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

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("client.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let url = s.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(&script)
            .env("TENANTRY_URL", url)
            .env("TENANTRY_KEY", key)
            .env("TENANTRY_BASIC_TOKEN", basic)
            .output()
            .unwrap()
    });
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("the client script hung")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the openai client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK"), "{stdout}");
    eprintln!("{}", stdout.trim());

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
