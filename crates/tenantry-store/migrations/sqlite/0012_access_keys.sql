-- Access key pairs for AWS Signature V4 (tenant data): the secret access key is kept sealed
-- by the tenant's vault data key (SigV4 needs the secret itself to verify a signature), never
-- in clear. The access key id names its tenant, so a lookup stays within one tenant.
CREATE TABLE access_keys (
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    id            TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    roles         TEXT    NOT NULL,  -- JSON array of strings
    sealed_secret BLOB    NOT NULL,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    expires_at    INTEGER,
    PRIMARY KEY (tenant_id, id)
) STRICT;

CREATE INDEX access_keys_by_creation ON access_keys (tenant_id, created_at, id);
