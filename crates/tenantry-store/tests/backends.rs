//! Connecting to and migrating each backend (idempotent migrations, upgrades that keep data,
//! configuration errors), and PostgreSQL row-level security proved below the store: it
//! isolates tenants even from SQL that forgets its tenant filter, does not leak across
//! pooled transactions, and the start-up check refuses a weakened schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::{Connection, Executor, PgConnection, Row};
use tenantry_core::ErrorCode;
mod common;

use common::records::*;
use common::scope;
use tenantry_store::{Store, StoreError, UsageGroup};

// ---- connecting and migrating -----------------------------------------------------------------

/// Connecting again (and several times at once) finds the migrations applied and the data kept.
async fn migrations_are_idempotent(url: &str) {
    let first = Store::connect(url).await.unwrap();
    first.create_tenant(&tenant("alpha")).await.unwrap();
    drop(first);

    let (a, b, c) = tokio::join!(
        Store::connect(url),
        Store::connect(url),
        Store::connect(url)
    );
    for store in [a.unwrap(), b.unwrap(), c.unwrap()] {
        assert!(store.get_tenant(&tid("alpha")).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn migrations_are_idempotent_sqlite() {
    let db = common::sqlite_db();
    migrations_are_idempotent(&db.url).await;
    // The file is in WAL mode, with one row per migration.
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12]);
}

/// A database made by an earlier build (before tenants had a uid): upgrading gives each
/// existing tenant a uid of its own and keeps the ledger, which then outlives its tenant.
#[tokio::test]
async fn upgrading_gives_existing_tenants_a_uid_and_keeps_their_ledger() {
    let db = common::sqlite_db();
    let earlier = [
        include_str!("../migrations/sqlite/0001_registry_and_api_keys.sql"),
        include_str!("../migrations/sqlite/0002_runtimes_sessions_usage.sql"),
        include_str!("../migrations/sqlite/0003_tier_and_tenant_settings.sql"),
        include_str!("../migrations/sqlite/0004_policy_sets_and_vault.sql"),
        include_str!("../migrations/sqlite/0005_tool_targets.sql"),
    ];
    let names = [
        "0001_registry_and_api_keys",
        "0002_runtimes_sessions_usage",
        "0003_tier_and_tenant_settings",
        "0004_policy_sets_and_vault",
        "0005_tool_targets",
    ];
    {
        let file = std::path::PathBuf::from(db.url.trim_start_matches("sqlite://"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        pool.execute(
            "CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, \
             name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT",
        )
        .await
        .unwrap();
        for (i, (sql, name)) in earlier.iter().zip(names).enumerate() {
            pool.execute(*sql).await.unwrap();
            sqlx::query("INSERT INTO schema_migrations VALUES (?1, ?2, 0)")
                .bind(i as i64 + 1)
                .bind(name)
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.execute(
            "INSERT INTO tiers VALUES ('basic', '{\"name\":\"basic\"}', 0);
             INSERT INTO tenants VALUES ('alpha', 'Alpha', 'basic', 'active', 'eu', '{}', '{}', '{}', 1, 1);
             INSERT INTO tenants VALUES ('bravo', 'Bravo', 'basic', 'active', 'eu', '{}', '{}', '{}', 1, 1);
             INSERT INTO usage_records VALUES ('alpha', 'u1', NULL, NULL, NULL, 'model', 'm', 'p',
                 1, 2, 0, 0, 1, 5, NULL, NULL, 'ok', 10);",
        )
        .await
        .unwrap();
        pool.close().await;
    }
    let store = Store::connect(&db.url).await.unwrap();
    let alpha = store.get_tenant(&tid("alpha")).await.unwrap().unwrap();
    let bravo = store.get_tenant(&tid("bravo")).await.unwrap().unwrap();
    assert_ne!(alpha.uid, bravo.uid);
    common::delete_tenant(&store, "alpha").await;
    let kept = store
        .usage_report(grant(), &query(None, UsageGroup::Tenant))
        .await
        .unwrap();
    assert_eq!(tenants_of(&kept), ["alpha"]);
    // The ledger's rules survived the rebuild of its table.
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let err = sqlx::query("UPDATE usage_records SET cost_micros = 0")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

/// Below the store, the SQLite ledger refuses to change an entry.
#[tokio::test]
async fn sqlite_usage_ledger_is_append_only() {
    let db = common::sqlite_db();
    let store = Store::connect(&db.url).await.unwrap();
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store
        .record_usage(&scope("alpha"), &usage("alpha", "u1", 1))
        .await
        .unwrap();
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let err = sqlx::query("UPDATE usage_records SET cost_micros = 0")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    assert_eq!(usage_of(&store, "alpha").await, [usage("alpha", "u1", 1)]);
}

#[tokio::test]
async fn migrations_are_idempotent_postgres() {
    let Some(db) = common::postgres_db("migrations_are_idempotent_postgres", false).await else {
        return;
    };
    // Concurrent first start on an empty database: the advisory lock serialises migrations.
    let (a, b) = tokio::join!(Store::connect(&db.url), Store::connect(&db.url));
    a.unwrap();
    b.unwrap();
    migrations_are_idempotent(&db.url).await;
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13]);
}

#[tokio::test]
async fn in_memory_sqlite_keeps_its_data_between_calls() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    store.create_tenant(&tenant("alpha")).await.unwrap();
    for _ in 0..3 {
        assert!(store.get_tenant(&tid("alpha")).await.unwrap().is_some());
    }
    let clone = store.clone();
    assert_eq!(clone.list_tenants().await.unwrap().len(), 1);
}

#[tokio::test]
async fn bad_urls_are_config_errors() {
    for url in [
        "mysql://localhost/x",
        "",
        "postgres://user@host:notaport/db",
    ] {
        let err = Store::connect(url).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidUrl(_)), "{url}: {err:?}");
        assert_eq!(err.code(), ErrorCode::Internal);
    }
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    // Port 1 on localhost refuses connections.
    let err = Store::connect("postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::Unavailable);
}

// ---- PostgreSQL row-level security, proved below the store -----------------------------------

/// Keys for alpha and bravo inserted through the store, then raw SQL without any tenant filter
/// run the way the store runs tenant queries: the database itself hides and refuses the other
/// tenant's rows.
#[tokio::test]
async fn postgres_row_level_security_isolates_tenants() {
    let Some(db) = common::postgres_db("postgres_row_level_security_isolates_tenants", false).await
    else {
        return;
    };
    let store = Store::connect(&db.url).await.unwrap();
    for t in ["alpha", "bravo"] {
        store.create_tenant(&tenant(t)).await.unwrap();
        for id in ["k1", "k2"] {
            store
                .insert_api_key(&scope(t), &key(t, id, 1))
                .await
                .unwrap();
        }
    }
    let mut conn = PgConnection::connect(&db.url).await.unwrap();

    // Scoped to alpha, an unfiltered SELECT returns alpha's rows only.
    let mut tx = conn.begin().await.unwrap();
    tx.execute("SET LOCAL ROLE tenantry_app").await.unwrap();
    tx.execute("SELECT set_config('app.tenant_id', 'alpha', true)")
        .await
        .unwrap();
    let seen: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM api_keys")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, ["alpha", "alpha"]);
    // Unfiltered UPDATE and DELETE do not reach bravo's rows either.
    let updated = tx
        .execute("UPDATE api_keys SET name = 'x'")
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(updated, 2);
    tx.rollback().await.unwrap();

    // Without app.tenant_id, nothing is visible.
    let mut tx = conn.begin().await.unwrap();
    tx.execute("SET LOCAL ROLE tenantry_app").await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let deleted = tx
        .execute("DELETE FROM api_keys")
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 0);
    tx.rollback().await.unwrap();

    // Writing a row of bravo while scoped to alpha is refused, by INSERT and by UPDATE.
    for statement in [
        "INSERT INTO api_keys (tenant_id, id, name, user_id, roles, prefix, secret_hash, created_at)
         VALUES ('bravo', 'planted', 'x', 'u', '[]', 'p', '\\x00', 1)",
        "UPDATE api_keys SET tenant_id = 'bravo' WHERE id = 'k1'",
    ] {
        let err = in_alpha_scope(&mut conn, statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{statement}: {err}");
        assert!(err.to_string().contains("row-level security"), "{err}");
    }

    // The role cannot turn row security off, nor disable the policy, nor read the registry.
    for statement in [
        "SET LOCAL row_security = off; SELECT * FROM api_keys",
        "ALTER TABLE api_keys DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE api_keys NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON api_keys",
        "SELECT * FROM tenants",
    ] {
        let err = in_alpha_scope(&mut conn, statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{statement}: {err}");
    }

    // The role's attributes and the table's settings are what the guarantees rest on.
    let role = sqlx::query(
        "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = 'tenantry_app'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(!role.get::<bool, _>("rolsuper"));
    assert!(!role.get::<bool, _>("rolbypassrls"));
    assert!(!role.get::<bool, _>("rolcanlogin"));
    let owner: String =
        sqlx::query_scalar("SELECT tableowner::text FROM pg_tables WHERE tablename = 'api_keys'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_ne!(owner, "tenantry_app");
    let owned: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tableowner = 'tenantry_app'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(owned, 0);
    let table = sqlx::query(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'api_keys'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(table.get::<bool, _>("relrowsecurity"));
    assert!(table.get::<bool, _>("relforcerowsecurity"));

    // FORCE binds the table owner too: a non-superuser owner (the production setup) sees no
    // rows without a tenant setting. Superusers bypass RLS entirely, so only check otherwise.
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    if !superuser {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            n, 0,
            "the owner must not see tenant rows without app.tenant_id"
        );
    }

    // Nothing above leaked into the store's view.
    assert_eq!(store.list_api_keys(&scope("bravo")).await.unwrap().len(), 2);
    assert!(
        store
            .get_api_key(&scope("bravo"), "planted")
            .await
            .unwrap()
            .is_none()
    );
}

/// Sessions and usage of alpha and bravo (the same ids in both) inserted through the store,
/// then raw SQL without any tenant filter, as `tenantry_app` scoped to alpha and as the
/// operator's read-only role: the database itself confines each.
async fn row_level_security_isolates_sessions_and_usage(url: &str) {
    let store = Store::connect(url).await.unwrap();
    for t in ["alpha", "bravo"] {
        store.create_tenant(&tenant(t)).await.unwrap();
        for (i, tag) in ["s1", "s2"].into_iter().enumerate() {
            let s = session(t, &sid(tag), "alice", "bot", i as i64);
            store.insert_session(&scope(t), &s).await.unwrap();
        }
        for (i, tag) in ["u1", "u2", "u3"].into_iter().enumerate() {
            store
                .record_usage(&scope(t), &usage(t, tag, i as i64))
                .await
                .unwrap();
        }
    }
    let mut conn = PgConnection::connect(url).await.unwrap();

    // Scoped to alpha, unfiltered reads and writes reach alpha's rows only.
    let mut tx = conn.begin().await.unwrap();
    tx.execute("SET LOCAL ROLE tenantry_app").await.unwrap();
    tx.execute("SELECT set_config('app.tenant_id', 'alpha', true)")
        .await
        .unwrap();
    let seen: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM sessions")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, ["alpha", "alpha"]);
    let seen: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM usage_records")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, ["alpha", "alpha", "alpha"]);
    let sums: i64 = sqlx::query_scalar("SELECT sum(cost_micros)::bigint FROM usage_records")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(sums, 3 * 345);
    let updated = tx
        .execute("UPDATE sessions SET status = 'stopped'")
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(updated, 2);
    let deleted = tx
        .execute("DELETE FROM usage_records")
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 3);
    tx.rollback().await.unwrap();

    // Without app.tenant_id, nothing is visible.
    let mut tx = conn.begin().await.unwrap();
    tx.execute("SET LOCAL ROLE tenantry_app").await.unwrap();
    for table in [
        "SELECT count(*) FROM sessions",
        "SELECT count(*) FROM usage_records",
    ] {
        let n: i64 = sqlx::query_scalar(table).fetch_one(&mut *tx).await.unwrap();
        assert_eq!(n, 0, "{table}");
    }
    tx.rollback().await.unwrap();

    // Writing bravo's rows from alpha's scope is refused; the ledger refuses any update; the
    // role cannot touch the runtimes registry.
    for (statement, why) in [
        (
            "INSERT INTO sessions (tenant_id, id, user_id, runtime, status, created_at, last_active_at)
             VALUES ('bravo', 'planted-planted-planted-planted-1', 'u', 'bot', 'active', 1, 1)",
            "row-level security",
        ),
        (
            "UPDATE sessions SET tenant_id = 'bravo'",
            "row-level security",
        ),
        (
            "INSERT INTO usage_records (tenant_id, id, kind, input_tokens, output_tokens, cpu_ms,
                                        memory_mb_ms, calls, cost_micros, status, at)
             VALUES ('bravo', 'planted', 'model', 0, 0, 0, 0, 1, 1000000, 'ok', 1)",
            "row-level security",
        ),
        ("UPDATE usage_records SET cost_micros = 0", "permission denied"),
        ("SELECT * FROM runtimes", "permission denied"),
        (
            "ALTER TABLE usage_records NO FORCE ROW LEVEL SECURITY",
            "must be owner",
        ),
        ("DROP POLICY operator_read ON sessions", "must be owner"),
    ] {
        let err = in_alpha_scope(&mut conn, statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{statement}: {err}");
        assert!(err.to_string().contains(why), "{statement}: {err}");
    }

    // The operator's role reads every tenant's sessions and usage, and nothing else, and can
    // write nothing.
    let mut tx = conn.begin().await.unwrap();
    tx.execute("SET LOCAL ROLE tenantry_operator")
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 4);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_records")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 6);
    tx.rollback().await.unwrap();
    for statement in [
        "DELETE FROM sessions",
        "UPDATE sessions SET status = 'expired'",
        "INSERT INTO usage_records (tenant_id, id, kind, input_tokens, output_tokens, cpu_ms,
                                    memory_mb_ms, calls, cost_micros, status, at)
         VALUES ('alpha', 'x', 'model', 0, 0, 0, 0, 1, 1, 'ok', 1)",
        "DELETE FROM usage_records",
        "SELECT * FROM api_keys",
        "SELECT * FROM tenants",
        "SELECT * FROM runtimes",
    ] {
        let err = as_operator_role(&mut conn, statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{statement}: {err}");
    }

    // The role attributes the operator role's guarantees rest on.
    let role = sqlx::query(
        "SELECT rolsuper, rolbypassrls, rolcanlogin,
                pg_has_role('tenantry_app', 'tenantry_operator', 'MEMBER') AS app_member
         FROM pg_roles WHERE rolname = 'tenantry_operator'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    for attribute in ["rolsuper", "rolbypassrls", "rolcanlogin", "app_member"] {
        assert!(!role.get::<bool, _>(attribute), "{attribute}");
    }
    for table in ["sessions", "usage_records"] {
        let row = sqlx::query(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = $1",
        )
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(row.get::<bool, _>("relrowsecurity"), "{table}");
        assert!(row.get::<bool, _>("relforcerowsecurity"), "{table}");
    }

    // The owner itself (when no superuser, as in production) sees no tenant rows without
    // app.tenant_id, and the operator policy does not apply to it though it is a member of the
    // operator role.
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    if !superuser {
        for table in [
            "SELECT count(*) FROM sessions",
            "SELECT count(*) FROM usage_records",
        ] {
            let n: i64 = sqlx::query_scalar(table)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(n, 0, "the owner must not see tenant rows: {table}");
        }
    }

    // Nothing above leaked into the store's view, and the operator's reports see both tenants.
    assert_eq!(sessions_of(&store, "bravo").await.len(), 2);
    assert_eq!(usage_of(&store, "bravo").await.len(), 3);
    let report = store
        .usage_report(grant(), &query(None, UsageGroup::Tenant))
        .await
        .unwrap();
    assert_eq!(tenants_of(&report), ["alpha", "bravo"]);
    assert!(report.iter().all(|r| r.records == 3));
}

#[tokio::test]
async fn postgres_row_level_security_isolates_sessions_and_usage() {
    let Some(db) = common::postgres_db(
        "postgres_row_level_security_isolates_sessions_and_usage",
        false,
    )
    .await
    else {
        return;
    };
    row_level_security_isolates_sessions_and_usage(&db.url).await;
}

#[tokio::test]
async fn postgres_row_level_security_isolates_sessions_and_usage_from_the_owner() {
    let Some(db) = common::postgres_db(
        "postgres_row_level_security_isolates_sessions_and_usage_from_the_owner",
        true,
    )
    .await
    else {
        return;
    };
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(!superuser, "this test must run as a non-superuser owner");
    row_level_security_isolates_sessions_and_usage(&db.url).await;
}

/// The start-up check covers every tenant table: a database where one has lost its forced
/// row-level security, or where the operator role may write one, is refused.
#[tokio::test]
async fn postgres_startup_refuses_weakened_tenant_tables() {
    let Some(db) =
        common::postgres_db("postgres_startup_refuses_weakened_tenant_tables", false).await
    else {
        return;
    };
    drop(Store::connect(&db.url).await.unwrap());
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    for table in ["api_keys", "sessions", "usage_records"] {
        for (weaken, restore) in [
            (
                format!("ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY"),
                format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"),
            ),
            (
                format!("ALTER TABLE {table} DISABLE ROW LEVEL SECURITY"),
                format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"),
            ),
            (
                format!("GRANT DELETE ON {table} TO tenantry_operator"),
                format!("REVOKE DELETE ON {table} FROM tenantry_operator"),
            ),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(weaken.clone()))
                .execute(&mut conn)
                .await
                .unwrap();
            let err = Store::connect(&db.url).await.unwrap_err();
            assert!(matches!(err, StoreError::Migration(_)), "{weaken}: {err:?}");
            assert!(err.to_string().contains(table), "{weaken}: {err}");
            sqlx::raw_sql(sqlx::AssertSqlSafe(restore))
                .execute(&mut conn)
                .await
                .unwrap();
            Store::connect(&db.url).await.unwrap();
        }
    }
}

/// Runs `statement` as the operator's cross-tenant reads run, in a transaction rolled back after.
async fn as_operator_role(
    conn: &mut PgConnection,
    statement: &'static str,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    tx.execute("SET LOCAL ROLE tenantry_operator").await?;
    let result = sqlx::raw_sql(statement).execute(&mut *tx).await.map(|_| ());
    tx.rollback().await?;
    result
}

/// The transaction-local settings do not outlive their transaction on a pooled connection.
#[tokio::test]
async fn postgres_scope_does_not_leak_across_transactions() {
    let Some(db) =
        common::postgres_db("postgres_scope_does_not_leak_across_transactions", false).await
    else {
        return;
    };
    let store = Store::connect(&db.url).await.unwrap();
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store
        .insert_api_key(&scope("alpha"), &key("alpha", "k1", 1))
        .await
        .unwrap();

    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    tx.execute("SET LOCAL ROLE tenantry_app").await.unwrap();
    tx.execute("SELECT set_config('app.tenant_id', 'alpha', true)")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let row = sqlx::query(
        "SELECT current_user::text AS who, current_setting('app.tenant_id', true) AS t",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_ne!(row.get::<String, _>("who"), "tenantry_app");
    assert_eq!(row.get::<Option<String>, _>("t").unwrap_or_default(), "");
}

/// Runs `statement` as the store runs tenant queries for alpha, in a transaction rolled back after.
async fn in_alpha_scope(
    conn: &mut PgConnection,
    statement: &'static str,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    tx.execute("SET LOCAL ROLE tenantry_app").await?;
    tx.execute("SELECT set_config('app.tenant_id', 'alpha', true)")
        .await?;
    let result = sqlx::raw_sql(statement).execute(&mut *tx).await.map(|_| ());
    tx.rollback().await?;
    result
}

fn sqlstate(err: &sqlx::Error) -> String {
    err.as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
        .unwrap_or_default()
}
