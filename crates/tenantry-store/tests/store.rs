//! The store's contract, written once against `&Store` and run on both backends: SQLite (a
//! temporary file) always, PostgreSQL when `TENANTRY_TEST_DATABASE_URL` is set (a fresh
//! database per test). The last tests prove, below the store, that PostgreSQL row-level
//! security isolates tenants even from SQL that forgets its tenant filter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use sqlx::{Connection, Executor, PgConnection, Row};
use tenantry_core::{
    ErrorCode, IsolationMode, IsolationOverrides, IsolationPreset, IsolationSettings, Money,
    OperatorGrant, SandboxResources, Tenant, TenantId, TenantIsolation, TenantScope, TenantStatus,
    Tier, TierLimits, TierName, UserId,
};
use tenantry_store::testing::{DropGuard, fresh_postgres, postgres_url_or_skip};
use tenantry_store::{ApiKeyRecord, Store, StoreError};

// ---- fixtures ---------------------------------------------------------------------------------

/// A database that lives as long as this value.
struct TestDb {
    url: String,
    _keep: Keep,
}

#[allow(dead_code, reason = "held only for its Drop")]
enum Keep {
    Dir(tempfile::TempDir),
    Postgres(DropGuard),
}

fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    // A directory that does not exist yet: connect creates it.
    let url = format!(
        "sqlite://{}",
        dir.path().join("state/tenantry.db").display()
    );
    TestDb {
        url,
        _keep: Keep::Dir(dir),
    }
}

async fn postgres_db() -> Option<TestDb> {
    let admin = postgres_url_or_skip("PostgreSQL store tests")?;
    let (url, guard) = fresh_postgres(&admin).await.unwrap();
    Some(TestDb {
        url,
        _keep: Keep::Postgres(guard),
    })
}

/// Runs each suite function (`async fn(&Store)`) as two tests, `NAME::sqlite` and
/// `NAME::postgres`.
macro_rules! on_both_backends {
    ($($suite:ident),* $(,)?) => {$(
        mod $suite {
            #[tokio::test]
            async fn sqlite() {
                let db = super::sqlite_db();
                let store = tenantry_store::Store::connect(&db.url).await.unwrap();
                assert_eq!(store.backend(), "sqlite");
                super::$suite(&store).await;
            }

            #[tokio::test]
            async fn postgres() {
                let Some(db) = super::postgres_db().await else { return };
                let store = tenantry_store::Store::connect(&db.url).await.unwrap();
                assert_eq!(store.backend(), "postgres");
                super::$suite(&store).await;
            }
        }
    )*};
}

on_both_backends!(
    tiers_round_trip_and_seed_does_not_overwrite,
    tenant_crud_and_conflict,
    delete_tenant_removes_its_data_and_only_its_data,
    api_keys_of_another_tenant_do_not_exist,
    api_key_authentication,
    revoking_keeps_the_first_time,
    errors_are_classified,
);

fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn scope(s: &str) -> TenantScope {
    TenantScope::for_operator(OperatorGrant::verified(), tid(s))
}

fn tier(name: &str) -> Tier {
    Tier {
        name: TierName::new(name).unwrap(),
        display_name: format!("The {name} tier ✓"),
        limits: TierLimits {
            requests_per_second: Some(7),
            burst: None,
            concurrent_invocations: Some(3),
            concurrent_sessions: None,
            tokens_per_minute: Some(u64::MAX),
            budget_per_month: Some(Money::parse("12.345678").unwrap()),
        },
        allowed_models: vec!["default".into(), "smart".into()],
        allowed_tools: vec!["search___*".into()],
        guardrail_profile: Some("strict".into()),
        isolation: IsolationSettings {
            memory: IsolationMode::Silo,
            ..IsolationSettings::default()
        },
        sandbox: SandboxResources {
            memory_mb: 2048,
            cpu_millis: 250,
            max_processes: 9,
            storage_mb: 10,
        },
    }
}

fn tenant(id: &str) -> Tenant {
    let mut entitlements = serde_json::Map::new();
    entitlements.insert("seats".into(), serde_json::json!(25));
    entitlements.insert(
        "plan".into(),
        serde_json::json!({"addons": ["sso"], "trial": false}),
    );
    Tenant {
        id: tid(id),
        name: format!("{id} Inc."),
        tier: TierName::new("standard").unwrap(),
        status: TenantStatus::Active,
        isolation: TenantIsolation {
            preset: IsolationPreset::Bridge,
            overrides: IsolationOverrides {
                knowledge: Some(IsolationMode::Silo),
                ..IsolationOverrides::default()
            },
        },
        region: "eu-west-1".into(),
        features: BTreeMap::from([("beta".to_owned(), true), ("voice".to_owned(), false)]),
        entitlements,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
    }
}

fn hash_of(secret: &str) -> Vec<u8> {
    // Any 32 bytes do for the store; it never sees the key itself.
    let mut h = [0u8; 32];
    for (i, b) in secret.bytes().enumerate() {
        h[i % 32] ^= b.wrapping_add(i as u8);
    }
    h.to_vec()
}

fn key(tenant: &str, id: &str, created_at: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        tenant_id: tid(tenant),
        name: format!("key {id}"),
        user_id: UserId::new(format!("svc-{tenant}@example.com")).unwrap(),
        roles: vec!["invoker".into(), "reader".into()],
        prefix: format!("tk_{tenant}_{id}"),
        secret_hash: hash_of(&format!("secret-{tenant}-{id}")),
        created_at,
        revoked_at: None,
        expires_at: None,
    }
}

// ---- the suite --------------------------------------------------------------------------------

async fn tiers_round_trip_and_seed_does_not_overwrite(store: &Store) {
    assert!(store.list_tiers().await.unwrap().is_empty());

    let original = tier("premium");
    assert!(store.seed_tier(&original).await.unwrap());
    assert_eq!(
        store.get_tier(&original.name).await.unwrap(),
        Some(original.clone())
    );

    // Seeding again does not overwrite what is there.
    let mut edited = original.clone();
    edited.display_name = "edited".into();
    edited.limits.budget_per_month = None;
    assert!(!store.seed_tier(&edited).await.unwrap());
    assert_eq!(
        store.get_tier(&original.name).await.unwrap(),
        Some(original.clone())
    );

    // Put does.
    store.put_tier(&edited).await.unwrap();
    assert_eq!(
        store.get_tier(&original.name).await.unwrap(),
        Some(edited.clone())
    );

    // A tier with every optional part left out round-trips too.
    let bare: Tier = serde_json::from_str(r#"{"name": "basic"}"#).unwrap();
    store.put_tier(&bare).await.unwrap();
    assert_eq!(
        store.get_tier(&bare.name).await.unwrap(),
        Some(bare.clone())
    );

    // Byte order, whatever the database's collation ("a-c" < "ab" < "basic" < "premium").
    store.put_tier(&tier("ab")).await.unwrap();
    store.put_tier(&tier("a-c")).await.unwrap();
    let names: Vec<String> = store
        .list_tiers()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["a-c", "ab", "basic", "premium"]);

    assert_eq!(
        store
            .get_tier(&TierName::new("nope").unwrap())
            .await
            .unwrap(),
        None
    );
}

async fn tenant_crud_and_conflict(store: &Store) {
    let acme = tenant("acme");
    store.create_tenant(&acme).await.unwrap();
    assert_eq!(
        store.get_tenant(&acme.id).await.unwrap(),
        Some(acme.clone())
    );

    let err = store.create_tenant(&acme).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::Conflict);

    store.create_tenant(&tenant("a-corp")).await.unwrap();
    store.create_tenant(&tenant("ab")).await.unwrap();
    let ids: Vec<String> = store
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(ids, ["a-corp", "ab", "acme"]);

    let mut changed = acme.clone();
    changed.name = "ACME (renamed)".into();
    changed.tier = TierName::new("premium").unwrap();
    changed.status = TenantStatus::Suspended;
    changed.region = "us-east-1".into();
    changed.isolation = TenantIsolation {
        preset: IsolationPreset::Silo,
        overrides: IsolationOverrides::default(),
    };
    changed.features.insert("voice".into(), true);
    changed.entitlements.clear();
    changed.updated_at = 1_800_000_000;
    changed.created_at = 1; // ignored: created_at is immutable
    assert!(store.update_tenant(&changed).await.unwrap());
    let got = store.get_tenant(&acme.id).await.unwrap().unwrap();
    assert_eq!(
        got,
        Tenant {
            created_at: acme.created_at,
            ..changed
        }
    );

    assert!(!store.update_tenant(&tenant("ghost")).await.unwrap());
    assert_eq!(store.get_tenant(&tid("ghost")).await.unwrap(), None);

    assert!(store.delete_tenant(&acme.id).await.unwrap());
    assert_eq!(store.get_tenant(&acme.id).await.unwrap(), None);
    assert!(!store.delete_tenant(&acme.id).await.unwrap());
    assert_eq!(store.list_tenants().await.unwrap().len(), 2);
}

async fn delete_tenant_removes_its_data_and_only_its_data(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    for (i, id) in ["k1", "k2", "k3"].into_iter().enumerate() {
        store
            .insert_api_key(&scope("alpha"), &key("alpha", id, i as i64))
            .await
            .unwrap();
    }
    store
        .insert_api_key(&scope("bravo"), &key("bravo", "k1", 5))
        .await
        .unwrap();

    assert!(store.delete_tenant(&tid("alpha")).await.unwrap());

    // Re-creating the tenant does not resurrect its old keys.
    store.create_tenant(&tenant("alpha")).await.unwrap();
    assert!(
        store
            .list_api_keys(&scope("alpha"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .authenticate_api_key(&tid("alpha"), "k1", &hash_of("secret-alpha-k1"))
            .await
            .unwrap(),
        None
    );
    // The other tenant's keys are untouched.
    assert_eq!(
        store.list_api_keys(&scope("bravo")).await.unwrap(),
        [key("bravo", "k1", 5)]
    );
}

async fn api_keys_of_another_tenant_do_not_exist(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store.create_tenant(&tenant("bravo")).await.unwrap();
    // Same key id in both tenants: ids are unique per tenant only.
    let a1 = key("alpha", "k1", 20);
    let a2 = key("alpha", "k0", 10);
    let b1 = key("bravo", "k1", 5);
    let b2 = key("bravo", "kb", 6);
    for k in [&a1, &a2] {
        store.insert_api_key(&scope("alpha"), k).await.unwrap();
    }
    for k in [&b1, &b2] {
        store.insert_api_key(&scope("bravo"), k).await.unwrap();
    }

    // Ordered by created_at, then id; only the scope's tenant.
    assert_eq!(
        store.list_api_keys(&scope("alpha")).await.unwrap(),
        [a2.clone(), a1.clone()]
    );
    assert_eq!(
        store.list_api_keys(&scope("bravo")).await.unwrap(),
        [b1.clone(), b2.clone()]
    );
    assert_eq!(
        store.get_api_key(&scope("alpha"), "k1").await.unwrap(),
        Some(a1.clone())
    );

    // Alpha cannot see, revoke or authenticate as bravo's key.
    assert_eq!(
        store.get_api_key(&scope("alpha"), "kb").await.unwrap(),
        None
    );
    assert_eq!(
        store
            .revoke_api_key(&scope("alpha"), "kb", 99)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.get_api_key(&scope("bravo"), "kb").await.unwrap(),
        Some(b2.clone())
    );
    assert_eq!(
        store
            .authenticate_api_key(&tid("alpha"), "kb", &b2.secret_hash)
            .await
            .unwrap(),
        None
    );
    // Revoking alpha's k1 leaves bravo's k1 alone.
    store
        .revoke_api_key(&scope("alpha"), "k1", 50)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.get_api_key(&scope("bravo"), "k1").await.unwrap(),
        Some(b1.clone())
    );

    // A record of another tenant cannot be written through this scope.
    let err = store
        .insert_api_key(&scope("alpha"), &key("bravo", "kx", 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Internal);
    assert_eq!(
        store.get_api_key(&scope("bravo"), "kx").await.unwrap(),
        None
    );

    // A scope of an unknown tenant sees nothing.
    assert!(
        store
            .list_api_keys(&scope("ghost"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn api_key_authentication(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    let k = key("alpha", "k1", 1);
    store.insert_api_key(&scope("alpha"), &k).await.unwrap();

    let ok = store
        .authenticate_api_key(&tid("alpha"), "k1", &k.secret_hash)
        .await
        .unwrap();
    assert_eq!(ok, Some(k.clone()));

    for wrong in [hash_of("guess"), vec![], k.secret_hash[..31].to_vec()] {
        assert_eq!(
            store
                .authenticate_api_key(&tid("alpha"), "k1", &wrong)
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(
        store
            .authenticate_api_key(&tid("alpha"), "nope", &k.secret_hash)
            .await
            .unwrap(),
        None
    );

    // Expired keys fail.
    let mut old = key("alpha", "old", 1);
    old.expires_at = Some(2);
    store.insert_api_key(&scope("alpha"), &old).await.unwrap();
    assert_eq!(
        store
            .authenticate_api_key(&tid("alpha"), "old", &old.secret_hash)
            .await
            .unwrap(),
        None
    );
    let mut later = key("alpha", "later", 1);
    later.expires_at = Some(i64::MAX);
    store.insert_api_key(&scope("alpha"), &later).await.unwrap();
    assert!(
        store
            .authenticate_api_key(&tid("alpha"), "later", &later.secret_hash)
            .await
            .unwrap()
            .is_some()
    );

    // Revoked keys fail.
    store
        .revoke_api_key(&scope("alpha"), "k1", 1_000)
        .await
        .unwrap();
    assert_eq!(
        store
            .authenticate_api_key(&tid("alpha"), "k1", &k.secret_hash)
            .await
            .unwrap(),
        None
    );

    // The secret hash never leaves through serialization.
    let json = serde_json::to_value(&k).unwrap();
    assert!(json.get("secret_hash").is_none(), "{json}");
    assert_eq!(json["tenant_id"], "alpha");
}

async fn revoking_keeps_the_first_time(store: &Store) {
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store
        .insert_api_key(&scope("alpha"), &key("alpha", "k1", 1))
        .await
        .unwrap();

    let first = store
        .revoke_api_key(&scope("alpha"), "k1", 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.revoked_at, Some(100));
    let second = store
        .revoke_api_key(&scope("alpha"), "k1", 200)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.revoked_at, Some(100));
    assert_eq!(second, first);
    assert_eq!(
        store.get_api_key(&scope("alpha"), "k1").await.unwrap(),
        Some(first)
    );
    assert_eq!(
        store
            .revoke_api_key(&scope("alpha"), "nope", 1)
            .await
            .unwrap(),
        None
    );
}

async fn errors_are_classified(store: &Store) {
    store.ping().await.unwrap();
    store.create_tenant(&tenant("alpha")).await.unwrap();
    store
        .insert_api_key(&scope("alpha"), &key("alpha", "k1", 1))
        .await
        .unwrap();
    let dup = store
        .insert_api_key(&scope("alpha"), &key("alpha", "k1", 2))
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");

    // Keys of a tenant that is not registered are refused (foreign key).
    let orphan = store
        .insert_api_key(&scope("ghost"), &key("ghost", "k1", 1))
        .await
        .unwrap_err();
    assert_eq!(orphan.code(), ErrorCode::Internal, "{orphan:?}");
}

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
    let db = sqlite_db();
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
    assert_eq!(versions, [1]);
}

#[tokio::test]
async fn migrations_are_idempotent_postgres() {
    let Some(db) = postgres_db().await else {
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
    assert_eq!(versions, [1, 2]);
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
    let Some(db) = postgres_db().await else {
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

/// The transaction-local settings do not outlive their transaction on a pooled connection.
#[tokio::test]
async fn postgres_scope_does_not_leak_across_transactions() {
    let Some(db) = postgres_db().await else {
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
