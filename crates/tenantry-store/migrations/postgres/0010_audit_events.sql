-- The audit log: control-plane changes and policy decisions, newest found by id (UUIDv7, in
-- time order). tenant_id NULL marks a platform-wide event (a tier changed). There is no foreign
-- key on tenant_id: a tenant's audit trail outlives the tenant (it is evidence of its deletion).
-- Operator data like tool_targets (no row-level security): the store's reads of one tenant's
-- events take its TenantScope and filter on it.
CREATE TABLE audit_events (
    id         TEXT   NOT NULL PRIMARY KEY,
    tenant_id  TEXT,
    at         BIGINT NOT NULL,
    actor      TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    target     TEXT,
    outcome    TEXT   NOT NULL,
    request_id TEXT,
    detail     JSONB  NOT NULL
);

CREATE INDEX audit_events_by_tenant ON audit_events (tenant_id, id);
CREATE INDEX audit_events_by_time ON audit_events (at);
