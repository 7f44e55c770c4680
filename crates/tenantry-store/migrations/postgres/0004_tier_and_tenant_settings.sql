-- Settings the operator sets through the control plane per tier and per tenant (operator data,
-- like tiers and runtimes: no row-level security, read and written as the connecting user):
-- model routes now, tenant limit overrides, later policies. The body is opaque JSON owned by
-- the layer that uses it; `kind` says which setting it is. A tenant's settings are deleted
-- with the tenant (Store::delete_tenant); the foreign keys refuse settings of a tier or tenant
-- that does not exist.

CREATE TABLE tier_settings (
    tier       TEXT   NOT NULL REFERENCES tiers (name),
    kind       TEXT   NOT NULL,
    body       JSONB  NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tier, kind)
);

CREATE TABLE tenant_settings (
    tenant_id  TEXT   NOT NULL REFERENCES tenants (id),
    kind       TEXT   NOT NULL,
    body       JSONB  NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);
