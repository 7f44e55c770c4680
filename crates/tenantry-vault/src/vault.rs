//! The vault: stores tenants' credentials encrypted, and turns a stored credential into the
//! secret the gateway injects (the API key, or a token fetched or exchanged and cached).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tenantry_core::{TenantId, TenantScope, UserId, unix_now};
use tenantry_store::{CredentialRecord, NewCredential, Store, StoreError, VaultKeyRecord};

use crate::credential::{Credential, CredentialInfo};
use crate::master::Key32;
use crate::tokens::{self, CacheKey, CallerTokens, Endpoint, Grant, TokenCache};
use crate::{MasterKey, SecretString, VaultError};

/// How long a decrypted credential is kept in memory before the store is read again (another
/// replica's rotation is seen after at most this long; this replica's own at once).
pub const DEFAULT_CREDENTIAL_TTL: Duration = Duration::from_secs(5);

/// The deadline of one token endpoint request.
pub const DEFAULT_TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A stored credential, decrypted, with the version it came from.
#[derive(Debug)]
struct Decrypted {
    version: i64,
    user: String,
    credential: Credential,
}

type CredKey = (TenantId, String, String);

/// A decrypted credential (or its absence) and when it was read.
type CredEntry = (Instant, Option<Arc<Decrypted>>);

/// The tenants' credential vault. Cheap to clone: clones share the store, the key caches and
/// the token cache.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    master: MasterKey,
    http: reqwest::Client,
    credential_ttl: Duration,
    /// Unwrapped data keys, per tenant.
    data_keys: Mutex<HashMap<TenantId, Key32>>,
    /// Decrypted credentials (or their absence), per (tenant, name, user), with when they
    /// were read.
    credentials: Mutex<HashMap<CredKey, CredEntry>>,
    tokens: TokenCache,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("master_key", &self.inner.master.id())
            .field("store", &self.inner.store.backend())
            .finish_non_exhaustive()
    }
}

fn aad_data_key(tenant: &TenantId) -> Vec<u8> {
    format!("tenantry-vault/data-key/v1/{tenant}").into_bytes()
}

fn aad_credential(tenant: &TenantId, name: &str, user: &str, kind: &str) -> Vec<u8> {
    // Names have no '/' ... except the ones credential names allow; the lengths make the
    // encoding unambiguous.
    format!(
        "tenantry-vault/credential/v1/{}:{tenant}/{}:{name}/{}:{user}/{kind}",
        tenant.as_str().len(),
        name.len(),
        user.len()
    )
    .into_bytes()
}

fn user_key(user: Option<&UserId>) -> String {
    user.map(|u| u.as_str().to_owned()).unwrap_or_default()
}

impl Vault {
    /// A vault over `store`, with `master` wrapping the data keys, a token endpoint timeout of
    /// `DEFAULT_TOKEN_TIMEOUT` and a credential cache of `DEFAULT_CREDENTIAL_TTL`.
    pub fn new(store: Store, master: MasterKey) -> Result<Self, VaultError> {
        Self::with_settings(store, master, DEFAULT_TOKEN_TIMEOUT, DEFAULT_CREDENTIAL_TTL)
    }

    pub fn with_settings(
        store: Store,
        master: MasterKey,
        token_timeout: Duration,
        credential_ttl: Duration,
    ) -> Result<Self, VaultError> {
        // reqwest is built without a default TLS crypto provider; install ours unless the
        // process already chose one.
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(token_timeout)
            .connect_timeout(token_timeout)
            // A token endpoint that redirects must not get the client secret twice.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tenantry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                VaultError::MasterKey(format!("cannot set up the HTTP client for tokens: {e}"))
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                master,
                http,
                credential_ttl,
                data_keys: Mutex::new(HashMap::new()),
                credentials: Mutex::new(HashMap::new()),
                tokens: TokenCache::default(),
            }),
        })
    }

    /// The fingerprint of the master key in use.
    pub fn master_key_id(&self) -> &str {
        self.inner.master.id()
    }

    // ---- data keys -----------------------------------------------------------------------

    fn unwrap_key(&self, record: &VaultKeyRecord) -> Result<Key32, VaultError> {
        let master = &self.inner.master;
        if record.master_key_id != master.id() {
            return Err(VaultError::WrongMasterKey {
                tenant: record.tenant_id.to_string(),
                stored_id: record.master_key_id.clone(),
                loaded_id: master.id().to_owned(),
            });
        }
        master
            .key()
            .open_key(&record.wrapped_key, &aad_data_key(&record.tenant_id))
            .ok_or_else(|| {
                VaultError::Corrupt(format!(
                    "the data key of tenant {} does not unwrap",
                    record.tenant_id
                ))
            })
    }

    /// The scope's data key; with `create`, made (and stored, wrapped) if the tenant has none.
    pub(crate) async fn data_key(
        &self,
        scope: &TenantScope,
        create: bool,
    ) -> Result<Option<Key32>, VaultError> {
        let tenant = scope.tenant();
        if let Some(k) = self
            .inner
            .data_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
        {
            return Ok(Some(k.clone()));
        }
        let stored = match self.inner.store.get_vault_key(scope).await? {
            Some(r) => Some(self.unwrap_key(&r)?),
            None if create => {
                let key = Key32::random();
                let record = VaultKeyRecord {
                    tenant_id: tenant.clone(),
                    master_key_id: self.inner.master.id().to_owned(),
                    wrapped_key: self
                        .inner
                        .master
                        .key()
                        .seal(key.bytes(), &aad_data_key(tenant))?,
                    created_at: unix_now(),
                };
                match self.inner.store.insert_vault_key(scope, &record).await {
                    Ok(()) => Some(key),
                    // Another replica made one first: use that one.
                    Err(StoreError::Conflict(_)) => {
                        // Gone again: the tenant was deleted meanwhile.
                        let r = self.inner.store.get_vault_key(scope).await?.ok_or_else(|| {
                            VaultError::Gone(format!(
                                "tenant {tenant} not found (deleted while its data key was made)"
                            ))
                        })?;
                        Some(self.unwrap_key(&r)?)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => None,
        };
        if let Some(k) = &stored {
            self.inner
                .data_keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(tenant.clone(), k.clone());
        }
        Ok(stored)
    }

    // ---- managing credentials ------------------------------------------------------------

    /// Stores `credential` as the next version of the scope's credential `name` (of `user`,
    /// or the tenant's own when `None`): a new credential, or a rotation. Older versions stay
    /// until deleted. Returns what may be shown: never the secret.
    pub async fn put(
        &self,
        scope: &TenantScope,
        name: &str,
        user: Option<&UserId>,
        credential: &Credential,
    ) -> Result<CredentialInfo, VaultError> {
        if !tenantry_store::is_valid_credential_name(name) {
            return Err(VaultError::InvalidCredential(format!(
                "the name {:?} is not valid: use 1 to 128 letters, digits and -_.:/",
                name.chars().take(80).collect::<String>()
            )));
        }
        credential.validate()?;
        let Some(key) = self.data_key(scope, true).await? else {
            return Err(VaultError::Corrupt("no data key after creating one".into()));
        };
        let tenant = scope.tenant();
        let user_text = user_key(user);
        let ciphertext = key.seal(
            credential.secret_json().as_bytes(),
            &aad_credential(tenant, name, &user_text, credential.kind()),
        )?;
        let metadata = credential.metadata();
        let record = self
            .inner
            .store
            .insert_credential(
                scope,
                &NewCredential {
                    name,
                    user_id: user,
                    kind: credential.kind(),
                    metadata: &metadata,
                    ciphertext: &ciphertext,
                    created_at: unix_now(),
                },
            )
            .await?;
        self.forget(tenant, name);
        // Stored, then deleted before it could be read back: only a deletion of the tenant
        // (or of the credential) racing this call does that.
        self.info(scope, &record.name, record.user_id.as_ref())
            .await?
            .ok_or_else(|| {
                VaultError::Gone(format!(
                    "credential {name} of tenant {tenant} was deleted while it was being stored"
                ))
            })
    }

    /// What may be shown of the scope's credential `(name, user)`; `None` if it has none.
    pub async fn info(
        &self,
        scope: &TenantScope,
        name: &str,
        user: Option<&UserId>,
    ) -> Result<Option<CredentialInfo>, VaultError> {
        let user_text = user_key(user);
        let infos = self.list(scope).await?;
        Ok(infos
            .into_iter()
            .find(|i| i.name == name && user_key(i.user.as_ref()) == user_text))
    }

    /// Every credential of the scope (current version, with the list of versions), ordered by
    /// name, then user (the tenant's own first): metadata only.
    pub async fn list(&self, scope: &TenantScope) -> Result<Vec<CredentialInfo>, VaultError> {
        let records = self.inner.store.list_credentials(scope).await?;
        let mut out: Vec<CredentialInfo> = Vec::new();
        for r in records {
            match out.last_mut() {
                Some(last) if last.name == r.name && last.user == r.user_id => {
                    last.versions.push(r.version);
                }
                Some(_) | None => out.push(CredentialInfo {
                    versions: vec![r.version],
                    name: r.name,
                    user: r.user_id,
                    kind: r.kind,
                    version: r.version,
                    metadata: r.metadata,
                    created_at: r.created_at,
                }),
            }
        }
        Ok(out)
    }

    /// Deletes one version of the scope's credential `(name, user)`, or every version when
    /// `version` is `None`; returns how many were deleted. Cached tokens of the credential are
    /// forgotten.
    pub async fn delete(
        &self,
        scope: &TenantScope,
        name: &str,
        user: Option<&UserId>,
        version: Option<i64>,
    ) -> Result<u64, VaultError> {
        let n = self
            .inner
            .store
            .delete_credential(scope, name, user, version)
            .await?;
        self.forget(scope.tenant(), name);
        Ok(n)
    }

    /// Forgets everything this replica keeps in memory of one tenant (its data key, decrypted
    /// credentials and cached tokens): called when the tenant is deleted, so that a tenant
    /// created again under the same id never meets anything of the old one.
    pub fn forget_tenant(&self, tenant: &TenantId) {
        self.inner
            .data_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tenant);
        self.inner
            .credentials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(t, _, _), _| t != tenant);
        self.inner.tokens.forget_tenant(tenant.as_str());
    }

    fn forget(&self, tenant: &TenantId, name: &str) {
        self.inner
            .credentials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(t, n, _), _| !(t == tenant && n == name));
        self.inner.tokens.forget(tenant.as_str(), name);
    }

    // ---- using credentials ---------------------------------------------------------------

    fn decrypt(&self, key: &Key32, r: &CredentialRecord) -> Result<Credential, VaultError> {
        let user = user_key(r.user_id.as_ref());
        let plain = key
            .open(
                &r.ciphertext,
                &aad_credential(&r.tenant_id, &r.name, &user, &r.kind),
            )
            .ok_or_else(|| {
                VaultError::Corrupt(format!(
                    "credential {} (version {}) of tenant {} does not decrypt",
                    r.name, r.version, r.tenant_id
                ))
            })?;
        Credential::from_parts(&r.kind, &r.metadata, &plain)
    }

    /// The current version of `(name, user)` exactly (no fallback), decrypted, through the
    /// short-lived cache.
    async fn current(
        &self,
        scope: &TenantScope,
        name: &str,
        user: Option<&UserId>,
    ) -> Result<Option<Arc<Decrypted>>, VaultError> {
        let key = (scope.tenant().clone(), name.to_owned(), user_key(user));
        if let Some((at, found)) = self
            .inner
            .credentials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            && at.elapsed() < self.inner.credential_ttl
        {
            return Ok(found.clone());
        }
        let found = match self
            .inner
            .store
            .get_credential(scope, name, user, None)
            .await?
        {
            None => None,
            Some(r) => {
                let Some(data_key) = self.data_key(scope, false).await? else {
                    return Err(VaultError::Corrupt(format!(
                        "tenant {} has credentials but no data key",
                        scope.tenant()
                    )));
                };
                Some(Arc::new(Decrypted {
                    version: r.version,
                    user: key.2.clone(),
                    credential: self.decrypt(&data_key, &r)?,
                }))
            }
        };
        self.inner
            .credentials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (Instant::now(), found.clone()));
        Ok(found)
    }

    /// The decrypted current version of the scope's credential `(name, user)`, with the same
    /// per-user fallback as `resolve`. For the gateway only: never return it to an API caller.
    pub async fn get(
        &self,
        scope: &TenantScope,
        name: &str,
        user: Option<&UserId>,
    ) -> Result<Option<Credential>, VaultError> {
        Ok(self
            .lookup(scope, name, user)
            .await?
            .map(|d| d.credential.clone()))
    }

    async fn lookup(
        &self,
        scope: &TenantScope,
        name: &str,
        user: Option<&UserId>,
    ) -> Result<Option<Arc<Decrypted>>, VaultError> {
        if let Some(u) = user
            && let Some(found) = self.current(scope, name, Some(u)).await?
        {
            return Ok(Some(found));
        }
        self.current(scope, name, None).await
    }

    /// The secret to inject for the scope's credential `name` on a call by `user`: the user's
    /// own credential of that name if there is one, else the tenant's. An API key is returned
    /// as it is; client credentials give an access token (cached until shortly before it
    /// expires); a token exchange gives the token obtained for `tokens` (the caller's user
    /// token as subject, the agent's identity as actor; cached likewise). `Ok(None)` when the
    /// tenant has no such credential.
    pub async fn resolve(
        &self,
        scope: &TenantScope,
        name: &str,
        user: Option<&UserId>,
        tokens: &CallerTokens,
    ) -> Result<Option<SecretString>, VaultError> {
        let Some(found) = self.lookup(scope, name, user).await? else {
            return Ok(None);
        };
        let tenant = scope.tenant().as_str();
        let token = match &found.credential {
            Credential::ApiKey { value } => value.clone(),
            Credential::OAuth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scopes,
                audience,
                client_auth,
            } => {
                let key = CacheKey::new(tenant, name, &found.user, found.version, None);
                let endpoint = Endpoint {
                    name,
                    token_url,
                    client_id,
                    client_secret,
                    client_auth: *client_auth,
                };
                let grant = Grant::ClientCredentials {
                    scopes,
                    audience: audience.as_deref(),
                };
                self.inner
                    .tokens
                    .get_or_fetch(key, || tokens::request(&self.inner.http, &endpoint, &grant))
                    .await?
            }
            Credential::TokenExchange {
                token_url,
                client_id,
                client_secret,
                audience,
                resource,
                scopes,
                requested_token_type,
                client_auth,
            } => {
                if tokens.subject_token.is_none() {
                    return Err(VaultError::SubjectTokenRequired {
                        name: name.to_owned(),
                    });
                }
                let key = CacheKey::new(tenant, name, &found.user, found.version, Some(tokens));
                let endpoint = Endpoint {
                    name,
                    token_url,
                    client_id,
                    client_secret,
                    client_auth: *client_auth,
                };
                let grant = Grant::Exchange {
                    tokens,
                    audience: audience.as_deref(),
                    resource: resource.as_deref(),
                    scopes,
                    requested_token_type: requested_token_type.as_deref(),
                };
                self.inner
                    .tokens
                    .get_or_fetch(key, || tokens::request(&self.inner.http, &endpoint, &grant))
                    .await?
            }
        };
        Ok(Some(token))
    }
}
