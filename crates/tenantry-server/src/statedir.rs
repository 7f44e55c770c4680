//! The state directory that `tenantry init` creates: the config, the operator key, the
//! development issuer's signing key, the workload-token secret, the actor-token key and the
//! vault's master key.
//! Used by the CLI, the demo and the testkit alike.
//!
//! Everything here is the owner's alone: the directory and `keys/` are 0700, every file 0600
//! (the database makes its own file private: `tenantry-store`). `init` creates them so, and
//! `secure` takes away access that a state directory made by an older version (or a `chmod`)
//! left to others, each time the server starts.

use std::io::Write;
use std::path::{Path, PathBuf};

use tenantry_identity::{ActorIssuer, DevIssuer, WorkloadIssuer, generate_admin_key};

use crate::config::{Config, starter_config};

pub const CONFIG_FILE: &str = "tenantry.toml";
pub const ADMIN_KEY_FILE: &str = "admin.key";
pub const DEV_KEY_FILE: &str = "keys/dev-issuer.pem";
pub const WORKLOAD_KEY_FILE: &str = "keys/workload.key";
pub const ACTOR_KEY_FILE: &str = "keys/actor.pem";
pub const VAULT_MASTER_KEY_FILE: &str = tenantry_vault::MASTER_KEY_FILE;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "{0} already holds a Tenantry state directory (tenantry.toml exists); use it as it is, pick another --dir, or pass --force to overwrite it"
    )]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the signing key: {0}")]
    Key(String),
}

#[derive(Debug)]
pub struct InitReport {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub admin_key_file: PathBuf,
    pub signing_key: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_private(path: &Path, contents: &str) -> Result<(), InitError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(contents.as_bytes()).map_err(io_err(path))
}

/// Creates `dir` (and missing parents) and makes it the owner's alone (0700), whatever its
/// mode was: a state directory holds keys and the database.
fn create_private_dir(dir: &Path) -> Result<(), InitError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))
}

/// Creates `dir` with a starter config listening on `listen`, a fresh operator key, a fresh
/// development-issuer key and workload secret, and a vault master key (an existing one is
/// kept: the data it encrypted would be lost). Refuses an existing state directory unless `force`.
pub fn init(dir: &Path, listen: &str, force: bool) -> Result<InitReport, InitError> {
    let config = dir.join(CONFIG_FILE);
    if config.exists() && !force {
        return Err(InitError::Exists(dir.to_path_buf()));
    }
    let keys = dir.join("keys");
    create_private_dir(dir)?;
    create_private_dir(&keys)?;
    let signing_key = dir.join(DEV_KEY_FILE);
    if signing_key.exists() {
        std::fs::remove_file(&signing_key).map_err(io_err(&signing_key))?;
    }
    DevIssuer::generate_key(&signing_key).map_err(|e| InitError::Key(e.to_string()))?;
    let workload_key = dir.join(WORKLOAD_KEY_FILE);
    if workload_key.exists() {
        std::fs::remove_file(&workload_key).map_err(io_err(&workload_key))?;
    }
    WorkloadIssuer::generate_key(&workload_key).map_err(|e| InitError::Key(e.to_string()))?;
    let actor_key = dir.join(ACTOR_KEY_FILE);
    if actor_key.exists() {
        std::fs::remove_file(&actor_key).map_err(io_err(&actor_key))?;
    }
    ActorIssuer::generate_key(&actor_key).map_err(|e| InitError::Key(e.to_string()))?;
    // Kept even with `force`: the database is kept too, and its vault rows need this key.
    let vault_key = dir.join(VAULT_MASTER_KEY_FILE);
    if !vault_key.exists() {
        tenantry_vault::MasterKey::generate_file(&vault_key)
            .map_err(|e| InitError::Key(e.to_string()))?;
    }
    let admin_key_file = dir.join(ADMIN_KEY_FILE);
    write_private(&admin_key_file, &format!("{}\n", generate_admin_key()))?;
    write_private(&config, &starter_config(listen))?;
    Ok(InitReport {
        dir: dir.to_path_buf(),
        config,
        admin_key_file,
        signing_key,
    })
}

/// Takes group and other access away from the state the server reads: the config's directory
/// when `init` laid it out (it holds `keys/`) and that `keys/` (to 0700), and every key file
/// the config names (to 0600). Logs each change; what it cannot change (a read-only mount, a
/// file of another owner) is logged and left as it is.
pub fn secure(config: &Config) {
    let base = &config.base_dir;
    let keys = base.join("keys");
    if keys.is_dir() {
        tighten(base, 0o700);
        tighten(&keys, 0o700);
    }
    let files = config
        .admin
        .key_file
        .iter()
        .chain(&config.identity.dev_issuer.key_files)
        .chain([
            &config.identity.workload_key_file,
            &config.identity.actor_key_file,
            &config.vault.master_key_file,
        ]);
    for file in files {
        tighten(file, 0o600);
    }
}

/// Sets `path`'s mode to `mode` if it lets group or others in; a missing path is left alone.
fn tighten(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let was = meta.permissions().mode() & 0o7777;
    if was & 0o077 == 0 {
        return;
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        Ok(()) => tracing::warn!(path = %path.display(), was = format!("{was:o}"),
            now = format!("{mode:o}"), "made private: it was open to other users"),
        Err(e) => tracing::warn!(path = %path.display(), was = format!("{was:o}"), error = %e,
            "open to other users and cannot be made private; fix its mode"),
    }
}
