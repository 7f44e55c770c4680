//! The store tests' harness: a fresh database per test on each backend (a temporary SQLite
//! file always; PostgreSQL when `TENANTRY_TEST_DATABASE_URL` is set, as the admin user of that
//! URL and as a database owner that is no superuser), and `on_both_backends!`, which runs each
//! suite function (`async fn(&Store)`) as three tests: `NAME::sqlite`, `NAME::postgres` and
//! `NAME::postgres_unprivileged`. Without PostgreSQL the last two say so and return. Also the
//! plain registry most suites start from (`alpha_and_bravo`), and the records they write
//! (`records`).

#![allow(dead_code, clippy::unwrap_used)]

pub mod records;

use std::collections::BTreeMap;

use tenantry_core::{
    OperatorGrant, Tenant, TenantId, TenantIsolation, TenantScope, TenantStatus, TenantUid, Tier,
    TierName,
};
use tenantry_store::testing::{
    DropGuard, fresh_postgres, fresh_postgres_unprivileged, postgres_url_or_skip,
};
use tenantry_store::{Store, TenantDeletion};

/// The scope of tenant `id`, as the operator's.
pub fn scope(id: &str) -> TenantScope {
    TenantScope::for_operator(OperatorGrant::for_tests(), TenantId::new(id).unwrap())
}

/// Tenant `id` on the tier `basic`, with nothing else set.
pub fn basic_tenant(id: &str) -> Tenant {
    Tenant {
        id: TenantId::new(id).unwrap(),
        uid: TenantUid::generate(),
        name: id.to_owned(),
        tier: TierName::new("basic").unwrap(),
        status: TenantStatus::Active,
        isolation: TenantIsolation::default(),
        region: "eu".into(),
        features: BTreeMap::new(),
        entitlements: serde_json::Map::new(),
        created_at: 1,
        updated_at: 1,
    }
}

/// Deletes tenant `id`, which must exist, keeping its ledger; what went.
pub async fn delete_tenant(store: &Store, id: &str) -> TenantDeletion {
    let id = TenantId::new(id).unwrap();
    store.delete_tenant(&id, false).await.unwrap().unwrap()
}

/// Stores the tier `basic` and the tenants `alpha` and `bravo` on it.
pub async fn alpha_and_bravo(store: &Store) {
    let tier: Tier = serde_json::from_value(serde_json::json!({"name": "basic"})).unwrap();
    store.put_tier(&tier).await.unwrap();
    for t in ["alpha", "bravo"] {
        store.create_tenant(&basic_tenant(t)).await.unwrap();
    }
}

/// A database that lives as long as this value.
pub struct TestDb {
    pub url: String,
    _keep: Keep,
}

#[allow(dead_code, reason = "held only for its Drop")]
enum Keep {
    Dir(tempfile::TempDir),
    Postgres(DropGuard),
}

/// A SQLite database in a directory that does not exist yet (connecting creates it).
pub fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join("state/tenantry.db").display()
    );
    TestDb {
        url,
        _keep: Keep::Dir(dir),
    }
}

/// A fresh PostgreSQL database, owned by the admin user or by a login role without SUPERUSER
/// or BYPASSRLS (`unprivileged`, connected to as that role); `None` after saying why when no
/// server is configured.
pub async fn postgres_db(test: &str, unprivileged: bool) -> Option<TestDb> {
    let admin = postgres_url_or_skip(test)?;
    let (url, guard) = if unprivileged {
        fresh_postgres_unprivileged(&admin).await.unwrap()
    } else {
        fresh_postgres(&admin).await.unwrap()
    };
    Some(TestDb {
        url,
        _keep: Keep::Postgres(guard),
    })
}

#[allow(unused_macros, reason = "the backends suite starts its own stores")]
macro_rules! on_both_backends {
    ($($suite:ident),* $(,)?) => {$(
        mod $suite {
            #[tokio::test]
            async fn sqlite() {
                let db = super::common::sqlite_db();
                let store = tenantry_store::Store::connect(&db.url).await.unwrap();
                assert_eq!(store.backend(), "sqlite");
                super::$suite(&store).await;
            }

            #[tokio::test]
            async fn postgres() {
                let test = concat!(stringify!($suite), "::postgres");
                let Some(db) = super::common::postgres_db(test, false).await else { return };
                let store = tenantry_store::Store::connect(&db.url).await.unwrap();
                assert_eq!(store.backend(), "postgres");
                super::$suite(&store).await;
            }

            #[tokio::test]
            async fn postgres_unprivileged() {
                let test = concat!(stringify!($suite), "::postgres_unprivileged");
                let Some(db) = super::common::postgres_db(test, true).await else { return };
                let store = tenantry_store::Store::connect(&db.url).await.unwrap();
                assert_eq!(store.backend(), "postgres");
                super::$suite(&store).await;
            }
        }
    )*};
}

#[allow(unused_imports, reason = "the backends suite starts its own stores")]
pub(crate) use on_both_backends;
