-- Guardrail profiles (operator data, no row-level security, like policy sets): one history of
-- versions per scope, a named profile (scope_kind 'profile', the name tiers refer to in
-- guardrail_profile) or a tenant's override (scope_kind 'tenant'); at most one active version
-- per scope (the partial unique index). tenant_id repeats scope_key for the foreign key; a
-- tenant's override is deleted with the tenant (Store::delete_tenant).
CREATE TABLE guardrail_profiles (
    scope_kind TEXT    NOT NULL,
    scope_key  TEXT    NOT NULL,
    tenant_id  TEXT    REFERENCES tenants (id),
    version    BIGINT  NOT NULL,
    body       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    active     BOOLEAN NOT NULL,
    PRIMARY KEY (scope_kind, scope_key, version),
    CHECK ((scope_kind = 'profile' AND tenant_id IS NULL)
        OR (scope_kind = 'tenant' AND tenant_id = scope_key))
);

CREATE UNIQUE INDEX guardrail_profiles_one_active
    ON guardrail_profiles (scope_kind, scope_key) WHERE active;
