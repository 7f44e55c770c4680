-- Knowledge bases (RAG). A base is operator data: owner_tenant set means siloed (the tenant's
-- own, deleted with it), NULL means pooled (created by the operator; every tenant's documents
-- in it are that tenant's alone). Documents, chunks and the per-(tenant, base) generation are
-- tenant data: every row carries tenant_id and every statement filters by it.
CREATE TABLE knowledge_bases (
    id           TEXT    NOT NULL PRIMARY KEY,  -- 1 to 10 letters and digits (Bedrock's shape)
    name         TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    owner_tenant TEXT    REFERENCES tenants (id),
    created_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX knowledge_bases_by_owner ON knowledge_bases (owner_tenant);

CREATE TABLE knowledge_documents (
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    base_id      TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    title        TEXT    NOT NULL,
    content_type TEXT    NOT NULL,  -- text | markdown | html
    metadata     TEXT    NOT NULL,  -- JSON object
    owner_user   TEXT,              -- erased with that user; NULL: the tenant's
    chunk_count  INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, base_id, id)
) STRICT;

CREATE INDEX knowledge_documents_by_owner ON knowledge_documents (tenant_id, owner_user);

-- A rowid table: the full-text index below refers to chunks by rowid.
CREATE TABLE knowledge_chunks (
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    base_id      TEXT    NOT NULL,
    id           TEXT    NOT NULL,  -- DOCUMENT:SEQ
    document_id  TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    heading_path TEXT    NOT NULL,  -- JSON list of headings
    text         TEXT    NOT NULL,
    search_text  TEXT    NOT NULL,  -- heading path and text: what is indexed and embedded
    fts_scope    TEXT    NOT NULL,  -- one token naming (tenant, base) in the full-text index
    embedding    BLOB    NOT NULL,  -- little-endian f32; empty when no embedder was configured
    embed_model  TEXT,
    UNIQUE (tenant_id, base_id, id)
) STRICT;

CREATE INDEX knowledge_chunks_by_document ON knowledge_chunks (tenant_id, base_id, document_id);

-- FTS5 over the chunks (external content, kept in step by triggers). fts_scope lets a query
-- intersect with one (tenant, base) inside the index instead of filtering after it.
CREATE VIRTUAL TABLE knowledge_chunks_fts USING fts5(
    search_text, fts_scope,
    content = 'knowledge_chunks', content_rowid = 'rowid',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER knowledge_chunks_fts_insert AFTER INSERT ON knowledge_chunks BEGIN
    INSERT INTO knowledge_chunks_fts (rowid, search_text, fts_scope)
    VALUES (new.rowid, new.search_text, new.fts_scope);
END;

CREATE TRIGGER knowledge_chunks_fts_delete AFTER DELETE ON knowledge_chunks BEGIN
    INSERT INTO knowledge_chunks_fts (knowledge_chunks_fts, rowid, search_text, fts_scope)
    VALUES ('delete', old.rowid, old.search_text, old.fts_scope);
END;

-- Bumped by every write of a (tenant, base)'s documents, so each replica's in-process vector
-- index knows when to reload that partition.
CREATE TABLE knowledge_partitions (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    base_id    TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, base_id)
) STRICT;
