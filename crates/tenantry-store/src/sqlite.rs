//! The SQLite backend's plumbing: opening the database file (private to its owner, in WAL
//! mode); `migrate` applies its migrations. The statements of each table live with the table's
//! other dialect (`tiers`, `sessions`...).
//!
//! SQLite has no roles and no row-level security, so the isolation of tenant data rests on
//! the `WHERE tenant_id = ?1` that every SQLite statement of a tenant table carries. Write
//! transactions of more than one statement begin with `BEGIN IMMEDIATE`
//! (`Store::operator_data_tx`, `Store::tenant_data_tx`) so they take the write lock up front
//! and wait (busy timeout) instead of failing when two writers meet. This module must never
//! query a tenant table.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::StoreError;

/// Makes the database file the owner's alone before SQLite opens it: creates it (and missing
/// directories, 0700) with mode 0600, and takes group and other access away from an existing
/// one and its `-wal` and `-shm` files. SQLite creates the WAL and shared-memory files with the
/// database file's mode, so they are private from then on.
fn make_private(file: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let failed = |what: &str, path: &std::path::Path, e: std::io::Error| -> StoreError {
        StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| failed("creating", dir, e))?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(file)
        .map_err(|e| failed("creating", file, e))?;
    let mut companions = file.as_os_str().to_owned();
    companions.push("-wal");
    let wal = std::path::PathBuf::from(&companions);
    companions = file.as_os_str().to_owned();
    companions.push("-shm");
    let shm = std::path::PathBuf::from(&companions);
    for path in [file, wal.as_path(), shm.as_path()] {
        let mode = match std::fs::metadata(path) {
            Ok(m) => m.permissions().mode(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(failed("inspecting", path, e)),
        };
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(|e| failed("making private", path, e))?;
        }
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub(crate) struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(format!("{url}: {e}")))?
            .create_if_missing(true)
            .foreign_keys(true)
            // SQLite's busy handler is not fair: under many concurrent writers one of them can
            // keep losing the lock for seconds (seen past 5 s with a tenant deletion racing a
            // flood of control-plane writes), and a timeout here is a 503. Waiting longer is
            // the better answer for the embedded store; PostgreSQL is the one for heavy writes.
            .busy_timeout(Duration::from_secs(30));
        let pool_options = if in_memory {
            // Every connection to `:memory:` would be a database of its own, so keep exactly
            // one connection, forever.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            let file = options.get_filename().to_path_buf();
            tokio::task::spawn_blocking(move || make_private(&file))
                .await
                .map_err(|e| StoreError::Unavailable(format!("preparing the database: {e}")))??;
            options = options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            SqlitePoolOptions::new().max_connections(8)
        };
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}
