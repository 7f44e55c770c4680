//! The OpenAI-compatible model gateway for tenant callers and their agents:
//! `POST /v1/chat/completions` (whole or `stream: true` server-sent events),
//! `POST /v1/embeddings`, `GET /v1/models` and `GET /v1/models/{model}`.
//!
//! Authentication and the ingress rate check happen in the admission layer; the model, its
//! limits and its metering are decided in `crate::models` from the verified caller only.
//! A stream is passed on chunk by chunk as it arrives, never buffered; an upstream failure in
//! the middle of a stream becomes an `error` event (the shape OpenAI clients raise on) and
//! the end of the stream, without `[DONE]`. `[DONE]` is sent only after the stream's ledger
//! entry is committed, so a client that saw it can rely on the call being billed.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde_json::json;
use tenantry_core::{ErrorCode, TenantContext, Tier};
use tenantry_models::ChatStream;
use tenantry_models::wire::{
    ChatChunk, ChatRequest, Delta, EmbeddingsRequest, ModelInfo, ModelList,
};

use crate::auth::{CallerTier, TenantCaller};
use crate::error::{ApiError, ApiResult, current_request_id, openai_type};
use crate::extract::ApiPath;
use crate::guardrails::traffic::{self, OutputGuard};
use crate::json::ApiJson;
use crate::models::call::{self, StreamGuard};
use crate::models::limits::{Refusal, add_headers};
use crate::state::AppState;

pub fn routes(state: AppState) -> Router<AppState> {
    let max_body = state.config.server.model_max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{model}", get(get_model))
        .layer(DefaultBodyLimit::max(max_body))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::admission::admit,
        ))
}

fn tier_of(ctx: &TenantContext, tier: Option<Arc<Tier>>) -> ApiResult<Arc<Tier>> {
    tier.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "the models of tenant {} cannot be decided: its tier {} does not exist",
                ctx.tenant_id, ctx.tier
            ),
        )
    })
}

/// A refusal after the rate check passed: its own headers if it has any (a budget), else the
/// rate decision's.
fn refused(mut r: Refusal, rate_headers: Vec<(&'static str, String)>) -> Response {
    if r.headers.is_empty() {
        r.headers = rate_headers;
    }
    r.into_response()
}

fn with_headers(mut response: Response, headers: &[(&'static str, String)]) -> Response {
    add_headers(&mut response, headers);
    response
}

async fn chat_completions(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    CallerTier(tier): CallerTier,
    ApiJson(mut request): ApiJson<ChatRequest>,
) -> Response {
    let tier = match tier_of(&ctx, tier) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    if request.messages.is_empty() {
        return ApiError::invalid("`messages` must hold at least one message").into_response();
    }
    let routed = match call::route(&state.models, &state.limiter, &ctx, &tier, &request.model).await
    {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let headers = routed.rate_headers();
    // Guardrails after the rate check (a blocked request still counts) and before any
    // reservation or upstream call.
    let applied = match state.guardrails.applied(&ctx.tenant_id, &tier) {
        Ok(a) => a,
        Err(e) => return with_headers(e.into_response(), &headers),
    };
    if let Some(a) = &applied
        && let Err(e) =
            traffic::check_request(&state.guardrails, a, &ctx.tenant_id, &mut request).await
    {
        return with_headers(e.into_response(), &headers);
    }
    if request.is_stream() {
        let output = applied
            .as_ref()
            .and_then(|a| OutputGuard::new(&state.guardrails, a, &ctx.tenant_id));
        match call::chat_stream(&state.models, &state.limiter, &ctx, routed, request).await {
            Ok((stream, guard)) => with_headers(sse(stream, guard, output), &headers),
            Err(r) => refused(r, headers),
        }
    } else {
        match call::chat(&state.models, &state.limiter, &ctx, routed, request).await {
            Ok(mut answer) => {
                if let Some(a) = &applied
                    && let Err(e) =
                        traffic::check_response(&state.guardrails, a, &ctx.tenant_id, &mut answer)
                            .await
                {
                    return with_headers(e.into_response(), &headers);
                }
                with_headers(Json(answer).into_response(), &headers)
            }
            Err(r) => refused(r, headers),
        }
    }
}

async fn embeddings(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    CallerTier(tier): CallerTier,
    ApiJson(request): ApiJson<EmbeddingsRequest>,
) -> Response {
    let tier = match tier_of(&ctx, tier) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let routed = match call::route(&state.models, &state.limiter, &ctx, &tier, &request.model).await
    {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let headers = routed.rate_headers();
    match call::embeddings(&state.models, &state.limiter, &ctx, routed, request).await {
        Ok(answer) => with_headers(Json(answer).into_response(), &headers),
        Err(r) => refused(r, headers),
    }
}

async fn list_models(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    CallerTier(tier): CallerTier,
) -> ApiResult<Json<ModelList>> {
    let tier = tier_of(&ctx, tier)?;
    let own = state.models.tenant_models(&ctx.tenant_id).await?;
    Ok(Json(
        state.models.router().models_for(&tier, own.as_deref()),
    ))
}

async fn get_model(
    State(state): State<AppState>,
    TenantCaller(ctx): TenantCaller,
    CallerTier(tier): CallerTier,
    ApiPath(model): ApiPath<String>,
) -> ApiResult<Json<ModelInfo>> {
    let tier = tier_of(&ctx, tier)?;
    let own = state.models.tenant_models(&ctx.tenant_id).await?;
    state
        .models
        .router()
        .models_for(&tier, own.as_deref())
        .data
        .into_iter()
        .find(|m| m.id == model)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("model"))
}

struct Sse {
    stream: ChatStream,
    guard: StreamGuard,
    /// The guardrails' output checks, when the caller's profile has any.
    output: Option<OutputGuard>,
    /// The last chunk's id, creation time and model, for the text released at the end.
    last: Option<(String, i64, String)>,
    done: bool,
    request_id: String,
}

/// The events of a chunk, after the output checks; an error event if they block.
async fn chunk_event(s: &mut Sse, mut chunk: ChatChunk) -> Bytes {
    if let Some(o) = &mut s.output {
        if let Err(message) = o.chunk(&mut chunk).await {
            s.done = true;
            finish_failed(&mut s.guard).await;
            return error_event(ErrorCode::GuardrailBlocked, message, &s.request_id);
        }
        s.last = Some((chunk.id.clone(), chunk.created, chunk.model.clone()));
    }
    match serde_json::to_vec(&chunk) {
        Ok(json) => event(&json),
        Err(e) => {
            s.done = true;
            finish_failed(&mut s.guard).await;
            error_event(
                ErrorCode::Internal,
                format!("cannot encode a chunk: {e}"),
                &s.request_id,
            )
        }
    }
}

/// The end of the stream: the text the output checks still held, then `[DONE]` once the
/// stream's usage is committed (or an error event if the checks block or the ledger cannot
/// record it: the content was sent, but the client is told the stream did not complete).
async fn end_events(s: &mut Sse) -> Bytes {
    let mut out = Vec::new();
    if let Some(o) = &mut s.output {
        match o.end().await {
            Ok(rest) => {
                let (id, created, model) = s.last.clone().unwrap_or_default();
                for (index, text) in rest {
                    let mut c = ChatChunk::delta(&id, created, &model, Delta::text(text), None);
                    if let Some(choice) = c.choices.first_mut() {
                        choice.index = index;
                    }
                    if let Ok(json) = serde_json::to_vec(&c) {
                        out.extend_from_slice(&event(&json));
                    }
                }
            }
            Err(message) => {
                finish_failed(&mut s.guard).await;
                out.extend_from_slice(&error_event(
                    ErrorCode::GuardrailBlocked,
                    message,
                    &s.request_id,
                ));
                return Bytes::from(out);
            }
        }
    }
    match s.guard.finish().await {
        Ok(()) => out.extend_from_slice(b"data: [DONE]\n\n"),
        Err(e) => {
            tracing::error!(error = %e, "a model stream's usage cannot be recorded");
            out.extend_from_slice(&error_event(
                ErrorCode::Unavailable,
                "the usage of this stream cannot be recorded right now, so it is not \
                 completed; retry shortly"
                    .to_owned(),
                &s.request_id,
            ));
        }
    }
    Bytes::from(out)
}

fn event(data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn error_event(code: ErrorCode, message: String, request_id: &str) -> Bytes {
    let body = json!({
        "error": {
            "code": code.as_str(),
            "message": message,
            "type": openai_type(code),
            "request_id": request_id,
        }
    });
    event(body.to_string().as_bytes())
}

/// Meters a stream that ended in an error: its caller gets that error, whatever the ledger says.
async fn finish_failed(guard: &mut StreamGuard) {
    if let Err(e) = guard.finish().await {
        tracing::error!(error = %e, "a failed model stream's usage cannot be recorded");
    }
}

/// The server-sent events of a stream: one `data:` event per chunk as it arrives, then
/// `data: [DONE]` once its usage is committed, or an error event.
fn sse(stream: ChatStream, guard: StreamGuard, output: Option<OutputGuard>) -> Response {
    let state = Sse {
        stream,
        guard,
        output,
        last: None,
        done: false,
        request_id: current_request_id(),
    };
    let events = futures_util::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        let bytes = match s.stream.next().await {
            Some(Ok(chunk)) => chunk_event(&mut s, chunk).await,
            Some(Err(e)) => {
                s.done = true;
                finish_failed(&mut s.guard).await;
                error_event(
                    e.code(),
                    format!("the model stream failed: {e}"),
                    &s.request_id,
                )
            }
            None => {
                s.done = true;
                end_events(&mut s).await
            }
        };
        Some((Ok::<_, Infallible>(bytes), s))
    });
    crate::routes::event_stream(Body::from_stream(events))
}
