//! Retrieval: full-text candidates from the store, vector candidates from the in-process index
//! (the query embedded through the gateway), fused by reciprocal rank (`RRF_K` = 60), then the
//! caller's metadata filter, then the best `top_k`.
//!
//! The tenant is fixed before anything else: the store's full-text query and chunk reads take
//! the caller's scope, and the vector partition is the caller's tenant's. Without an embedder
//! configured the answer is full-text only and says so (`mode`, `note`).

use serde::Serialize;
use serde_json::{Map, Value};
use tenantry_core::{TenantContext, Tier};
use tenantry_memory::knowledge::Filter;
use tenantry_memory::search::{Embedder, RRF_K, SearchMode, query_terms, reciprocal_rank_fusion};
use tenantry_store::KnowledgeBaseRecord;

use super::embedder::GatewayEmbedder;
use super::{Knowledge, partition};
use crate::error::ApiResult;
use crate::state::AppState;

/// The most results one retrieval returns.
pub const MAX_TOP_K: usize = 100;

/// What to retrieve.
#[derive(Debug, Clone)]
pub struct Query {
    pub text: String,
    pub top_k: usize,
    pub filter: Option<Filter>,
    /// `None`: hybrid when an embedder is configured, full-text otherwise.
    pub mode: Option<SearchMode>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub chunk_id: String,
    pub document_id: String,
    pub title: String,
    pub heading_path: Vec<String>,
    pub text: String,
    pub score: f64,
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub knowledge_base_id: String,
    pub mode: SearchMode,
    /// Set when the answer is not what was asked for (no embedder: full-text only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub results: Vec<Found>,
}

pub const NO_EMBEDDER_NOTE: &str =
    "no embedder is configured ([knowledge] embedding_model): full-text retrieval only";

impl Knowledge {
    pub async fn retrieve(
        &self,
        state: &AppState,
        ctx: &TenantContext,
        tier: &Tier,
        base: &KnowledgeBaseRecord,
        q: Query,
    ) -> ApiResult<Answer> {
        let top_k = q.top_k.clamp(1, MAX_TOP_K);
        let pool = if q.filter.is_some() {
            200
        } else {
            (top_k * 4).max(40)
        };
        let (mode, note) = match (&self.settings.embedding_model, q.mode) {
            (None, Some(SearchMode::FullText)) => (SearchMode::FullText, None),
            (None, _) => (SearchMode::FullText, Some(NO_EMBEDDER_NOTE.to_owned())),
            (Some(_), Some(m)) => (m, None),
            (Some(_), None) => (SearchMode::Hybrid, None),
        };
        let scope = ctx.scope();
        let mut lists: Vec<Vec<String>> = Vec::new();
        let mut raw_scores: std::collections::HashMap<String, f64> = Default::default();
        if mode != SearchMode::Vector {
            let hits = self
                .store
                .search_knowledge_text(&scope, &base.id, &query_terms(&q.text), pool as u32)
                .await?;
            if mode == SearchMode::FullText {
                raw_scores.extend(hits.iter().cloned());
            }
            lists.push(hits.into_iter().map(|h| h.0).collect());
        }
        if mode != SearchMode::FullText
            && let Some(model) = &self.settings.embedding_model
        {
            let embedder = GatewayEmbedder::new(state, ctx, tier, model);
            let query = [q.text.clone()];
            let v = embedder
                .embed(&query)
                .await
                .map_err(|e| embedder.error(e))?;
            let key = partition(&ctx.tenant_id, &base.id);
            let generation = self.store.knowledge_generation(&scope, &base.id).await?;
            if self.index.generation(&key) != Some(generation) {
                let (g, entries) = self.store.knowledge_vectors(&scope, &base.id).await?;
                self.index.load(key.clone(), g, entries);
            }
            let hits = self.index.search(&key, &v[0], pool).unwrap_or_default();
            if mode == SearchMode::Vector {
                raw_scores.extend(hits.iter().map(|h| (h.id.clone(), f64::from(h.score))));
            }
            lists.push(hits.into_iter().map(|h| h.id).collect());
        }
        let fused = reciprocal_rank_fusion(&lists, RRF_K);
        let ids: Vec<String> = fused.iter().map(|f| f.id.clone()).collect();
        let chunks = self
            .store
            .get_knowledge_chunks(&scope, &base.id, &ids)
            .await?;
        let mut by_id: std::collections::HashMap<String, tenantry_store::ChunkRecord> =
            chunks.into_iter().map(|c| (c.id.clone(), c)).collect();
        let mut results = Vec::new();
        for f in fused {
            let Some(c) = by_id.remove(&f.id) else {
                continue;
            };
            if q.filter
                .as_ref()
                .is_some_and(|flt| !flt.matches(&c.metadata))
            {
                continue;
            }
            let score = match mode {
                SearchMode::Hybrid => f.score,
                SearchMode::FullText | SearchMode::Vector => {
                    raw_scores.get(&f.id).copied().unwrap_or(f.score)
                }
            };
            results.push(Found {
                chunk_id: c.id,
                document_id: c.document_id,
                title: c.document_title,
                heading_path: c.heading_path,
                text: c.text,
                score,
                metadata: c.metadata,
            });
            if results.len() == top_k {
                break;
            }
        }
        Ok(Answer {
            knowledge_base_id: base.id.clone(),
            mode,
            note,
            results,
        })
    }
}
