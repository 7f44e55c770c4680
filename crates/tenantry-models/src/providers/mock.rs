//! The `mock` provider: deterministic, offline answers for demos, tests and load tests.
//!
//! It answers `echo: <last user message>`, or plays a script of canned replies (tool calls
//! included) chosen by how many assistant turns the conversation already has. Token counts
//! come from [`crate::tokens`], so usage is realistic and reproducible; `max_tokens` truncates
//! the reply as a real model would. Latency, time to first token and the pace of streamed words
//! are configurable. Embeddings are unit vectors derived from a hash of the text.
//!
//! It must never touch the network or depend on anything but the request and its config, so
//! the same request always gets the same answer.

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine;
use futures_util::stream;
use sha2::{Digest, Sha256};

use crate::config::MockConfig;
use crate::error::ProviderError;
use crate::providers::{ChatStream, completion_id, tool_call_id};
use crate::tokens;
use crate::wire::{
    ChatChunk, ChatMessage, ChatRequest, ChatResponse, Delta, Embedding, EmbeddingVector,
    EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage, Extra, FinishReason, FunctionCall,
    Role, ToolCall, ToolCallDelta, Usage,
};

#[derive(Debug, Clone)]
pub struct MockProvider {
    config: MockConfig,
}

/// A reply decided for a request, before it is shaped as a response or a stream.
#[derive(Debug)]
struct Reply {
    /// Word pieces whose concatenation is the reply text (each carries its trailing space).
    pieces: Vec<String>,
    calls: Vec<ToolCall>,
    finish: FinishReason,
    usage: Usage,
}

impl MockProvider {
    pub fn new(config: MockConfig) -> Self {
        Self { config }
    }

    fn reply(&self, req: &ChatRequest) -> Reply {
        let turn = req
            .messages
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .count();
        let (text, scripted_calls) = match self.config.script.len() {
            0 => {
                let last_user = req
                    .messages
                    .iter()
                    .rev()
                    .find(|m| m.role == Role::User)
                    .map(ChatMessage::text)
                    .unwrap_or_default();
                (format!("echo: {last_user}"), Vec::new())
            }
            n => {
                let r = &self.config.script[turn.min(n - 1)];
                (r.content.clone().unwrap_or_default(), r.tool_calls.clone())
            }
        };
        let limit = req.max_output_tokens().map(u64::from).unwrap_or(u64::MAX);
        let mut used = 0u64;
        let mut pieces = Vec::new();
        let mut truncated = false;
        for piece in text.split_inclusive(char::is_whitespace) {
            let n = tokens::count_text(piece);
            if used + n > limit {
                truncated = true;
                break;
            }
            used += n;
            pieces.push(piece.to_owned());
        }
        let mut calls = Vec::new();
        if !truncated {
            for (i, c) in scripted_calls.iter().enumerate() {
                let call = ToolCall {
                    id: tool_call_id(&format!("{}:{}", req.messages.len(), c.name), i),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: c.name.clone(),
                        arguments: c.arguments.to_string(),
                    },
                };
                let n = tokens::count_text(&call.function.name)
                    + tokens::count_text(&call.function.arguments);
                if used + n > limit {
                    truncated = true;
                    break;
                }
                used += n;
                calls.push(call);
            }
        }
        let finish = if truncated {
            FinishReason::Length
        } else if calls.is_empty() {
            FinishReason::Stop
        } else {
            FinishReason::ToolCalls
        };
        Reply {
            pieces,
            calls,
            finish,
            usage: Usage::new(tokens::count_prompt(req), used),
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let r = self.reply(req);
        let pace = u32::try_from(r.pieces.len().saturating_sub(1)).unwrap_or(u32::MAX);
        let wait = Self::ms(self.config.latency_ms)
            + Self::ms(self.config.ttft_ms)
            + Self::ms(self.config.token_interval_ms) * pace;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let text: String = r.pieces.concat();
        Ok(ChatResponse::assistant(
            completion_id(),
            req.model.clone(),
            text,
            r.calls,
            Some(r.finish),
            Some(r.usage),
        ))
    }

    pub async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
        if self.config.latency_ms > 0 {
            tokio::time::sleep(Self::ms(self.config.latency_ms)).await;
        }
        let r = self.reply(req);
        let id = completion_id();
        let created = tenantry_core::unix_now();
        let model = req.model.as_str();
        let chunk = |d: Delta, f: Option<FinishReason>| ChatChunk::delta(&id, created, model, d, f);
        // Each entry: the chunk, and whether a token delay precedes it.
        let mut out: VecDeque<(ChatChunk, bool)> = VecDeque::new();
        out.push_back((chunk(Delta::role(), None), false));
        for p in r.pieces {
            out.push_back((chunk(Delta::text(p), None), true));
        }
        for (i, call) in r.calls.into_iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            out.push_back((
                chunk(
                    Delta::tool_call(ToolCallDelta::start(i, call.id, call.function.name)),
                    None,
                ),
                true,
            ));
            out.push_back((
                chunk(
                    Delta::tool_call(ToolCallDelta::arguments(i, call.function.arguments)),
                    None,
                ),
                false,
            ));
        }
        out.push_back((chunk(Delta::default(), Some(r.finish)), false));
        out.push_back((ChatChunk::usage_only(&id, created, model, r.usage), false));
        let ttft = Self::ms(self.config.ttft_ms);
        let interval = Self::ms(self.config.token_interval_ms);
        Ok(Box::pin(stream::unfold(
            (out, false),
            move |(mut out, mut first_token_sent)| async move {
                let (c, is_token) = out.pop_front()?;
                if is_token {
                    let wait = if first_token_sent { interval } else { ttft };
                    first_token_sent = true;
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                }
                Some((Ok(c), (out, first_token_sent)))
            },
        )))
    }

    pub async fn embeddings(
        &self,
        req: &EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        if self.config.latency_ms > 0 {
            tokio::time::sleep(Self::ms(self.config.latency_ms)).await;
        }
        let dims = req.dimensions.unwrap_or(self.config.embedding_dimensions);
        if dims == 0 || dims > 8192 {
            return Err(ProviderError::InvalidRequest(
                "dimensions must be between 1 and 8192".into(),
            ));
        }
        let texts = req.input.texts();
        let mut prompt_tokens = 0;
        let mut data = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            prompt_tokens += tokens::count_text(text);
            let v = embed(&req.model, text, dims);
            let embedding = if req.wants_base64() {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                EmbeddingVector::Float(v)
            };
            data.push(Embedding {
                object: "embedding".into(),
                index: u32::try_from(i).unwrap_or(u32::MAX),
                embedding,
            });
        }
        Ok(EmbeddingsResponse {
            object: "list".into(),
            data,
            model: req.model.clone(),
            usage: EmbeddingsUsage {
                prompt_tokens,
                total_tokens: prompt_tokens,
            },
            extra: Extra::new(),
        })
    }
}

/// A unit vector of `dims` components derived from SHA-256 of the model and the text.
fn embed(model: &str, text: &str, dims: u32) -> Vec<f32> {
    let dims = usize::try_from(dims).unwrap_or(0);
    let mut v = Vec::with_capacity(dims);
    let mut block = 0u32;
    while v.len() < dims {
        let mut h = Sha256::new();
        h.update(model.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update(block.to_be_bytes());
        for word in h.finalize().chunks_exact(4) {
            if v.len() == dims {
                break;
            }
            let u = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
            v.push((f64::from(u) / f64::from(u32::MAX) * 2.0 - 1.0) as f32);
        }
        block += 1;
    }
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
    v
}
