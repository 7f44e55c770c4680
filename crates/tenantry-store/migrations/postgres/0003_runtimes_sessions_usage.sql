-- Runtimes (operator data, no row-level security), sessions and the usage ledger (tenant
-- data, row-level security exactly as api_keys), and the read-only cross-tenant role of the
-- operator's reports.

-- The role the operator's cross-tenant reads switch to (SET LOCAL ROLE tenantry_operator):
-- the storage-expiry sweep over sessions and the usage report. Row-level security is forced
-- on tenant tables, so the connecting user (the owner) sees no tenant rows without
-- app.tenant_id; this role gets a SELECT-only policy instead. It cannot log in, bypass
-- row-level security or write tenant data, and tenantry_app is never a member of it.
-- Created the same way as tenantry_app in 0001 (roles are global to the cluster).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenantry_operator') THEN
        BEGIN
            CREATE ROLE tenantry_operator NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN OTHERS THEN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenantry_operator') THEN
                RAISE;
            END IF;
        END;
    END IF;

    IF EXISTS (SELECT 1 FROM pg_roles
               WHERE rolname = 'tenantry_operator' AND (rolsuper OR rolbypassrls OR rolcanlogin)) THEN
        RAISE EXCEPTION 'role tenantry_operator has SUPERUSER, BYPASSRLS or LOGIN'
            USING HINT = 'ALTER ROLE tenantry_operator NOSUPERUSER NOBYPASSRLS NOLOGIN';
    END IF;

    IF pg_has_role('tenantry_app', 'tenantry_operator', 'MEMBER') THEN
        RAISE EXCEPTION 'role tenantry_app must not be a member of tenantry_operator'
            USING HINT = 'REVOKE tenantry_operator FROM tenantry_app';
    END IF;

    IF NOT pg_has_role(current_user, 'tenantry_operator', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT tenantry_operator TO %I', current_user);
        EXCEPTION WHEN OTHERS THEN
            IF NOT pg_has_role(current_user, 'tenantry_operator', 'MEMBER') THEN
                RAISE;
            END IF;
        END;
    END IF;

    EXECUTE format('GRANT USAGE ON SCHEMA %I TO tenantry_operator', current_schema());
END
$$;

-- A runtime is registered by the operator. dedicated_tenant NULL means shared (pool); a
-- runtime dedicated to a tenant is deleted with that tenant (Store::delete_tenant), and the
-- foreign key refuses a runtime dedicated to a tenant that does not exist.
CREATE TABLE runtimes (
    name             TEXT   NOT NULL PRIMARY KEY,
    dedicated_tenant TEXT   REFERENCES tenants (id),
    body             JSONB  NOT NULL,  -- the runtime spec, owned by the runtime layer
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

CREATE INDEX runtimes_by_dedicated_tenant ON runtimes (dedicated_tenant);

-- Sessions. The key is (tenant_id, id): the same caller-chosen id in two tenants names two
-- different sessions. runtime is a name, not a foreign key: a session row outlives the
-- deletion of its runtime until the storage sweeper removes it.
CREATE TABLE sessions (
    tenant_id      TEXT   NOT NULL REFERENCES tenants (id),
    id             TEXT   NOT NULL,
    user_id        TEXT   NOT NULL,
    runtime        TEXT   NOT NULL,
    status         TEXT   NOT NULL,  -- active | stopped | expired
    created_at     BIGINT NOT NULL,
    last_active_at BIGINT NOT NULL,
    stopped_at     BIGINT,
    stop_reason    TEXT,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX sessions_by_creation ON sessions (tenant_id, created_at, id);
CREATE INDEX sessions_by_runtime_status ON sessions (tenant_id, runtime, status);
-- The storage-expiry sweep, across tenants.
CREATE INDEX sessions_by_status_activity ON sessions (status, last_active_at);

-- The usage ledger: one row per billable event, never updated (tenantry_app has no UPDATE
-- on it). Quantities and cost (in micro-units) are integers so that sums are exact.
CREATE TABLE usage_records (
    tenant_id     TEXT   NOT NULL REFERENCES tenants (id),
    id            TEXT   NOT NULL,
    user_id       TEXT,
    runtime       TEXT,
    session_id    TEXT,
    kind          TEXT   NOT NULL,  -- model | tool | compute | storage
    resource      TEXT,
    provider      TEXT,
    input_tokens  BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cpu_ms        BIGINT NOT NULL,
    memory_mb_ms  BIGINT NOT NULL,
    calls         BIGINT NOT NULL,
    cost_micros   BIGINT NOT NULL,
    latency_ms    BIGINT,
    ttft_ms       BIGINT,
    status        TEXT   NOT NULL,
    at            BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX usage_records_by_time ON usage_records (tenant_id, at);
-- The operator's report over all tenants filters by time only.
CREATE INDEX usage_records_by_time_all ON usage_records (at);

-- Row-level security, forced, keyed by the transaction-local app.tenant_id, as on api_keys.
-- The second, SELECT-only policy lets the operator role read across tenants; the check on
-- current_user keeps it from applying to the members of that role (the connecting user).
ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sessions
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY operator_read ON sessions FOR SELECT TO tenantry_operator
    USING (current_user = 'tenantry_operator');

ALTER TABLE usage_records ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_records FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_records
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY operator_read ON usage_records FOR SELECT TO tenantry_operator
    USING (current_user = 'tenantry_operator');

GRANT SELECT, INSERT, UPDATE, DELETE ON sessions TO tenantry_app;
-- No UPDATE: the ledger is append-only. DELETE only for Store::delete_tenant.
GRANT SELECT, INSERT, DELETE ON usage_records TO tenantry_app;
GRANT SELECT ON sessions, usage_records TO tenantry_operator;
