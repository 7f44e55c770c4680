-- Lifecycle: a tenant's immutable internal identity, the ledger outliving its tenant, and the
-- server process (node) that runs each active session. See the SQLite migration of the same
-- name.

-- The default (md5: 32 hex digits) also covers rows inserted by an older replica during a
-- rolling deploy; this build always writes a UUIDv7.
ALTER TABLE tenants ADD COLUMN uid TEXT NOT NULL
    DEFAULT md5(random()::text || clock_timestamp()::text);
CREATE UNIQUE INDEX tenants_by_uid ON tenants (uid);

ALTER TABLE sessions ADD COLUMN node TEXT NOT NULL DEFAULT '';
CREATE INDEX sessions_by_node_status ON sessions (node, status);

-- The ledger is kept for billing after its tenant is deleted.
ALTER TABLE usage_records DROP CONSTRAINT IF EXISTS usage_records_tenant_id_fkey;
