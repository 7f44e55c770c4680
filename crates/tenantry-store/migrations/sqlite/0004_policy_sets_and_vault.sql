-- Cedar policy sets (operator data) and the credential vault (tenant data: every query filters
-- by tenant_id in the store code). See the PostgreSQL migration of the same name.

-- One history of versions per scope: the platform (scope_key ''), a tier or a tenant; at most
-- one active version per scope. tier and tenant_id repeat scope_key for the foreign keys.
CREATE TABLE policy_sets (
    scope_kind TEXT    NOT NULL,
    scope_key  TEXT    NOT NULL,
    tier       TEXT    REFERENCES tiers (name),
    tenant_id  TEXT    REFERENCES tenants (id),
    version    INTEGER NOT NULL,
    text       TEXT    NOT NULL,
    mode       TEXT    NOT NULL,  -- enforce | log_only
    created_at INTEGER NOT NULL,
    active     INTEGER NOT NULL,  -- 0 or 1
    PRIMARY KEY (scope_kind, scope_key, version),
    CHECK ((scope_kind = 'platform' AND scope_key = '' AND tier IS NULL AND tenant_id IS NULL)
        OR (scope_kind = 'tier' AND tier = scope_key AND tenant_id IS NULL)
        OR (scope_kind = 'tenant' AND tenant_id = scope_key AND tier IS NULL))
) STRICT;

CREATE UNIQUE INDEX policy_sets_one_active ON policy_sets (scope_kind, scope_key) WHERE active = 1;

-- Each tenant's data key, wrapped by the master key (which never enters the database).
CREATE TABLE vault_data_keys (
    tenant_id     TEXT    NOT NULL PRIMARY KEY REFERENCES tenants (id),
    master_key_id TEXT    NOT NULL,
    wrapped_key   BLOB    NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;

-- Credential versions, encrypted with the tenant's data key; user_id '' is the tenant's own.
CREATE TABLE vault_credentials (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    name       TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    metadata   TEXT    NOT NULL,  -- JSON object
    ciphertext BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name, user_id, version)
) STRICT;
