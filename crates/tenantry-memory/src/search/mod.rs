//! Retrieval shared by knowledge bases and long-term memory records: an in-process vector
//! index partitioned by tenant (`vector`), the fusion of ranked lists (`fusion`), the seam to
//! whatever computes embeddings (`embed`) and the terms of a full-text query (`terms`).
//!
//! The full-text half runs in the store (SQLite FTS5 or PostgreSQL full-text); this module
//! only prepares its query and fuses its answer with the vector half. It must never reach
//! across a partition: every lookup names its tenant, and a partition holds one tenant's rows.

pub mod embed;
pub mod fusion;
pub mod terms;
pub mod vector;

pub use embed::{EmbedError, EmbedFuture, Embedder, normalize};
pub use fusion::{Fused, RRF_K, reciprocal_rank_fusion};
pub use terms::{MAX_QUERY_TERMS, query_terms};
pub use vector::{Hit, PartitionKey, VectorIndex};

/// How a retrieval ranked its results, said in every answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    /// Full-text and vector similarity, fused by reciprocal rank.
    Hybrid,
    /// Full-text only (asked for, or no embedder is configured).
    FullText,
    /// Vector similarity only.
    Vector,
}

impl SearchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Hybrid => "hybrid",
            SearchMode::FullText => "full_text",
            SearchMode::Vector => "vector",
        }
    }
}
