//! Secrets the platform keeps for itself on a tenant's behalf, sealed by the tenant's data key:
//! e.g. the secret access key of a SigV4 key pair, which the verifier needs in clear to
//! recompute a signature. Each sealed value is bound to its tenant, a purpose and an id, so a
//! value copied to another row, purpose or tenant does not open.
//!
//! Unlike credentials (`Vault::put`), these are not stored by the vault: the caller keeps the
//! sealed bytes in its own table. Opening never logs or returns anything but the secret.

use tenantry_core::{TenantId, TenantScope};

use crate::{SecretString, Vault, VaultError};

fn aad_sealed(tenant: &TenantId, purpose: &str, id: &str) -> Vec<u8> {
    format!(
        "tenantry-vault/sealed/v1/{}:{tenant}/{}:{purpose}/{}:{id}",
        tenant.as_str().len(),
        purpose.len(),
        id.len()
    )
    .into_bytes()
}

impl Vault {
    /// Seals `secret` for the scope's tenant, bound to `purpose` and `id` (the tenant's data
    /// key is made if it has none yet).
    pub async fn seal_secret(
        &self,
        scope: &TenantScope,
        purpose: &str,
        id: &str,
        secret: &SecretString,
    ) -> Result<Vec<u8>, VaultError> {
        let Some(key) = self.data_key(scope, true).await? else {
            return Err(VaultError::Corrupt("no data key after creating one".into()));
        };
        key.seal(
            secret.expose().as_bytes(),
            &aad_sealed(scope.tenant(), purpose, id),
        )
    }

    /// Opens what `seal_secret` sealed with the same scope, purpose and id.
    pub async fn open_secret(
        &self,
        scope: &TenantScope,
        purpose: &str,
        id: &str,
        sealed: &[u8],
    ) -> Result<SecretString, VaultError> {
        let tenant = scope.tenant();
        let corrupt = || {
            VaultError::Corrupt(format!(
                "sealed {purpose} {id} of tenant {tenant} does not open"
            ))
        };
        let Some(key) = self.data_key(scope, false).await? else {
            return Err(corrupt());
        };
        let plain = key
            .open(sealed, &aad_sealed(tenant, purpose, id))
            .ok_or_else(corrupt)?;
        let text = std::str::from_utf8(&plain).map_err(|_| corrupt())?;
        Ok(SecretString::new(text))
    }
}
