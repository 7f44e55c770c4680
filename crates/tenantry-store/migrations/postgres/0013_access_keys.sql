-- Access key pairs for AWS Signature V4 (tenant data): the secret access key is kept sealed
-- by the tenant's vault data key (SigV4 needs the secret itself to verify a signature), never
-- in clear. The access key id names its tenant, so a lookup stays within one tenant.
CREATE TABLE access_keys (
    tenant_id     TEXT   NOT NULL REFERENCES tenants (id),
    id            TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    user_id       TEXT   NOT NULL,
    roles         JSONB  NOT NULL,
    sealed_secret BYTEA  NOT NULL,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    expires_at    BIGINT,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX access_keys_by_creation ON access_keys (tenant_id, created_at, id);

ALTER TABLE access_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE access_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON access_keys
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

GRANT SELECT, INSERT, UPDATE, DELETE ON access_keys TO tenantry_app;
