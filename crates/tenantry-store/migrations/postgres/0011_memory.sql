-- Memory: memory resources (operator data like tool_targets, no row-level security; tenant_id
-- NULL marks a memory the operator shares with every tenant), and their events and long-term
-- records (tenant data, row-level security exactly as sessions). Deleting a memory deletes its
-- events and records of every tenant (ON DELETE CASCADE, which referential actions run past
-- row-level security); deleting a tenant deletes its events and records in every memory in its
-- own scope, then its memories (Store::delete_tenant).
CREATE TABLE memories (
    id                TEXT   NOT NULL PRIMARY KEY,
    tenant_id         TEXT   REFERENCES tenants (id),
    name              TEXT   NOT NULL,
    description       TEXT   NOT NULL,
    event_expiry_days BIGINT NOT NULL,
    strategies        JSONB  NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE UNIQUE INDEX memories_by_owner_name ON memories (coalesce(tenant_id, ''), name);

-- Events are immutable (tenantry_app has no UPDATE on them). Times are Unix milliseconds.
CREATE TABLE memory_events (
    tenant_id    TEXT   NOT NULL REFERENCES tenants (id),
    memory_id    TEXT   NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    id           TEXT   NOT NULL,
    actor_id     TEXT   NOT NULL,
    session_id   TEXT   NOT NULL,
    event_at     BIGINT NOT NULL,
    payload      JSONB  NOT NULL,
    metadata     JSONB  NOT NULL,
    branch_name  TEXT,
    branch_root  TEXT,
    client_token TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, memory_id, id)
);

CREATE UNIQUE INDEX memory_events_by_token ON memory_events (tenant_id, memory_id, client_token)
    WHERE client_token IS NOT NULL;
CREATE INDEX memory_events_by_session
    ON memory_events (tenant_id, memory_id, actor_id, session_id, event_at);
CREATE INDEX memory_events_by_age ON memory_events (tenant_id, memory_id, created_at);

-- Long-term records, with their text's full-text vector (english stemming, like SQLite's
-- porter tokenizer) kept by PostgreSQL.
CREATE TABLE memory_records (
    tenant_id   TEXT   NOT NULL REFERENCES tenants (id),
    memory_id   TEXT   NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    id          TEXT   NOT NULL,
    strategy_id TEXT   NOT NULL,
    namespace   TEXT   NOT NULL,
    actor_id    TEXT,
    session_id  TEXT,
    text        TEXT   NOT NULL,
    norm        TEXT   NOT NULL,
    metadata    JSONB  NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    tsv         tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    PRIMARY KEY (tenant_id, memory_id, id)
);

CREATE INDEX memory_records_by_namespace ON memory_records (tenant_id, memory_id, namespace);
CREATE INDEX memory_records_by_actor ON memory_records (tenant_id, actor_id);
CREATE INDEX memory_records_fts ON memory_records USING gin (tsv);

ALTER TABLE memory_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_events
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

ALTER TABLE memory_records ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_records FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_records
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

GRANT SELECT, INSERT, DELETE ON memory_events TO tenantry_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON memory_records TO tenantry_app;
