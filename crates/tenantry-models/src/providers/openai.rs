//! The client of any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server,
//! LiteLLM): the request is passed through with only the model id and the streaming options
//! changed, and `data:` events are parsed until `[DONE]`.
//!
//! It must never drop a field of the caller's request: whatever the upstream understands
//! reaches it.

use std::collections::VecDeque;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use tenantry_core::sse::SseEvent;

use crate::config::{
    ConfigError, MaxTokensField, OpenAiConfig, Secret, Timeouts, invalid, resolve_secret,
};
use crate::error::ProviderError;
use crate::http::{self, Body, Flow, Translator};
use crate::providers::ChatStream;
use crate::wire::{ChatChunk, ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse};

#[derive(Debug)]
pub struct OpenAiProvider {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<Secret>,
    headers: HeaderMap,
    max_tokens_field: MaxTokensField,
    timeouts: Timeouts,
}

impl OpenAiProvider {
    pub fn new(
        key: &str,
        c: &OpenAiConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        if !(c.base_url.starts_with("http://") || c.base_url.starts_with("https://")) {
            return Err(invalid(
                format!("{key}.base_url"),
                "use an http:// or https:// URL ending before /chat/completions, e.g. https://api.openai.com/v1",
            ));
        }
        let api_key = resolve_secret(
            &format!("{key}.api_key"),
            c.api_key.as_ref(),
            c.api_key_env.as_deref(),
            env,
        )?;
        let mut headers = HeaderMap::new();
        for (name, value) in &c.headers {
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                invalid(
                    format!("{key}.headers"),
                    format!("{name:?} is not a header name"),
                )
            })?;
            let mut v = HeaderValue::from_str(value).map_err(|_| {
                invalid(format!("{key}.headers.{name}"), "not a valid header value")
            })?;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        let timeouts = c.timeouts();
        Ok(Self {
            client: http::client(key, &timeouts)?,
            base_url: c.base_url.clone(),
            api_key,
            headers,
            max_tokens_field: c.max_tokens_field,
            timeouts,
        })
    }

    fn post(&self, path: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        let mut rb = self
            .client
            .post(http::join(&self.base_url, path))
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(k) = &self.api_key {
            rb = rb.bearer_auth(k.expose());
        }
        rb
    }

    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let body = request_body(req, false, self.max_tokens_field)?;
        http::call_json(self.post("chat/completions", body), &self.timeouts).await
    }

    pub async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let body = request_body(req, true, self.max_tokens_field)?;
        let resp = http::send(
            self.post("chat/completions", body),
            &self.timeouts,
            self.timeouts.request,
        )
        .await?;
        Ok(http::drive(
            Body::new(resp, self.timeouts.stream_idle),
            crate::sse::decoder(),
            OpenAiStream::default(),
        ))
    }

    pub async fn embeddings(
        &self,
        req: &EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        let body = serde_json::to_vec(req)
            .map_err(|e| ProviderError::InvalidRequest(format!("cannot encode: {e}")))?;
        http::call_json(self.post("embeddings", body), &self.timeouts).await
    }
}

/// The caller's request as sent upstream. A stream always asks for the usage chunk, which
/// metering needs; the router gives it to the caller only if the caller asked.
pub(crate) fn request_body(
    req: &ChatRequest,
    stream: bool,
    max_tokens_field: MaxTokensField,
) -> Result<Vec<u8>, ProviderError> {
    let mut v = serde_json::to_value(req)
        .map_err(|e| ProviderError::InvalidRequest(format!("cannot encode: {e}")))?;
    if let Value::Object(m) = &mut v {
        // The limit travels in the one field the upstream understands.
        let (from, to) = match max_tokens_field {
            MaxTokensField::MaxTokens => ("max_completion_tokens", "max_tokens"),
            MaxTokensField::MaxCompletionTokens => ("max_tokens", "max_completion_tokens"),
        };
        if let Some(limit) = m.remove(from) {
            m.entry(to).or_insert(limit);
        }
        if stream {
            m.insert("stream".into(), Value::Bool(true));
            let mut opts = match m.remove("stream_options") {
                Some(Value::Object(o)) => o,
                Some(_) | None => serde_json::Map::new(),
            };
            opts.insert("include_usage".into(), Value::Bool(true));
            m.insert("stream_options".into(), Value::Object(opts));
        } else {
            m.remove("stream");
            m.remove("stream_options");
        }
    }
    serde_json::to_vec(&v).map_err(|e| ProviderError::InvalidRequest(format!("cannot encode: {e}")))
}

/// Parses `data:` events into chunks until `[DONE]`.
#[derive(Debug, Default)]
pub(crate) struct OpenAiStream {
    saw_finish: bool,
}

impl Translator<SseEvent> for OpenAiStream {
    fn on_event(
        &mut self,
        ev: SseEvent,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<Flow, ProviderError> {
        let data = ev.data.trim();
        if data == "[DONE]" {
            return Ok(Flow::Done);
        }
        if data.is_empty() {
            return Ok(Flow::Continue);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| ProviderError::malformed(format!("a stream event is not JSON: {e}")))?;
        if let Some(err) = stream_error(&v) {
            return Err(err);
        }
        let chunk: ChatChunk = serde_json::from_value(v).map_err(|e| {
            ProviderError::malformed(format!("a stream event is not a completion chunk: {e}"))
        })?;
        if chunk.choices.iter().any(|c| c.finish_reason.is_some()) {
            self.saw_finish = true;
        }
        out.push_back(chunk);
        Ok(Flow::Continue)
    }

    fn on_eof(&mut self, _out: &mut VecDeque<ChatChunk>) -> Result<(), ProviderError> {
        // Some servers omit `[DONE]`; a stream that got as far as a finish reason is whole.
        if self.saw_finish {
            Ok(())
        } else {
            Err(ProviderError::broken(
                "the stream ended before its [DONE] marker",
            ))
        }
    }
}

/// An error reported inside a stream: `{"error": {...}}` or vLLM's `{"object": "error", ...}`.
fn stream_error(v: &Value) -> Option<ProviderError> {
    let err = match (v.get("error"), v.get("object").and_then(Value::as_str)) {
        (Some(e), _) => e,
        (None, Some("error")) => v,
        (None, _) => return None,
    };
    let status = err
        .get("code")
        .and_then(Value::as_u64)
        .filter(|c| (400..600).contains(c))
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or(502);
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| json!(err).to_string());
    Some(ProviderError::upstream(status, message))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn body(req: serde_json::Value, stream: bool, field: MaxTokensField) -> Value {
        let req: ChatRequest = serde_json::from_value(req).unwrap();
        serde_json::from_slice(&request_body(&req, stream, field).unwrap()).unwrap()
    }

    #[test]
    fn the_output_limit_travels_in_the_configured_field() {
        let req = json!({"model": "m", "messages": [], "max_tokens": 7});
        let b = body(req, false, MaxTokensField::MaxCompletionTokens);
        assert_eq!(b["max_completion_tokens"], 7);
        assert!(b.get("max_tokens").is_none());
        let req = json!({"model": "m", "messages": [], "max_completion_tokens": 9});
        let b = body(req, false, MaxTokensField::MaxTokens);
        assert_eq!(b["max_tokens"], 9);
        assert!(b.get("max_completion_tokens").is_none());
    }

    #[test]
    fn streams_always_ask_for_usage_and_keep_other_stream_options() {
        let req = json!({"model": "m", "messages": [], "stream": false,
                         "stream_options": {"include_usage": false, "continuous_usage_stats": true}});
        let b = body(req.clone(), true, MaxTokensField::MaxTokens);
        assert_eq!(b["stream"], true);
        assert_eq!(
            b["stream_options"],
            json!({"include_usage": true, "continuous_usage_stats": true})
        );
        let b = body(req, false, MaxTokensField::MaxTokens);
        assert!(b.get("stream").is_none() && b.get("stream_options").is_none());
    }
}
