//! The credentials a tenant can keep in the vault, split into what is secret (encrypted at
//! rest, never returned) and what is not (metadata, returned by listings).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tenantry_core::UserId;
use zeroize::Zeroizing;

use crate::{SecretString, VaultError};

/// The longest secret the vault stores, in bytes.
const MAX_SECRET_BYTES: usize = 16 * 1024;

/// How a client authenticates to a token endpoint (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (`client_secret_basic`), the default.
    #[default]
    Basic,
    /// The client id and secret as form fields (`client_secret_post`).
    Post,
}

/// A credential as the control plane receives it. It can be read (`Deserialize`), never
/// written back (`Serialize` is not implemented), and `Debug` redacts every secret field.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Credential {
    /// A static key or token, injected as it is.
    ApiKey { value: SecretString },
    /// OAuth2 client credentials: the vault fetches an access token from `token_url` and
    /// caches it until shortly before it expires.
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: SecretString,
        #[serde(default)]
        scopes: Vec<String>,
        /// Sent as `audience` (a common extension, e.g. Auth0's), when set.
        #[serde(default)]
        audience: Option<String>,
        #[serde(default)]
        client_auth: ClientAuth,
    },
    /// RFC 8693 token exchange: the caller's user token (`subject_token`) and the agent's
    /// identity (`actor_token`) are exchanged at `token_url` for a token for `audience`, whose
    /// `act` claim names the agent.
    TokenExchange {
        token_url: String,
        client_id: String,
        client_secret: SecretString,
        #[serde(default)]
        audience: Option<String>,
        #[serde(default)]
        resource: Option<String>,
        #[serde(default)]
        scopes: Vec<String>,
        #[serde(default)]
        requested_token_type: Option<String>,
        #[serde(default)]
        client_auth: ClientAuth,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("kind", &self.kind())
            .field("metadata", &self.metadata())
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// `api_key`, `oauth2_client_credentials` or `token_exchange`.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::ApiKey { .. } => "api_key",
            Credential::OAuth2ClientCredentials { .. } => "oauth2_client_credentials",
            Credential::TokenExchange { .. } => "token_exchange",
        }
    }

    /// The fields that are not secret, as stored in clear and shown by listings.
    pub fn metadata(&self) -> Value {
        match self {
            Credential::ApiKey { .. } => json!({}),
            Credential::OAuth2ClientCredentials {
                token_url,
                client_id,
                scopes,
                audience,
                client_auth,
                client_secret: _,
            } => json!({
                "token_url": token_url,
                "client_id": client_id,
                "scopes": scopes,
                "audience": audience,
                "client_auth": client_auth,
            }),
            Credential::TokenExchange {
                token_url,
                client_id,
                audience,
                resource,
                scopes,
                requested_token_type,
                client_auth,
                client_secret: _,
            } => json!({
                "token_url": token_url,
                "client_id": client_id,
                "audience": audience,
                "resource": resource,
                "scopes": scopes,
                "requested_token_type": requested_token_type,
                "client_auth": client_auth,
            }),
        }
    }

    /// The secret fields as a JSON object's text, to be encrypted.
    pub(crate) fn secret_json(&self) -> Zeroizing<String> {
        let (field, value) = match self {
            Credential::ApiKey { value } => ("value", value),
            Credential::OAuth2ClientCredentials { client_secret, .. }
            | Credential::TokenExchange { client_secret, .. } => ("client_secret", client_secret),
        };
        let mut obj = Map::new();
        obj.insert(field.to_owned(), Value::String(value.expose().to_owned()));
        Zeroizing::new(Value::Object(obj).to_string())
    }

    /// Reassembles a credential from its stored kind, metadata and decrypted secret fields.
    pub(crate) fn from_parts(
        kind: &str,
        metadata: &Value,
        secret_json: &[u8],
    ) -> Result<Self, VaultError> {
        let secret: Zeroizing<String> = Zeroizing::new(
            String::from_utf8(secret_json.to_vec())
                .map_err(|_| VaultError::Corrupt("credential secret is not UTF-8".into()))?,
        );
        let Ok(Value::Object(secret)) = serde_json::from_str::<Value>(&secret) else {
            return Err(VaultError::Corrupt(
                "credential secret is not a JSON object".into(),
            ));
        };
        let mut all = metadata.as_object().cloned().unwrap_or_default();
        // Metadata written with `null` for absent options reads back as absent.
        all.retain(|_, v| !v.is_null());
        all.extend(secret);
        all.insert("kind".into(), Value::String(kind.to_owned()));
        serde_json::from_value(Value::Object(all)).map_err(|e| {
            // serde's message names fields, never their values.
            VaultError::Corrupt(format!("credential of kind {kind:?} does not decode: {e}"))
        })
    }

    /// Checks what serde cannot: URLs, non-empty ids and secrets, sizes.
    pub fn validate(&self) -> Result<(), VaultError> {
        let bad = |m: String| Err(VaultError::InvalidCredential(m));
        let secret = match self {
            Credential::ApiKey { value } => value,
            Credential::OAuth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                ..
            }
            | Credential::TokenExchange {
                token_url,
                client_id,
                client_secret,
                ..
            } => {
                match url::Url::parse(token_url) {
                    Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => {}
                    Ok(_) | Err(_) => {
                        return bad(format!(
                            "token_url {token_url:?} is not an http(s) URL with a host"
                        ));
                    }
                }
                if client_id.is_empty() || client_id.len() > 1024 {
                    return bad("client_id must have 1 to 1024 characters".into());
                }
                client_secret
            }
        };
        if secret.is_empty() {
            return bad("the secret is empty".into());
        }
        if secret.expose().len() > MAX_SECRET_BYTES {
            return bad(format!(
                "the secret is longer than {MAX_SECRET_BYTES} bytes"
            ));
        }
        Ok(())
    }
}

/// What the vault shows about a stored credential: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CredentialInfo {
    pub name: String,
    /// `None`: the tenant's own credential; `Some`: one user's.
    pub user: Option<UserId>,
    pub kind: String,
    /// The current version.
    pub version: i64,
    /// Every stored version, newest first.
    pub versions: Vec<i64>,
    /// The fields that are not secret.
    pub metadata: Value,
    /// When the current version was stored (unix seconds).
    pub created_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Credential, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn credentials_parse_split_and_reassemble() {
        let c = parse(json!({
            "kind": "oauth2_client_credentials",
            "token_url": "https://idp.example/token",
            "client_id": "cid",
            "client_secret": "s3cr3t-value",
            "scopes": ["a", "b"]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(c.validate().is_ok());
        let meta = c.metadata();
        assert_eq!(meta["client_id"], "cid");
        assert!(!meta.to_string().contains("s3cr3t"));
        let secret = c.secret_json();
        assert!(secret.contains("s3cr3t-value"));
        let back = Credential::from_parts(c.kind(), &meta, secret.as_bytes());
        assert!(back.is_ok_and(|b| b == c));
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(parse(json!({"kind": "api_key", "value": "x", "extra": 1})).is_err());
        assert!(parse(json!({"kind": "password", "value": "x"})).is_err());
        let empty = parse(json!({"kind": "api_key", "value": ""}));
        assert!(empty.is_ok_and(|c| c.validate().is_err()));
        let bad_url = parse(json!({
            "kind": "token_exchange", "token_url": "ftp://x/token",
            "client_id": "c", "client_secret": "s"
        }));
        assert!(bad_url.is_ok_and(|c| c.validate().is_err()));
    }
}
