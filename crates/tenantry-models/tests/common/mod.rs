//! Helpers shared by the integration tests: a sample conversation that exercises every
//! translation rule, tiers, routers from TOML, and normalisation of generated ids and times
//! before snapshots.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::{Value, json};
use tenantry_core::{Tier, TierName};
use tenantry_models::wire::{ChatChunk, ChatRequest};
use tenantry_models::{ModelsConfig, Router};

/// A conversation with a system prompt, an image, a tool call and its result.
pub fn tool_conversation() -> ChatRequest {
    serde_json::from_value(json!({
        "model": "default",
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "developer", "content": "Answer in one sentence."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is the weather in Paris? Here is a photo."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\":18,\"sky\":\"cloudy\"}"},
            {"role": "user", "content": "And should I take an umbrella?"}
        ],
        "tools": [{
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
            }
        }],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 300,
        "stop": ["END"],
        "user": "alice",
        "seed": 42
    }))
    .unwrap()
}

pub fn simple(model: &str, text: &str) -> ChatRequest {
    serde_json::from_value(json!({
        "model": model,
        "messages": [{"role": "user", "content": text}]
    }))
    .unwrap()
}

pub fn tier(name: &str, allowed: &[&str]) -> Tier {
    Tier {
        name: TierName::new(name).unwrap(),
        display_name: String::new(),
        limits: Default::default(),
        allowed_models: allowed.iter().map(|s| (*s).to_owned()).collect(),
        allowed_tools: Vec::new(),
        guardrail_profile: None,
        isolation: Default::default(),
        sandbox: Default::default(),
        memory_event_expiry_days: 90,
    }
}

pub fn no_env(_: &str) -> Option<String> {
    None
}

/// A router from a `[models]` TOML body (without the `[models]` header's prefix).
pub fn router(toml_text: &str) -> Router {
    let config: ModelsConfig = toml::from_str(toml_text).unwrap();
    Router::new(&config, &|k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("AKIDTEST".into()),
        "AWS_SECRET_ACCESS_KEY" => Some("secret/test/key".into()),
        "AWS_SESSION_TOKEN" => Some("session-token-test".into()),
        "ANTHROPIC_API_KEY" => Some("sk-ant-test".into()),
        _ => None,
    })
    .unwrap()
}

/// Replaces generated ids and timestamps so snapshots are stable.
pub fn normalize(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    match (k.as_str(), &x) {
                        ("created", Value::Number(_)) => *x = json!(0),
                        ("id", Value::String(s)) if s.starts_with("chatcmpl-") => {
                            *x = json!("chatcmpl-[id]")
                        }
                        _ => walk(x),
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
        }
    }
    walk(&mut v);
    v
}

pub fn chunks_json(chunks: &[ChatChunk]) -> Value {
    normalize(serde_json::to_value(chunks).unwrap())
}
