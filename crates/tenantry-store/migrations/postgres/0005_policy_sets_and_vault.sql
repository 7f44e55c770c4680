-- Cedar policy sets (operator data, no row-level security, like tiers and runtimes) and the
-- credential vault (tenant data, row-level security exactly as api_keys).

-- One history of versions per scope: the platform (scope_key ''), a tier or a tenant. At most
-- one version of a scope is active (the partial unique index). The tier and tenant_id columns
-- repeat scope_key for the foreign keys, which refuse a set of a tier or tenant that does not
-- exist; a tenant's sets are deleted with the tenant (Store::delete_tenant).
CREATE TABLE policy_sets (
    scope_kind TEXT    NOT NULL,
    scope_key  TEXT    NOT NULL,
    tier       TEXT    REFERENCES tiers (name),
    tenant_id  TEXT    REFERENCES tenants (id),
    version    BIGINT  NOT NULL,
    text       TEXT    NOT NULL,
    mode       TEXT    NOT NULL,  -- enforce | log_only
    created_at BIGINT  NOT NULL,
    active     BOOLEAN NOT NULL,
    PRIMARY KEY (scope_kind, scope_key, version),
    CHECK ((scope_kind = 'platform' AND scope_key = '' AND tier IS NULL AND tenant_id IS NULL)
        OR (scope_kind = 'tier' AND tier = scope_key AND tenant_id IS NULL)
        OR (scope_kind = 'tenant' AND tenant_id = scope_key AND tier IS NULL))
);

CREATE UNIQUE INDEX policy_sets_one_active ON policy_sets (scope_kind, scope_key) WHERE active;

-- The vault. Each tenant has one data key, stored only wrapped (encrypted) by the platform's
-- master key, which never enters the database; each credential version is encrypted with its
-- tenant's data key. master_key_id is a fingerprint of the wrapping key, so a wrong master
-- key is reported as such instead of as a corrupt row.
CREATE TABLE vault_data_keys (
    tenant_id     TEXT   NOT NULL PRIMARY KEY REFERENCES tenants (id),
    master_key_id TEXT   NOT NULL,
    wrapped_key   BYTEA  NOT NULL,
    created_at    BIGINT NOT NULL
);

-- Credentials: user_id '' is the tenant's own credential, anything else one user's (for flows
-- that are per user). Each put is a new version; the highest is current. metadata holds the
-- fields that are not secret (token endpoint, client id, scopes...), ciphertext the rest.
CREATE TABLE vault_credentials (
    tenant_id  TEXT   NOT NULL REFERENCES tenants (id),
    name       TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    metadata   JSONB  NOT NULL,
    ciphertext BYTEA  NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name, user_id, version)
);

ALTER TABLE vault_data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault_data_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON vault_data_keys
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

ALTER TABLE vault_credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault_credentials FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON vault_credentials
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- No UPDATE on either: a data key is written once, a credential version is never changed.
GRANT SELECT, INSERT, DELETE ON vault_data_keys, vault_credentials TO tenantry_app;
