-- The role that every tenant-scoped transaction switches to (SET LOCAL ROLE tenantry_app).
-- It cannot log in, is no superuser, cannot bypass row-level security and owns no table, so
-- the policies on tenant tables always apply to it.
--
-- Roles are global to the cluster while migrations run per database, so several databases
-- (test databases, or replicas of different deployments) may try to create it at the same
-- moment; the advisory lock of the migrator is per database and does not prevent that. The
-- loser of such a race checks that the winner's result is there and carries on.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenantry_app') THEN
        BEGIN
            CREATE ROLE tenantry_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN OTHERS THEN
            -- Lost the race (duplicate_object, unique_violation or "tuple concurrently
            -- updated"): fine if the winner's role is there now, an error otherwise.
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenantry_app') THEN
                RAISE;
            END IF;
        END;
    END IF;

    IF EXISTS (SELECT 1 FROM pg_roles
               WHERE rolname = 'tenantry_app' AND (rolsuper OR rolbypassrls OR rolcanlogin)) THEN
        RAISE EXCEPTION 'role tenantry_app has SUPERUSER, BYPASSRLS or LOGIN, so row-level security would not hold'
            USING HINT = 'ALTER ROLE tenantry_app NOSUPERUSER NOBYPASSRLS NOLOGIN';
    END IF;

    -- The connecting user must be able to SET ROLE tenantry_app (superusers always can).
    IF NOT pg_has_role(current_user, 'tenantry_app', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT tenantry_app TO %I', current_user);
        EXCEPTION WHEN OTHERS THEN
            IF NOT pg_has_role(current_user, 'tenantry_app', 'MEMBER') THEN
                RAISE;
            END IF;
        END;
    END IF;

    EXECUTE format('GRANT USAGE ON SCHEMA %I TO tenantry_app', current_schema());
END
$$;
