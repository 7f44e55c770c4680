//! Knowledge bases (operator data) and their documents and chunks (tenant data), with the
//! full-text half of retrieval: SQLite FTS5 on the embedded store, PostgreSQL full-text
//! (`tsvector`, `ts_rank_cd`) on PostgreSQL. Vectors are stored beside each chunk as
//! little-endian f32 bytes; the similarity search over them runs in process
//! (`tenantry_memory::search`), loaded through `knowledge_vectors`.
//!
//! Every statement on documents, chunks and generations filters by the scope's tenant and, on
//! PostgreSQL, runs in the tenant's scoped transaction (row-level security). Deleting a pooled
//! base touches every tenant's documents in it: the tenants holding some are read as the
//! operator (read-only), then each one's rows are deleted in its own scope. This module must
//! never return a chunk of another tenant than the scope's, and must never put caller text into
//! a full-text query other than as the sanitised terms it is given.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tenantry_core::{CrossTenantGrant, TenantId, TenantScope, UserId};

use crate::db::{Db, scalar, sql};
use crate::row::{Row, json_col, to_json};
use crate::{Backend, Store, StoreError, missing_tenant};

/// A knowledge base as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnowledgeBaseRecord {
    pub id: String,
    pub name: String,
    pub description: String,
    /// The owning tenant of a siloed base; `None` for a pooled one.
    pub owner: Option<TenantId>,
    pub created_at: i64,
}

/// A document of one tenant in one base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentRecord {
    pub base_id: String,
    pub id: String,
    pub title: String,
    pub content_type: String,
    pub metadata: Map<String, Value>,
    /// The user it is erased with; `None`: the tenant's.
    pub owner_user: Option<UserId>,
    pub chunk_count: i64,
    pub bytes: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A chunk to store with its document.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChunk {
    pub seq: i64,
    pub heading_path: Vec<String>,
    pub text: String,
    pub search_text: String,
    /// `None` when no embedder is configured.
    pub embedding: Option<Vec<f32>>,
    pub embed_model: Option<String>,
}

/// A stored chunk with what a retrieval answers about its document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkRecord {
    /// `DOCUMENT:SEQ`.
    pub id: String,
    pub document_id: String,
    pub seq: i64,
    pub heading_path: Vec<String>,
    pub text: String,
    pub document_title: String,
    pub metadata: Map<String, Value>,
}

/// The single full-text token naming a (tenant, base) in the FTS5 index: letters and digits
/// only, so the tokenizer keeps it whole.
fn fts_scope(tenant: &TenantId, base: &str) -> String {
    let hex: String = tenant
        .as_str()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("k{hex}x{}", base.to_ascii_lowercase())
}

fn vector_bytes(v: Option<&Vec<f32>>) -> Vec<u8> {
    v.map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .unwrap_or_default()
}

fn vector_of(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

macro_rules! base_cols {
    () => {
        "id, name, description, owner_tenant, created_at"
    };
}

fn base_from_row(row: &Row) -> Result<KnowledgeBaseRecord, StoreError> {
    Ok(KnowledgeBaseRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        description: row.text("description")?,
        owner: row.opt_parsed("owner_tenant", TenantId::new)?,
        created_at: row.int("created_at")?,
    })
}

macro_rules! doc_cols {
    ($dialect:ident) => {
        concat!(
            "base_id, id, title, content_type, ",
            json_col!($dialect, "metadata"),
            ", owner_user, chunk_count, bytes, created_at, updated_at"
        )
    };
}

fn doc_from_row(row: &Row) -> Result<DocumentRecord, StoreError> {
    Ok(DocumentRecord {
        base_id: row.text("base_id")?,
        id: row.text("id")?,
        title: row.text("title")?,
        content_type: row.text("content_type")?,
        metadata: row.json("document", "metadata")?,
        owner_user: row.opt_parsed("owner_user", UserId::new)?,
        chunk_count: row.int("chunk_count")?,
        bytes: row.int("bytes")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

/// Bumps the (tenant, base)'s generation within `db`'s transaction; the new value.
async fn bump(db: &mut Db, tenant: &TenantId, base: &str) -> Result<i64, StoreError> {
    scalar!(db.fetch_one(
        sqlite: "INSERT INTO knowledge_partitions (tenant_id, base_id, generation) VALUES (?1, ?2, 1)
                 ON CONFLICT (tenant_id, base_id) DO UPDATE SET generation = generation + 1
                 RETURNING generation",
        postgres: "INSERT INTO knowledge_partitions (tenant_id, base_id, generation) VALUES ($1, $2, 1)
                   ON CONFLICT (tenant_id, base_id)
                   DO UPDATE SET generation = knowledge_partitions.generation + 1
                   RETURNING generation",
        tenant.as_str(),
        base,
    ))
}

async fn delete_chunks_of(
    db: &mut Db,
    tenant: &TenantId,
    base: &str,
    doc: &str,
) -> Result<u64, StoreError> {
    sql!(db.execute(
        sqlite: "DELETE FROM knowledge_chunks WHERE tenant_id = ?1 AND base_id = ?2 AND document_id = ?3",
        postgres: "DELETE FROM knowledge_chunks WHERE tenant_id = $1 AND base_id = $2 AND document_id = $3",
        tenant.as_str(),
        base,
        doc,
    ))
}

/// Deletes one tenant's documents (all of a base, or one document) with their chunks.
async fn delete_docs(
    db: &mut Db,
    tenant: &TenantId,
    base: &str,
    doc: Option<&str>,
) -> Result<u64, StoreError> {
    sql!(db.execute(
        sqlite: "DELETE FROM knowledge_chunks WHERE tenant_id = ?1 AND base_id = ?2
                 AND (?3 IS NULL OR document_id = ?3)",
        postgres: "DELETE FROM knowledge_chunks WHERE tenant_id = $1 AND base_id = $2
                   AND ($3::text IS NULL OR document_id = $3)",
        tenant.as_str(),
        base,
        doc,
    ))?;
    sql!(db.execute(
        sqlite: "DELETE FROM knowledge_documents WHERE tenant_id = ?1 AND base_id = ?2
                 AND (?3 IS NULL OR id = ?3)",
        postgres: "DELETE FROM knowledge_documents WHERE tenant_id = $1 AND base_id = $2
                   AND ($3::text IS NULL OR id = $3)",
        tenant.as_str(),
        base,
        doc,
    ))
}

impl Store {
    /// Registers a base; `Conflict` if the id is taken, `Missing` if its owner does not exist.
    pub async fn create_knowledge_base(&self, b: &KnowledgeBaseRecord) -> Result<(), StoreError> {
        sql!(self.operator_data() => execute(
            sqlite: concat!("INSERT INTO knowledge_bases (", base_cols!(), ") VALUES (?1, ?2, ?3, ?4, ?5)"),
            postgres: concat!("INSERT INTO knowledge_bases (", base_cols!(), ") VALUES ($1, $2, $3, $4, $5)"),
            &b.id,
            &b.name,
            &b.description,
            b.owner.as_ref().map(TenantId::as_str),
            b.created_at,
        ))
        .map_err(|e| e.conflict_as(|| format!("knowledge base {} already exists", b.id)))
        .map_err(|e| e.missing_as(|| "the owning tenant does not exist".to_owned()))?;
        Ok(())
    }

    pub async fn get_knowledge_base(
        &self,
        id: &str,
    ) -> Result<Option<KnowledgeBaseRecord>, StoreError> {
        let row = sql!(self.operator_data() => fetch_optional(
            sqlite: concat!("SELECT ", base_cols!(), " FROM knowledge_bases WHERE id = ?1"),
            postgres: concat!("SELECT ", base_cols!(), " FROM knowledge_bases WHERE id = $1"),
            id,
        ))?;
        row.as_ref().map(base_from_row).transpose()
    }

    /// The bases a tenant reaches: its own and the pooled ones, by id. With `None`, every base
    /// (the operator's view).
    pub async fn list_knowledge_bases(
        &self,
        visible_to: Option<&TenantScope>,
    ) -> Result<Vec<KnowledgeBaseRecord>, StoreError> {
        let (all, tenant) = match visible_to {
            Some(s) => (false, Some(s.tenant().as_str())),
            None => (true, None),
        };
        let rows = sql!(self.operator_data() => fetch_all(
            sqlite: concat!("SELECT ", base_cols!(), " FROM knowledge_bases
                 WHERE ?1 OR owner_tenant IS NULL OR owner_tenant = ?2 ORDER BY id"),
            postgres: concat!("SELECT ", base_cols!(), r#" FROM knowledge_bases
                 WHERE $1 OR owner_tenant IS NULL OR owner_tenant = $2 ORDER BY id COLLATE "C""#),
            all,
            tenant,
        ))?;
        rows.iter().map(base_from_row).collect()
    }

    /// Deletes a base with every tenant's documents and chunks in it; `false` if absent.
    pub async fn delete_knowledge_base(
        &self,
        grant: &impl CrossTenantGrant,
        id: &str,
    ) -> Result<bool, StoreError> {
        let Some(base) = self.get_knowledge_base(id).await? else {
            return Ok(false);
        };
        let tenants: Vec<TenantId> = match &base.owner {
            Some(t) => vec![t.clone()],
            None => {
                let mut db = self.all_tenants(grant).await?;
                let rows = sql!(db.fetch_all(
                    sqlite: "SELECT DISTINCT tenant_id FROM knowledge_documents WHERE base_id = ?1",
                    postgres: "SELECT DISTINCT tenant_id FROM knowledge_documents WHERE base_id = $1",
                    id,
                ))?;
                db.commit().await?;
                rows.iter()
                    .map(|r| r.parsed("tenant_id", TenantId::new))
                    .collect::<Result<_, _>>()?
            }
        };
        for tenant in &tenants {
            let mut db = self.tenant_data_tx(tenant).await?;
            delete_docs(&mut db, tenant, id, None).await?;
            sql!(db.execute(
                sqlite: "DELETE FROM knowledge_partitions WHERE tenant_id = ?1 AND base_id = ?2",
                postgres: "DELETE FROM knowledge_partitions WHERE tenant_id = $1 AND base_id = $2",
                tenant.as_str(),
                id,
            ))?;
            db.commit().await?;
        }
        let deleted = sql!(self.operator_data() => execute(
            sqlite: "DELETE FROM knowledge_bases WHERE id = ?1",
            postgres: "DELETE FROM knowledge_bases WHERE id = $1",
            id,
        ))?;
        Ok(deleted == 1)
    }

    /// Stores a document with its chunks, replacing the document of that id and all its old
    /// chunks, in one transaction; the partition's new generation.
    pub async fn put_document(
        &self,
        scope: &TenantScope,
        doc: &DocumentRecord,
        chunks: &[NewChunk],
    ) -> Result<i64, StoreError> {
        let tenant = scope.tenant();
        let base = doc.base_id.as_str();
        let mut db = self.tenant_data_tx(tenant).await?;
        delete_chunks_of(&mut db, tenant, base, &doc.id).await?;
        sql!(db.execute(
            sqlite: concat!("INSERT INTO knowledge_documents (tenant_id, ", doc_cols!(names), ")
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (tenant_id, base_id, id) DO UPDATE SET title = excluded.title,
                   content_type = excluded.content_type, metadata = excluded.metadata,
                   owner_user = excluded.owner_user, chunk_count = excluded.chunk_count,
                   bytes = excluded.bytes, updated_at = excluded.updated_at"),
            postgres: concat!("INSERT INTO knowledge_documents (tenant_id, ", doc_cols!(names), ")
                 VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11)
                 ON CONFLICT (tenant_id, base_id, id) DO UPDATE SET title = excluded.title,
                   content_type = excluded.content_type, metadata = excluded.metadata,
                   owner_user = excluded.owner_user, chunk_count = excluded.chunk_count,
                   bytes = excluded.bytes, updated_at = excluded.updated_at"),
            tenant.as_str(),
            base,
            &doc.id,
            &doc.title,
            &doc.content_type,
            to_json(&doc.metadata)?,
            doc.owner_user.as_ref().map(UserId::as_str),
            doc.chunk_count,
            doc.bytes,
            doc.created_at,
            doc.updated_at,
        ))
        .map_err(|e| missing_tenant(e, tenant))?;
        let scope_token = fts_scope(tenant, base);
        for c in chunks {
            sql!(db.execute(
                sqlite: "INSERT INTO knowledge_chunks (tenant_id, base_id, id, document_id, seq,
                           heading_path, text, search_text, fts_scope, embedding, embed_model)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                postgres: "INSERT INTO knowledge_chunks (tenant_id, base_id, id, document_id, seq,
                             heading_path, text, search_text, fts_scope, embedding, embed_model)
                           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11)",
                tenant.as_str(),
                base,
                format!("{}:{}", doc.id, c.seq),
                &doc.id,
                c.seq,
                to_json(&c.heading_path)?,
                &c.text,
                &c.search_text,
                &scope_token,
                vector_bytes(c.embedding.as_ref()),
                c.embed_model.as_deref(),
            ))?;
        }
        let generation = bump(&mut db, tenant, base).await?;
        db.commit().await?;
        Ok(generation)
    }

    pub async fn get_document(
        &self,
        scope: &TenantScope,
        base: &str,
        id: &str,
    ) -> Result<Option<DocumentRecord>, StoreError> {
        let tenant = scope.tenant();
        let row = sql!(self.tenant_data(tenant) => fetch_optional(
            sqlite: concat!("SELECT ", doc_cols!(sqlite), " FROM knowledge_documents
                 WHERE tenant_id = ?1 AND base_id = ?2 AND id = ?3"),
            postgres: concat!("SELECT ", doc_cols!(postgres), " FROM knowledge_documents
                 WHERE tenant_id = $1 AND base_id = $2 AND id = $3"),
            tenant.as_str(),
            base,
            id,
        ))?;
        row.as_ref().map(doc_from_row).transpose()
    }

    /// The scope's documents in a base, by id, at most `limit` after `after`.
    pub async fn list_documents(
        &self,
        scope: &TenantScope,
        base: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DocumentRecord>, StoreError> {
        let tenant = scope.tenant();
        let rows = sql!(self.tenant_data(tenant) => fetch_all(
            sqlite: concat!("SELECT ", doc_cols!(sqlite), " FROM knowledge_documents
                 WHERE tenant_id = ?1 AND base_id = ?2 AND (?3 IS NULL OR id > ?3)
                 ORDER BY id LIMIT ?4"),
            postgres: concat!("SELECT ", doc_cols!(postgres), r#" FROM knowledge_documents
                 WHERE tenant_id = $1 AND base_id = $2 AND ($3::text IS NULL OR id > $3 COLLATE "C")
                 ORDER BY id COLLATE "C" LIMIT $4"#),
            tenant.as_str(),
            base,
            after,
            i64::from(limit.clamp(1, 1000)),
        ))?;
        rows.iter().map(doc_from_row).collect()
    }

    /// Deletes a document and its chunks; the partition's new generation, or `None` if the
    /// scope had no such document.
    pub async fn delete_document(
        &self,
        scope: &TenantScope,
        base: &str,
        id: &str,
    ) -> Result<Option<i64>, StoreError> {
        let tenant = scope.tenant();
        let mut db = self.tenant_data_tx(tenant).await?;
        if delete_docs(&mut db, tenant, base, Some(id)).await? == 0 {
            db.rollback().await?;
            return Ok(None);
        }
        let generation = bump(&mut db, tenant, base).await?;
        db.commit().await?;
        Ok(Some(generation))
    }

    /// Deletes every document `user` owns in the scope's tenant, in every base; the bases
    /// touched and how many documents went.
    pub async fn erase_user_knowledge(
        &self,
        scope: &TenantScope,
        user: &UserId,
    ) -> Result<(Vec<String>, u64), StoreError> {
        let tenant = scope.tenant();
        let mut db = self.tenant_data_tx(tenant).await?;
        let rows = sql!(db.fetch_all(
            sqlite: "SELECT base_id, id FROM knowledge_documents WHERE tenant_id = ?1 AND owner_user = ?2",
            postgres: "SELECT base_id, id FROM knowledge_documents WHERE tenant_id = $1 AND owner_user = $2",
            tenant.as_str(),
            user.as_str(),
        ))?;
        let mut bases: Vec<String> = Vec::new();
        for r in &rows {
            let (base, id) = (r.text("base_id")?, r.text("id")?);
            delete_docs(&mut db, tenant, &base, Some(&id)).await?;
            if !bases.contains(&base) {
                bases.push(base);
            }
        }
        for base in &bases {
            bump(&mut db, tenant, base).await?;
        }
        db.commit().await?;
        Ok((bases, rows.len() as u64))
    }

    /// The (tenant, base)'s generation: 0 before its first write.
    pub async fn knowledge_generation(
        &self,
        scope: &TenantScope,
        base: &str,
    ) -> Result<i64, StoreError> {
        let tenant = scope.tenant();
        let g: Option<i64> = scalar!(self.tenant_data(tenant) => fetch_optional(
            sqlite: "SELECT generation FROM knowledge_partitions WHERE tenant_id = ?1 AND base_id = ?2",
            postgres: "SELECT generation FROM knowledge_partitions WHERE tenant_id = $1 AND base_id = $2",
            tenant.as_str(),
            base,
        ))?;
        Ok(g.unwrap_or(0))
    }

    /// Every stored vector of the (tenant, base) with the generation they reflect (read in one
    /// transaction, so the two agree), as `(chunk id, vector)`; chunks stored without a
    /// vector are left out.
    pub async fn knowledge_vectors(
        &self,
        scope: &TenantScope,
        base: &str,
    ) -> Result<(i64, Vec<(String, Vec<f32>)>), StoreError> {
        let tenant = scope.tenant();
        let mut db = self.tenant_data_tx(tenant).await?;
        let g: Option<i64> = scalar!(db.fetch_optional(
            sqlite: "SELECT generation FROM knowledge_partitions WHERE tenant_id = ?1 AND base_id = ?2",
            postgres: "SELECT generation FROM knowledge_partitions WHERE tenant_id = $1 AND base_id = $2",
            tenant.as_str(),
            base,
        ))?;
        let rows = sql!(db.fetch_all(
            sqlite: "SELECT id, embedding FROM knowledge_chunks
                     WHERE tenant_id = ?1 AND base_id = ?2 AND length(embedding) > 0",
            postgres: "SELECT id, embedding FROM knowledge_chunks
                       WHERE tenant_id = $1 AND base_id = $2 AND length(embedding) > 0",
            tenant.as_str(),
            base,
        ))?;
        db.commit().await?;
        let entries = rows
            .iter()
            .map(|r| Ok((r.text("id")?, vector_of(&r.bytes("embedding")?))))
            .collect::<Result<_, StoreError>>()?;
        Ok((g.unwrap_or(0), entries))
    }

    /// Full-text search of the (tenant, base)'s chunks for any of `terms` (letters and digits
    /// only: `tenantry_memory::search::query_terms`), best first, at most `limit`: chunk ids
    /// and scores (BM25 on SQLite, `ts_rank_cd` on PostgreSQL; higher is better).
    pub async fn search_knowledge_text(
        &self,
        scope: &TenantScope,
        base: &str,
        terms: &[String],
        limit: u32,
    ) -> Result<Vec<(String, f64)>, StoreError> {
        let terms: Vec<&String> = terms
            .iter()
            .filter(|t| !t.is_empty() && t.chars().all(char::is_alphanumeric))
            .collect();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let tenant = scope.tenant();
        let query = match &self.backend {
            Backend::Sqlite(_) => {
                let any = terms
                    .iter()
                    .map(|t| format!("\"{t}\""))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                format!(
                    "fts_scope : \"{}\" AND search_text : ({any})",
                    fts_scope(tenant, base)
                )
            }
            Backend::Postgres(_) => terms
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(" | "),
        };
        let rows = sql!(self.tenant_data(tenant) => fetch_all(
            // The full-text index drives the query (materialised first): joined the other
            // way round, SQLite may walk the tenant's chunks and run the MATCH for each one.
            // The scope token already limits the matches to the (tenant, base); the filter on
            // the chunk row checks it again.
            sqlite: "WITH hits AS MATERIALIZED (
                       SELECT rowid, bm25(knowledge_chunks_fts, 1.0, 0.0) AS rank
                       FROM knowledge_chunks_fts WHERE knowledge_chunks_fts MATCH ?1
                       ORDER BY rank LIMIT ?4)
                     SELECT c.id AS id, -hits.rank AS score
                     FROM hits CROSS JOIN knowledge_chunks c ON c.rowid = hits.rowid
                     WHERE c.tenant_id = ?2 AND c.base_id = ?3
                     ORDER BY hits.rank",
            postgres: "SELECT id, ts_rank_cd(tsv, q)::float8 AS score
                       FROM knowledge_chunks, to_tsquery('english', $1) AS q
                       WHERE tsv @@ q AND tenant_id = $2 AND base_id = $3
                       ORDER BY score DESC, id COLLATE \"C\" LIMIT $4",
            query,
            tenant.as_str(),
            base,
            i64::from(limit.clamp(1, 1000)),
        ))?;
        rows.iter()
            .map(|r| Ok((r.text("id")?, r.float("score")?)))
            .collect()
    }

    /// The chunks of the (tenant, base) with these ids (any order; unknown ids are skipped),
    /// with their document's title and metadata.
    pub async fn get_knowledge_chunks(
        &self,
        scope: &TenantScope,
        base: &str,
        ids: &[String],
    ) -> Result<Vec<ChunkRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let tenant = scope.tenant();
        let rows = sql!(self.tenant_data(tenant) => fetch_all(
            sqlite: "SELECT c.id, c.document_id, c.seq, c.heading_path, c.text, d.title,
                            d.metadata
                     FROM knowledge_chunks c JOIN knowledge_documents d
                       ON d.tenant_id = c.tenant_id AND d.base_id = c.base_id AND d.id = c.document_id
                     WHERE c.tenant_id = ?1 AND c.base_id = ?2
                       AND c.id IN (SELECT value FROM json_each(?3))",
            postgres: "SELECT c.id, c.document_id, c.seq, c.heading_path::text AS heading_path,
                              c.text, d.title, d.metadata::text AS metadata
                       FROM knowledge_chunks c JOIN knowledge_documents d
                         ON d.tenant_id = c.tenant_id AND d.base_id = c.base_id AND d.id = c.document_id
                       WHERE c.tenant_id = $1 AND c.base_id = $2
                         AND c.id IN (SELECT jsonb_array_elements_text($3::jsonb))",
            tenant.as_str(),
            base,
            to_json(&ids)?,
        ))?;
        rows.iter()
            .map(|r| {
                Ok(ChunkRecord {
                    id: r.text("id")?,
                    document_id: r.text("document_id")?,
                    seq: r.int("seq")?,
                    heading_path: r.json("chunk", "heading_path")?,
                    text: r.text("text")?,
                    document_title: r.text("title")?,
                    metadata: r.json("document", "metadata")?,
                })
            })
            .collect()
    }

    /// How many chunks the scope holds in all its bases (for tests of erasure and reports).
    pub async fn count_knowledge_chunks(&self, scope: &TenantScope) -> Result<i64, StoreError> {
        let tenant = scope.tenant();
        scalar!(self.tenant_data(tenant) => fetch_one(
            sqlite: "SELECT count(*) FROM knowledge_chunks WHERE tenant_id = ?1",
            postgres: "SELECT count(*) FROM knowledge_chunks WHERE tenant_id = $1",
            tenant.as_str(),
        ))
    }
}
