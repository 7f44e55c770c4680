//! The client of Amazon Bedrock's Converse and ConverseStream APIs, and the translation between
//! them and the OpenAI wire types: messages with content blocks, `system`, `toolConfig`,
//! `inferenceConfig`; `output.message`, `stopReason` and `usage`; and the event-stream frames
//! of ConverseStream (`messageStart`, `contentBlockStart`/`Delta`/`Stop`, `messageStop`,
//! `metadata`, exceptions) as `chat.completion.chunk`s.
//!
//! Requests are signed with SigV4 ([`crate::sigv4`]) for service `bedrock`. The translation
//! functions are pure; the client adds the signed HTTP call. It must never send or log the
//! secret key.

use std::collections::{HashMap, VecDeque};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::config::{BedrockConfig, ConfigError, Secret, Timeouts, invalid};
use crate::error::ProviderError;
use crate::eventstream::{Frame, FrameDecoder};
use crate::http::{self, Body, Flow, Translator};
use crate::providers::anthropic::{
    CachedUsage, finish_reason, parse_arguments, parse_data_url, push,
};
use crate::providers::{ChatStream, completion_id};
use crate::sigv4::{self, Credentials, SignableRequest};
use crate::wire::{
    ChatChunk, ChatRequest, ChatResponse, Content, ContentPart, Delta, FinishReason, FunctionCall,
    Role, ToolCall, ToolCallDelta, ToolChoice, Usage,
};

#[derive(Debug)]
pub struct BedrockProvider {
    client: reqwest::Client,
    endpoint: String,
    region: String,
    credentials: Credentials,
    default_max_tokens: u32,
    timeouts: Timeouts,
}

fn credential(
    inline: Option<&Secret>,
    env_name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Secret> {
    inline.cloned().or_else(|| {
        env(env_name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| Secret::new(v.trim()))
    })
}

impl BedrockProvider {
    pub fn new(
        key: &str,
        c: &BedrockConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        if c.region.is_empty()
            || !c
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid(
                format!("{key}.region"),
                "use an AWS region such as us-east-1",
            ));
        }
        let missing = |field: &str, var: &str| {
            invalid(
                format!("{key}.{field}"),
                format!("no AWS credential: set `{field}` or export {var}"),
            )
        };
        let access = credential(c.access_key_id.as_ref(), &c.access_key_id_env, env)
            .ok_or_else(|| missing("access_key_id", &c.access_key_id_env))?;
        let secret = credential(c.secret_access_key.as_ref(), &c.secret_access_key_env, env)
            .ok_or_else(|| missing("secret_access_key", &c.secret_access_key_env))?;
        let session = credential(c.session_token.as_ref(), &c.session_token_env, env);
        let endpoint = c
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://bedrock-runtime.{}.amazonaws.com", c.region));
        if reqwest::Url::parse(&endpoint).is_err() {
            return Err(invalid(format!("{key}.endpoint"), "not a URL"));
        }
        let timeouts = c.timeouts();
        Ok(Self {
            client: http::client(key, &timeouts)?,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            region: c.region.clone(),
            credentials: Credentials {
                access_key_id: access.expose().to_owned(),
                secret_access_key: secret,
                session_token: session,
            },
            default_max_tokens: c.default_max_tokens,
            timeouts,
        })
    }

    /// A signed POST of `body` to `/model/{model}/{action}`.
    fn post(
        &self,
        model: &str,
        action: &str,
        body: &Value,
        accept: &str,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| ProviderError::InvalidRequest(format!("cannot encode: {e}")))?;
        let url = format!(
            "{}/model/{}/{action}",
            self.endpoint,
            sigv4::uri_encode(model, false)
        );
        let url = reqwest::Url::parse(&url)
            .map_err(|_| ProviderError::InvalidRequest("the model id makes no valid URL".into()))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(ProviderError::InvalidRequest("endpoint has no host".into())),
        };
        let token = match &self.credentials.session_token {
            Some(t) => {
                let mut v = reqwest::header::HeaderValue::from_str(t.expose()).map_err(|_| {
                    ProviderError::InvalidRequest("a credential is not a valid header value".into())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let uri = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let signed = sigv4::sign(
            &SignableRequest {
                method: "POST",
                uri: &uri,
                headers: &[("content-type", "application/json"), ("host", &host)],
                payload: &body,
            },
            &self.credentials,
            &self.region,
            "bedrock",
            std::time::SystemTime::now(),
        )
        .map_err(|e| ProviderError::InvalidRequest(e.to_string()))?;
        let mut rb = self
            .client
            .post(url.clone())
            .header(reqwest::header::ACCEPT, accept)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-amz-date", signed.amz_date);
        if let Some(v) = token {
            rb = rb.header("x-amz-security-token", v);
        }
        let mut auth =
            reqwest::header::HeaderValue::from_str(&signed.authorization).map_err(|_| {
                ProviderError::InvalidRequest("the access key id is not printable".into())
            })?;
        auth.set_sensitive(true);
        Ok(rb.header(reqwest::header::AUTHORIZATION, auth).body(body))
    }

    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let body = to_converse(req, self.default_max_tokens)?;
        let rb = self.post(&req.model, "converse", &body, "application/json")?;
        let resp: ConverseResponse = http::call_json(rb, &self.timeouts).await?;
        from_converse(resp, &req.model)
    }

    pub async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let body = to_converse(req, self.default_max_tokens)?;
        let rb = self.post(
            &req.model,
            "converse-stream",
            &body,
            "application/vnd.amazon.eventstream",
        )?;
        let resp = http::send(rb, &self.timeouts, self.timeouts.request).await?;
        Ok(http::drive(
            Body::new(resp, self.timeouts.stream_idle),
            FrameDecoder::default(),
            BedrockStream::new(&req.model),
        ))
    }
}

/// An OpenAI chat request as a Converse request body (the model id goes in the URL).
pub fn to_converse(req: &ChatRequest, default_max_tokens: u32) -> Result<Value, ProviderError> {
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in &req.messages {
        match m.role {
            Role::System | Role::Developer => system.push(json!({"text": m.text()})),
            Role::User => push(&mut messages, "user", content_blocks(m.content.as_ref())?),
            Role::Assistant => {
                let mut blocks = Vec::new();
                let text = m.text();
                if !text.is_empty() {
                    blocks.push(json!({"text": text}));
                }
                for call in m.tool_calls.iter().flatten() {
                    blocks.push(json!({"toolUse": {
                        "toolUseId": call.id,
                        "name": call.function.name,
                        "input": parse_arguments(&call.function.arguments)?,
                    }}));
                }
                push(&mut messages, "assistant", blocks);
            }
            Role::Tool => {
                let id = m.tool_call_id.as_deref().ok_or_else(|| {
                    ProviderError::InvalidRequest("a tool message has no tool_call_id".into())
                })?;
                push(
                    &mut messages,
                    "user",
                    vec![json!({"toolResult": {"toolUseId": id, "content": [{"text": m.text()}]}})],
                );
            }
        }
    }
    let mut body = Map::new();
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
        body.insert("system".into(), Value::Array(system));
    }
    let mut inference = Map::new();
    inference.insert(
        "maxTokens".into(),
        json!(req.max_output_tokens().unwrap_or(default_max_tokens)),
    );
    if let Some(t) = req.temperature {
        inference.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        inference.insert("topP".into(), json!(p));
    }
    let stops = req.stop_sequences();
    if !stops.is_empty() {
        inference.insert("stopSequences".into(), json!(stops));
    }
    body.insert("inferenceConfig".into(), Value::Object(inference));
    if let Some(tools) = &req.tools {
        let specs: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut spec = Map::new();
                spec.insert("name".into(), json!(t.function.name));
                if let Some(d) = &t.function.description {
                    spec.insert("description".into(), json!(d));
                }
                spec.insert(
                    "inputSchema".into(),
                    json!({"json": t.function.parameters.clone()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}}))}),
                );
                json!({"toolSpec": spec})
            })
            .collect();
        let mut config = Map::new();
        config.insert("tools".into(), Value::Array(specs));
        let choice = match &req.tool_choice {
            None => None,
            Some(ToolChoice::Mode(m)) => match m.as_str() {
                "auto" => Some(json!({"auto": {}})),
                "required" => Some(json!({"any": {}})),
                // Converse has no "none"; leaving the choice out lets the model decide.
                "none" => None,
                other => {
                    return Err(ProviderError::InvalidRequest(format!(
                        "tool_choice {other:?} is not one of none, auto, required"
                    )));
                }
            },
            Some(ToolChoice::Named(n)) => Some(json!({"tool": {"name": n.function.name}})),
        };
        if let Some(c) = choice {
            config.insert("toolChoice".into(), c);
        }
        body.insert("toolConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(body))
}

fn content_blocks(content: Option<&Content>) -> Result<Vec<Value>, ProviderError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(t)) => Ok(vec![json!({"text": t})]),
        Some(Content::Parts(parts)) => parts.iter().map(part_block).collect(),
    }
}

fn part_block(p: &ContentPart) -> Result<Value, ProviderError> {
    match (p.kind.as_str(), &p.text, &p.image_url) {
        ("text", Some(t), _) => Ok(json!({"text": t})),
        ("image_url", _, Some(img)) => {
            let (media_type, data) = parse_data_url(&img.url).ok_or_else(|| {
                ProviderError::InvalidRequest(
                    "Bedrock takes images inline only: send a data: URL".into(),
                )
            })?;
            let format = media_type.strip_prefix("image/").unwrap_or(media_type);
            Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
        }
        (kind, _, _) => Err(ProviderError::InvalidRequest(format!(
            "content parts of type {kind:?} cannot be sent to this model"
        ))),
    }
}

/// A Converse response, as much of it as the translation reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseResponse {
    pub output: ConverseOutput,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: Option<CachedUsage>,
}

#[derive(Debug, Deserialize)]
pub struct ConverseOutput {
    #[serde(default)]
    pub message: Option<ConverseMessage>,
}

#[derive(Debug, Deserialize)]
pub struct ConverseMessage {
    #[serde(default)]
    pub content: Vec<Value>,
}

/// A Converse response as an OpenAI chat completion. Bedrock gives no id; one is made.
pub fn from_converse(resp: ConverseResponse, model: &str) -> Result<ChatResponse, ProviderError> {
    let message = resp
        .output
        .message
        .ok_or_else(|| ProviderError::malformed("the answer has no output.message"))?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in message.content {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(u) = block.get("toolUse") {
            let id = u.get("toolUseId").and_then(Value::as_str);
            let name = u.get("name").and_then(Value::as_str);
            let (Some(id), Some(name)) = (id, name) else {
                return Err(ProviderError::malformed(
                    "a toolUse block lacks toolUseId or name",
                ));
            };
            calls.push(ToolCall {
                id: id.to_owned(),
                kind: "function".into(),
                function: FunctionCall {
                    name: name.to_owned(),
                    arguments: u
                        .get("input")
                        .cloned()
                        .unwrap_or_else(|| json!({}))
                        .to_string(),
                },
            });
        }
    }
    Ok(ChatResponse::assistant(
        completion_id(),
        model.to_owned(),
        text,
        calls,
        resp.stop_reason.as_deref().map(finish_reason),
        resp.usage.map(|u| Usage::new(u.input(), u.output_tokens)),
    ))
}

/// The HTTP status a Bedrock exception type stands for.
fn exception_status(kind: &str) -> u16 {
    match kind {
        "throttlingException" => 429,
        "serviceUnavailableException" => 503,
        "modelTimeoutException" => 408,
        "validationException" => 400,
        "accessDeniedException" => 403,
        "resourceNotFoundException" => 404,
        _ => 500,
    }
}

/// ConverseStream's frames as OpenAI chunks.
#[derive(Debug)]
pub struct BedrockStream {
    id: String,
    model: String,
    created: i64,
    tools: HashMap<u64, u32>,
    stopped: bool,
}

impl BedrockStream {
    pub fn new(model: &str) -> Self {
        Self {
            id: completion_id(),
            model: model.to_owned(),
            created: tenantry_core::unix_now(),
            tools: HashMap::new(),
            stopped: false,
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<FinishReason>) -> ChatChunk {
        ChatChunk::delta(&self.id, self.created, &self.model, delta, finish)
    }

    /// Translates one frame; public for golden tests.
    pub fn frame(
        &mut self,
        frame: &Frame,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<Flow, ProviderError> {
        let payload = || -> Result<Value, ProviderError> {
            if frame.payload().is_empty() {
                return Ok(json!({}));
            }
            serde_json::from_slice(frame.payload())
                .map_err(|e| ProviderError::malformed(format!("an event payload is not JSON: {e}")))
        };
        match frame.header_str(":message-type") {
            Some("event") => {}
            Some("exception") => {
                let kind = frame.header_str(":exception-type").unwrap_or("exception");
                let v = payload().unwrap_or_else(|_| json!({}));
                let message = v
                    .get("message")
                    .or_else(|| v.get("Message"))
                    .and_then(Value::as_str)
                    .unwrap_or(kind);
                return Err(ProviderError::upstream(exception_status(kind), message));
            }
            other => {
                let message = frame
                    .header_str(":error-message")
                    .or_else(|| frame.header_str(":error-code"))
                    .unwrap_or("unexpected frame");
                return Err(ProviderError::upstream(
                    500,
                    format!("{message} ({})", other.unwrap_or("no message type")),
                ));
            }
        }
        let v = payload()?;
        let index = v
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match frame.header_str(":event-type").unwrap_or("") {
            "messageStart" => out.push_back(self.chunk(Delta::role(), None)),
            "contentBlockStart" => {
                if let Some(t) = v.pointer("/start/toolUse") {
                    let n = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                    self.tools.insert(index, n);
                    let id = t
                        .get("toolUseId")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
                    out.push_back(
                        self.chunk(Delta::tool_call(ToolCallDelta::start(n, id, name)), None),
                    );
                }
            }
            "contentBlockDelta" => {
                if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                    out.push_back(self.chunk(Delta::text(t), None));
                } else if let Some(args) = v.pointer("/delta/toolUse/input").and_then(Value::as_str)
                {
                    let Some(n) = self.tools.get(&index).copied() else {
                        return Err(ProviderError::malformed(
                            "a toolUse delta for a block that did not start a tool call",
                        ));
                    };
                    if !args.is_empty() {
                        out.push_back(
                            self.chunk(Delta::tool_call(ToolCallDelta::arguments(n, args)), None),
                        );
                    }
                }
            }
            "messageStop" => {
                self.stopped = true;
                let reason = v
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                out.push_back(self.chunk(Delta::default(), Some(finish_reason(reason))));
            }
            "metadata" => {
                if let Some(u) = v.get("usage") {
                    let u: CachedUsage = serde_json::from_value(u.clone()).map_err(|e| {
                        ProviderError::malformed(format!("metadata usage is malformed: {e}"))
                    })?;
                    out.push_back(ChatChunk::usage_only(
                        &self.id,
                        self.created,
                        &self.model,
                        Usage::new(u.input(), u.output_tokens),
                    ));
                }
                return Ok(Flow::Done);
            }
            // contentBlockStop and event types added later.
            _ => {}
        }
        Ok(Flow::Continue)
    }
}

impl Translator<Frame> for BedrockStream {
    fn on_event(
        &mut self,
        frame: Frame,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<Flow, ProviderError> {
        self.frame(&frame, out)
    }

    fn on_eof(&mut self, _out: &mut VecDeque<ChatChunk>) -> Result<(), ProviderError> {
        // The metadata event is optional; the message is whole once it has stopped.
        if self.stopped {
            Ok(())
        } else {
            Err(ProviderError::broken(
                "the event stream ended before messageStop",
            ))
        }
    }
}
