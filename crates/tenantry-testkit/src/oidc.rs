//! A mock OIDC issuer for tests: a tiny HTTP server on `127.0.0.1:0` serving a discovery
//! document and a JWKS, plus helpers that sign test tokens with its keys (ES256 keys generated
//! per issuer, and an RS256 key from `fixtures/rsa-2048.pem`).
//!
//! It can rotate keys, go down (the JWKS answers 500), slow down, count JWKS fetches (to prove
//! caching and backoff), and sign deliberately bad tokens (`alg: none`, unpublished keys, a
//! header that lies about the algorithm). It is for tests only: its keys are not secret.
//!
//! This file depends on nothing from Tenantry, so the identity crate's tests include it by path
//! without a dependency cycle through the testkit.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, EncodingKey};
use p256::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};

/// The `aud` of tokens made with [`MockIssuer::claims`].
pub const TEST_AUDIENCE: &str = "tenantry-test";
/// The kid of the RS256 fixture key.
pub const RSA_KID: &str = "rsa-fixture";

const RSA_FIXTURE_PEM: &str = include_str!("../fixtures/rsa-2048.pem");

/// Which key signs a token made with [`MockIssuer::sign_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MockKey {
    /// The current ES256 key (published).
    #[default]
    Current,
    /// The RS256 fixture key (published).
    Rsa,
    /// A fresh ES256 key that is never published.
    Unpublished,
    /// HMAC-SHA256 with this secret (e.g. bytes of a published public key, for alg confusion).
    Hmac(Vec<u8>),
}

/// What the header's `kid` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Kid {
    /// The signing key's own kid.
    #[default]
    Key,
    /// No kid in the header.
    Omit,
    /// This kid, whatever the key.
    Set(String),
}

/// Options for [`MockIssuer::sign_with`].
#[derive(Debug, Clone, Default)]
pub struct SignOptions {
    pub key: MockKey,
    /// The header's `alg`; defaults to the key's real algorithm. Set it to lie.
    pub alg: Option<String>,
    pub kid: Kid,
}

struct EcKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl EcKey {
    fn generate(kid: String) -> Self {
        let signing = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let der = signing
            .to_pkcs8_der()
            .expect("a fresh P-256 key encodes as PKCS#8");
        let point = signing.verifying_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            panic!("an uncompressed P-256 point has coordinates");
        };
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
            "kid": kid,
            "alg": "ES256",
            "use": "sig",
        });
        Self {
            kid,
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk,
        }
    }
}

struct RsaKey {
    encoding: EncodingKey,
    jwk: Value,
}

impl RsaKey {
    fn fixture() -> Self {
        let encoding = EncodingKey::from_rsa_pem(RSA_FIXTURE_PEM.as_bytes())
            .expect("fixtures/rsa-2048.pem is an RSA private key");
        let public = Jwk::from_encoding_key(&encoding, Algorithm::RS256)
            .expect("the RSA fixture yields a public JWK");
        let AlgorithmParameters::RSA(rsa) = &public.algorithm else {
            panic!("the RSA fixture yields an RSA JWK");
        };
        let jwk = json!({
            "kty": "RSA",
            "n": rsa.n,
            "e": rsa.e,
            "kid": RSA_KID,
            "alg": "RS256",
            "use": "sig",
        });
        Self { encoding, jwk }
    }
}

struct Keys {
    current: Arc<EcKey>,
    published: Vec<Arc<EcKey>>,
    next_serial: u32,
}

struct Shared {
    issuer: String,
    jwks_url: String,
    keys: Mutex<Keys>,
    rsa: RsaKey,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    down: AtomicBool,
    delay_ms: AtomicU64,
}

impl Shared {
    fn keys(&self) -> MutexGuard<'_, Keys> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn jwks(&self) -> Value {
        let keys = self.keys();
        let mut list: Vec<Value> = keys.published.iter().map(|k| k.jwk.clone()).collect();
        list.push(self.rsa.jwk.clone());
        json!({ "keys": list })
    }
}

/// A running mock issuer. Dropping it stops the server.
pub struct MockIssuer {
    base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for MockIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockIssuer")
            .field("issuer", &self.shared.issuer)
            .finish()
    }
}

impl Drop for MockIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Json<Value> {
    shared.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    Json(json!({
        "issuer": shared.issuer,
        "jwks_uri": shared.jwks_url,
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
    }))
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if shared.down.load(Ordering::SeqCst) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "the mock issuer is down"})),
        )
            .into_response();
    }
    Json(shared.jwks()).into_response()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl MockIssuer {
    /// Starts an issuer whose `iss` is its base URL.
    pub async fn start() -> Self {
        Self::start_at("").await
    }

    /// Starts an issuer whose `iss` is its base URL plus `path` (e.g. `/realms/acme`, like
    /// Keycloak); discovery and JWKS are served under that path.
    pub async fn start_at(path: &str) -> Self {
        let path = path.trim_end_matches('/');
        assert!(
            path.is_empty() || path.starts_with('/'),
            "the issuer path must start with '/'"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the mock issuer to an ephemeral port");
        let addr = listener
            .local_addr()
            .expect("the mock issuer's listener has an address");
        let base_url = format!("http://{addr}");
        let issuer = format!("{base_url}{path}");
        let first = Arc::new(EcKey::generate("es256-1".into()));
        let shared = Arc::new(Shared {
            jwks_url: format!("{issuer}/jwks.json"),
            issuer,
            keys: Mutex::new(Keys {
                current: first.clone(),
                published: vec![first],
                next_serial: 2,
            }),
            rsa: RsaKey::fixture(),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
        });
        let app = Router::new()
            .route(
                &format!("{path}/.well-known/openid-configuration"),
                get(discovery),
            )
            .route(&format!("{path}/jwks.json"), get(jwks))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base_url,
            shared,
            task,
        }
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// The `iss` of this issuer's tokens.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.shared.issuer)
    }

    pub fn jwks_url(&self) -> &str {
        &self.shared.jwks_url
    }

    /// The JWKS as currently published.
    pub fn jwks(&self) -> Value {
        self.shared.jwks()
    }

    /// Standard claims for a tenant user: iss, aud (`tenantry-test`), sub, tenant_id, roles
    /// (empty), iat, nbf, and exp five minutes from now. Adjust the `Value` for special cases.
    pub fn claims(&self, tenant: &str, user: &str) -> Value {
        let now = now();
        json!({
            "iss": self.shared.issuer,
            "aud": TEST_AUDIENCE,
            "sub": user,
            "tenant_id": tenant,
            "roles": [],
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        })
    }

    /// Signs with the current ES256 key.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(claims, SignOptions::default())
    }

    /// Signs with the RS256 fixture key.
    pub fn sign_rs256(&self, claims: &Value) -> String {
        self.sign_with(
            claims,
            SignOptions {
                key: MockKey::Rsa,
                ..SignOptions::default()
            },
        )
    }

    /// Signs with an ES256 key the issuer never published.
    pub fn sign_with_unknown_key(&self, claims: &Value) -> String {
        self.sign_with(
            claims,
            SignOptions {
                key: MockKey::Unpublished,
                ..SignOptions::default()
            },
        )
    }

    /// An unsigned token: header `{"alg":"none"}` and an empty signature.
    pub fn sign_unsigned_none(&self, claims: &Value) -> String {
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    /// Signs with any key, header algorithm and kid.
    pub fn sign_with(&self, claims: &Value, options: SignOptions) -> String {
        let unpublished;
        let hmac;
        let current = self.shared.keys().current.clone();
        let (key, real_alg, own_kid): (&EncodingKey, Algorithm, Option<String>) = match &options.key
        {
            MockKey::Current => (
                &current.encoding,
                Algorithm::ES256,
                Some(current.kid.clone()),
            ),
            MockKey::Rsa => (
                &self.shared.rsa.encoding,
                Algorithm::RS256,
                Some(RSA_KID.to_string()),
            ),
            MockKey::Unpublished => {
                let serial = {
                    let mut keys = self.shared.keys();
                    keys.next_serial += 1;
                    keys.next_serial
                };
                unpublished = EcKey::generate(format!("unpublished-{serial}"));
                (
                    &unpublished.encoding,
                    Algorithm::ES256,
                    Some(unpublished.kid.clone()),
                )
            }
            MockKey::Hmac(secret) => {
                hmac = EncodingKey::from_secret(secret);
                (&hmac, Algorithm::HS256, None)
            }
        };
        let alg = options
            .alg
            .clone()
            .unwrap_or_else(|| format!("{real_alg:?}"));
        let kid = match options.kid {
            Kid::Key => own_kid,
            Kid::Omit => None,
            Kid::Set(kid) => Some(kid),
        };
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = Value::String(kid);
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, real_alg)
            .expect("the mock issuer's keys sign");
        format!("{signing_input}.{signature}")
    }

    /// The kid of the current ES256 key.
    pub fn current_kid(&self) -> String {
        self.shared.keys().current.kid.clone()
    }

    /// A new ES256 key becomes current and is published; the old one is withdrawn.
    /// Returns the new kid.
    pub fn rotate(&self) -> String {
        self.rotate_inner(false)
    }

    /// Like [`MockIssuer::rotate`], but the old key stays published.
    pub fn rotate_keep_old(&self) -> String {
        self.rotate_inner(true)
    }

    fn rotate_inner(&self, keep_old: bool) -> String {
        let mut keys = self.shared.keys();
        let kid = format!("es256-{}", keys.next_serial);
        keys.next_serial += 1;
        let key = Arc::new(EcKey::generate(kid.clone()));
        if !keep_old {
            keys.published.clear();
        }
        keys.published.push(key.clone());
        keys.current = key;
        kid
    }

    /// How many times the JWKS was requested (failed requests included).
    pub fn fetch_count(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many times the discovery document was requested.
    pub fn discovery_count(&self) -> usize {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }

    /// While down, the JWKS answers 500 (the discovery document stays up).
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Delays every JWKS response, to make concurrent fetches overlap.
    pub fn set_jwks_delay(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}
