//! The OpenAI-compatible wire types agents speak to Tenantry: chat completions (whole and
//! streamed), embeddings and the model list.
//!
//! Every object keeps the fields it does not know in `extra`, so a request passed through to an
//! OpenAI-compatible upstream loses nothing. This module only describes data; it must never do
//! I/O or decide anything about routing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Fields of a wire object that Tenantry does not interpret, kept as they came.
pub type Extra = Map<String, Value>;

/// `POST /v1/chat/completions` request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The requested model or alias; replaced by the upstream's model id before sending.
    #[serde(default)]
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Deprecated by OpenAI in favour of `max_completion_tokens`, still widely sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatRequest {
    /// The output limit the caller asked for, if any (`max_completion_tokens` wins).
    pub fn max_output_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether a streaming caller asked for the final usage chunk.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// Stop sequences as a list, whichever form they came in.
    pub fn stop_sequences(&self) -> Vec<String> {
        match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    /// OpenAI's newer name for system instructions; translated like `system`.
    Developer,
    User,
    Assistant,
    Tool,
}

/// One message of a conversation, or the message of a response choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    /// `null` (or absent) for an assistant message that only calls tools.
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// On a `tool` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatMessage {
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(Content::Text(text.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            extra: Extra::new(),
        }
    }

    /// The text of the message: the string content, or its text parts joined.
    pub fn text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(c) => c.text(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl Content {
    pub fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

/// A part of a multi-part content: `{"type":"text","text":...}`,
/// `{"type":"image_url","image_url":{"url":...}}`, or any other kind, kept whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<ImageUrl>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    pub url: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool the model may call: `{"type":"function","function":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDef,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `"none"`, `"auto"`, `"required"`, or `{"type":"function","function":{"name":...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(String),
    Named(NamedToolChoice),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedToolChoice {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: NamedFunction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedFunction {
    pub name: String,
}

/// A tool call made by the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_kind() -> String {
    "function".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// The arguments as a JSON text, exactly as the model wrote it.
    #[serde(default)]
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    FunctionCall,
    /// A reason some OpenAI-compatible server invented; passed on as it came.
    #[serde(untagged)]
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            extra: Extra::new(),
        }
    }
}

/// A whole (non-streamed) chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub id: String,
    #[serde(default = "completion_object")]
    pub object: String,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Extra,
}

fn completion_object() -> String {
    "chat.completion".into()
}

impl ChatResponse {
    /// A completion with one assistant message (choice 0), as providers that are not
    /// OpenAI-compatible are translated: `text` is left out when it is empty and the message
    /// calls tools.
    pub fn assistant(
        id: String,
        model: String,
        text: String,
        calls: Vec<ToolCall>,
        finish_reason: Option<FinishReason>,
        usage: Option<Usage>,
    ) -> Self {
        let content = if text.is_empty() && !calls.is_empty() {
            None
        } else {
            Some(Content::Text(text))
        };
        ChatResponse {
            id,
            object: completion_object(),
            created: tenantry_core::unix_now(),
            model,
            choices: vec![Choice {
                index: 0,
                message: ChatMessage {
                    role: Role::Assistant,
                    content,
                    name: None,
                    tool_calls: (!calls.is_empty()).then_some(calls),
                    tool_call_id: None,
                    extra: Extra::new(),
                },
                finish_reason,
                extra: Extra::new(),
            }],
            usage,
            extra: Extra::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    pub message: ChatMessage,
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `chat.completion.chunk` of a streamed completion. The last chunk of a stream whose
/// caller asked for usage has no choices and a `usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    pub id: String,
    #[serde(default = "chunk_object")]
    pub object: String,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Extra,
}

fn chunk_object() -> String {
    "chat.completion.chunk".into()
}

impl ChatChunk {
    /// A chunk with one choice (index 0) carrying `delta` and `finish_reason`.
    pub fn delta(
        id: &str,
        created: i64,
        model: &str,
        delta: Delta,
        finish_reason: Option<FinishReason>,
    ) -> Self {
        Self {
            id: id.to_owned(),
            object: chunk_object(),
            created,
            model: model.to_owned(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                extra: Extra::new(),
            }],
            usage: None,
            extra: Extra::new(),
        }
    }

    /// The final usage-only chunk.
    pub fn usage_only(id: &str, created: i64, model: &str, usage: Usage) -> Self {
        Self {
            id: id.to_owned(),
            object: chunk_object(),
            created,
            model: model.to_owned(),
            choices: Vec::new(),
            usage: Some(usage),
            extra: Extra::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Delta,
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Delta {
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            content: Some(text.into()),
            ..Self::default()
        }
    }

    pub fn role() -> Self {
        Self {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            ..Self::default()
        }
    }

    pub fn tool_call(call: ToolCallDelta) -> Self {
        Self {
            tool_calls: Some(vec![call]),
            ..Self::default()
        }
    }
}

/// A piece of a tool call in a stream: the first piece of a call has its `id` and name, the
/// following ones append to its `arguments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FunctionCallDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

impl ToolCallDelta {
    /// The first piece of a call: id, type and name, with empty arguments.
    pub fn start(index: u32, id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            index,
            id: Some(id.into()),
            kind: Some(function_kind()),
            function: Some(FunctionCallDelta {
                name: Some(name.into()),
                arguments: Some(String::new()),
            }),
        }
    }

    /// A following piece: more argument text.
    pub fn arguments(index: u32, arguments: impl Into<String>) -> Self {
        Self {
            index,
            id: None,
            kind: None,
            function: Some(FunctionCallDelta {
                name: None,
                arguments: Some(arguments.into()),
            }),
        }
    }
}

/// `POST /v1/embeddings` request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    #[serde(default)]
    pub model: String,
    pub input: EmbeddingInput,
    /// `"float"` (default) or `"base64"` (little-endian f32, as OpenAI's client libraries ask).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl EmbeddingsRequest {
    pub fn wants_base64(&self) -> bool {
        self.encoding_format.as_deref() == Some("base64")
    }
}

/// One text, several texts, or pre-tokenised input (token ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    Tokens(Vec<u32>),
    ManyTokens(Vec<Vec<u32>>),
}

impl EmbeddingInput {
    /// Each input as text; token-id inputs are rendered as their ids separated by spaces, which
    /// is enough for counting and for the mock's deterministic vectors.
    pub fn texts(&self) -> Vec<String> {
        fn ids(v: &[u32]) -> String {
            v.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
        }
        match self {
            EmbeddingInput::One(s) => vec![s.clone()],
            EmbeddingInput::Many(v) => v.clone(),
            EmbeddingInput::Tokens(t) => vec![ids(t)],
            EmbeddingInput::ManyTokens(v) => v.iter().map(|t| ids(t)).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsResponse {
    #[serde(default = "list_object")]
    pub object: String,
    pub data: Vec<Embedding>,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub usage: EmbeddingsUsage,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EmbeddingsUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    #[serde(default = "embedding_object")]
    pub object: String,
    pub index: u32,
    pub embedding: EmbeddingVector,
}

fn embedding_object() -> String {
    "embedding".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

/// `GET /v1/models` response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    pub object: String,
    pub created: i64,
    pub owned_by: String,
}

fn list_object() -> String {
    "list".into()
}

impl ModelList {
    pub fn new(data: Vec<ModelInfo>) -> Self {
        Self {
            object: list_object(),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let body = serde_json::json!({
            "model": "default",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "input_audio", "input_audio": {"data": "x"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ],
            "logit_bias": {"50256": -100},
            "seed": 7,
            "response_format": {"type": "json_object"},
            "stop": "END"
        });
        let req: ChatRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(req.stop_sequences(), vec!["END".to_owned()]);
        assert_eq!(serde_json::to_value(&req).unwrap(), body);
    }

    #[test]
    fn unknown_finish_reasons_pass_through() {
        let f: FinishReason = serde_json::from_str("\"abort\"").unwrap();
        assert_eq!(f, FinishReason::Other("abort".into()));
        let f: FinishReason = serde_json::from_str("\"tool_calls\"").unwrap();
        assert_eq!(f, FinishReason::ToolCalls);
    }
}
