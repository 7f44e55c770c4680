-- Runtimes (operator data), sessions and the usage ledger (tenant data).
-- SQLite has no row-level security: every query of sessions and usage_records filters by
-- tenant_id in the store code, and the composite keys below make (tenant_id, ...) the natural
-- access path.

-- A runtime is registered by the operator. dedicated_tenant NULL means shared (pool); a
-- runtime dedicated to a tenant is deleted with that tenant (Store::delete_tenant), and the
-- foreign key refuses a runtime dedicated to a tenant that does not exist.
CREATE TABLE runtimes (
    name             TEXT    NOT NULL PRIMARY KEY,
    dedicated_tenant TEXT    REFERENCES tenants (id),
    body             TEXT    NOT NULL,  -- the runtime spec as JSON, owned by the runtime layer
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;

CREATE INDEX runtimes_by_dedicated_tenant ON runtimes (dedicated_tenant);

-- Sessions. The key is (tenant_id, id): the same caller-chosen id in two tenants names two
-- different sessions. runtime is a name, not a foreign key: a session row outlives the
-- deletion of its runtime until the storage sweeper removes it.
CREATE TABLE sessions (
    tenant_id      TEXT    NOT NULL REFERENCES tenants (id),
    id             TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    runtime        TEXT    NOT NULL,
    status         TEXT    NOT NULL,  -- active | stopped | expired
    created_at     INTEGER NOT NULL,
    last_active_at INTEGER NOT NULL,
    stopped_at     INTEGER,
    stop_reason    TEXT,
    PRIMARY KEY (tenant_id, id)
) STRICT;

CREATE INDEX sessions_by_creation ON sessions (tenant_id, created_at, id);
CREATE INDEX sessions_by_runtime_status ON sessions (tenant_id, runtime, status);
-- The storage-expiry sweep, across tenants.
CREATE INDEX sessions_by_status_activity ON sessions (status, last_active_at);

-- The usage ledger: one row per billable event, never updated. Quantities and cost (in
-- micro-units) are integers so that sums are exact.
CREATE TABLE usage_records (
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    id            TEXT    NOT NULL,
    user_id       TEXT,
    runtime       TEXT,
    session_id    TEXT,
    kind          TEXT    NOT NULL,  -- model | tool | compute | storage
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

CREATE INDEX usage_records_by_time ON usage_records (tenant_id, at);
-- The operator's report over all tenants filters by time only.
CREATE INDEX usage_records_by_time_all ON usage_records (at);

CREATE TRIGGER usage_records_append_only BEFORE UPDATE ON usage_records
BEGIN
    SELECT RAISE(ABORT, 'usage_records is append-only');
END;
