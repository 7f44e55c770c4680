-- Knowledge bases (RAG). A base is operator data (no row-level security, like tool_targets):
-- owner_tenant set means siloed (the tenant's own, deleted with it), NULL means pooled.
-- Documents, chunks and the per-(tenant, base) generation are tenant data with forced
-- row-level security keyed by app.tenant_id, exactly as sessions.
CREATE TABLE knowledge_bases (
    id           TEXT   NOT NULL PRIMARY KEY,
    name         TEXT   NOT NULL,
    description  TEXT   NOT NULL,
    owner_tenant TEXT   REFERENCES tenants (id),
    created_at   BIGINT NOT NULL
);

CREATE INDEX knowledge_bases_by_owner ON knowledge_bases (owner_tenant);

CREATE TABLE knowledge_documents (
    tenant_id    TEXT   NOT NULL REFERENCES tenants (id),
    base_id      TEXT   NOT NULL,
    id           TEXT   NOT NULL,
    title        TEXT   NOT NULL,
    content_type TEXT   NOT NULL,
    metadata     JSONB  NOT NULL,
    owner_user   TEXT,
    chunk_count  BIGINT NOT NULL,
    bytes        BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, base_id, id)
);

CREATE INDEX knowledge_documents_by_owner ON knowledge_documents (tenant_id, owner_user);

-- PostgreSQL full-text: an English tsvector of search_text, kept by the database.
CREATE TABLE knowledge_chunks (
    tenant_id    TEXT   NOT NULL REFERENCES tenants (id),
    base_id      TEXT   NOT NULL,
    id           TEXT   NOT NULL,
    document_id  TEXT   NOT NULL,
    seq          BIGINT NOT NULL,
    heading_path JSONB  NOT NULL,
    text         TEXT   NOT NULL,
    search_text  TEXT   NOT NULL,
    fts_scope    TEXT   NOT NULL,
    embedding    BYTEA  NOT NULL,
    embed_model  TEXT,
    tsv          TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', search_text)) STORED,
    PRIMARY KEY (tenant_id, base_id, id)
);

CREATE INDEX knowledge_chunks_by_document ON knowledge_chunks (tenant_id, base_id, document_id);
CREATE INDEX knowledge_chunks_tsv ON knowledge_chunks USING GIN (tsv);

CREATE TABLE knowledge_partitions (
    tenant_id  TEXT   NOT NULL REFERENCES tenants (id),
    base_id    TEXT   NOT NULL,
    generation BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, base_id)
);

ALTER TABLE knowledge_documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE knowledge_documents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON knowledge_documents
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY operator_read ON knowledge_documents FOR SELECT TO tenantry_operator
    USING (current_user = 'tenantry_operator');

ALTER TABLE knowledge_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE knowledge_chunks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON knowledge_chunks
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

ALTER TABLE knowledge_partitions ENABLE ROW LEVEL SECURITY;
ALTER TABLE knowledge_partitions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON knowledge_partitions
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

GRANT SELECT, INSERT, UPDATE, DELETE ON knowledge_documents, knowledge_chunks,
    knowledge_partitions TO tenantry_app;
-- The operator reads which tenants hold documents of a pooled base it deletes.
GRANT SELECT ON knowledge_documents TO tenantry_operator;
