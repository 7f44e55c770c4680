//! Actor tokens (the agent's identity in an RFC 8693 token exchange) are signed with a key of
//! their own, an asymmetric one whose public half the platform publishes in its JWKS: a token
//! endpoint verifies them with the JWKS alone, and holding the JWKS gives it no way to make a
//! credential of Tenantry (workload tokens are signed with a secret it never sees).

#![allow(clippy::unwrap_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use tenantry_core::{TenantId, UserId};
use tenantry_testkit::{Response, TestServer};

fn header_of(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

/// An actor token as the tool gateway makes one for an agent's token exchange.
fn actor_token(s: &TestServer) -> String {
    s.server()
        .state
        .tools
        .actor_token(
            &TenantId::new("acme").unwrap(),
            &UserId::new("alice").unwrap(),
            "session-0123456789-0123456789-0123",
            "support-bot",
        )
        .expect("an actor token")
}

async fn jwks(s: &TestServer) -> Vec<Value> {
    let r = s
        .request("GET", "/.well-known/jwks.json", None, &[], None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["keys"].as_array().unwrap().clone()
}

/// Workload-token claims for acme/alice, as the platform would mint them.
fn workload_claims() -> Value {
    let now = tenantry_core::unix_now();
    json!({"iss": "tenantry:workload", "aud": "tenantry", "sub": "alice", "tenant_id": "acme",
           "tuid": "0123456789abcdef0123456789abcdef",
           "sid": "session-0123456789-0123456789-0123", "sbx": "sandbox-1", "rt": "support-bot",
           "iat": now, "exp": now + 600, "jti": "forged"})
}

fn refused_for_its_signature(r: &Response, what: &str) {
    assert_eq!(
        (r.status, r.code()),
        (401, "invalid_token"),
        "{what}: {}",
        r.text
    );
    assert!(
        r.text.contains("signature"),
        "{what} is refused for its signature: {}",
        r.text
    );
}

#[tokio::test]
async fn actor_tokens_verify_against_the_published_jwks() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "standard").await;
    let token = actor_token(&s);
    let header = header_of(&token);
    assert_eq!(header["alg"], "ES256", "{header}");
    let kid = header["kid"].as_str().expect("the header names its key");

    let keys = jwks(&s).await;
    let jwk = keys
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("no key {kid} in the JWKS: {keys:?}"));
    assert_eq!(
        (jwk["kty"].as_str(), jwk["alg"].as_str()),
        (Some("EC"), Some("ES256"))
    );
    assert!(jwk.get("d").is_none(), "the private key is not published");

    // A token endpoint's check: the key by kid from the JWKS, the issuer and audience.
    let key = DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&["tenantry:actor"]);
    validation.set_audience(&["tenantry:actor"]);
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "agent:support-bot");
    assert_eq!(claims["tenant_id"], "acme");
    assert_eq!(claims["on_behalf_of"], "alice");

    // The workload secret does not verify it: it is not what signs it.
    let secret =
        std::fs::read_to_string(&s.server().state.config.identity.workload_key_file).unwrap();
    let secret = URL_SAFE_NO_PAD.decode(secret.trim()).unwrap();
    let mut strict = Validation::new(Algorithm::HS256);
    strict.validate_aud = false;
    assert!(
        jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_secret(&secret), &strict).is_err()
    );

    // An actor token is no credential of the platform.
    let r = s.get("/v1/me", &token).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"), "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn holding_the_jwks_does_not_let_anyone_mint_a_workload_token() {
    let s = TestServer::start().await;
    s.create_tenant("acme", "standard").await;
    let token = actor_token(&s);
    let kid = header_of(&token)["kid"].as_str().unwrap().to_owned();
    let keys = jwks(&s).await;
    let jwk = keys.iter().find(|k| k["kid"] == kid.as_str()).unwrap();
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
    let mut sec1 = vec![4u8];
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    // Whatever a token endpoint holds of the public key, as an HMAC secret (the classic
    // algorithm confusion) and under the actor key's kid.
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("the JWK", jwk.to_string().into_bytes()),
        ("the JWKS", json!({"keys": keys}).to_string().into_bytes()),
        ("the SEC1 point", sec1.clone()),
        ("x and y", [x.clone(), y.clone()].concat()),
        ("x", jwk["x"].as_str().unwrap().as_bytes().to_vec()),
    ];
    for (what, secret) in secrets {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        let forged = jsonwebtoken::encode(
            &header,
            &workload_claims(),
            &EncodingKey::from_secret(&secret),
        )
        .unwrap();
        refused_for_its_signature(&s.get("/v1/me", &forged).await, what);
    }
    // The same claims signed with the platform's workload secret pass the signature check (and
    // are refused only because no such session runs): the forgeries above failed for their key.
    let secret =
        std::fs::read_to_string(&s.server().state.config.identity.workload_key_file).unwrap();
    let secret = URL_SAFE_NO_PAD.decode(secret.trim()).unwrap();
    let genuine = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &workload_claims(),
        &EncodingKey::from_secret(&secret),
    )
    .unwrap();
    let r = s.get("/v1/me", &genuine).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"), "{}", r.text);
    assert!(r.text.contains("not running"), "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn the_actor_key_is_published_without_the_development_issuer() {
    let s = TestServer::builder()
        .configure(|c| c.identity.dev_issuer.enabled = false)
        .start()
        .await;
    s.create_tenant("acme", "standard").await;
    let token = actor_token(&s);
    let kid = header_of(&token)["kid"].as_str().unwrap().to_owned();
    let keys = jwks(&s).await;
    assert_eq!(keys.len(), 1, "only the actor key: {keys:?}");
    assert_eq!(keys[0]["kid"], kid.as_str());
    let r = s
        .request("GET", "/.well-known/openid-configuration", None, &[], None)
        .await;
    assert_eq!(r.status, 404, "no issuer to discover: {}", r.text);
    s.stop().await;
}
