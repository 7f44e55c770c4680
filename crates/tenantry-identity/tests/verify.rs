//! End-to-end verification against a mock OIDC issuer over HTTP and the development issuer:
//! every refusal reason, key discovery, rotation, and the refresh/backoff discipline of the
//! JWKS cache.

#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../../tenantry-testkit/src/oidc.rs"]
mod oidc;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oidc::{Kid, MockIssuer, MockKey, RSA_KID, SignOptions, TEST_AUDIENCE};
use serde_json::{Value, json};
use tenantry_core::{ErrorCode, TenantId, UserId};
use tenantry_identity::{AuthError, DevIssuer, IssuerConfig, Verifier};

fn discovery_config(mock: &MockIssuer) -> IssuerConfig {
    IssuerConfig {
        name: "mock".into(),
        issuer: mock.issuer().into(),
        audiences: vec![TEST_AUDIENCE.into()],
        discovery_url: Some(mock.discovery_url()),
        ..IssuerConfig::default()
    }
}

async fn verifier_for(mock: &MockIssuer) -> Verifier {
    Verifier::new(vec![discovery_config(mock)], None).unwrap()
}

fn now() -> i64 {
    tenantry_core::unix_now()
}

async fn refused(verifier: &Verifier, token: &str) -> AuthError {
    let err = verifier.verify(token).await.unwrap_err();
    let message = err.to_string();
    let signature = token.rsplit('.').next().unwrap_or_default();
    assert!(
        signature.len() < 16 || !message.contains(signature),
        "error messages never echo the token"
    );
    err
}

#[tokio::test]
async fn discovery_issuer_verifies_es256_and_rs256() {
    let mock = MockIssuer::start().await;
    let verifier = verifier_for(&mock).await;

    let mut claims = mock.claims("acme", "alice@example.com");
    claims["roles"] = json!(["admin", "viewer"]);
    let verified = verifier.verify(&mock.sign(&claims)).await.unwrap();
    assert_eq!(verified.issuer_name, "mock");
    assert_eq!(verified.tenant, TenantId::new("acme").unwrap());
    assert_eq!(verified.user, UserId::new("alice@example.com").unwrap());
    assert_eq!(verified.roles, vec!["admin", "viewer"]);
    assert_eq!(verified.expires_at, claims["exp"].as_i64().unwrap());

    let verified = verifier.verify(&mock.sign_rs256(&claims)).await.unwrap();
    assert_eq!(verified.user.as_str(), "alice@example.com");

    assert_eq!(mock.discovery_count(), 1);
    assert_eq!(
        mock.fetch_count(),
        1,
        "keys are cached after the first fetch"
    );
}

#[tokio::test]
async fn issuer_under_a_path_and_direct_jwks_url() {
    let mock = MockIssuer::start_at("/realms/acme").await;
    assert!(mock.issuer().ends_with("/realms/acme"));
    let verifier = verifier_for(&mock).await;
    let token = mock.sign(&mock.claims("acme", "bob"));
    assert!(verifier.verify(&token).await.is_ok());

    let direct = Verifier::new(
        vec![IssuerConfig {
            discovery_url: None,
            jwks_url: Some(mock.jwks_url().into()),
            ..discovery_config(&mock)
        }],
        None,
    )
    .unwrap();
    assert!(direct.verify(&token).await.is_ok());
    assert_eq!(mock.discovery_count(), 1, "a jwks_url skips discovery");
}

#[tokio::test]
async fn inline_jwks_needs_no_http() {
    let mock = MockIssuer::start().await;
    let verifier = Verifier::new(
        vec![IssuerConfig {
            discovery_url: None,
            jwks: Some(mock.jwks()),
            ..discovery_config(&mock)
        }],
        None,
    )
    .unwrap();
    let token = mock.sign(&mock.claims("acme", "bob"));
    assert!(verifier.verify(&token).await.is_ok());
    assert_eq!(mock.fetch_count(), 0);
}

#[tokio::test]
async fn tampered_tokens_are_refused() {
    let mock = MockIssuer::start().await;
    let verifier = verifier_for(&mock).await;
    let token = mock.sign(&mock.claims("acme", "alice"));
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = mock.claims("globex", "alice");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged_claims.to_string()),
        parts[2]
    );
    let err = refused(&verifier, &forged).await;
    assert_eq!(err, AuthError::BadSignature);
    assert_eq!(err.reason(), "bad_signature");
    assert_eq!(err.code(), ErrorCode::InvalidToken);

    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[10] ^= 1;
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert_eq!(refused(&verifier, &flipped).await, AuthError::BadSignature);

    for garbage in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!.??.xx",
        "e30.e30.",
        "W10.W10.c2ln",
    ] {
        assert_eq!(
            refused(&verifier, garbage).await.reason(),
            "malformed",
            "{garbage:?}"
        );
    }
}

#[tokio::test]
async fn unsigned_and_confused_algorithms_are_refused() {
    let mock = MockIssuer::start().await;
    let verifier = verifier_for(&mock).await;
    let claims = mock.claims("acme", "alice");

    let err = refused(&verifier, &mock.sign_unsigned_none(&claims)).await;
    assert_eq!(err, AuthError::AlgNone);
    assert_eq!(err.reason(), "alg_none");

    // The classic attack: HMAC-sign with the issuer's published RSA public key as the secret.
    let jwks = mock.jwks();
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == RSA_KID)
        .unwrap();
    let n = URL_SAFE_NO_PAD.decode(rsa["n"].as_str().unwrap()).unwrap();
    let confused = mock.sign_with(
        &claims,
        SignOptions {
            key: MockKey::Hmac(n),
            kid: Kid::Set(RSA_KID.into()),
            alg: None,
        },
    );
    let err = refused(&verifier, &confused).await;
    assert_eq!(err.reason(), "algorithm_not_allowed");
    assert!(err.to_string().contains("HS256"));

    // An RSA key named by a token that claims ES256: the key's type decides, not the header.
    let mismatched = mock.sign_with(
        &claims,
        SignOptions {
            key: MockKey::Rsa,
            alg: Some("ES256".into()),
            kid: Kid::Key,
        },
    );
    assert_eq!(
        refused(&verifier, &mismatched).await.reason(),
        "key_algorithm_mismatch"
    );

    // An algorithm the issuer does not allow, even with a matching key.
    let strict = Verifier::new(
        vec![IssuerConfig {
            algorithms: vec!["ES256".into()],
            ..discovery_config(&mock)
        }],
        None,
    )
    .unwrap();
    assert_eq!(
        refused(&strict, &mock.sign_rs256(&claims)).await.reason(),
        "algorithm_not_allowed"
    );
}

#[tokio::test]
async fn time_audience_and_issuer_are_checked() {
    let mock = MockIssuer::start().await;
    let verifier = verifier_for(&mock).await;
    let base = mock.claims("acme", "alice");

    let mut expired = base.clone();
    expired["exp"] = json!(now() - 120);
    let err = refused(&verifier, &mock.sign(&expired)).await;
    assert_eq!(err, AuthError::Expired);
    assert_eq!(err.reason(), "expired");

    let mut within_leeway = base.clone();
    within_leeway["exp"] = json!(now() - 5);
    assert!(verifier.verify(&mock.sign(&within_leeway)).await.is_ok());

    let mut early = base.clone();
    early["nbf"] = json!(now() + 600);
    assert_eq!(
        refused(&verifier, &mock.sign(&early)).await,
        AuthError::NotYetValid
    );

    let mut no_exp = base.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        refused(&verifier, &mock.sign(&no_exp)).await.reason(),
        "missing_claim"
    );

    let mut wrong_aud = base.clone();
    wrong_aud["aud"] = json!("someone-else");
    let err = refused(&verifier, &mock.sign(&wrong_aud)).await;
    assert_eq!(err.reason(), "wrong_audience");

    let mut aud_list = base.clone();
    aud_list["aud"] = json!(["someone-else", TEST_AUDIENCE]);
    assert!(verifier.verify(&mock.sign(&aud_list)).await.is_ok());

    let mut wrong_iss = base.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    assert_eq!(
        refused(&verifier, &mock.sign(&wrong_iss)).await,
        AuthError::UnknownIssuer
    );

    // Another real issuer's token is not this issuer's token.
    let other = MockIssuer::start().await;
    assert_eq!(
        refused(&verifier, &other.sign(&other.claims("acme", "alice"))).await,
        AuthError::UnknownIssuer
    );
}

#[tokio::test]
async fn claim_mapping_and_invalid_identities() {
    let mock = MockIssuer::start().await;
    let mut config = discovery_config(&mock);
    config.claims.tenant = "custom:tenant_id".into();
    config.claims.roles = "scope".into();
    let verifier = Verifier::new(vec![config], None).unwrap();

    let mut claims = mock.claims("ignored", "u-1");
    claims["custom:tenant_id"] = json!("globex");
    claims["scope"] = json!("agents:invoke  tools:call");
    let verified = verifier.verify(&mock.sign(&claims)).await.unwrap();
    assert_eq!(verified.tenant.as_str(), "globex");
    assert_eq!(verified.roles, vec!["agents:invoke", "tools:call"]);

    claims["custom:tenant_id"] = json!("../etc");
    let err = refused(&verifier, &mock.sign(&claims)).await;
    assert_eq!(err.reason(), "invalid_claim");
    assert!(err.to_string().contains("custom:tenant_id"));

    claims.as_object_mut().unwrap().remove("custom:tenant_id");
    assert_eq!(
        refused(&verifier, &mock.sign(&claims)).await,
        AuthError::MissingClaim {
            claim: "custom:tenant_id".into()
        }
    );

    let mut bad_roles = mock.claims("acme", "u-1");
    bad_roles["custom:tenant_id"] = json!("acme");
    bad_roles["scope"] = json!({"not": "roles"});
    assert_eq!(
        refused(&verifier, &mock.sign(&bad_roles)).await.reason(),
        "invalid_claim"
    );
}

#[tokio::test]
async fn unknown_keys_are_refused_after_one_refresh() {
    let mock = MockIssuer::start().await;
    let verifier = verifier_for(&mock)
        .await
        .with_min_refresh_interval(Duration::ZERO);
    let claims = mock.claims("acme", "alice");
    assert!(verifier.verify(&mock.sign(&claims)).await.is_ok());
    assert_eq!(mock.fetch_count(), 1);

    let err = refused(&verifier, &mock.sign_with_unknown_key(&claims)).await;
    assert_eq!(err.reason(), "unknown_key");
    assert_eq!(mock.fetch_count(), 2, "an unknown kid triggers one refresh");
}

#[tokio::test]
async fn rotated_keys_are_picked_up_without_a_restart() {
    let mock = MockIssuer::start().await;
    let verifier = verifier_for(&mock)
        .await
        .with_min_refresh_interval(Duration::ZERO);
    let claims = mock.claims("acme", "alice");
    let old_token = mock.sign(&claims);
    assert!(verifier.verify(&old_token).await.is_ok());

    let new_kid = mock.rotate();
    assert_eq!(mock.current_kid(), new_kid);
    let new_token = mock.sign(&claims);
    assert!(verifier.verify(&new_token).await.is_ok());
    assert_eq!(mock.fetch_count(), 2);

    // The old key was withdrawn: its tokens stop working once the cache notices.
    assert_eq!(refused(&verifier, &old_token).await.reason(), "unknown_key");

    // Rotation that keeps the old key published: both verify.
    let kept = mock.sign(&claims);
    mock.rotate_keep_old();
    assert!(verifier.verify(&mock.sign(&claims)).await.is_ok());
    assert!(verifier.verify(&kept).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_floods_refresh_at_most_once_per_interval() {
    let mock = MockIssuer::start().await;
    let interval = Duration::from_millis(400);
    let verifier = verifier_for(&mock)
        .await
        .with_min_refresh_interval(interval);
    let claims = mock.claims("acme", "alice");
    assert!(verifier.verify(&mock.sign(&claims)).await.is_ok());
    assert_eq!(mock.fetch_count(), 1);

    // Within the interval of the first fetch, unknown kids cause no fetch at all.
    for _ in 0..20 {
        let err = refused(&verifier, &mock.sign_with_unknown_key(&claims)).await;
        assert_eq!(err.reason(), "unknown_key");
    }
    assert_eq!(mock.fetch_count(), 1);

    // After the interval, a concurrent flood causes exactly one (single-flight) fetch.
    tokio::time::sleep(interval + Duration::from_millis(50)).await;
    mock.set_jwks_delay(Duration::from_millis(150));
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let verifier = verifier.clone();
        let token = mock.sign_with_unknown_key(&claims);
        flood.spawn(async move { verifier.verify(&token).await });
    }
    while let Some(result) = flood.join_next().await {
        assert_eq!(result.unwrap().unwrap_err().reason(), "unknown_key");
    }
    assert_eq!(mock.fetch_count(), 2);

    // Known keys keep verifying from the cache throughout.
    assert!(verifier.verify(&mock.sign(&claims)).await.is_ok());
    assert_eq!(mock.fetch_count(), 2);
}

#[tokio::test]
async fn issuer_down_before_the_first_fetch_fails_closed_then_recovers() {
    let mock = MockIssuer::start().await;
    mock.set_down(true);
    let interval = Duration::from_millis(300);
    let verifier = verifier_for(&mock)
        .await
        .with_min_refresh_interval(interval);
    let token = mock.sign(&mock.claims("acme", "alice"));

    let err = refused(&verifier, &token).await;
    assert_eq!(err.reason(), "keys_unavailable");
    assert_eq!(err.code(), ErrorCode::Unavailable);
    assert_eq!(err.code().http_status(), 503);
    assert!(err.to_string().contains("500"), "{err}");
    assert_eq!(mock.fetch_count(), 1);

    // Backing off: no new fetch right away, still refused.
    assert_eq!(
        refused(&verifier, &token).await.reason(),
        "keys_unavailable"
    );
    assert_eq!(mock.fetch_count(), 1);

    mock.set_down(false);
    tokio::time::sleep(interval + Duration::from_millis(50)).await;
    assert!(verifier.verify(&token).await.is_ok());
    assert_eq!(mock.fetch_count(), 2);
}

#[tokio::test]
async fn cached_keys_survive_an_outage() {
    let mock = MockIssuer::start().await;
    let verifier = verifier_for(&mock)
        .await
        .with_jwks_ttl(Duration::ZERO)
        .with_min_refresh_interval(Duration::from_secs(60));
    let token = mock.sign(&mock.claims("acme", "alice"));
    assert!(verifier.verify(&token).await.is_ok());
    assert_eq!(mock.fetch_count(), 1);

    mock.set_down(true);
    assert!(verifier.verify(&token).await.is_ok(), "stale keys are kept");
    assert_eq!(mock.fetch_count(), 2);
    assert!(verifier.verify(&token).await.is_ok());
    assert_eq!(mock.fetch_count(), 2, "backing off after the failure");
}

#[tokio::test]
async fn unreachable_issuer_is_unavailable() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let verifier = Verifier::new(
        vec![IssuerConfig {
            name: "gone".into(),
            issuer: "https://gone.example".into(),
            audiences: vec!["api".into()],
            jwks_url: Some(format!("http://127.0.0.1:{port}/jwks.json")),
            ..IssuerConfig::default()
        }],
        None,
    )
    .unwrap();
    let mock = MockIssuer::start().await;
    let mut claims = mock.claims("acme", "alice");
    claims["iss"] = json!("https://gone.example");
    claims["aud"] = json!("api");
    let err = refused(&verifier, &mock.sign(&claims)).await;
    assert_eq!(err.code(), ErrorCode::Unavailable);
}

#[tokio::test]
async fn shared_secret_issuer_uses_hs256_only() {
    let mock = MockIssuer::start().await;
    let secret = "0123456789abcdef0123456789abcdef-test-secret";
    let verifier = Verifier::new(
        vec![IssuerConfig {
            name: "legacy".into(),
            issuer: "https://legacy.example".into(),
            audiences: vec!["api".into()],
            shared_secret: Some(secret.into()),
            ..IssuerConfig::default()
        }],
        None,
    )
    .unwrap();
    let mut claims: Value = mock.claims("acme", "alice");
    claims["iss"] = json!("https://legacy.example");
    claims["aud"] = json!("api");
    let hs = |key: &[u8]| {
        mock.sign_with(
            &claims,
            SignOptions {
                key: MockKey::Hmac(key.to_vec()),
                ..SignOptions::default()
            },
        )
    };
    let verified = verifier.verify(&hs(secret.as_bytes())).await.unwrap();
    assert_eq!(verified.issuer_name, "legacy");
    assert_eq!(
        refused(&verifier, &hs(b"a-different-secret-of-enough-length!!")).await,
        AuthError::BadSignature
    );
    assert_eq!(
        refused(&verifier, &mock.sign(&claims)).await.reason(),
        "algorithm_not_allowed"
    );
}

#[tokio::test]
async fn dev_issuer_round_trip_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let old_key = dir.path().join("dev-1.pem");
    let new_key = dir.path().join("dev-2.pem");
    DevIssuer::generate_key(&old_key).unwrap();
    DevIssuer::generate_key(&new_key).unwrap();

    let issuer = "http://localhost:7070".to_string();
    let old = DevIssuer::load(
        std::slice::from_ref(&old_key),
        issuer.clone(),
        "tenantry".into(),
    )
    .unwrap();
    let acme = TenantId::new("acme").unwrap();
    let alice = UserId::new("alice").unwrap();
    let old_token = old
        .mint(&acme, &alice, &["admin".into()], Duration::from_secs(60))
        .unwrap();
    assert!(old.mint(&acme, &alice, &[], Duration::ZERO).is_err());

    // The new key signs; the old one is still published, so its tokens stay valid.
    let dev = DevIssuer::load(&[new_key, old_key], issuer, "tenantry".into()).unwrap();
    let verifier = Verifier::new(Vec::new(), Some(dev.clone())).unwrap();
    assert_eq!(verifier.issuer_names(), vec!["dev"]);
    let token = dev
        .mint(&acme, &alice, &[], Duration::from_secs(60))
        .unwrap();
    let verified = verifier.verify(&token).await.unwrap();
    assert_eq!(verified.issuer_name, "dev");
    assert_eq!(verified.tenant, acme);
    assert!(verified.roles.is_empty());
    let verified = verifier.verify(&old_token).await.unwrap();
    assert_eq!(verified.roles, vec!["admin"]);

    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], dev.signing_kid());

    // A token minted by another dev install with the same iss is not ours.
    let other_dir = tempfile::tempdir().unwrap();
    let other_key = other_dir.path().join("k.pem");
    DevIssuer::generate_key(&other_key).unwrap();
    let other = DevIssuer::load(&[other_key], dev.issuer().into(), "tenantry".into()).unwrap();
    let foreign = other
        .mint(&acme, &alice, &[], Duration::from_secs(60))
        .unwrap();
    assert_eq!(refused(&verifier, &foreign).await.reason(), "unknown_key");

    // And a dev token for a different audience is refused.
    let wrong_aud = DevIssuer::load(
        &[dir.path().join("dev-2.pem")],
        dev.issuer().into(),
        "elsewhere".into(),
    )
    .unwrap();
    let token = wrong_aud
        .mint(&acme, &alice, &[], Duration::from_secs(60))
        .unwrap();
    assert_eq!(refused(&verifier, &token).await.reason(), "wrong_audience");
}

#[tokio::test]
async fn verifier_refuses_ambiguous_configuration() {
    let mock = MockIssuer::start().await;
    let twice = Verifier::new(vec![discovery_config(&mock), discovery_config(&mock)], None);
    assert!(twice.unwrap_err().to_string().contains("used twice"));

    let mut renamed = discovery_config(&mock);
    renamed.name = "mock-2".into();
    let same_iss = Verifier::new(vec![discovery_config(&mock), renamed], None);
    assert!(
        same_iss
            .unwrap_err()
            .to_string()
            .contains("configured twice")
    );

    let invalid = Verifier::new(
        vec![IssuerConfig {
            algorithms: vec!["none".into()],
            ..discovery_config(&mock)
        }],
        None,
    );
    let message = invalid.unwrap_err().to_string();
    assert!(
        message.contains("issuers[0] (mock)") && message.contains("none"),
        "{message}"
    );
}

#[tokio::test]
async fn a_token_verified_before_is_refused_once_it_expires() {
    // Tokens that verified are remembered for a while; the memory must not outlive `exp`.
    let mock = MockIssuer::start().await;
    let secret = "0123456789abcdef0123456789abcdef-test-secret";
    let verifier = Verifier::new(
        vec![IssuerConfig {
            name: "strict".into(),
            issuer: "https://strict.example".into(),
            audiences: vec!["api".into()],
            shared_secret: Some(secret.into()),
            leeway_seconds: 0,
            ..IssuerConfig::default()
        }],
        None,
    )
    .unwrap();
    let mut claims: Value = mock.claims("acme", "alice");
    claims["iss"] = json!("https://strict.example");
    claims["aud"] = json!("api");
    let exp = now() + 2;
    claims["exp"] = json!(exp);
    let token = mock.sign_with(
        &claims,
        SignOptions {
            key: MockKey::Hmac(secret.as_bytes().to_vec()),
            ..SignOptions::default()
        },
    );
    assert!(verifier.verify(&token).await.is_ok());
    assert!(verifier.verify(&token).await.is_ok(), "verified again");
    while now() < exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refused(&verifier, &token).await, AuthError::Expired);
}
