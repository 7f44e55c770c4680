//! Knowledge bases in the server: who reaches which base, ingestion (`ingest`), retrieval
//! (`retrieve`), the embedder through the model gateway (`embedder`), and the in-process
//! vector index kept current with the store.
//!
//! A base is siloed (owned by one tenant: only that tenant sees it) or pooled (created by the
//! operator: every tenant sees it, and each tenant only its own documents in it). Either way
//! the tenant of every read and write is the caller's, from its credential: the store filters
//! by it (row-level security on PostgreSQL) and the vector index is partitioned by it. A base
//! another tenant owns is answered exactly like a base that does not exist.

pub mod embedder;
pub mod ingest;
pub mod retrieve;

use serde::Deserialize;
use tenantry_core::{TenantContext, TenantId, TenantScope, UserId};
use tenantry_memory::knowledge::KnowledgeBaseId;
use tenantry_memory::search::{PartitionKey, VectorIndex};
use tenantry_store::{KnowledgeBaseRecord, Store};

use crate::error::{ApiError, ApiResult};

/// `[knowledge]`: how documents are chunked and embedded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeSection {
    /// The model (a name of the model gateway's catalogue, e.g. one served by a `local`
    /// provider) that embeds chunks and queries. Unset: retrieval is full-text only, and every
    /// answer says so.
    #[serde(default)]
    pub embedding_model: Option<String>,
    /// Words per chunk at most.
    #[serde(default = "default_chunk_words")]
    pub chunk_words: usize,
    /// The largest document accepted, in bytes of content.
    #[serde(default = "default_max_document_bytes")]
    pub max_document_bytes: usize,
}

fn default_chunk_words() -> usize {
    150
}

fn default_max_document_bytes() -> usize {
    1024 * 1024
}

impl Default for KnowledgeSection {
    fn default() -> Self {
        Self {
            embedding_model: None,
            chunk_words: default_chunk_words(),
            max_document_bytes: default_max_document_bytes(),
        }
    }
}

/// The knowledge service of one server: the store, the vector index and the settings.
#[derive(Debug, Clone)]
pub struct Knowledge {
    store: Store,
    index: VectorIndex,
    settings: KnowledgeSection,
}

/// The index partition of a tenant's documents in a base.
pub(crate) fn partition(tenant: &TenantId, base: &str) -> PartitionKey {
    PartitionKey::new(tenant.clone(), format!("kb:{base}"))
}

impl Knowledge {
    pub fn new(store: Store, settings: KnowledgeSection) -> Self {
        Self {
            store,
            index: VectorIndex::new(),
            settings,
        }
    }

    pub fn settings(&self) -> &KnowledgeSection {
        &self.settings
    }

    pub fn index(&self) -> &VectorIndex {
        &self.index
    }

    /// The base `raw` if the caller's tenant reaches it (its own, or a pooled one); otherwise,
    /// and for a malformed id, not found.
    pub async fn visible_base(
        &self,
        ctx: &TenantContext,
        raw: &str,
    ) -> ApiResult<KnowledgeBaseRecord> {
        let not_found = || ApiError::not_found("knowledge base");
        let id = KnowledgeBaseId::new(raw).map_err(|_| not_found())?;
        let base = self
            .store
            .get_knowledge_base(id.as_str())
            .await?
            .ok_or_else(not_found)?;
        match &base.owner {
            Some(owner) if owner != &ctx.tenant_id => Err(not_found()),
            Some(_) | None => Ok(base),
        }
    }

    /// Erases everything `user` owns in the scope's knowledge bases (documents, chunks,
    /// vectors); how many documents went. Memory erasure calls this too, so one call removes a
    /// user's knowledge and memory alike.
    pub async fn erase_user(&self, scope: &TenantScope, user: &UserId) -> ApiResult<u64> {
        let (bases, n) = self.store.erase_user_knowledge(scope, user).await?;
        for base in bases {
            // Reloaded from the store on next use, without the erased vectors.
            self.index.forget(&partition(scope.tenant(), &base));
        }
        Ok(n)
    }

    /// Forgets what the index holds of a deleted tenant.
    pub fn forget_tenant(&self, tenant: &TenantId) {
        self.index.forget_tenant(tenant);
    }

    /// Forgets what the index holds of a deleted base.
    pub fn forget_base(&self, base: &str) {
        self.index.forget_space(&format!("kb:{base}"));
    }
}
