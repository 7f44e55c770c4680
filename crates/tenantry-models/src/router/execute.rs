//! Running a plan: the attempts of a [`RoutePlan`] in order, moving on to the next only after
//! an error another model may not have (429, 5xx, timeouts, unreachable), and what each call
//! returns for metering (the answer, its usage and cost, every failed attempt).
//!
//! It must never fall back once part of a streamed answer has reached the caller, and never
//! drop a failed attempt from what it reports.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tenantry_core::Money;

use super::meter::{StreamMeter, metered};
use super::{Attempt, RoutePlan, Router};
use crate::error::ProviderError;
use crate::providers::ChatStream;
use crate::tokens;
use crate::wire::{ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, Usage};

/// An attempt that failed, for metering and logs.
#[derive(Debug, Clone)]
pub struct FailedAttempt {
    pub model: String,
    pub provider: String,
    pub error: ProviderError,
    pub latency: Duration,
}

/// Every attempt of a plan failed (or the first failure was not worth a fallback).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.last().error)]
pub struct ExecFailure {
    /// In the order tried; never empty.
    pub failures: Vec<FailedAttempt>,
}

impl ExecFailure {
    pub fn last(&self) -> &FailedAttempt {
        // Built only with at least one failure.
        &self.failures[self.failures.len() - 1]
    }

    pub fn error(&self) -> &ProviderError {
        &self.last().error
    }
}

/// A whole answer, with what metering needs.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `model` is the public name of the model that answered; `usage` is always set.
    pub response: ChatResponse,
    pub attempt: Attempt,
    pub usage: Usage,
    /// True when the upstream gave no usage and it was counted here.
    pub usage_counted: bool,
    pub cost: Money,
    pub latency: Duration,
    /// Attempts that failed before this one answered.
    pub failures: Vec<FailedAttempt>,
}

/// Embeddings, with what metering needs.
#[derive(Debug, Clone)]
pub struct EmbeddingsAnswer {
    pub response: EmbeddingsResponse,
    pub attempt: Attempt,
    pub cost: Money,
    pub latency: Duration,
    pub failures: Vec<FailedAttempt>,
}

/// A streamed answer. Poll `stream` to pass chunks on; read `meter` at the end, or after the
/// caller went away (dropping the stream cancels the upstream call), to settle usage.
pub struct StreamAnswer {
    pub attempt: Attempt,
    pub stream: ChatStream,
    pub meter: StreamMeter,
    pub failures: Vec<FailedAttempt>,
}

impl std::fmt::Debug for StreamAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamAnswer")
            .field("attempt", &self.attempt)
            .field("meter", &self.meter)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// Runs a plan for a whole answer: tries its models in order, moving on only after an
    /// error that another model may not have (429, 5xx, timeouts, unreachable).
    pub async fn execute(
        &self,
        plan: &RoutePlan,
        mut request: ChatRequest,
    ) -> Result<Answer, ExecFailure> {
        if request.max_output_tokens().is_none() {
            request.max_tokens = Some(plan.default_max_tokens);
        }
        request.stream = None;
        request.stream_options = None;
        let mut failures = Vec::new();
        for attempt in &plan.attempts {
            let started = Instant::now();
            request.model.clone_from(&attempt.upstream_model);
            let result = match self.provider_for(attempt) {
                Ok(p) => p.chat(&request).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(mut response) => {
                    let (usage, counted) = match response.usage.take() {
                        Some(u) => (u, false),
                        None => (
                            Usage::new(tokens::count_prompt(&request), count_output(&response)),
                            true,
                        ),
                    };
                    response.usage = Some(usage.clone());
                    response.model.clone_from(&attempt.model);
                    return Ok(Answer {
                        cost: attempt
                            .pricing
                            .cost(usage.prompt_tokens, usage.completion_tokens),
                        response,
                        attempt: attempt.clone(),
                        usage,
                        usage_counted: counted,
                        latency: started.elapsed(),
                        failures,
                    });
                }
                Err(error) => {
                    if !failed(&mut failures, attempt, error, started) {
                        break;
                    }
                }
            }
        }
        Err(ExecFailure { failures })
    }

    /// Runs a plan for a streamed answer. Falls back while nothing has reached the caller: when
    /// the upstream refuses the call, or fails before its first chunk.
    pub async fn execute_stream(
        &self,
        plan: &RoutePlan,
        mut request: ChatRequest,
    ) -> Result<StreamAnswer, ExecFailure> {
        if request.max_output_tokens().is_none() {
            request.max_tokens = Some(plan.default_max_tokens);
        }
        let include_usage = request.wants_stream_usage();
        request.stream = Some(true);
        let prompt_estimate = tokens::count_prompt(&request);
        let mut failures = Vec::new();
        for attempt in &plan.attempts {
            let started = Instant::now();
            request.model.clone_from(&attempt.upstream_model);
            let opened = match self.provider_for(attempt) {
                Ok(p) => p.chat_stream(&request).await,
                Err(e) => Err(e),
            };
            let error = match opened {
                Ok(mut stream) => match stream.next().await {
                    Some(Err(e)) if e.is_retryable_for_fallback() => e,
                    first => {
                        let meter = StreamMeter::new(started, prompt_estimate, attempt.pricing);
                        return Ok(StreamAnswer {
                            attempt: attempt.clone(),
                            stream: metered(
                                first,
                                stream,
                                meter.clone(),
                                attempt.model.clone(),
                                include_usage,
                            ),
                            meter,
                            failures,
                        });
                    }
                },
                Err(e) => e,
            };
            if !failed(&mut failures, attempt, error, started) {
                break;
            }
        }
        Err(ExecFailure { failures })
    }

    /// Runs a plan for embeddings, with the same fallback rule as [`Router::execute`].
    pub async fn embeddings(
        &self,
        plan: &RoutePlan,
        mut request: EmbeddingsRequest,
    ) -> Result<EmbeddingsAnswer, ExecFailure> {
        let mut failures = Vec::new();
        for attempt in &plan.attempts {
            let started = Instant::now();
            request.model.clone_from(&attempt.upstream_model);
            let result = match self.provider_for(attempt) {
                Ok(p) => p.embeddings(&request).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(mut response) => {
                    if response.usage.prompt_tokens == 0 {
                        let n: u64 = request
                            .input
                            .texts()
                            .iter()
                            .map(|t| tokens::count_text(t))
                            .sum();
                        response.usage.prompt_tokens = n;
                        response.usage.total_tokens = n;
                    }
                    response.model.clone_from(&attempt.model);
                    return Ok(EmbeddingsAnswer {
                        cost: attempt.pricing.cost(response.usage.prompt_tokens, 0),
                        response,
                        attempt: attempt.clone(),
                        latency: started.elapsed(),
                        failures,
                    });
                }
                Err(error) => {
                    if !failed(&mut failures, attempt, error, started) {
                        break;
                    }
                }
            }
        }
        Err(ExecFailure { failures })
    }
}

/// Records a failed attempt; whether the plan may go on to its next model.
fn failed(
    failures: &mut Vec<FailedAttempt>,
    attempt: &Attempt,
    error: ProviderError,
    started: Instant,
) -> bool {
    let retry = error.is_retryable_for_fallback();
    failures.push(FailedAttempt {
        model: attempt.model.clone(),
        provider: attempt.provider.clone(),
        error,
        latency: started.elapsed(),
    });
    retry
}

/// Output tokens of a whole answer, counted.
fn count_output(r: &ChatResponse) -> u64 {
    r.choices
        .iter()
        .map(|c| {
            let m = &c.message;
            tokens::count_text(&m.text())
                + m.tool_calls
                    .iter()
                    .flatten()
                    .map(|t| {
                        tokens::count_text(&t.function.name)
                            + tokens::count_text(&t.function.arguments)
                    })
                    .sum::<u64>()
        })
        .sum()
}
