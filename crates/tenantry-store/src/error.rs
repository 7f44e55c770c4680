//! The store's closed error enum and its classification into `ErrorCode`.
//!
//! It owns the translation of driver errors (sqlx, SQLite result codes, PostgreSQL SQLSTATEs)
//! into the few outcomes callers act on. It must never leak a driver type to callers, and a
//! connection problem must never be reported as anything but `Unavailable` (fail closed, and
//! say that a retry may help).

use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;
use tenantry_core::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row already exists (unique or primary key violation).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A foreign key refused the write: a row it names (its tenant, tier, runtime...) does
    /// not exist, or a row it deletes is still named by others. Both happen when a concurrent
    /// change wins a race; the database cannot say which, so this is a conflict. Store methods
    /// that know the write names a row turn it into `Missing` (`missing_as`).
    #[error(
        "a record this change names was deleted, or one it deletes is still in use, by a \
         concurrent change; retry"
    )]
    Reference(String),
    /// The row a write names does not exist (any more): e.g. a tenant deleted while a write
    /// of its data ran. The message names the row.
    #[error("{0}")]
    Missing(String),
    /// The database cannot be reached or cannot answer now (connection, pool, lock timeouts).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored row cannot be decoded into its record type.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A schema migration failed, or the schema is not what this build expects.
    #[error("migration failed: {0}")]
    Migration(String),
    /// The store URL is not one this build understands.
    #[error("invalid store url: {0}")]
    InvalidUrl(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(String),
}

impl StoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::Conflict(_) | StoreError::Reference(_) => ErrorCode::Conflict,
            StoreError::Missing(_) => ErrorCode::NotFound,
            StoreError::Unavailable(_) => ErrorCode::Unavailable,
            StoreError::Corrupt(_)
            | StoreError::Migration(_)
            | StoreError::InvalidUrl(_)
            | StoreError::Database(_) => ErrorCode::Internal,
        }
    }

    /// Replaces the driver's message of a `Conflict` with one that names the record.
    pub(crate) fn conflict_as(self, message: impl FnOnce() -> String) -> Self {
        if let StoreError::Conflict(_) = self {
            StoreError::Conflict(message())
        } else {
            self
        }
    }

    /// Turns a foreign-key refusal of a write that names a row into `Missing`, with a message
    /// naming that row (e.g. "tenant acme not found").
    pub(crate) fn missing_as(self, message: impl FnOnce() -> String) -> Self {
        if let StoreError::Reference(_) = self {
            StoreError::Missing(message())
        } else {
            self
        }
    }

    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        StoreError::Corrupt(what.to_string())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let msg = e.to_string();
        #[allow(
            clippy::wildcard_enum_match_arm,
            reason = "sqlx::Error is non_exhaustive; anything not listed is an ordinary database error"
        )]
        match e {
            sqlx::Error::Database(db) => classify_database(db.as_ref(), msg),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::BeginFailed => StoreError::Unavailable(msg),
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(msg),
            sqlx::Error::Configuration(_) => StoreError::InvalidUrl(msg),
            _ => StoreError::Database(msg),
        }
    }
}

fn classify_database(db: &dyn DatabaseError, msg: String) -> StoreError {
    if db.kind() == ErrorKind::UniqueViolation {
        return StoreError::Conflict(db.message().to_owned());
    }
    if db.kind() == ErrorKind::ForeignKeyViolation {
        return StoreError::Reference(db.message().to_owned());
    }
    let transient = if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        pg_transient(pg.code())
    } else if let Some(lite) = db.try_downcast_ref::<SqliteError>() {
        lite.code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(sqlite_transient)
    } else {
        false
    };
    if transient {
        StoreError::Unavailable(msg)
    } else {
        StoreError::Database(msg)
    }
}

/// SQLSTATEs after which the same request may succeed later: connection exceptions (08),
/// insufficient resources (53), operator intervention such as shutdown or statement timeout
/// (57), serialization failures and deadlocks (40001, 40P01), and read-only standbys (25006).
fn pg_transient(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57")
        || code == "40001"
        || code == "40P01"
        || code == "25006"
}

/// SQLite primary result codes (the low byte of the extended code) for a database that is
/// locked by another connection: SQLITE_BUSY (5) and SQLITE_LOCKED (6).
fn sqlite_transient(extended: i32) -> bool {
    matches!(extended & 0xff, 5 | 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_transient_codes() {
        assert!(pg_transient("08006"));
        assert!(pg_transient("57014"));
        assert!(pg_transient("40P01"));
        assert!(!pg_transient("42501"));
        assert!(!pg_transient("23503"));
        assert!(sqlite_transient(5));
        assert!(sqlite_transient(517)); // SQLITE_BUSY_SNAPSHOT
        assert!(!sqlite_transient(19)); // SQLITE_CONSTRAINT
    }

    #[test]
    fn codes_map_without_guessing() {
        assert_eq!(
            StoreError::Conflict(String::new()).code(),
            ErrorCode::Conflict
        );
        assert_eq!(
            StoreError::Unavailable(String::new()).code(),
            ErrorCode::Unavailable
        );
        assert_eq!(
            StoreError::InvalidUrl(String::new()).code(),
            ErrorCode::Internal
        );
        // A foreign key's refusal is a lost race, never an internal error.
        assert_eq!(
            StoreError::Reference(String::new()).code(),
            ErrorCode::Conflict
        );
        let missing = StoreError::Reference("FOREIGN KEY constraint failed".into())
            .missing_as(|| "tenant acme not found".into());
        assert_eq!(missing.code(), ErrorCode::NotFound);
        assert_eq!(missing.to_string(), "tenant acme not found");
        let other = StoreError::Conflict("dup".into()).missing_as(|| unreachable!());
        assert_eq!(other.code(), ErrorCode::Conflict);
        assert_eq!(
            StoreError::from(sqlx::Error::PoolTimedOut).code(),
            ErrorCode::Unavailable
        );
    }
}
