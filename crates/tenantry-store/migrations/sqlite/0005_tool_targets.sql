-- Tool targets (operator data): the upstream MCP servers and OpenAPI documents registered for
-- the tool gateway. tenant_id NULL means shared by all tenants (pool); a target of one tenant
-- (silo) is deleted with that tenant (Store::delete_tenant), and the foreign key refuses a
-- target of a tenant that does not exist.
CREATE TABLE tool_targets (
    name       TEXT    NOT NULL PRIMARY KEY,
    tenant_id  TEXT    REFERENCES tenants (id),
    body       TEXT    NOT NULL,  -- the target spec as JSON (OpenAPI documents inline), owned by tenantry-tools
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE INDEX tool_targets_by_tenant ON tool_targets (tenant_id);
