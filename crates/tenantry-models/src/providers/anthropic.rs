//! The client of Anthropic's Messages API, and the translation between it and the OpenAI
//! wire types: system messages become `system`, tools become `tools` with `input_schema`,
//! tool calls and tool results become `tool_use` and `tool_result` blocks, and the streamed
//! events (`message_start`, `content_block_*`, `message_delta`, `message_stop`, `ping`,
//! `error`) become `chat.completion.chunk`s.
//!
//! The translation functions are pure, so golden tests pin them; the client adds only the
//! HTTP call. It must never send the API key anywhere but the `x-api-key` header.

use std::collections::{HashMap, VecDeque};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use tenantry_core::sse::SseEvent;

use crate::config::{AnthropicConfig, ConfigError, Secret, Timeouts, invalid, resolve_secret};
use crate::error::ProviderError;
use crate::http::{self, Body, Flow, Translator};
use crate::providers::{ChatStream, completion_id};
use crate::wire::{
    ChatChunk, ChatRequest, ChatResponse, Content, ContentPart, Delta, FinishReason, FunctionCall,
    Role, ToolCall, ToolCallDelta, ToolChoice, Usage,
};

#[derive(Debug)]
pub struct AnthropicProvider {
    client: reqwest::Client,
    base_url: String,
    api_key: Secret,
    version: String,
    default_max_tokens: u32,
    timeouts: Timeouts,
}

impl AnthropicProvider {
    pub fn new(
        key: &str,
        c: &AnthropicConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let api_key = resolve_secret(
            &format!("{key}.api_key"),
            c.api_key.as_ref(),
            c.api_key_env.as_deref(),
            env,
        )?
        .ok_or_else(|| {
            invalid(
                format!("{key}.api_key"),
                "Anthropic needs an API key: set `api_key_env = \"ANTHROPIC_API_KEY\"` (or `api_key`)",
            )
        })?;
        let timeouts = c.timeouts();
        Ok(Self {
            client: http::client(key, &timeouts)?,
            base_url: c.base_url.clone(),
            api_key,
            version: c.version.clone(),
            default_max_tokens: c.default_max_tokens,
            timeouts,
        })
    }

    fn post(&self, body: &Value) -> Result<reqwest::RequestBuilder, ProviderError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| ProviderError::InvalidRequest(format!("cannot encode: {e}")))?;
        let mut key =
            reqwest::header::HeaderValue::from_str(self.api_key.expose()).map_err(|_| {
                ProviderError::InvalidRequest(
                    "the configured API key is not a valid header value".into(),
                )
            })?;
        key.set_sensitive(true);
        Ok(self
            .client
            .post(http::join(&self.base_url, "v1/messages"))
            .header("x-api-key", key)
            .header("anthropic-version", &self.version)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body))
    }

    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let body = to_anthropic(req, self.default_max_tokens, false)?;
        let resp: MessagesResponse = http::call_json(self.post(&body)?, &self.timeouts).await?;
        Ok(from_anthropic(resp))
    }

    pub async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let body = to_anthropic(req, self.default_max_tokens, true)?;
        let resp = http::send(self.post(&body)?, &self.timeouts, self.timeouts.request).await?;
        Ok(http::drive(
            Body::new(resp, self.timeouts.stream_idle),
            crate::sse::decoder(),
            AnthropicStream::default(),
        ))
    }
}

/// An OpenAI chat request as an Anthropic Messages request body.
pub fn to_anthropic(
    req: &ChatRequest,
    default_max_tokens: u32,
    stream: bool,
) -> Result<Value, ProviderError> {
    let mut system: Vec<String> = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in &req.messages {
        match m.role {
            Role::System | Role::Developer => system.push(m.text()),
            Role::User => push(&mut messages, "user", content_blocks(m.content.as_ref())?),
            Role::Assistant => {
                let mut blocks = Vec::new();
                let text = m.text();
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for call in m.tool_calls.iter().flatten() {
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.function.name,
                        "input": parse_arguments(&call.function.arguments)?,
                    }));
                }
                push(&mut messages, "assistant", blocks);
            }
            Role::Tool => {
                let id = m.tool_call_id.as_deref().ok_or_else(|| {
                    ProviderError::InvalidRequest("a tool message has no tool_call_id".into())
                })?;
                let block = json!({"type": "tool_result", "tool_use_id": id, "content": m.text()});
                push(&mut messages, "user", vec![block]);
            }
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert(
        "max_tokens".into(),
        json!(req.max_output_tokens().unwrap_or(default_max_tokens)),
    );
    body.insert(
        "messages".into(),
        Value::Array(
            messages
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect(),
        ),
    );
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), json!(p));
    }
    let stops = req.stop_sequences();
    if !stops.is_empty() {
        body.insert("stop_sequences".into(), json!(stops));
    }
    if let Some(tools) = &req.tools {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut tool = Map::new();
                tool.insert("name".into(), json!(t.function.name));
                if let Some(d) = &t.function.description {
                    tool.insert("description".into(), json!(d));
                }
                tool.insert(
                    "input_schema".into(),
                    t.function
                        .parameters
                        .clone()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                );
                Value::Object(tool)
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    let no_parallel = req.extra.get("parallel_tool_calls") == Some(&Value::Bool(false));
    let mut choice = match &req.tool_choice {
        None => None,
        Some(ToolChoice::Mode(m)) => Some(match m.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            other => {
                return Err(ProviderError::InvalidRequest(format!(
                    "tool_choice {other:?} is not one of none, auto, required"
                )));
            }
        }),
        Some(ToolChoice::Named(n)) => Some(json!({"type": "tool", "name": n.function.name})),
    };
    if no_parallel && req.tools.is_some() {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if let Value::Object(o) = c {
            o.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    if let Some(c) = choice {
        body.insert("tool_choice".into(), c);
    }
    if let Some(user) = &req.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if stream {
        body.insert("stream".into(), Value::Bool(true));
    }
    Ok(Value::Object(body))
}

/// Appends blocks, merging into the previous message when it has the same role: Anthropic
/// wants user and assistant turns to alternate, and tool results travel in a user turn (and
/// Bedrock's Converse wants the same).
pub(crate) fn push(
    messages: &mut Vec<(&'static str, Vec<Value>)>,
    role: &'static str,
    blocks: Vec<Value>,
) {
    if blocks.is_empty() {
        return;
    }
    match messages.last_mut() {
        Some((last, content)) if *last == role => content.extend(blocks),
        Some(_) | None => messages.push((role, blocks)),
    }
}

pub(crate) fn parse_arguments(arguments: &str) -> Result<Value, ProviderError> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(arguments).map_err(|_| {
        ProviderError::InvalidRequest("a tool call's arguments are not valid JSON".into())
    })
}

fn content_blocks(content: Option<&Content>) -> Result<Vec<Value>, ProviderError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(t)) => Ok(vec![json!({"type": "text", "text": t})]),
        Some(Content::Parts(parts)) => parts.iter().map(part_block).collect(),
    }
}

fn part_block(p: &ContentPart) -> Result<Value, ProviderError> {
    match (p.kind.as_str(), &p.text, &p.image_url) {
        ("text", Some(t), _) => Ok(json!({"type": "text", "text": t})),
        ("image_url", _, Some(img)) => Ok(match parse_data_url(&img.url) {
            Some((media_type, data)) => json!({
                "type": "image",
                "source": {"type": "base64", "media_type": media_type, "data": data}
            }),
            None => json!({"type": "image", "source": {"type": "url", "url": img.url}}),
        }),
        (kind, _, _) => Err(ProviderError::InvalidRequest(format!(
            "content parts of type {kind:?} cannot be sent to this model"
        ))),
    }
}

/// `data:image/png;base64,AAAA` as (`image/png`, `AAAA`).
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}

/// An Anthropic Messages response, as much of it as the translation reads.
#[derive(Debug, Deserialize)]
pub struct MessagesResponse {
    pub id: String,
    #[serde(default)]
    pub model: String,
    pub content: Vec<Block>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: CachedUsage,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// Thinking and other blocks the OpenAI format has no place for.
    #[serde(other)]
    Other,
}

/// Token usage as Anthropic reports it, and as Bedrock's Converse does under camelCase names
/// (with `cacheWrite` for Anthropic's `cache_creation`).
#[derive(Debug, Default, Deserialize)]
pub struct CachedUsage {
    #[serde(default, alias = "inputTokens")]
    pub input_tokens: u64,
    #[serde(default, alias = "outputTokens")]
    pub output_tokens: u64,
    #[serde(default, alias = "cacheWriteInputTokens")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, alias = "cacheReadInputTokens")]
    pub cache_read_input_tokens: Option<u64>,
}

impl CachedUsage {
    /// All input tokens, cached or not: every one of them is billed.
    pub(crate) fn input(&self) -> u64 {
        self.input_tokens
            + self.cache_creation_input_tokens.unwrap_or(0)
            + self.cache_read_input_tokens.unwrap_or(0)
    }
}

/// A stop reason of Anthropic's Messages API or of Bedrock's Converse, whose reasons are
/// Anthropic's and those of Bedrock's guardrails.
pub(crate) fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "end_turn" | "stop_sequence" | "pause_turn" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" | "guardrail_intervened" | "content_filtered" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// An Anthropic Messages response as an OpenAI chat completion.
pub fn from_anthropic(resp: MessagesResponse) -> ChatResponse {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in resp.content {
        match block {
            Block::Text { text: t } => text.push_str(&t),
            Block::ToolUse { id, name, input } => calls.push(ToolCall {
                id,
                kind: "function".into(),
                function: FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            Block::Other => {}
        }
    }
    ChatResponse::assistant(
        resp.id,
        resp.model,
        text,
        calls,
        resp.stop_reason.as_deref().map(finish_reason),
        Some(Usage::new(resp.usage.input(), resp.usage.output_tokens)),
    )
}

/// The HTTP status an Anthropic error type stands for.
pub(crate) fn error_status(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// Anthropic's streamed events as OpenAI chunks.
#[derive(Debug)]
pub struct AnthropicStream {
    id: String,
    model: String,
    created: i64,
    /// Anthropic content-block index -> OpenAI tool-call index.
    tools: HashMap<u64, u32>,
    input_tokens: u64,
    output_tokens: u64,
}

impl Default for AnthropicStream {
    fn default() -> Self {
        Self {
            id: completion_id(),
            model: String::new(),
            created: tenantry_core::unix_now(),
            tools: HashMap::new(),
            input_tokens: 0,
            output_tokens: 0,
        }
    }
}

fn field<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    v.pointer(path).and_then(Value::as_str)
}

impl AnthropicStream {
    fn chunk(&self, delta: Delta, finish: Option<FinishReason>) -> ChatChunk {
        ChatChunk::delta(&self.id, self.created, &self.model, delta, finish)
    }

    /// Translates one event's data; public for golden tests that feed recorded streams.
    pub fn event(
        &mut self,
        data: &str,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<Flow, ProviderError> {
        let v: Value = serde_json::from_str(data)
            .map_err(|e| ProviderError::malformed(format!("a stream event is not JSON: {e}")))?;
        let u64_at = |p: &str| v.pointer(p).and_then(Value::as_u64);
        match field(&v, "/type").unwrap_or("") {
            "message_start" => {
                if let Some(id) = field(&v, "/message/id") {
                    id.clone_into(&mut self.id);
                }
                if let Some(m) = field(&v, "/message/model") {
                    m.clone_into(&mut self.model);
                }
                if let Some(u) = v.pointer("/message/usage") {
                    let u: CachedUsage = serde_json::from_value(u.clone()).unwrap_or_default();
                    self.input_tokens = u.input();
                    self.output_tokens = u.output_tokens;
                }
                out.push_back(self.chunk(Delta::role(), None));
            }
            "content_block_start" => {
                let index = u64_at("/index").unwrap_or(0);
                match field(&v, "/content_block/type") {
                    Some("tool_use") => {
                        let n = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                        self.tools.insert(index, n);
                        let id = field(&v, "/content_block/id").unwrap_or_default();
                        let name = field(&v, "/content_block/name").unwrap_or_default();
                        out.push_back(
                            self.chunk(Delta::tool_call(ToolCallDelta::start(n, id, name)), None),
                        );
                    }
                    Some("text") => {
                        if let Some(t) = field(&v, "/content_block/text").filter(|t| !t.is_empty())
                        {
                            out.push_back(self.chunk(Delta::text(t), None));
                        }
                    }
                    Some(_) | None => {}
                }
            }
            "content_block_delta" => {
                let index = u64_at("/index").unwrap_or(0);
                match field(&v, "/delta/type") {
                    Some("text_delta") => {
                        let t = field(&v, "/delta/text").unwrap_or_default();
                        out.push_back(self.chunk(Delta::text(t), None));
                    }
                    Some("input_json_delta") => {
                        let part = field(&v, "/delta/partial_json").unwrap_or_default();
                        let Some(n) = self.tools.get(&index).copied() else {
                            return Err(ProviderError::malformed(
                                "input_json_delta for a block that is not a tool_use",
                            ));
                        };
                        if !part.is_empty() {
                            out.push_back(
                                self.chunk(
                                    Delta::tool_call(ToolCallDelta::arguments(n, part)),
                                    None,
                                ),
                            );
                        }
                    }
                    // thinking_delta, signature_delta, citations: no place in the OpenAI format.
                    Some(_) | None => {}
                }
            }
            "message_delta" => {
                if let Some(n) = u64_at("/usage/output_tokens") {
                    self.output_tokens = n;
                }
                if let Some(n) = u64_at("/usage/input_tokens") {
                    self.input_tokens = n
                        + u64_at("/usage/cache_creation_input_tokens").unwrap_or(0)
                        + u64_at("/usage/cache_read_input_tokens").unwrap_or(0);
                }
                if let Some(r) = field(&v, "/delta/stop_reason") {
                    out.push_back(self.chunk(Delta::default(), Some(finish_reason(r))));
                }
            }
            "message_stop" => {
                out.push_back(ChatChunk::usage_only(
                    &self.id,
                    self.created,
                    &self.model,
                    Usage::new(self.input_tokens, self.output_tokens),
                ));
                return Ok(Flow::Done);
            }
            "error" => {
                let kind = field(&v, "/error/type").unwrap_or("api_error");
                let message = field(&v, "/error/message").unwrap_or(kind);
                return Err(ProviderError::upstream(error_status(kind), message));
            }
            // ping, content_block_stop, and event types added later.
            _ => {}
        }
        Ok(Flow::Continue)
    }
}

impl Translator<SseEvent> for AnthropicStream {
    fn on_event(
        &mut self,
        ev: SseEvent,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<Flow, ProviderError> {
        if ev.data.trim().is_empty() {
            return Ok(Flow::Continue);
        }
        self.event(&ev.data, out)
    }

    fn on_eof(&mut self, _out: &mut VecDeque<ChatChunk>) -> Result<(), ProviderError> {
        Err(ProviderError::broken(
            "the stream ended before its message_stop event",
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn both_spellings_of_cached_usage_bill_every_input_token() {
        let anthropic: CachedUsage = serde_json::from_value(json!({
            "input_tokens": 10, "output_tokens": 5,
            "cache_creation_input_tokens": 3, "cache_read_input_tokens": 2
        }))
        .unwrap();
        let bedrock: CachedUsage = serde_json::from_value(json!({
            "inputTokens": 10, "outputTokens": 5, "totalTokens": 20,
            "cacheWriteInputTokens": 3, "cacheReadInputTokens": 2
        }))
        .unwrap();
        for u in [anthropic, bedrock] {
            assert_eq!((u.input(), u.output_tokens), (15, 5));
        }
        assert_eq!(finish_reason("refusal"), FinishReason::ContentFilter);
        assert_eq!(
            finish_reason("guardrail_intervened"),
            FinishReason::ContentFilter
        );
        assert_eq!(
            finish_reason("something_new"),
            FinishReason::Other("something_new".into())
        );
    }
}
