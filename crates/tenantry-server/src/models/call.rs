//! One model call, from admission to the ledger:
//!
//! rate check → route (tier, tenant routing, entitlement) → reserve the estimate → upstream
//! (with fallback) → settle with the actual use → ledger entries.
//!
//! A whole answer (chat or embeddings) runs to its end in a task of its own, so a caller that
//! goes away cannot leave reservations unsettled or attempts unmetered; it costs what the
//! upstream charged. The answer is returned only once its ledger entries are committed; when
//! they cannot be, the call answers 503 instead (the answer is withheld, not given away
//! unbilled). A stream is different: dropping it cancels the upstream call. Its `StreamGuard`
//! settles and meters it at the end of the stream, and the last event (`[DONE]`) is sent only
//! once the entry is committed; when the caller disconnects first, the guard settles and
//! queues the usage so far as it is dropped.

use std::sync::Arc;

use tenantry_core::{Money, TenantContext, Tier};
use tenantry_limits::{Decision, Limiter};
use tenantry_models::wire::{ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse};
use tenantry_models::{
    Attempt, ChatStream, ExecFailure, FailedAttempt, RouteError, RoutePlan, Router, StreamMeter,
};
use tenantry_store::UsageRecord;

use super::Gateway;
use super::limits::{self, Held, ModelLimits, Refusal};
use super::metering::{Attribution, Metered, Outcome};
use crate::error::ApiError;
use crate::ledger::{Ledger, LedgerError};

/// A call that passed the rate check and was routed.
#[derive(Debug)]
pub struct Routed {
    router: Arc<Router>,
    pub plan: RoutePlan,
    limits: ModelLimits,
    /// The tier's share of a provider's fair queue.
    weight: u32,
    /// The requests-per-minute decision to show the caller.
    pub rate: Option<Decision>,
}

impl Routed {
    /// The `RateLimit-*` headers the caller gets with its answer.
    pub fn rate_headers(&self) -> Vec<(&'static str, String)> {
        self.rate.map(|d| d.headers()).unwrap_or_default()
    }
}

pub fn route_error(e: &RouteError) -> ApiError {
    ApiError::new(e.code(), e.to_string())
}

/// The caller's error when every attempt failed: the last attempt's classification, the
/// upstream's own message, and which model and provider it was.
pub fn exec_error(f: &ExecFailure) -> ApiError {
    let last = f.last();
    let tried = if f.failures.len() > 1 {
        format!(" after {} attempts", f.failures.len())
    } else {
        String::new()
    };
    let mut e = ApiError::new(
        last.error.code(),
        format!(
            "model {} (provider {}) failed{tried}: {}",
            last.model, last.provider, last.error
        ),
    );
    e.retry_after = last
        .error
        .retry_after()
        .map(|d| d.as_secs().max(1))
        .or_else(|| last.error.code().retryable().then_some(1));
    e
}

/// Checks the model request rate and routes `requested` for the caller.
pub async fn route(
    gateway: &Gateway,
    limiter: &Limiter,
    ctx: &TenantContext,
    tier: &Tier,
    requested: &str,
) -> Result<Routed, Refusal> {
    let settings = gateway
        .tenant_settings(&ctx.tenant_id)
        .await
        .map_err(ApiError::from)?;
    let limits = ModelLimits::of(tier, settings.limits.as_ref());
    let rate = limits::check_rate(limiter, ctx, &limits).await?;
    let router = gateway.router();
    let plan = router
        .resolve(tier, settings.models.as_deref(), requested)
        .map_err(|e| route_error(&e))?;
    Ok(Routed {
        router,
        plan,
        limits,
        weight: tier.limits.fair_share_weight.unwrap_or(1),
        rate,
    })
}

/// A slot on the plan's first provider, when that provider has a fair queue.
async fn admit(
    gateway: &Gateway,
    ctx: &TenantContext,
    plan: &RoutePlan,
    weight: u32,
) -> Result<Option<tenantry_limits::FairPermit>, Refusal> {
    match plan.attempts.first() {
        Some(first) => {
            gateway
                .queues()
                .admit(&first.provider, &ctx.tenant_id, weight)
                .await
        }
        None => Ok(None),
    }
}

/// The entries of the attempts that failed before an answer (or before the call gave up).
fn failure_entries(who: &Attribution, failures: &[FailedAttempt]) -> Vec<UsageRecord> {
    failures
        .iter()
        .map(|f| {
            tracing::warn!(
                model = %f.model,
                provider = %f.provider,
                reason = f.error.reason(),
                error = %f.error,
                "model attempt failed"
            );
            who.failed(f)
        })
        .collect()
}

/// Logs a ledger failure of a call that failed anyway (its caller gets the call's own error).
fn log_unrecorded(recorded: Result<(), LedgerError>) {
    if let Err(e) = recorded {
        tracing::error!(error = %e, "the failed attempts of a model call are not in the ledger");
    }
}

fn internal(e: tokio::task::JoinError) -> Refusal {
    Refusal::from(ApiError::internal("running a model call", e))
}

/// A whole chat answer.
pub async fn chat(
    gateway: &Gateway,
    limiter: &Limiter,
    ctx: &TenantContext,
    routed: Routed,
    request: ChatRequest,
) -> Result<ChatResponse, Refusal> {
    let (tokens, cost) = (
        routed.plan.token_estimate(&request),
        routed.plan.cost_estimate(&request),
    );
    run_whole(
        gateway,
        limiter,
        ctx,
        routed,
        (tokens, cost),
        |router, plan| async move { router.execute(&plan, request).await },
    )
    .await
}

/// Embeddings.
pub async fn embeddings(
    gateway: &Gateway,
    limiter: &Limiter,
    ctx: &TenantContext,
    routed: Routed,
    request: EmbeddingsRequest,
) -> Result<EmbeddingsResponse, Refusal> {
    let estimate = routed.plan.embeddings_estimate(&request);
    run_whole(
        gateway,
        limiter,
        ctx,
        routed,
        estimate,
        |router, plan| async move { router.embeddings(&plan, request).await },
    )
    .await
}

/// What a whole answer (chat or embeddings) tells the ledger and the limiter.
trait WholeAnswer: Send + Sync + 'static {
    type Response: Send + 'static;
    fn attempt(&self) -> &Attempt;
    /// `(input, output)` tokens.
    fn tokens(&self) -> (u64, u64);
    fn cost(&self) -> Money;
    fn latency(&self) -> std::time::Duration;
    fn failures(&self) -> &[FailedAttempt];
    fn into_response(self) -> Self::Response;
}

impl WholeAnswer for tenantry_models::Answer {
    type Response = ChatResponse;
    fn attempt(&self) -> &Attempt {
        &self.attempt
    }
    fn tokens(&self) -> (u64, u64) {
        (self.usage.prompt_tokens, self.usage.completion_tokens)
    }
    fn cost(&self) -> Money {
        self.cost
    }
    fn latency(&self) -> std::time::Duration {
        self.latency
    }
    fn failures(&self) -> &[FailedAttempt] {
        &self.failures
    }
    fn into_response(self) -> ChatResponse {
        self.response
    }
}

impl WholeAnswer for tenantry_models::EmbeddingsAnswer {
    type Response = EmbeddingsResponse;
    fn attempt(&self) -> &Attempt {
        &self.attempt
    }
    fn tokens(&self) -> (u64, u64) {
        (self.response.usage.prompt_tokens, 0)
    }
    fn cost(&self) -> Money {
        self.cost
    }
    fn latency(&self) -> std::time::Duration {
        self.latency
    }
    fn failures(&self) -> &[FailedAttempt] {
        &self.failures
    }
    fn into_response(self) -> EmbeddingsResponse {
        self.response
    }
}

/// Reserves `estimate` (tokens, cost), runs `call` in a task of its own, settles with the
/// actual use and records every attempt. The answer goes out only once its entries are
/// committed: a caller that received it can rely on it being billed (and on the budget
/// counting it after a restart).
async fn run_whole<A, F, Fut>(
    gateway: &Gateway,
    limiter: &Limiter,
    ctx: &TenantContext,
    routed: Routed,
    estimate: (u64, Money),
    call: F,
) -> Result<A::Response, Refusal>
where
    A: WholeAnswer,
    F: FnOnce(Arc<Router>, RoutePlan) -> Fut,
    Fut: std::future::Future<Output = Result<A, ExecFailure>> + Send + 'static,
{
    let Routed {
        router,
        plan,
        limits,
        weight,
        ..
    } = routed;
    let permit = admit(gateway, ctx, &plan, weight).await?;
    let held = limits::reserve(limiter, ctx, &limits, estimate.0, estimate.1).await?;
    let who = Attribution::of(ctx);
    let ledger = gateway.ledger().clone();
    let limiter = limiter.clone();
    let answer = call(router, plan);
    let task = tokio::spawn(async move {
        let result = answer.await;
        // The provider's slot is free once it answered.
        drop(permit);
        let recorded = match &result {
            Ok(a) => {
                let (input_tokens, output_tokens) = a.tokens();
                held.settle(&limiter, input_tokens + output_tokens, a.cost())
                    .await;
                let mut entries = failure_entries(&who, a.failures());
                entries.push(who.entry(&Metered {
                    model: &a.attempt().model,
                    provider: &a.attempt().provider,
                    input_tokens,
                    output_tokens,
                    cost: a.cost(),
                    latency: a.latency(),
                    ttft: None,
                    outcome: Outcome::Ok,
                }));
                ledger.record_all(who.scope.clone(), entries).await
            }
            Err(f) => {
                held.settle(&limiter, 0, Money::ZERO).await;
                let entries = failure_entries(&who, &f.failures);
                ledger.record_all(who.scope.clone(), entries).await
            }
        };
        (result, recorded)
    });
    match task.await {
        Ok((Ok(answer), Ok(()))) => Ok(answer.into_response()),
        Ok((Ok(_), Err(unrecorded))) => Err(Refusal::from(ApiError::from(unrecorded))),
        Ok((Err(failure), recorded)) => {
            log_unrecorded(recorded);
            Err(Refusal::from(exec_error(&failure)))
        }
        Err(e) => Err(internal(e)),
    }
}

/// Opens a streamed chat answer. The guard must live as long as the stream is read: dropping
/// it settles the reservations and writes the ledger entry with the usage so far.
pub async fn chat_stream(
    gateway: &Gateway,
    limiter: &Limiter,
    ctx: &TenantContext,
    routed: Routed,
    request: ChatRequest,
) -> Result<(ChatStream, StreamGuard), Refusal> {
    let Routed {
        router,
        plan,
        limits,
        weight,
        ..
    } = routed;
    let permit = admit(gateway, ctx, &plan, weight).await?;
    let held = limits::reserve(
        limiter,
        ctx,
        &limits,
        plan.token_estimate(&request),
        plan.cost_estimate(&request),
    )
    .await?;
    let who = Attribution::of(ctx);
    let ledger = gateway.ledger().clone();
    let limiter = limiter.clone();
    // Opening runs in its own task: if the caller goes away meanwhile, the opened stream and
    // its guard are dropped there, which settles and meters them.
    let task = tokio::spawn(async move {
        match router.execute_stream(&plan, request).await {
            Ok(answer) => {
                // The attempts that failed before the stream opened are no part of its answer:
                // they are written with the next batch, and the end of the stream waits for
                // the batch that carries the stream's own entry (a later one).
                for entry in failure_entries(&who, &answer.failures) {
                    ledger.submit(who.scope.clone(), entry).await;
                }
                let guard = StreamGuard {
                    held: Some(held),
                    limiter,
                    ledger,
                    who,
                    meter: answer.meter,
                    attempt: answer.attempt,
                    reached_end: false,
                    _slot: permit,
                };
                Ok((answer.stream, guard))
            }
            Err(f) => {
                held.settle(&limiter, 0, Money::ZERO).await;
                let entries = failure_entries(&who, &f.failures);
                log_unrecorded(ledger.record_all(who.scope.clone(), entries).await);
                Err(f)
            }
        }
    });
    match task.await {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(failure)) => Err(Refusal::from(exec_error(&failure))),
        Err(e) => Err(internal(e)),
    }
}

/// Settles and meters a stream: `finish` at its end (the end waits for the commit), or, when
/// the caller went away first, when dropped.
#[derive(Debug)]
pub struct StreamGuard {
    /// The provider's slot (fair queue), held until the stream ends or is dropped.
    _slot: Option<tenantry_limits::FairPermit>,
    held: Option<Held>,
    limiter: Limiter,
    ledger: Ledger,
    who: Attribution,
    meter: StreamMeter,
    attempt: Attempt,
    reached_end: bool,
}

impl StreamGuard {
    /// The entry of the usage so far, and the tokens and money to settle.
    fn entry(&self) -> (UsageRecord, u64, Money) {
        let snap = self.meter.snapshot();
        let outcome = match (&snap.error, self.reached_end) {
            (Some(e), _) => Outcome::of_error(e),
            (None, true) => Outcome::Ok,
            (None, false) => Outcome::Cancelled,
        };
        let entry = self.who.entry(&Metered {
            model: &self.attempt.model,
            provider: &self.attempt.provider,
            input_tokens: snap.usage.prompt_tokens,
            output_tokens: snap.usage.completion_tokens,
            cost: snap.cost,
            latency: snap.latency,
            ttft: snap.ttft,
            outcome,
        });
        let used = snap.usage.prompt_tokens + snap.usage.completion_tokens;
        (entry, used, snap.cost)
    }

    /// The stream was read to its end (or to its error): settles the reservations and waits
    /// until the stream's entry is committed. The caller sends the stream's last event only
    /// after this returns `Ok`.
    pub async fn finish(&mut self) -> Result<(), LedgerError> {
        self.reached_end = true;
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        let (entry, used, cost) = self.entry();
        let (limiter, ledger, scope) = (
            self.limiter.clone(),
            self.ledger.clone(),
            self.who.scope.clone(),
        );
        // On a task of its own: a caller that goes away while it waits cannot stop the
        // settlement or the entry half-way.
        let task = tokio::spawn(async move {
            held.settle(&limiter, used, cost).await;
            ledger.record(scope, entry).await
        });
        task.await.unwrap_or(Err(LedgerError::Stopped))
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.held.is_none() {
            return;
        }
        let (entry, used, cost) = self.entry();
        let Some(held) = self.held.take() else {
            return;
        };
        let (limiter, ledger, scope) = (
            self.limiter.clone(),
            self.ledger.clone(),
            self.who.scope.clone(),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    held.settle(&limiter, used, cost).await;
                    ledger.submit(scope, entry).await;
                });
            }
            Err(_) => tracing::error!(
                tenant.id = %entry.tenant_id,
                "a model stream ended outside the runtime; its usage is not settled"
            ),
        }
    }
}
