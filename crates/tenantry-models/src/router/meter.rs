//! The meter of a streamed answer: what it used so far (the upstream's usage when it reports
//! one, else counted as chunks pass), its time to first token and latency, and the wrapper
//! that passes chunks on under the public model name and holds the usage chunk back for the
//! end.
//!
//! It must never buffer the stream: each chunk is counted and passed on as it arrives.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use tenantry_core::Money;

use super::Pricing;
use crate::error::ProviderError;
use crate::providers::ChatStream;
use crate::tokens::StreamCounter;
use crate::wire::{ChatChunk, Usage};

#[derive(Debug)]
struct MeterState {
    started: Instant,
    prompt_estimate: u64,
    content: StreamCounter,
    tool_text: StreamCounter,
    upstream_usage: Option<Usage>,
    ttft: Option<Duration>,
    ended: Option<Duration>,
    finished: bool,
    error: Option<ProviderError>,
    pricing: Pricing,
}

/// Usage of a stream so far, shared between the stream and whoever settles it.
#[derive(Debug, Clone)]
pub struct StreamMeter(Arc<Mutex<MeterState>>);

/// What a stream used: the upstream's own usage when it reported one, else counted.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamUsage {
    pub usage: Usage,
    pub usage_counted: bool,
    pub cost: Money,
    /// Time to the first content or tool-call chunk.
    pub ttft: Option<Duration>,
    /// Until the end of the stream, or until now if it has not ended.
    pub latency: Duration,
    /// The answer reached its end (a finish reason, or the upstream's usage).
    pub finished: bool,
    /// The stream ended with this error.
    pub error: Option<ProviderError>,
}

impl StreamMeter {
    /// The meter of a stream opened at `started`, whose prompt is estimated at
    /// `prompt_estimate` tokens in case the upstream reports no usage.
    pub(super) fn new(started: Instant, prompt_estimate: u64, pricing: Pricing) -> Self {
        StreamMeter(Arc::new(Mutex::new(MeterState {
            started,
            prompt_estimate,
            content: StreamCounter::default(),
            tool_text: StreamCounter::default(),
            upstream_usage: None,
            ttft: None,
            ended: None,
            finished: false,
            error: None,
            pricing,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, MeterState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn snapshot(&self) -> StreamUsage {
        let s = self.lock();
        let (usage, counted) = match &s.upstream_usage {
            Some(u) => (u.clone(), false),
            None => (
                Usage::new(s.prompt_estimate, s.content.total() + s.tool_text.total()),
                true,
            ),
        };
        StreamUsage {
            cost: s.pricing.cost(usage.prompt_tokens, usage.completion_tokens),
            usage,
            usage_counted: counted,
            ttft: s.ttft,
            latency: s.ended.unwrap_or_else(|| s.started.elapsed()),
            finished: s.finished,
            error: s.error.clone(),
        }
    }

    /// Records one chunk; returns it as the caller should see it, or `None` to hold it back.
    fn observe(&self, mut c: ChatChunk, model: &str, include_usage: bool) -> Option<ChatChunk> {
        let mut s = self.lock();
        let mut output = false;
        for choice in &c.choices {
            if let Some(t) = &choice.delta.content {
                if !t.is_empty() {
                    output = true;
                }
                s.content.push(t);
            }
            for call in choice.delta.tool_calls.iter().flatten() {
                output = true;
                if let Some(f) = &call.function {
                    if let Some(n) = &f.name {
                        s.tool_text.end_word();
                        s.tool_text.push(n);
                        s.tool_text.end_word();
                    }
                    if let Some(a) = &f.arguments {
                        s.tool_text.push(a);
                    }
                }
            }
            if choice.finish_reason.is_some() {
                s.finished = true;
            }
        }
        if output && s.ttft.is_none() {
            s.ttft = Some(s.started.elapsed());
        }
        if let Some(u) = c.usage.take() {
            s.upstream_usage = Some(u);
            s.finished = true;
            if c.choices.is_empty() {
                // The caller's usage chunk is sent at the end, once, if it asked.
                return None;
            }
        }
        drop(s);
        if !include_usage {
            c.usage = None;
        }
        model.clone_into(&mut c.model);
        Some(c)
    }

    fn end(&self, error: Option<ProviderError>) {
        let mut s = self.lock();
        if s.ended.is_none() {
            s.ended = Some(s.started.elapsed());
        }
        if error.is_some() {
            s.error = error;
        }
    }
}

struct Metered {
    first: Option<Option<Result<ChatChunk, ProviderError>>>,
    inner: ChatStream,
    meter: StreamMeter,
    model: String,
    include_usage: bool,
    done: bool,
    /// The id and creation time of the stream's chunks, repeated on the usage chunk.
    id: String,
    created: i64,
}

/// Wraps a provider stream: rewrites the model name, meters every chunk, holds the usage chunk
/// back and sends one at the end if the caller asked, and counts usage if the upstream sent
/// none.
pub(super) fn metered(
    first: Option<Result<ChatChunk, ProviderError>>,
    inner: ChatStream,
    meter: StreamMeter,
    model: String,
    include_usage: bool,
) -> ChatStream {
    let state = Metered {
        first: Some(first),
        inner,
        meter,
        model,
        include_usage,
        done: false,
        id: String::new(),
        created: 0,
    };
    Box::pin(stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            let item = match s.first.take() {
                Some(first) => first,
                None => s.inner.next().await,
            };
            match item {
                Some(Ok(c)) => {
                    if s.id.is_empty() {
                        s.id.clone_from(&c.id);
                        s.created = c.created;
                    }
                    if let Some(c) = s.meter.observe(c, &s.model, s.include_usage) {
                        return Some((Ok(c), s));
                    }
                }
                Some(Err(e)) => {
                    s.meter.end(Some(e.clone()));
                    s.done = true;
                    return Some((Err(e), s));
                }
                None => {
                    s.meter.end(None);
                    s.done = true;
                    if !s.include_usage {
                        return None;
                    }
                    let usage = s.meter.snapshot().usage;
                    let last = ChatChunk::usage_only(&s.id, s.created, &s.model, usage);
                    return Some((Ok(last), s));
                }
            }
        }
    }))
}
