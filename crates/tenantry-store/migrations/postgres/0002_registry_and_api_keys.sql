-- The tier and tenant registry (operator data, no row-level security: only operator code
-- reads it as the connecting user) and the first tenant-data table, api_keys.

CREATE TABLE tiers (
    name       TEXT   NOT NULL PRIMARY KEY,
    body       JSONB  NOT NULL,  -- the whole Tier
    updated_at BIGINT NOT NULL
);

CREATE TABLE tenants (
    id           TEXT   NOT NULL PRIMARY KEY,
    name         TEXT   NOT NULL,
    tier         TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    region       TEXT   NOT NULL,
    isolation    JSONB  NOT NULL,
    features     JSONB  NOT NULL,
    entitlements JSONB  NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- Tenant data. The foreign key has no ON DELETE action on purpose: deleting a tenant must
-- delete its data explicitly (Store::delete_tenant), and a tenant table forgotten there makes
-- the deletion fail instead of leaving orphaned rows. Referential checks run as the table
-- owner, so tenantry_app needs no access to tenants.
CREATE TABLE api_keys (
    tenant_id   TEXT   NOT NULL REFERENCES tenants (id),
    id          TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    user_id     TEXT   NOT NULL,
    roles       JSONB  NOT NULL,
    prefix      TEXT   NOT NULL,
    secret_hash BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    expires_at  BIGINT,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX api_keys_by_creation ON api_keys (tenant_id, created_at, id);

-- Row-level security, forced so that it binds the table owner too. The key is the
-- transaction-local setting app.tenant_id; when it is unset, current_setting(..., true) is
-- NULL (or '' once a session has used it), which matches no row.
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

GRANT SELECT, INSERT, UPDATE, DELETE ON api_keys TO tenantry_app;
