//! The vault from the outside: encryption at rest on both store backends, tenant isolation
//! (scopes, row-level security, ciphertexts moved between tenants), the master key, secrets
//! that never print, and tokens from local mock token endpoints (client credentials with
//! caching, RFC 8693 token exchange naming the agent as actor, refusals and outages).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use tenantry_core::{
    OperatorGrant, Tenant, TenantId, TenantIsolation, TenantScope, TenantStatus, Tier, TierName,
    UserId,
};
use tenantry_store::testing::{DropGuard, fresh_postgres_unprivileged, postgres_url_or_skip};
use tenantry_store::{NewCredential, Store};
use tenantry_vault::{
    CallerTokens, Credential, MasterKey, SecretString, TOKEN_EXCHANGE_GRANT, TOKEN_TYPE_JWT, Vault,
    VaultError,
};

// ---- fixtures ---------------------------------------------------------------------------------

struct Db {
    store: Store,
    dir: Option<tempfile::TempDir>,
    _pg: Option<DropGuard>,
}

async fn registry(store: &Store) {
    let tier: Tier = serde_json::from_value(json!({"name": "basic"})).unwrap();
    store.put_tier(&tier).await.unwrap();
    for t in ["alpha", "bravo"] {
        registry_tenant(store, t).await;
    }
}

async fn registry_tenant(store: &Store, t: &str) {
    store
        .create_tenant(&Tenant {
            id: tid(t),
            uid: tenantry_core::TenantUid::generate(),
            name: t.into(),
            tier: TierName::new("basic").unwrap(),
            status: TenantStatus::Active,
            isolation: TenantIsolation::default(),
            region: "eu".into(),
            features: BTreeMap::new(),
            entitlements: serde_json::Map::new(),
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tenantry.db").display());
    let store = Store::connect(&url).await.unwrap();
    registry(&store).await;
    Db {
        store,
        dir: Some(dir),
        _pg: None,
    }
}

/// PostgreSQL as a database owner that is no superuser, so row-level security binds it.
async fn postgres() -> Option<Db> {
    let admin = postgres_url_or_skip("PostgreSQL vault tests")?;
    let (url, guard) = fresh_postgres_unprivileged(&admin).await.unwrap();
    let store = Store::connect(&url).await.unwrap();
    registry(&store).await;
    Some(Db {
        store,
        dir: None,
        _pg: Some(guard),
    })
}

fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn scope(s: &str) -> TenantScope {
    TenantScope::for_operator(OperatorGrant::for_tests(), tid(s))
}

fn api_key(value: &str) -> Credential {
    serde_json::from_value(json!({"kind": "api_key", "value": value})).unwrap()
}

fn resolve_none() -> CallerTokens {
    CallerTokens::none()
}

async fn resolved(vault: &Vault, tenant: &str, name: &str) -> Option<String> {
    vault
        .resolve(&scope(tenant), name, None, &resolve_none())
        .await
        .unwrap()
        .map(|s| s.expose().to_owned())
}

// ---- storage and encryption, on both backends -------------------------------------------------

async fn round_trip_rotation_and_deletion(db: &Db) {
    let vault = Vault::new(db.store.clone(), MasterKey::generate()).unwrap();
    let a = scope("alpha");
    let info = vault
        .put(&a, "crm", None, &api_key("sk-alpha-ONE"))
        .await
        .unwrap();
    assert_eq!((info.kind.as_str(), info.version), ("api_key", 1));
    assert!(!serde_json::to_string(&info).unwrap().contains("sk-alpha"));
    assert_eq!(
        resolved(&vault, "alpha", "crm").await.as_deref(),
        Some("sk-alpha-ONE")
    );

    // Rotation: a new version is current at once; the old one is kept until deleted.
    let info = vault
        .put(&a, "crm", None, &api_key("sk-alpha-TWO"))
        .await
        .unwrap();
    assert_eq!((info.version, info.versions.clone()), (2, vec![2, 1]));
    assert_eq!(
        resolved(&vault, "alpha", "crm").await.as_deref(),
        Some("sk-alpha-TWO")
    );
    assert_eq!(vault.delete(&a, "crm", None, Some(1)).await.unwrap(), 1);
    assert_eq!(
        vault.info(&a, "crm", None).await.unwrap().unwrap().versions,
        [2]
    );

    // Listing shows metadata only.
    let oauth: Credential = serde_json::from_value(json!({
        "kind": "oauth2_client_credentials",
        "token_url": "https://idp.example/token",
        "client_id": "alpha-client",
        "client_secret": "cs-alpha-SECRET",
        "scopes": ["read"]
    }))
    .unwrap();
    vault.put(&a, "erp", None, &oauth).await.unwrap();
    let listed = vault.list(&a).await.unwrap();
    assert_eq!(
        listed.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["crm", "erp"]
    );
    assert_eq!(listed[1].metadata["client_id"], "alpha-client");
    let text = serde_json::to_string(&listed).unwrap();
    assert!(
        !text.contains("SECRET") && !text.contains("sk-alpha"),
        "{text}"
    );
    // The decrypted credential is there for the gateway.
    let got = vault.get(&a, "erp", None).await.unwrap().unwrap();
    assert_eq!(got, oauth);

    // Deletion.
    assert_eq!(vault.delete(&a, "crm", None, None).await.unwrap(), 1);
    assert_eq!(resolved(&vault, "alpha", "crm").await, None);
    assert_eq!(vault.delete(&a, "crm", None, None).await.unwrap(), 0);

    // Invalid names and credentials are refused.
    let err = vault
        .put(&a, "bad name", None, &api_key("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::InvalidCredential(_)), "{err}");
    let err = vault
        .put(&a, "empty", None, &api_key(""))
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::InvalidCredential(_)), "{err}");
}

async fn per_user_credentials_override_the_tenants(db: &Db) {
    let vault = Vault::new(db.store.clone(), MasterKey::generate()).unwrap();
    let a = scope("alpha");
    let alice = UserId::new("alice@example.com").unwrap();
    let bob = UserId::new("bob@example.com").unwrap();
    vault
        .put(&a, "crm", None, &api_key("tenant-key"))
        .await
        .unwrap();
    vault
        .put(&a, "crm", Some(&alice), &api_key("alice-key"))
        .await
        .unwrap();
    let for_user = |u: &UserId| {
        let vault = vault.clone();
        let a = a.clone();
        let u = u.clone();
        async move {
            vault
                .resolve(&a, "crm", Some(&u), &resolve_none())
                .await
                .unwrap()
                .map(|s| s.expose().to_owned())
        }
    };
    assert_eq!(for_user(&alice).await.as_deref(), Some("alice-key"));
    assert_eq!(for_user(&bob).await.as_deref(), Some("tenant-key"));
    assert_eq!(
        resolved(&vault, "alpha", "crm").await.as_deref(),
        Some("tenant-key")
    );
}

async fn another_tenants_secret_is_unreachable(db: &Db) {
    let key = MasterKey::generate();
    let vault = Vault::new(db.store.clone(), key.clone()).unwrap();
    vault
        .put(&scope("alpha"), "crm", None, &api_key("sk-alpha-only"))
        .await
        .unwrap();
    // Bravo's scope does not see it, by resolve, get, info or list.
    assert_eq!(resolved(&vault, "bravo", "crm").await, None);
    assert!(
        vault
            .get(&scope("bravo"), "crm", None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        vault
            .info(&scope("bravo"), "crm", None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(vault.list(&scope("bravo")).await.unwrap().is_empty());

    // Even alpha's ciphertext copied into bravo's rows does not decrypt as bravo's: bravo has
    // another data key and the ciphertext is bound to alpha.
    vault
        .put(&scope("bravo"), "other", None, &api_key("sk-bravo"))
        .await
        .unwrap();
    let stolen = db
        .store
        .get_credential(&scope("alpha"), "crm", None, None)
        .await
        .unwrap()
        .unwrap();
    db.store
        .insert_credential(
            &scope("bravo"),
            &NewCredential {
                name: "crm",
                user_id: None,
                kind: &stolen.kind,
                metadata: &stolen.metadata,
                ciphertext: &stolen.ciphertext,
                created_at: 1,
            },
        )
        .await
        .unwrap();
    // (A fresh vault, as another replica would be: this one remembers bravo has no "crm".)
    let vault = Vault::new(db.store.clone(), key).unwrap();
    let err = vault
        .resolve(&scope("bravo"), "crm", None, &resolve_none())
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::Corrupt(_)), "{err}");
    assert!(!err.to_string().contains("sk-alpha"));
    // And a credential moved to another name within alpha does not decrypt either.
    db.store
        .insert_credential(
            &scope("alpha"),
            &NewCredential {
                name: "renamed",
                user_id: None,
                kind: &stolen.kind,
                metadata: &stolen.metadata,
                ciphertext: &stolen.ciphertext,
                created_at: 1,
            },
        )
        .await
        .unwrap();
    assert!(
        vault
            .resolve(&scope("alpha"), "renamed", None, &resolve_none())
            .await
            .is_err()
    );
}

async fn ciphertext_holds_no_plaintext(db: &Db) {
    let vault = Vault::new(db.store.clone(), MasterKey::generate()).unwrap();
    let secret = "PLAINTEXT-MARKER-4711";
    vault
        .put(&scope("alpha"), "crm", None, &api_key(secret))
        .await
        .unwrap();
    let oauth: Credential = serde_json::from_value(json!({
        "kind": "token_exchange",
        "token_url": "https://idp.example/token",
        "client_id": "cid",
        "client_secret": "CLIENT-SECRET-MARKER-0815",
    }))
    .unwrap();
    vault
        .put(&scope("alpha"), "erp", None, &oauth)
        .await
        .unwrap();
    for r in db.store.list_credentials(&scope("alpha")).await.unwrap() {
        let raw = String::from_utf8_lossy(&r.ciphertext);
        assert!(!raw.contains("MARKER"), "ciphertext of {}", r.name);
        assert!(
            !r.metadata.to_string().contains("MARKER"),
            "metadata of {}",
            r.name
        );
    }
    // On SQLite, no byte of the database files holds the plaintext.
    if let Some(dir) = &db.dir {
        drop(vault);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            for marker in [&b"PLAINTEXT-MARKER"[..], &b"CLIENT-SECRET-MARKER"[..]] {
                assert!(
                    !bytes.windows(marker.len()).any(|w| w == marker),
                    "a database file holds a plaintext secret"
                );
            }
        }
    }
}

async fn the_wrong_master_key_is_named(db: &Db) {
    let first = Vault::new(db.store.clone(), MasterKey::generate()).unwrap();
    first
        .put(&scope("alpha"), "crm", None, &api_key("sk-x"))
        .await
        .unwrap();
    let other_key = MasterKey::generate();
    let second = Vault::new(db.store.clone(), other_key.clone()).unwrap();
    let err = second
        .resolve(&scope("alpha"), "crm", None, &resolve_none())
        .await
        .unwrap_err();
    let VaultError::WrongMasterKey {
        stored_id,
        loaded_id,
        ..
    } = &err
    else {
        panic!("expected WrongMasterKey, got {err:?}");
    };
    assert_eq!(stored_id, first.master_key_id());
    assert_eq!(loaded_id, other_key.id());
    let text = err.to_string();
    assert!(
        text.contains(first.master_key_id()) && text.contains(other_key.id()),
        "{text}"
    );
    assert!(text.contains("TENANTRY_VAULT_MASTER_KEY"), "{text}");
    assert_eq!(err.code(), tenantry_core::ErrorCode::Internal);
    // Storing with the wrong key is refused too (it cannot unwrap the tenant's data key).
    assert!(
        second
            .put(&scope("alpha"), "crm", None, &api_key("sk-y"))
            .await
            .is_err()
    );
}

macro_rules! on_both_backends {
    ($($suite:ident),* $(,)?) => {$(
        mod $suite {
            #[tokio::test]
            async fn sqlite() {
                let db = super::sqlite().await;
                super::$suite(&db).await;
            }

            #[tokio::test]
            async fn postgres() {
                let Some(db) = super::postgres().await else { return };
                super::$suite(&db).await;
            }
        }
    )*};
}

on_both_backends!(
    round_trip_rotation_and_deletion,
    per_user_credentials_override_the_tenants,
    another_tenants_secret_is_unreachable,
    ciphertext_holds_no_plaintext,
    the_wrong_master_key_is_named,
);

/// A tenant deleted and created again under the same id: once the vault forgets the old one,
/// the new tenant's credentials are sealed with a data key of its own, which the store holds
/// (a new process can read them), and nothing of the old tenant's resolves.
#[tokio::test]
async fn a_tenant_created_again_gets_a_data_key_of_its_own() {
    let db = sqlite().await;
    let master = MasterKey::generate();
    let vault = Vault::new(db.store.clone(), master.clone()).unwrap();
    let a = scope("alpha");
    vault
        .put(&a, "crm", None, &api_key("sk-old-customer"))
        .await
        .unwrap();
    assert!(resolved(&vault, "alpha", "crm").await.is_some());
    assert!(
        db.store
            .delete_tenant(&tid("alpha"), false)
            .await
            .unwrap()
            .is_some()
    );
    vault.forget_tenant(&tid("alpha"));
    registry_tenant(&db.store, "alpha").await;
    assert_eq!(resolved(&vault, "alpha", "crm").await, None);
    vault
        .put(&a, "crm", None, &api_key("sk-new-customer"))
        .await
        .unwrap();
    let restarted = Vault::new(db.store.clone(), master).unwrap();
    assert_eq!(
        resolved(&restarted, "alpha", "crm").await.as_deref(),
        Some("sk-new-customer")
    );
}

#[tokio::test]
async fn the_vault_is_shared_across_tasks() {
    fn shared<T: Send + Sync + Clone + 'static>() {}
    fn send<T: Send>(_: T) {}
    shared::<Vault>();
    let db = sqlite().await;
    let vault = Vault::new(db.store.clone(), MasterKey::generate()).unwrap();
    let a = scope("alpha");
    let c = api_key("x");
    let tokens = CallerTokens::none();
    send(vault.put(&a, "n", None, &c));
    send(vault.resolve(&a, "n", None, &tokens));
    send(vault.get(&a, "n", None));
    send(vault.list(&a));
    send(vault.info(&a, "n", None));
    send(vault.delete(&a, "n", None, None));
}

#[test]
fn debug_never_prints_secrets() {
    let c: Credential = serde_json::from_value(json!({
        "kind": "oauth2_client_credentials",
        "token_url": "https://idp.example/token",
        "client_id": "cid",
        "client_secret": "DEBUG-MARKER-SECRET"
    }))
    .unwrap();
    let key = MasterKey::generate();
    let token = SecretString::new("DEBUG-MARKER-TOKEN");
    let tokens = CallerTokens::new(Some(token.clone()), Some(token.clone()));
    let printed = format!("{c:?} {key:?} {token:?} {token} {tokens:?}");
    assert!(!printed.contains("DEBUG-MARKER"), "{printed}");
    assert!(printed.contains("cid"), "metadata may show: {printed}");
    let e = VaultError::TokenRefused {
        name: "crm".into(),
        status: 400,
        error: Some("invalid_grant".into()),
    };
    assert_eq!(
        e.to_string(),
        "the token endpoint of credential crm refused: HTTP 400 (invalid_grant)"
    );
}

// ---- a mock token endpoint --------------------------------------------------------------------

const IDP_SECRET: &[u8] = b"mock-idp-signing-secret-0123456789";

#[derive(Default)]
struct Mock {
    calls: AtomicUsize,
    forms: Mutex<Vec<HashMap<String, String>>>,
    authorizations: Mutex<Vec<Option<String>>>,
    /// Seconds the issued tokens live.
    expires_in: Mutex<u64>,
    /// Answer with this status and body instead of a token.
    fail: Mutex<Option<(StatusCode, Value)>>,
    /// Wait this long before answering.
    delay: Mutex<Duration>,
}

/// The payload of a JWT, without verifying it (the mock plays an IdP that trusts its callers).
fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap_or_default();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap_or_default()).unwrap_or(Value::Null)
}

async fn token_endpoint(
    State(mock): State<Arc<Mock>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let n = mock.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    mock.forms.lock().unwrap().push(form.clone());
    mock.authorizations.lock().unwrap().push(
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    );
    let delay = *mock.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some((status, body)) = mock.fail.lock().unwrap().clone() {
        return (status, axum::Json(body)).into_response();
    }
    let expires_in = *mock.expires_in.lock().unwrap();
    let access_token = if form.get("grant_type").map(String::as_str) == Some(TOKEN_EXCHANGE_GRANT) {
        // RFC 8693: the new token is the subject's, with the actor named in `act`.
        let subject = payload(form.get("subject_token").map_or("", String::as_str));
        let actor = payload(form.get("actor_token").map_or("", String::as_str));
        let mut claims = json!({
            "iss": "https://idp.example",
            "sub": subject["sub"],
            "aud": form.get("audience"),
            "exp": 4_000_000_000u64,
            "n": n,
        });
        if !actor.is_null() {
            claims["act"] = json!({"sub": actor["sub"]});
        }
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(IDP_SECRET),
        )
        .unwrap()
    } else {
        format!("cc-token-{n}")
    };
    axum::Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    }))
    .into_response()
}

async fn mock_idp() -> (Arc<Mock>, SocketAddr) {
    let mock = Arc::new(Mock::default());
    *mock.expires_in.lock().unwrap() = 3600;
    let app = Router::new()
        .route("/token", post(token_endpoint))
        .with_state(Arc::clone(&mock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (mock, addr)
}

fn client_credentials(addr: SocketAddr, secret: &str) -> Credential {
    serde_json::from_value(json!({
        "kind": "oauth2_client_credentials",
        "token_url": format!("http://{addr}/token"),
        "client_id": "tenant client",
        "client_secret": secret,
        "scopes": ["crm.read", "crm.write"],
        "audience": "crm-api"
    }))
    .unwrap()
}

fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

#[tokio::test]
async fn client_credentials_tokens_are_cached_until_shortly_before_expiry() {
    let db = sqlite().await;
    let (mock, addr) = mock_idp().await;
    let vault = Vault::new(db.store.clone(), MasterKey::generate()).unwrap();
    vault
        .put(
            &scope("alpha"),
            "crm",
            None,
            &client_credentials(addr, "alpha&secret"),
        )
        .await
        .unwrap();

    assert_eq!(
        resolved(&vault, "alpha", "crm").await.as_deref(),
        Some("cc-token-1")
    );
    assert_eq!(
        resolved(&vault, "alpha", "crm").await.as_deref(),
        Some("cc-token-1")
    );
    assert_eq!(mock.calls.load(Ordering::SeqCst), 1);
    // The request: client credentials grant, scopes, audience, client_secret_basic.
    let form = mock.forms.lock().unwrap()[0].clone();
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("client_credentials")
    );
    assert_eq!(
        form.get("scope").map(String::as_str),
        Some("crm.read crm.write")
    );
    assert_eq!(form.get("audience").map(String::as_str), Some("crm-api"));
    assert!(!form.contains_key("client_secret"));
    assert_eq!(
        mock.authorizations.lock().unwrap()[0].as_deref(),
        Some(basic("tenant client", "alpha&secret").as_str())
    );

    // Concurrent callers share one fetch.
    vault
        .delete(&scope("alpha"), "crm", None, None)
        .await
        .unwrap();
    vault
        .put(
            &scope("alpha"),
            "crm",
            None,
            &client_credentials(addr, "rotated"),
        )
        .await
        .unwrap();
    let before = mock.calls.load(Ordering::SeqCst);
    let all = futures_join(&vault, 8).await;
    assert!(all.iter().all(|t| t == &all[0]), "{all:?}");
    assert_eq!(mock.calls.load(Ordering::SeqCst), before + 1);

    // Another tenant's credential is another token.
    vault
        .put(
            &scope("bravo"),
            "crm",
            None,
            &client_credentials(addr, "bravo-secret"),
        )
        .await
        .unwrap();
    let bravo = resolved(&vault, "bravo", "crm").await.unwrap();
    assert_ne!(Some(bravo), resolved(&vault, "alpha", "crm").await);
    assert_eq!(
        mock.authorizations
            .lock()
            .unwrap()
            .last()
            .cloned()
            .flatten(),
        Some(basic("tenant client", "bravo-secret"))
    );

    // A short-lived token is fetched again once it is about to expire.
    *mock.expires_in.lock().unwrap() = 1;
    vault
        .put(
            &scope("alpha"),
            "short",
            None,
            &client_credentials(addr, "s"),
        )
        .await
        .unwrap();
    let first = resolved(&vault, "alpha", "short").await;
    assert_eq!(first, resolved(&vault, "alpha", "short").await);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_ne!(first, resolved(&vault, "alpha", "short").await);
}

async fn futures_join(vault: &Vault, n: usize) -> Vec<String> {
    let mut handles = Vec::new();
    for _ in 0..n {
        let vault = vault.clone();
        handles.push(tokio::spawn(async move {
            resolved(&vault, "alpha", "crm").await.unwrap()
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

fn jwt(claims: Value) -> SecretString {
    SecretString::new(
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"some-other-issuer-key-0123456789"),
        )
        .unwrap(),
    )
}

fn exchange(addr: SocketAddr) -> Credential {
    serde_json::from_value(json!({
        "kind": "token_exchange",
        "token_url": format!("http://{addr}/token"),
        "client_id": "tenantry-gateway",
        "client_secret": "gw-secret",
        "audience": "crm-api",
        "client_auth": "post"
    }))
    .unwrap()
}

#[tokio::test]
async fn token_exchange_sends_subject_and_actor_and_returns_an_act_token() {
    let db = sqlite().await;
    let (mock, addr) = mock_idp().await;
    let vault = Vault::new(db.store.clone(), MasterKey::generate()).unwrap();
    vault
        .put(&scope("alpha"), "crm", None, &exchange(addr))
        .await
        .unwrap();
    let user_token = jwt(json!({"sub": "alice", "iss": "https://login.alpha.example"}));
    let agent_token = jwt(json!({"sub": "agent:support-bot", "iss": "tenantry:actor"}));
    let tokens = CallerTokens::new(Some(user_token.clone()), Some(agent_token.clone()));

    let got = vault
        .resolve(&scope("alpha"), "crm", None, &tokens)
        .await
        .unwrap()
        .unwrap();
    // The request carried both tokens, their types, the audience and the client (post).
    let form = mock.forms.lock().unwrap()[0].clone();
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    assert_eq!(field("grant_type"), TOKEN_EXCHANGE_GRANT);
    assert_eq!(field("subject_token"), user_token.expose());
    assert_eq!(field("subject_token_type"), TOKEN_TYPE_JWT);
    assert_eq!(field("actor_token"), agent_token.expose());
    assert_eq!(field("actor_token_type"), TOKEN_TYPE_JWT);
    assert_eq!(field("audience"), "crm-api");
    assert_eq!(field("client_id"), "tenantry-gateway");
    assert_eq!(field("client_secret"), "gw-secret");
    assert_eq!(mock.authorizations.lock().unwrap()[0], None);

    // The upstream receives a token for the user whose act claim names the agent.
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&["crm-api"]);
    let claims = jsonwebtoken::decode::<Value>(
        got.expose(),
        &DecodingKey::from_secret(IDP_SECRET),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["act"]["sub"], "agent:support-bot");

    // Cached per caller: the same tokens again make no request, another user's do.
    let again = vault
        .resolve(&scope("alpha"), "crm", None, &tokens)
        .await
        .unwrap();
    assert_eq!(again.as_ref().map(SecretString::expose), Some(got.expose()));
    assert_eq!(mock.calls.load(Ordering::SeqCst), 1);
    let bob = CallerTokens::new(Some(jwt(json!({"sub": "bob"}))), Some(agent_token.clone()));
    let bobs = vault
        .resolve(&scope("alpha"), "crm", None, &bob)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mock.calls.load(Ordering::SeqCst), 2);
    let bob_claims = payload(bobs.expose());
    assert_eq!(bob_claims["sub"], "bob");

    // Without a user token there is nothing to exchange.
    let err = vault
        .resolve(&scope("alpha"), "crm", None, &CallerTokens::none())
        .await
        .unwrap_err();
    assert!(
        matches!(err, VaultError::SubjectTokenRequired { .. }),
        "{err}"
    );
    assert_eq!(err.code(), tenantry_core::ErrorCode::Forbidden);
}

#[tokio::test]
async fn token_endpoint_refusals_and_outages_are_classified_without_secrets() {
    let db = sqlite().await;
    let (mock, addr) = mock_idp().await;
    let vault = Vault::with_settings(
        db.store.clone(),
        MasterKey::generate(),
        Duration::from_millis(300),
        Duration::from_secs(5),
    )
    .unwrap();
    vault
        .put(&scope("alpha"), "crm", None, &exchange(addr))
        .await
        .unwrap();
    let tokens = CallerTokens::new(Some(jwt(json!({"sub": "alice"}))), None);

    // A refusal: 400 with an OAuth2 error code (and free text that is not repeated).
    *mock.fail.lock().unwrap() = Some((
        StatusCode::BAD_REQUEST,
        json!({"error": "invalid_grant", "error_description": "token eyJ... was revoked"}),
    ));
    let err = vault
        .resolve(&scope("alpha"), "crm", None, &tokens)
        .await
        .unwrap_err();
    assert!(matches!(
        &err,
        VaultError::TokenRefused { status: 400, error: Some(e), .. } if e == "invalid_grant"
    ));
    assert!(!err.to_string().contains("eyJ"), "{err}");
    assert!(!err.to_string().contains("gw-secret"), "{err}");

    // A failing endpoint, a slow one and a missing one are unavailable (retryable), in time.
    *mock.fail.lock().unwrap() = Some((StatusCode::BAD_GATEWAY, json!({})));
    let err = vault
        .resolve(&scope("alpha"), "crm", None, &tokens)
        .await
        .unwrap_err();
    assert!(
        matches!(err, VaultError::TokenEndpointUnavailable { .. }),
        "{err}"
    );
    assert_eq!(err.code(), tenantry_core::ErrorCode::Unavailable);

    *mock.fail.lock().unwrap() = None;
    *mock.delay.lock().unwrap() = Duration::from_secs(5);
    let started = std::time::Instant::now();
    let err = vault
        .resolve(&scope("alpha"), "crm", None, &tokens)
        .await
        .unwrap_err();
    assert!(
        matches!(err, VaultError::TokenEndpointUnavailable { .. }),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    vault
        .put(&scope("alpha"), "gone", None, &exchange(closed))
        .await
        .unwrap();
    let err = vault
        .resolve(&scope("alpha"), "gone", None, &tokens)
        .await
        .unwrap_err();
    assert!(
        matches!(err, VaultError::TokenEndpointUnavailable { .. }),
        "{err}"
    );
}
