//! The embedder of one caller: embeddings through the model gateway, routed by the caller's
//! tier and tenant and metered and budgeted to its tenant like any model call.

use std::sync::Mutex;

use tenantry_core::{ErrorCode, TenantContext, Tier};
use tenantry_memory::search::embed::check_answer;
use tenantry_memory::search::{EmbedError, EmbedFuture, Embedder, normalize};
use tenantry_models::wire::{EmbeddingInput, EmbeddingVector, EmbeddingsRequest};

use crate::error::ApiError;
use crate::models::call;
use crate::state::AppState;

/// Texts per gateway call.
pub const BATCH: usize = 64;

#[derive(Debug)]
pub struct GatewayEmbedder<'a> {
    pub state: &'a AppState,
    pub ctx: &'a TenantContext,
    pub tier: &'a Tier,
    pub model: &'a str,
    /// The gateway's own error of the last refused call, kept whole for the caller's answer.
    refusal: Mutex<Option<ApiError>>,
}

impl<'a> GatewayEmbedder<'a> {
    pub fn new(
        state: &'a AppState,
        ctx: &'a TenantContext,
        tier: &'a Tier,
        model: &'a str,
    ) -> Self {
        Self {
            state,
            ctx,
            tier,
            model,
            refusal: Mutex::new(None),
        }
    }

    /// The answer for a failed embedding: the gateway's error as it was (rate limited, budget
    /// exceeded, upstream failed...), or an upstream error for a malformed answer.
    pub fn error(&self, e: EmbedError) -> ApiError {
        let kept = self.refusal.lock().ok().and_then(|mut r| r.take());
        kept.unwrap_or_else(|| ApiError::new(ErrorCode::UpstreamError, e.to_string()))
    }

    async fn run(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            let refused = |r: crate::models::limits::Refusal| {
                let e = EmbedError::Upstream {
                    code: r.error.code.as_str().to_owned(),
                    message: r.error.message.clone(),
                };
                if let Ok(mut kept) = self.refusal.lock() {
                    *kept = Some(r.error);
                }
                e
            };
            let routed = call::route(
                &self.state.models,
                &self.state.limiter,
                self.ctx,
                self.tier,
                self.model,
            )
            .await
            .map_err(refused)?;
            let request = EmbeddingsRequest {
                model: self.model.to_owned(),
                input: EmbeddingInput::Many(batch.to_vec()),
                encoding_format: None,
                dimensions: None,
                user: None,
                extra: Default::default(),
            };
            let answer = call::embeddings(
                &self.state.models,
                &self.state.limiter,
                self.ctx,
                routed,
                request,
            )
            .await
            .map_err(refused)?;
            let mut data = answer.data;
            data.sort_by_key(|e| e.index);
            for e in data {
                let mut v = match e.embedding {
                    EmbeddingVector::Float(v) => v,
                    EmbeddingVector::Base64(_) => {
                        return Err(EmbedError::Malformed(
                            "base64 vectors were not asked for".into(),
                        ));
                    }
                };
                normalize(&mut v);
                out.push(v);
            }
        }
        check_answer(texts.len(), &out)?;
        Ok(out)
    }
}

impl Embedder for GatewayEmbedder<'_> {
    fn model(&self) -> &str {
        self.model
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        Box::pin(self.run(texts))
    }
}
