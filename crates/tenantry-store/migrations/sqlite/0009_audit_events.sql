-- The audit log: control-plane changes and policy decisions, newest found by id (UUIDv7, in
-- time order). tenant_id NULL marks a platform-wide event (a tier changed). There is no foreign
-- key on tenant_id: a tenant's audit trail outlives the tenant (it is evidence of its deletion).
CREATE TABLE audit_events (
    id         TEXT    NOT NULL PRIMARY KEY,
    tenant_id  TEXT,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,  -- "operator", "user:ID", "key:ID", "svc:NAME"...
    action     TEXT    NOT NULL,  -- "tenant.update", "tool.decision"...
    target     TEXT,              -- what the action was on (a tenant id, a key id, a tool)
    outcome    TEXT    NOT NULL,  -- "ok", "allow", "deny", or an error code
    request_id TEXT,
    detail     TEXT    NOT NULL   -- JSON: before/after, determining policies...
) STRICT;

CREATE INDEX audit_events_by_tenant ON audit_events (tenant_id, id);
CREATE INDEX audit_events_by_time ON audit_events (at);
