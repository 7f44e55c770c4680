-- The tier and tenant registry (operator data) and the first tenant-data table, api_keys.
-- SQLite has no row-level security: every query of tenant data filters by tenant_id in the
-- store code, and the composite keys below make (tenant_id, ...) the natural access path.

CREATE TABLE tiers (
    name       TEXT    NOT NULL PRIMARY KEY,
    body       TEXT    NOT NULL,  -- the whole Tier as JSON
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE tenants (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    tier         TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    region       TEXT    NOT NULL,
    isolation    TEXT    NOT NULL,  -- JSON TenantIsolation
    features     TEXT    NOT NULL,  -- JSON object of booleans
    entitlements TEXT    NOT NULL,  -- JSON object
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;

-- Tenant data. The foreign key has no ON DELETE action on purpose: deleting a tenant must
-- delete its data explicitly (Store::delete_tenant), and a tenant table forgotten there makes
-- the deletion fail instead of leaving orphaned rows.
CREATE TABLE api_keys (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    id          TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    roles       TEXT    NOT NULL,  -- JSON array of strings
    prefix      TEXT    NOT NULL,
    secret_hash BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    expires_at  INTEGER,
    PRIMARY KEY (tenant_id, id)
) STRICT;

CREATE INDEX api_keys_by_creation ON api_keys (tenant_id, created_at, id);
