//! The store's contract for tenant API keys: another tenant's keys do not exist, a key
//! authenticates only with its secret while usable, and revoking keeps the first time.
//! Written once against `&Store` and run on both backends (`common::on_both_backends!`):
//! SQLite always, PostgreSQL when `TENANTRY_TEST_DATABASE_URL` is set, as the admin user and as
//! a database owner that is no superuser (so forced row-level security binds it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tenantry_core::ErrorCode;
mod common;

use common::records::*;
use common::{on_both_backends, scope};
use tenantry_store::Store;

on_both_backends!(
    api_keys_of_another_tenant_do_not_exist,
    api_key_authentication,
    revoking_keeps_the_first_time,
);

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
