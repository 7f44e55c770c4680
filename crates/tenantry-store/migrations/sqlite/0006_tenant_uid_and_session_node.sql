-- Lifecycle: a tenant's immutable internal identity, the ledger outliving its tenant, and the
-- server process (node) that runs each active session.

-- Minted once at creation (32 hex digits) and never reused: a tenant deleted and created again
-- under the same id gets a new uid, and everything keyed by the uid (session storage, warm
-- pools, live sessions, workload tokens) of the old one can never resolve to the new one.
-- Existing tenants get a random one. ALTER TABLE cannot add a NOT NULL column without a
-- constant default here; the store always writes it.
ALTER TABLE tenants ADD COLUMN uid TEXT;
UPDATE tenants SET uid = lower(hex(randomblob(16))) WHERE uid IS NULL;
CREATE UNIQUE INDEX tenants_by_uid ON tenants (uid);

-- The node whose sandbox runs an active session, so that a node starting after a crash marks
-- only its own sessions stopped ('' for sessions of builds that did not record it).
ALTER TABLE sessions ADD COLUMN node TEXT NOT NULL DEFAULT '';
CREATE INDEX sessions_by_node_status ON sessions (node, status);

-- The usage ledger is kept for billing after its tenant is deleted (unless the operator purges
-- it), so it no longer references tenants. SQLite cannot drop a constraint: the table is
-- rebuilt with the same columns, indexes and trigger.
CREATE TABLE usage_records_kept (
    tenant_id     TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    user_id       TEXT,
    runtime       TEXT,
    session_id    TEXT,
    kind          TEXT    NOT NULL,
    resource      TEXT,
    provider      TEXT,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cpu_ms        INTEGER NOT NULL,
    memory_mb_ms  INTEGER NOT NULL,
    calls         INTEGER NOT NULL,
    cost_micros   INTEGER NOT NULL,
    latency_ms    INTEGER,
    ttft_ms       INTEGER,
    status        TEXT    NOT NULL,
    at            INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT;
INSERT INTO usage_records_kept SELECT * FROM usage_records;
DROP TABLE usage_records;
ALTER TABLE usage_records_kept RENAME TO usage_records;
CREATE INDEX usage_records_by_time ON usage_records (tenant_id, at);
CREATE INDEX usage_records_by_time_all ON usage_records (at);
CREATE TRIGGER usage_records_append_only BEFORE UPDATE ON usage_records
BEGIN
    SELECT RAISE(ABORT, 'usage_records is append-only');
END;
