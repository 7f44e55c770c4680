//! Ingesting a document: parse it into sections under their headings, cut the sections into
//! chunks, embed the chunks (when an embedder is configured), and store the document with its
//! chunks in one transaction that replaces any earlier version; then bring this replica's
//! vector index to the new generation.

use serde::Deserialize;
use serde_json::{Map, Value};
use tenantry_core::{TenantContext, Tier, unix_now};
use tenantry_memory::knowledge::{
    ChunkOptions, ContentType, DocumentId, chunk_id, chunk_sections, parse, search_text,
};
use tenantry_memory::search::Embedder;
use tenantry_store::{DocumentRecord, KnowledgeBaseRecord, NewChunk};

use super::embedder::GatewayEmbedder;
use super::{Knowledge, partition};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The most chunks one document may make.
pub const MAX_CHUNKS: usize = 5000;
/// The most metadata a document may carry, as JSON bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// The body of `PUT /v1/knowledge/bases/{base}/documents/{document}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    pub content: String,
    #[serde(default = "markdown")]
    pub content_type: ContentType,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// The document belongs to the calling user (erased with that user) rather than to the
    /// tenant.
    #[serde(default)]
    pub personal: bool,
}

fn markdown() -> ContentType {
    ContentType::Markdown
}

/// What ingestion stored.
#[derive(Debug, serde::Serialize)]
pub struct Ingested {
    #[serde(flatten)]
    pub document: DocumentRecord,
    /// Whether the chunks were embedded (false: no embedder configured).
    pub embedded: bool,
}

impl Knowledge {
    pub async fn ingest(
        &self,
        state: &AppState,
        ctx: &TenantContext,
        tier: &Tier,
        base: &KnowledgeBaseRecord,
        raw_id: &str,
        req: IngestRequest,
    ) -> ApiResult<Ingested> {
        let id = DocumentId::new(raw_id).map_err(|e| ApiError::invalid(e.to_string()))?;
        if req.content.len() > self.settings.max_document_bytes {
            return Err(ApiError::invalid(format!(
                "the document has {} bytes; at most {} are accepted ([knowledge] max_document_bytes)",
                req.content.len(),
                self.settings.max_document_bytes
            )));
        }
        let meta_len = serde_json::to_string(&req.metadata).map_or(usize::MAX, |s| s.len());
        if meta_len > MAX_METADATA_BYTES {
            return Err(ApiError::invalid(format!(
                "metadata is {meta_len} bytes of JSON; at most {MAX_METADATA_BYTES}"
            )));
        }
        let sections = parse(req.content_type, &req.content);
        let chunks = chunk_sections(
            &sections,
            ChunkOptions {
                max_words: self.settings.chunk_words,
            },
        );
        if chunks.len() > MAX_CHUNKS {
            return Err(ApiError::invalid(format!(
                "the document makes {} chunks; at most {MAX_CHUNKS}",
                chunks.len()
            )));
        }
        let texts: Vec<String> = chunks
            .iter()
            .map(|c| search_text(&c.heading_path, &c.text))
            .collect();
        let (vectors, model) = match &self.settings.embedding_model {
            Some(model) if !texts.is_empty() => {
                let embedder = GatewayEmbedder::new(state, ctx, tier, model);
                let v = embedder
                    .embed(&texts)
                    .await
                    .map_err(|e| embedder.error(e))?;
                (Some(v), Some(model.clone()))
            }
            Some(_) | None => (None, None),
        };
        let title = req.title.clone().unwrap_or_else(|| {
            sections
                .first()
                .and_then(|s| s.heading_path.first().cloned())
                .unwrap_or_else(|| id.to_string())
        });
        let now = unix_now();
        let scope = ctx.scope();
        let existing = self
            .store
            .get_document(&scope, &base.id, id.as_str())
            .await?;
        let doc = DocumentRecord {
            base_id: base.id.clone(),
            id: id.to_string(),
            title,
            content_type: req.content_type.as_str().to_owned(),
            metadata: req.metadata,
            owner_user: req.personal.then(|| ctx.user_id.clone()),
            chunk_count: chunks.len() as i64,
            bytes: req.content.len() as i64,
            created_at: existing.map_or(now, |d| d.created_at),
            updated_at: now,
        };
        let stored: Vec<NewChunk> = chunks
            .into_iter()
            .zip(texts)
            .enumerate()
            .map(|(i, (c, text))| NewChunk {
                seq: i as i64,
                heading_path: c.heading_path,
                text: c.text,
                search_text: text,
                embedding: vectors.as_ref().and_then(|v| v.get(i).cloned()),
                embed_model: model.clone(),
            })
            .collect();
        let generation = self.store.put_document(&scope, &doc, &stored).await?;
        let entries: Vec<(String, Vec<f32>)> = stored
            .iter()
            .filter_map(|c| {
                c.embedding
                    .as_ref()
                    .map(|v| (chunk_id(&id, c.seq as usize), v.clone()))
            })
            .collect();
        self.index.apply(
            &partition(&ctx.tenant_id, &base.id),
            generation,
            Some(&format!("{id}:")),
            &entries,
        );
        Ok(Ingested {
            document: doc,
            embedded: vectors.is_some(),
        })
    }

    /// Deletes one of the caller's documents; not found if the caller's tenant has none of
    /// that id in the base.
    pub async fn delete_document(
        &self,
        ctx: &TenantContext,
        base: &KnowledgeBaseRecord,
        raw_id: &str,
    ) -> ApiResult<()> {
        let not_found = || ApiError::not_found("document");
        let id = DocumentId::new(raw_id).map_err(|_| not_found())?;
        let generation = self
            .store
            .delete_document(&ctx.scope(), &base.id, id.as_str())
            .await?
            .ok_or_else(not_found)?;
        self.index.apply(
            &partition(&ctx.tenant_id, &base.id),
            generation,
            Some(&format!("{id}:")),
            &[],
        );
        Ok(())
    }
}
