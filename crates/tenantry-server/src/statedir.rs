//! The state directory that `tenantry init` creates: the config, the operator key, the
//! development issuer's signing key, the workload-token secret and the vault's master key.
//! Used by the CLI, the demo and the testkit alike.

use std::io::Write;
use std::path::{Path, PathBuf};

use tenantry_identity::{DevIssuer, WorkloadIssuer, generate_admin_key};

use crate::config::starter_config;

pub const CONFIG_FILE: &str = "tenantry.toml";
pub const ADMIN_KEY_FILE: &str = "admin.key";
pub const DEV_KEY_FILE: &str = "keys/dev-issuer.pem";
pub const WORKLOAD_KEY_FILE: &str = "keys/workload.key";
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

/// Creates `dir` with a starter config listening on `listen`, a fresh operator key, a fresh
/// development-issuer key and workload secret, and a vault master key (an existing one is
/// kept: the data it encrypted would be lost). Refuses an existing state directory unless `force`.
pub fn init(dir: &Path, listen: &str, force: bool) -> Result<InitReport, InitError> {
    let config = dir.join(CONFIG_FILE);
    if config.exists() && !force {
        return Err(InitError::Exists(dir.to_path_buf()));
    }
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).map_err(io_err(&keys))?;
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
