-- Memory: memory resources (operator data like tool targets: tenant_id NULL marks a memory the
-- operator shares with every tenant), and their events and long-term records (tenant data:
-- every statement filters by tenant_id). Deleting a memory deletes its events and records
-- (ON DELETE CASCADE); deleting a tenant deletes its events and records in every memory,
-- then its own memories (Store::delete_tenant).
CREATE TABLE memories (
    id                TEXT    NOT NULL PRIMARY KEY,
    tenant_id         TEXT    REFERENCES tenants (id),
    name              TEXT    NOT NULL,
    description       TEXT    NOT NULL,
    event_expiry_days INTEGER NOT NULL,
    strategies        TEXT    NOT NULL,  -- JSON array of strategies
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT;

-- Names are unique per owner (the shared memories being one owner).
CREATE UNIQUE INDEX memories_by_owner_name ON memories (coalesce(tenant_id, ''), name);

-- Events are immutable. event_at is the caller's event timestamp, created_at when the event
-- was stored (expiry counts from it); both Unix milliseconds.
CREATE TABLE memory_events (
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    memory_id    TEXT    NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    id           TEXT    NOT NULL,
    actor_id     TEXT    NOT NULL,
    session_id   TEXT    NOT NULL,
    event_at     INTEGER NOT NULL,
    payload      TEXT    NOT NULL,  -- JSON array of payload items
    metadata     TEXT    NOT NULL,  -- JSON object
    branch_name  TEXT,
    branch_root  TEXT,
    client_token TEXT,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, memory_id, id)
) STRICT;

CREATE UNIQUE INDEX memory_events_by_token ON memory_events (tenant_id, memory_id, client_token)
    WHERE client_token IS NOT NULL;
CREATE INDEX memory_events_by_session
    ON memory_events (tenant_id, memory_id, actor_id, session_id, event_at);
CREATE INDEX memory_events_by_age ON memory_events (tenant_id, memory_id, created_at);

-- Long-term records. rid is the full-text index's row id; actor_id and session_id say whose
-- record it is (NULL: tenant-wide). norm is the normalised text consolidation compares.
CREATE TABLE memory_records (
    rid         INTEGER PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    memory_id   TEXT    NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    id          TEXT    NOT NULL,
    strategy_id TEXT    NOT NULL,
    namespace   TEXT    NOT NULL,
    actor_id    TEXT,
    session_id  TEXT,
    text        TEXT    NOT NULL,
    norm        TEXT    NOT NULL,
    metadata    TEXT    NOT NULL,  -- JSON object
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (tenant_id, memory_id, id)
) STRICT;

CREATE INDEX memory_records_by_namespace ON memory_records (tenant_id, memory_id, namespace);
CREATE INDEX memory_records_by_actor ON memory_records (tenant_id, actor_id);

-- The full-text index of records' text (an external-content FTS5 table kept by triggers).
CREATE VIRTUAL TABLE memory_records_fts USING fts5(
    text, content = 'memory_records', content_rowid = 'rid', tokenize = 'porter unicode61'
);

CREATE TRIGGER memory_records_fts_insert AFTER INSERT ON memory_records BEGIN
    INSERT INTO memory_records_fts (rowid, text) VALUES (new.rid, new.text);
END;
CREATE TRIGGER memory_records_fts_delete AFTER DELETE ON memory_records BEGIN
    INSERT INTO memory_records_fts (memory_records_fts, rowid, text)
        VALUES ('delete', old.rid, old.text);
END;
CREATE TRIGGER memory_records_fts_update AFTER UPDATE OF text ON memory_records BEGIN
    INSERT INTO memory_records_fts (memory_records_fts, rowid, text)
        VALUES ('delete', old.rid, old.text);
    INSERT INTO memory_records_fts (rowid, text) VALUES (new.rid, new.text);
END;
