//! Test helpers (feature `test-util`): throwaway PostgreSQL databases, so test processes can
//! run in parallel against one server without seeing each other's rows.
//!
//! Only tests use this module. It creates and drops databases, so it must never be pointed at
//! a server that holds data anyone cares about, and must never be enabled in a release build.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, PgConnection};

use crate::StoreError;

/// The environment variable naming the PostgreSQL server for tests, e.g.
/// `postgres://postgres@127.0.0.1:5432/test`.
pub const TEST_DATABASE_URL_VAR: &str = "TENANTRY_TEST_DATABASE_URL";

/// The URL in `TENANTRY_TEST_DATABASE_URL`, or `None` after printing a visible `SKIP:` line
/// naming `what` (e.g. "PostgreSQL store tests") to stderr.
pub fn postgres_url_or_skip(what: &str) -> Option<String> {
    match std::env::var(TEST_DATABASE_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        Ok(_) | Err(_) => {
            eprintln!("SKIP: {TEST_DATABASE_URL_VAR} unset; {what} not run");
            None
        }
    }
}

/// Drops the database it names when dropped (terminating its remaining connections), and the
/// login role that owns it, if it made one.
#[derive(Debug)]
pub struct DropGuard {
    admin_url: String,
    database: String,
    role: Option<String>,
}

impl DropGuard {
    /// The name of the database this guard will drop.
    pub fn database(&self) -> &str {
        &self.database
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        let admin_url = std::mem::take(&mut self.admin_url);
        let database = std::mem::take(&mut self.database);
        let role = self.role.take();
        // Drop runs inside the test's async runtime, which must not be blocked on from within;
        // a short-lived thread with a runtime of its own does the work.
        let worker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => rt.block_on(drop_database(&admin_url, &database, role.as_deref())),
                Err(e) => Err(StoreError::Database(format!("starting a runtime: {e}"))),
            }
        });
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test database: {e}"),
            Err(_) => eprintln!("warning: dropping the test database panicked"),
        }
    }
}

async fn drop_database(
    admin_url: &str,
    database: &str,
    role: Option<&str>,
) -> Result<(), StoreError> {
    let mut conn = PgConnection::connect(admin_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    if let Some(role) = role {
        // Dropping the role also ends its memberships of tenantry_app and tenantry_operator.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP ROLE IF EXISTS \"{role}\""
        )))
        .execute(&mut conn)
        .await?;
    }
    conn.close().await?;
    Ok(())
}

/// Creates an empty database `tenantry_t_<random>` on the server of `admin_url` and returns
/// its URL (same server, user and options) with a guard that drops it.
pub async fn fresh_postgres(admin_url: &str) -> Result<(String, DropGuard), StoreError> {
    let database = format!("tenantry_t_{:016x}", random_u64());
    let mut url = url::Url::parse(admin_url)
        .map_err(|e| StoreError::InvalidUrl(format!("{TEST_DATABASE_URL_VAR}: {e}")))?;
    url.set_path(&format!("/{database}"));

    let mut conn = PgConnection::connect(admin_url).await?;
    // The name is ours (hex digits), so formatting it into the statement is safe.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{database}\""
    )))
    .execute(&mut conn)
    .await?;
    conn.close().await?;

    let guard = DropGuard {
        admin_url: admin_url.to_owned(),
        database,
        role: None,
    };
    Ok((url.to_string(), guard))
}

/// Like `fresh_postgres`, but the database is owned by a new login role
/// `tenantry_t_<random>` that is no superuser and cannot bypass row-level security, and the
/// returned URL connects as that role: the production setup, in which forced row-level
/// security binds the owner of the tables too (a superuser bypasses it entirely).
///
/// A non-superuser cannot create the cluster-wide roles `tenantry_app` and
/// `tenantry_operator` nor grant them to itself, so, as a database administrator would, this
/// makes sure they exist (by migrating a throwaway database as the admin user when they do
/// not) and grants both to the new role first.
pub async fn fresh_postgres_unprivileged(
    admin_url: &str,
) -> Result<(String, DropGuard), StoreError> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let roles: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_roles WHERE rolname IN ('tenantry_app', 'tenantry_operator')",
    )
    .fetch_one(&mut conn)
    .await?;
    if roles < 2 {
        let (url, _guard) = fresh_postgres(admin_url).await?;
        drop(crate::Store::connect(&url).await?);
    }

    let name = format!("tenantry_t_{:016x}", random_u64());
    let mut url = url::Url::parse(admin_url)
        .map_err(|e| StoreError::InvalidUrl(format!("{TEST_DATABASE_URL_VAR}: {e}")))?;
    url.set_path(&format!("/{name}"));
    url.set_username(&name)
        .and_then(|()| url.set_password(None))
        .map_err(|()| StoreError::InvalidUrl(format!("{TEST_DATABASE_URL_VAR}: no host")))?;

    // The name is ours (hex digits), so formatting it into the statements is safe.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE \"{name}\" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
    )))
    .execute(&mut conn)
    .await?;
    // From here on, a failure drops what was made.
    let guard = DropGuard {
        admin_url: admin_url.to_owned(),
        database: name.clone(),
        role: Some(name.clone()),
    };
    for statement in [
        format!("GRANT tenantry_app, tenantry_operator TO \"{name}\""),
        format!("CREATE DATABASE \"{name}\" OWNER \"{name}\""),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok((url.to_string(), guard))
}

/// Unique across threads and processes: a randomly keyed hash of the process id, the time
/// and a counter.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.finish()
}
