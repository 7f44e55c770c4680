//! The master key and the envelope: XChaCha20-Poly1305 (random 192-bit nonces, so random
//! nonces never collide in practice) for wrapping each tenant's data key with the master key,
//! and each credential with its tenant's data key.
//!
//! A sealed value is `1 || nonce (24 bytes) || ciphertext and tag`, the leading byte being the
//! format version. The associated data binds each ciphertext to where it belongs (the tenant,
//! and for a credential its name, user and kind), so a row copied to another tenant or another
//! credential does not decrypt.
//!
//! The master key lives only in the process (from a 0600 file or the environment) and never
//! in the database; this module must never log or print it, a data key or a plaintext.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::VaultError;

/// The environment variable that may hold the master key (base64 of 32 bytes); it wins over
/// the key file.
pub const MASTER_KEY_ENV: &str = "TENANTRY_VAULT_MASTER_KEY";

/// The key file's place in the state directory.
pub const MASTER_KEY_FILE: &str = "keys/vault-master.key";

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;

/// A 256-bit key with its fingerprint. `Debug` shows the fingerprint only; the bytes are
/// zeroed when dropped.
#[derive(Clone)]
pub(crate) struct Key32(Zeroizing<[u8; 32]>);

impl Key32 {
    pub(crate) fn random() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        Self(bytes)
    }

    fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(Zeroizing::new(array)))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(*self.0))
    }

    /// Encrypts `plaintext` bound to `aad`.
    pub(crate) fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| VaultError::Corrupt("encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Decrypts what `seal` made with the same key and `aad`; `None` if it does not
    /// authenticate.
    pub(crate) fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (&version, rest) = sealed.split_first()?;
        if version != FORMAT_V1 || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        self.cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }

    /// The data key sealed in `sealed`, if it authenticates.
    pub(crate) fn open_key(&self, sealed: &[u8], aad: &[u8]) -> Option<Key32> {
        let plain = self.open(sealed, aad)?;
        Key32::from_slice(&plain)
    }
}

impl fmt::Debug for Key32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key32(<redacted>)")
    }
}

/// The platform's master key, which wraps every tenant's data key.
#[derive(Clone)]
pub struct MasterKey {
    key: Key32,
    id: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    fn from_key(key: Key32) -> Self {
        let mut h = Sha256::new();
        h.update(b"tenantry-vault-master-key-id\0");
        h.update(key.bytes());
        let digest = h.finalize();
        let id = digest
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        Self {
            key,
            id: format!("mk-{id}"),
        }
    }

    /// A fresh random key (for tests; `generate_file` for a state directory).
    pub fn generate() -> Self {
        Self::from_key(Key32::random())
    }

    /// The key's fingerprint (`mk-` and 16 hex digits): stored beside every wrapped data key,
    /// safe to log, and says which key the data needs.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Parses base64 (standard or URL-safe, padded or not) of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, VaultError> {
        let text = text.trim();
        let bytes = Zeroizing::new(
            [URL_SAFE_NO_PAD, URL_SAFE, STANDARD, STANDARD_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .ok_or_else(|| {
                    VaultError::MasterKey(
                        "not base64: write 32 random bytes in base64 (e.g. `openssl rand -base64 32`)"
                            .into(),
                    )
                })?,
        );
        let key = Key32::from_slice(&bytes).ok_or_else(|| {
            VaultError::MasterKey(format!(
                "it is {} bytes long; a master key is exactly 32 bytes (base64 of 32 random bytes)",
                bytes.len()
            ))
        })?;
        Ok(Self::from_key(key))
    }

    /// Reads the key file, refusing one that group or others may read (it must be 0600 or
    /// stricter).
    pub fn from_file(path: &Path) -> Result<Self, VaultError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| {
            VaultError::MasterKey(format!(
                "cannot read {}: {e} (run `tenantry init`, or set {MASTER_KEY_ENV})",
                path.display()
            ))
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(VaultError::MasterKey(format!(
                "{} has mode {mode:04o}, so others may read it; run `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                VaultError::MasterKey(format!("cannot read {}: {e}", path.display()))
            })?);
        Self::from_base64(&text)
            .map_err(|e| VaultError::MasterKey(format!("{}: {e}", path.display())))
    }

    /// The key from `env_value` (the value of `TENANTRY_VAULT_MASTER_KEY`, read by the caller)
    /// when it is set and not empty, otherwise from the file at `path`.
    pub fn load(env_value: Option<&str>, path: &Path) -> Result<Self, VaultError> {
        match env_value.map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) => Self::from_base64(v)
                .map_err(|e| VaultError::MasterKey(format!("{MASTER_KEY_ENV}: {e}"))),
            None => Self::from_file(path),
        }
    }

    /// Writes a fresh key (base64url, one line) to `path` with mode 0600; refuses to overwrite
    /// an existing file. For `tenantry init`.
    pub fn generate_file(path: &Path) -> Result<(), VaultError> {
        use std::os::unix::fs::OpenOptionsExt;
        let key = Key32::random();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| VaultError::MasterKey(format!("cannot create {}: {e}", path.display())))?;
        let text = Zeroizing::new(format!("{}\n", URL_SAFE_NO_PAD.encode(key.bytes())));
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| VaultError::MasterKey(format!("cannot write {}: {e}", path.display())))
    }

    pub(crate) fn key(&self) -> &Key32 {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_aad() {
        let k = Key32::random();
        let sealed = k.seal(b"hello", b"tenant-a").unwrap_or_default();
        assert_eq!(sealed[0], FORMAT_V1);
        assert_eq!(sealed.len(), 1 + NONCE_LEN + 5 + 16);
        assert_eq!(
            k.open(&sealed, b"tenant-a").map(|p| p.to_vec()),
            Some(b"hello".to_vec())
        );
        assert!(k.open(&sealed, b"tenant-b").is_none());
        assert!(Key32::random().open(&sealed, b"tenant-a").is_none());
        let mut tampered = sealed.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert!(k.open(&tampered, b"tenant-a").is_none());
        assert!(k.open(&[], b"").is_none());
        assert!(k.open(&[2; 64], b"").is_none());
        // Two seals of the same plaintext differ (random nonces).
        assert_ne!(sealed, k.seal(b"hello", b"tenant-a").unwrap_or_default());
    }

    #[test]
    fn master_keys_parse_from_base64_and_refuse_wrong_lengths() {
        let k = MasterKey::generate();
        let text = URL_SAFE_NO_PAD.encode(k.key.bytes());
        let same = MasterKey::from_base64(&text).map(|m| m.id().to_owned());
        assert_eq!(same.ok().as_deref(), Some(k.id()));
        let std_text = STANDARD.encode(k.key.bytes());
        assert!(MasterKey::from_base64(&std_text).is_ok());
        let short = STANDARD.encode([0u8; 16]);
        let err = MasterKey::from_base64(&short).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("16 bytes")));
        assert!(MasterKey::from_base64("not base64 at all!").is_err());
        assert!(!format!("{k:?}").contains(&text));
        assert!(k.id().starts_with("mk-") && k.id().len() == 19);
    }

    #[test]
    fn key_files_are_created_0600_and_open_ones_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("vault-master.key");
        assert!(MasterKey::generate_file(&path).is_ok());
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        // Refuses to overwrite.
        assert!(MasterKey::generate_file(&path).is_err());
        let loaded = MasterKey::from_file(&path);
        assert!(loaded.is_ok());
        // The environment wins over the file.
        let other = MasterKey::generate();
        let env = URL_SAFE_NO_PAD.encode(other.key.bytes());
        let chosen = MasterKey::load(Some(&env), &path).map(|k| k.id().to_owned());
        assert_eq!(chosen.ok().as_deref(), Some(other.id()));
        let from_file = MasterKey::load(Some("  "), &path).map(|k| k.id().to_owned());
        assert_eq!(from_file.ok(), loaded.ok().map(|k| k.id().to_owned()));
        // A file others can read is refused with the fix.
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644));
        let err = MasterKey::from_file(&path).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("chmod 600")));
        let missing = MasterKey::from_file(&dir.path().join("nope"))
            .err()
            .map(|e| e.to_string());
        assert!(missing.is_some_and(|e| e.contains(MASTER_KEY_ENV)));
    }
}
