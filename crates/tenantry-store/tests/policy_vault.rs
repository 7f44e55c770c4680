//! The store's contract for Cedar policy sets (operator data: versions, one active per scope,
//! rollback) and the vault's rows (tenant data: wrapped data keys and credential versions),
//! run on SQLite always and on PostgreSQL when `TENANTRY_TEST_DATABASE_URL` is set (as the
//! admin user and as a database owner that is no superuser). The last test proves, below the
//! store, that PostgreSQL row-level security hides one tenant's vault rows from another.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::{Connection, Executor, PgConnection};
use tenantry_core::{TenantId, Tier, TierName, UserId};
mod common;

use common::{on_both_backends, scope};
use tenantry_store::{
    GuardrailScope, NewCredential, PolicyMode, PolicyScope, Store, StoreError, VaultKeyRecord,
    is_valid_credential_name,
};

on_both_backends!(
    policy_versions_and_rollback,
    policy_scopes_are_separate_and_checked,
    policy_sets_go_with_their_tenant,
    vault_keys_are_per_tenant,
    credential_versions_rotate_and_delete,
    credentials_of_another_tenant_do_not_exist,
    vault_rows_go_with_their_tenant,
    guardrail_profiles_version_roll_back_and_go_with_their_tenant,
);

fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn tier_name(s: &str) -> TierName {
    TierName::new(s).unwrap()
}

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn tier(name: &str) -> Tier {
    serde_json::from_value(serde_json::json!({ "name": name })).unwrap()
}

async fn registry(store: &Store) {
    common::alpha_and_bravo(store).await;
    store.put_tier(&tier("premium")).await.unwrap();
}

// ---- policy sets ------------------------------------------------------------------------------

async fn policy_versions_and_rollback(store: &Store) {
    registry(store).await;
    let basic = PolicyScope::Tier(tier_name("basic"));
    assert_eq!(store.get_active_policy_set(&basic).await.unwrap(), None);

    let v1 = store
        .put_policy_set(
            &basic,
            "permit(principal, action, resource);",
            PolicyMode::Enforce,
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        (v1.version, v1.active, v1.mode),
        (1, true, PolicyMode::Enforce)
    );
    assert_eq!(v1.scope, basic);
    assert_eq!(v1.created_at, 10);

    let v2 = store
        .put_policy_set(
            &basic,
            "forbid(principal, action, resource);",
            PolicyMode::LogOnly,
            20,
        )
        .await
        .unwrap();
    assert_eq!((v2.version, v2.active), (2, true));
    let active = store.get_active_policy_set(&basic).await.unwrap().unwrap();
    assert_eq!(active, v2);

    let all = store.list_policy_sets(&basic).await.unwrap();
    assert_eq!(all.iter().map(|r| r.version).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(
        all.iter().map(|r| r.active).collect::<Vec<_>>(),
        [true, false]
    );
    assert_eq!(all[0].mode, PolicyMode::LogOnly);
    assert_eq!(all[1].text, "permit(principal, action, resource);");

    // Rollback to v1: v1 active again, v2 kept.
    let back = store.activate_policy_set(&basic, 1).await.unwrap().unwrap();
    assert_eq!((back.version, back.active), (1, true));
    assert_eq!(
        store
            .get_active_policy_set(&basic)
            .await
            .unwrap()
            .map(|r| r.version),
        Some(1)
    );
    let all = store.list_policy_sets(&basic).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.active).collect::<Vec<_>>(),
        [false, true]
    );

    // An unknown version changes nothing.
    assert_eq!(store.activate_policy_set(&basic, 9).await.unwrap(), None);
    assert_eq!(
        store
            .get_active_policy_set(&basic)
            .await
            .unwrap()
            .map(|r| r.version),
        Some(1)
    );

    // A new put after a rollback continues the numbering.
    let v3 = store
        .put_policy_set(&basic, "// v3", PolicyMode::Enforce, 30)
        .await
        .unwrap();
    assert_eq!(v3.version, 3);
    assert_eq!(
        store
            .list_active_policy_sets()
            .await
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect::<Vec<_>>(),
        [3]
    );

    // Deactivating leaves no active version but keeps the history.
    store.deactivate_policy_set(&basic).await.unwrap();
    assert_eq!(store.get_active_policy_set(&basic).await.unwrap(), None);
    assert_eq!(store.list_policy_sets(&basic).await.unwrap().len(), 3);
    assert!(store.list_active_policy_sets().await.unwrap().is_empty());
}

async fn policy_scopes_are_separate_and_checked(store: &Store) {
    registry(store).await;
    let scopes = [
        PolicyScope::Platform,
        PolicyScope::Tier(tier_name("basic")),
        PolicyScope::Tier(tier_name("premium")),
        PolicyScope::Tenant(tid("alpha")),
    ];
    for (i, s) in scopes.iter().enumerate() {
        for _ in 0..=i {
            store
                .put_policy_set(s, &format!("// {s}"), PolicyMode::Enforce, 1)
                .await
                .unwrap();
        }
    }
    let active = store.list_active_policy_sets().await.unwrap();
    let seen: Vec<(String, i64)> = active
        .iter()
        .map(|r| (r.scope.to_string(), r.version))
        .collect();
    assert_eq!(
        seen,
        [
            ("platform".to_owned(), 1),
            ("tenant:alpha".to_owned(), 4),
            ("tier:basic".to_owned(), 2),
            ("tier:premium".to_owned(), 3),
        ]
    );
    assert_eq!(active[1].text, "// tenant:alpha");

    // A tier or tenant that does not exist is refused: not found, naming it.
    for (missing, message) in [
        (PolicyScope::Tier(tier_name("gold")), "tier gold not found"),
        (
            PolicyScope::Tenant(tid("nobody")),
            "tenant nobody not found",
        ),
    ] {
        let err = store
            .put_policy_set(&missing, "", PolicyMode::Enforce, 1)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Missing(m) if m == message),
            "{err:?}"
        );
        assert_eq!(err.code(), tenantry_core::ErrorCode::NotFound);
    }

    // Oversized texts are refused before they reach the database.
    let huge = "x".repeat(tenantry_store::MAX_POLICY_TEXT_BYTES + 1);
    assert!(
        store
            .put_policy_set(&PolicyScope::Platform, &huge, PolicyMode::Enforce, 1)
            .await
            .is_err()
    );
}

async fn policy_sets_go_with_their_tenant(store: &Store) {
    registry(store).await;
    for t in ["alpha", "bravo"] {
        store
            .put_policy_set(&PolicyScope::Tenant(tid(t)), "// x", PolicyMode::Enforce, 1)
            .await
            .unwrap();
    }
    common::delete_tenant(store, "alpha").await;
    let left: Vec<String> = store
        .list_active_policy_sets()
        .await
        .unwrap()
        .iter()
        .map(|r| r.scope.to_string())
        .collect();
    assert_eq!(left, ["tenant:bravo"]);
}

// ---- guardrail profiles ----------------------------------------------------------------------

async fn guardrail_profiles_version_roll_back_and_go_with_their_tenant(store: &Store) {
    registry(store).await;
    let strict = GuardrailScope::Profile("strict".into());
    let v1 = store.put_guardrail_profile(&strict, "{}", 1).await.unwrap();
    let v2 = store
        .put_guardrail_profile(&strict, r#"{"checks":[]}"#, 2)
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version, v2.active), (1, 2, true));
    let versions = store.list_guardrail_profiles(&strict).await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|r| (r.version, r.active))
            .collect::<Vec<_>>(),
        [(2, true), (1, false)]
    );
    let back = store
        .activate_guardrail_profile(&strict, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((back.version, back.body.as_str()), (1, "{}"));
    assert_eq!(
        store.activate_guardrail_profile(&strict, 9).await.unwrap(),
        None
    );
    // Tenants' overrides: one per tenant, refused for a tenant that does not exist, deleted
    // with their tenant.
    for t in ["alpha", "bravo"] {
        store
            .put_guardrail_profile(&GuardrailScope::Tenant(tid(t)), "{}", 3)
            .await
            .unwrap();
    }
    let missing = store
        .put_guardrail_profile(&GuardrailScope::Tenant(tid("nobody")), "{}", 3)
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::Missing(_)), "{missing:?}");
    store.delete_tenant(&tid("alpha"), false).await.unwrap();
    let active: Vec<(String, i64)> = store
        .list_active_guardrail_profiles()
        .await
        .unwrap()
        .iter()
        .map(|r| (r.scope.to_string(), r.version))
        .collect();
    assert_eq!(
        active,
        [
            ("profile:strict".to_owned(), 1),
            ("tenant:bravo".to_owned(), 1)
        ]
    );
    assert_eq!(GuardrailScope::parse("profile:strict"), Some(strict));
    assert_eq!(GuardrailScope::parse("profile:Bad Name"), None);
}

// ---- vault rows -------------------------------------------------------------------------------

fn data_key(tenant: &str, bytes: &[u8]) -> VaultKeyRecord {
    VaultKeyRecord {
        tenant_id: tid(tenant),
        master_key_id: "mk-1".into(),
        wrapped_key: bytes.to_vec(),
        created_at: 5,
    }
}

fn cred<'a>(
    name: &'a str,
    user: Option<&'a UserId>,
    metadata: &'a serde_json::Value,
    ciphertext: &'a [u8],
) -> NewCredential<'a> {
    NewCredential {
        name,
        user_id: user,
        kind: "api_key",
        metadata,
        ciphertext,
        created_at: 7,
    }
}

async fn vault_keys_are_per_tenant(store: &Store) {
    registry(store).await;
    assert_eq!(store.get_vault_key(&scope("alpha")).await.unwrap(), None);
    store
        .insert_vault_key(&scope("alpha"), &data_key("alpha", b"wrapped-a"))
        .await
        .unwrap();
    let got = store.get_vault_key(&scope("alpha")).await.unwrap().unwrap();
    assert_eq!(got.wrapped_key, b"wrapped-a");
    assert_eq!(got.master_key_id, "mk-1");
    // Debug never prints the wrapped key.
    assert!(!format!("{got:?}").contains("wrapped-a"));
    // Bravo sees none.
    assert_eq!(store.get_vault_key(&scope("bravo")).await.unwrap(), None);
    // A second key for alpha conflicts (the first one wins).
    let err = store
        .insert_vault_key(&scope("alpha"), &data_key("alpha", b"other"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // A key of another tenant is refused in alpha's scope.
    assert!(
        store
            .insert_vault_key(&scope("alpha"), &data_key("bravo", b"x"))
            .await
            .is_err()
    );
}

async fn credential_versions_rotate_and_delete(store: &Store) {
    registry(store).await;
    let a = scope("alpha");
    let meta = serde_json::json!({"client_id": "c1"});
    let v1 = store
        .insert_credential(&a, &cred("crm", None, &meta, b"ct-1"))
        .await
        .unwrap();
    assert_eq!((v1.version, v1.user_id.clone()), (1, None));
    assert_eq!(v1.metadata, meta);
    let v2 = store
        .insert_credential(&a, &cred("crm", None, &meta, b"ct-2"))
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    // Per-user credentials are versioned separately.
    let alice = uid("alice@example.com");
    let u1 = store
        .insert_credential(&a, &cred("crm", Some(&alice), &meta, b"ct-u"))
        .await
        .unwrap();
    assert_eq!((u1.version, u1.user_id.as_ref()), (1, Some(&alice)));

    let current = store
        .get_credential(&a, "crm", None, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (current.version, current.ciphertext.as_slice()),
        (2, &b"ct-2"[..])
    );
    assert!(!format!("{current:?}").contains("ct-2"));
    let old = store
        .get_credential(&a, "crm", None, Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.ciphertext, b"ct-1");
    let users = store
        .get_credential(&a, "crm", Some(&alice), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(users.ciphertext, b"ct-u");

    let listed = store.list_credentials(&a).await.unwrap();
    let keys: Vec<(Option<&str>, i64)> = listed
        .iter()
        .map(|c| (c.user_id.as_ref().map(UserId::as_str), c.version))
        .collect();
    assert_eq!(keys, [(None, 2), (None, 1), (Some("alice@example.com"), 1)]);

    // Delete the old version, then the rest.
    assert_eq!(
        store
            .delete_credential(&a, "crm", None, Some(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .get_credential(&a, "crm", None, Some(1))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .delete_credential(&a, "crm", None, None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.get_credential(&a, "crm", None, None).await.unwrap(),
        None
    );
    // The user's credential is untouched, and deleting nothing says 0.
    assert!(
        store
            .get_credential(&a, "crm", Some(&alice), None)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .delete_credential(&a, "nope", None, None)
            .await
            .unwrap(),
        0
    );

    // Names and metadata are checked.
    assert!(!is_valid_credential_name("a b"));
    assert!(!is_valid_credential_name(""));
    assert!(is_valid_credential_name("crm-prod_2:eu/x"));
    assert!(
        store
            .insert_credential(&a, &cred("bad name", None, &meta, b"x"))
            .await
            .is_err()
    );
    let not_object = serde_json::json!([1]);
    assert!(
        store
            .insert_credential(&a, &cred("ok", None, &not_object, b"x"))
            .await
            .is_err()
    );
}

async fn credentials_of_another_tenant_do_not_exist(store: &Store) {
    registry(store).await;
    let meta = serde_json::json!({});
    store
        .insert_credential(&scope("alpha"), &cred("crm", None, &meta, b"alpha-secret"))
        .await
        .unwrap();
    let b = scope("bravo");
    assert_eq!(
        store.get_credential(&b, "crm", None, None).await.unwrap(),
        None
    );
    assert!(store.list_credentials(&b).await.unwrap().is_empty());
    assert_eq!(
        store
            .delete_credential(&b, "crm", None, None)
            .await
            .unwrap(),
        0
    );
    // Bravo's own credential of the same name is another credential, starting at version 1.
    let own = store
        .insert_credential(&b, &cred("crm", None, &meta, b"bravo-secret"))
        .await
        .unwrap();
    assert_eq!(own.version, 1);
    let alpha = store
        .get_credential(&scope("alpha"), "crm", None, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alpha.ciphertext, b"alpha-secret");
}

async fn vault_rows_go_with_their_tenant(store: &Store) {
    registry(store).await;
    let meta = serde_json::json!({});
    for t in ["alpha", "bravo"] {
        store
            .insert_vault_key(&scope(t), &data_key(t, b"k"))
            .await
            .unwrap();
        store
            .insert_credential(&scope(t), &cred("crm", None, &meta, b"c"))
            .await
            .unwrap();
    }
    common::delete_tenant(store, "alpha").await;
    assert_eq!(store.get_vault_key(&scope("alpha")).await.unwrap(), None);
    assert!(
        store
            .list_credentials(&scope("alpha"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .get_vault_key(&scope("bravo"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.list_credentials(&scope("bravo")).await.unwrap().len(),
        1
    );
}

/// Below the store: scoped to alpha, even unfiltered SQL sees none of bravo's vault rows.
#[tokio::test]
async fn postgres_row_level_security_isolates_vault_rows() {
    let Some(db) =
        common::postgres_db("postgres_row_level_security_isolates_vault_rows", true).await
    else {
        return;
    };
    let store = Store::connect(&db.url).await.unwrap();
    registry(&store).await;
    let meta = serde_json::json!({});
    for t in ["alpha", "bravo"] {
        store
            .insert_vault_key(&scope(t), &data_key(t, t.as_bytes()))
            .await
            .unwrap();
        store
            .insert_credential(&scope(t), &cred("crm", None, &meta, t.as_bytes()))
            .await
            .unwrap();
    }
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    for table in ["vault_data_keys", "vault_credentials"] {
        let mut tx = conn.begin().await.unwrap();
        tx.execute("SET LOCAL ROLE tenantry_app").await.unwrap();
        tx.execute("SELECT set_config('app.tenant_id', 'alpha', true)")
            .await
            .unwrap();
        let seen: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT tenant_id FROM {table}"
        )))
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        assert_eq!(seen, ["alpha"], "{table}");
        let deleted = tx
            .execute(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(deleted, 1, "{table}");
        // Writing a row of bravo's is refused by the policy's check.
        let err = tx
            .execute(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET tenant_id = 'bravo'"
            )))
            .await;
        assert!(
            err.is_err(),
            "{table}: tenantry_app must not move rows to bravo"
        );
        tx.rollback().await.unwrap();

        // The owner (no superuser) without a scope sees nothing either: RLS is forced.
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    conn.close().await.unwrap();
}
