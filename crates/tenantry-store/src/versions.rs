//! Versioned documents per scope (operator data), the one implementation behind policy sets
//! (`policy`) and guardrail profiles (`guardrail`): each scope has a history of versions 1, 2,
//! 3... never reused, of which at most one is active.
//!
//! A table of versioned documents has the columns `scope_kind`, `scope_key`, `version` and
//! `active` (an integer on SQLite, a boolean on PostgreSQL; read as the integer `active_int`
//! on both), plus its own. Writers of one scope are serialised (SQLite: `BEGIN IMMEDIATE`;
//! PostgreSQL: a transaction-scoped advisory lock per scope, taken by the caller with
//! `pg_lock`), so versions are dense and the single active row is never contended. This
//! module must never query a tenant table.

use sqlx::PgConnection;

use crate::db::{Db, Sql, scalar, sql};
use crate::row::Row;
use crate::{Store, StoreError};

/// A select list of a versioned table in `$dialect`: its columns `$cols`, then `active` as
/// the integer `active_int`.
macro_rules! versioned_cols {
    (sqlite, $cols:expr) => {
        concat!($cols, ", active AS active_int")
    };
    (postgres, $cols:expr) => {
        concat!($cols, ", active::int::int8 AS active_int")
    };
}

pub(crate) use versioned_cols;

/// The statements of one table of versioned documents, made by `versions!`.
pub(crate) struct Versions {
    /// What an advisory lock of one of its scopes is named after.
    pub(crate) table: &'static str,
    /// Inserts a version, active, and returns it.
    pub(crate) insert: Sql,
    pub(crate) next: Sql,
    pub(crate) deactivate: Sql,
    pub(crate) exists: Sql,
    pub(crate) activate: Sql,
    pub(crate) list: Sql,
    pub(crate) list_active: Sql,
}

/// The `Versions` of a table: `columns` are those it selects besides `active`, `insert` those
/// an insert writes besides `active` (with their placeholders `values` in each dialect), and
/// `postgres_order` is how PostgreSQL orders the active versions of all scopes.
#[rustfmt::skip]
macro_rules! versions {
    (
        table: $table:literal,
        columns: $cols:expr,
        insert: $insert:literal,
        values: [$sqlite_values:literal, $postgres_values:literal],
        postgres_order: $pg_order:expr $(,)?
    ) => {
        $crate::versions::Versions {
            table: $table,
            insert: $crate::db::Sql {
                sqlite: concat!(
                    "INSERT INTO ", $table, " (", $insert, ", active)
                     VALUES (", $sqlite_values, ", 1)
                     RETURNING ", $crate::versions::versioned_cols!(sqlite, $cols)
                ),
                postgres: concat!(
                    "INSERT INTO ", $table, " (", $insert, ", active)
                     VALUES (", $postgres_values, ", true)
                     RETURNING ", $crate::versions::versioned_cols!(postgres, $cols)
                ),
            },
            next: $crate::db::Sql {
                sqlite: concat!(
                    "SELECT COALESCE(max(version), 0) + 1 FROM ", $table, "
                     WHERE scope_kind = ?1 AND scope_key = ?2"
                ),
                postgres: concat!(
                    "SELECT COALESCE(max(version), 0) + 1 FROM ", $table, "
                     WHERE scope_kind = $1 AND scope_key = $2"
                ),
            },
            deactivate: $crate::db::Sql {
                sqlite: concat!(
                    "UPDATE ", $table, " SET active = 0
                     WHERE scope_kind = ?1 AND scope_key = ?2 AND active = 1"
                ),
                postgres: concat!(
                    "UPDATE ", $table, " SET active = false
                     WHERE scope_kind = $1 AND scope_key = $2 AND active"
                ),
            },
            exists: $crate::db::Sql {
                sqlite: concat!(
                    "SELECT version FROM ", $table, "
                     WHERE scope_kind = ?1 AND scope_key = ?2 AND version = ?3"
                ),
                postgres: concat!(
                    "SELECT version FROM ", $table, "
                     WHERE scope_kind = $1 AND scope_key = $2 AND version = $3"
                ),
            },
            activate: $crate::db::Sql {
                sqlite: concat!(
                    "UPDATE ", $table, " SET active = 1
                     WHERE scope_kind = ?1 AND scope_key = ?2 AND version = ?3
                     RETURNING ", $crate::versions::versioned_cols!(sqlite, $cols)
                ),
                postgres: concat!(
                    "UPDATE ", $table, " SET active = true
                     WHERE scope_kind = $1 AND scope_key = $2 AND version = $3
                     RETURNING ", $crate::versions::versioned_cols!(postgres, $cols)
                ),
            },
            list: $crate::db::Sql {
                sqlite: concat!(
                    "SELECT ", $crate::versions::versioned_cols!(sqlite, $cols), " FROM ", $table, "
                     WHERE scope_kind = ?1 AND scope_key = ?2 ORDER BY version DESC"
                ),
                postgres: concat!(
                    "SELECT ", $crate::versions::versioned_cols!(postgres, $cols), " FROM ", $table, "
                     WHERE scope_kind = $1 AND scope_key = $2 ORDER BY version DESC"
                ),
            },
            list_active: $crate::db::Sql {
                sqlite: concat!(
                    "SELECT ", $crate::versions::versioned_cols!(sqlite, $cols), " FROM ", $table, "
                     WHERE active = 1 ORDER BY scope_kind, scope_key"
                ),
                postgres: concat!(
                    "SELECT ", $crate::versions::versioned_cols!(postgres, $cols), " FROM ", $table, "
                     WHERE active ORDER BY ", $pg_order
                ),
            },
        }
    };
}

pub(crate) use versions;

impl Versions {
    /// In `db`, a transaction in which the caller took its locks: deactivates the scope's
    /// active version and answers the number of the next one, which the caller then inserts,
    /// active.
    pub(crate) async fn start_next(
        &self,
        db: &mut Db,
        kind: &str,
        key: &str,
    ) -> Result<i64, StoreError> {
        let next: i64 = scalar!(db.fetch_one(self.next, kind, key))?;
        sql!(db.execute(self.deactivate, kind, key))?;
        Ok(next)
    }

    /// In `db`, a transaction in which the caller took its locks: makes `version` the scope's
    /// active version (`None`: leaves it without one) and commits; the activated row, or
    /// `None`, rolling back, if the scope has no such version.
    pub(crate) async fn activate(
        &self,
        mut db: Db,
        kind: &str,
        key: &str,
        version: Option<i64>,
    ) -> Result<Option<Row>, StoreError> {
        if let Some(version) = version {
            let exists: Option<i64> = scalar!(db.fetch_optional(self.exists, kind, key, version))?;
            if exists.is_none() {
                db.rollback().await?;
                return Ok(None);
            }
        }
        sql!(db.execute(self.deactivate, kind, key))?;
        let row = match version {
            Some(version) => Some(sql!(db.fetch_one(self.activate, kind, key, version))?),
            None => None,
        };
        db.commit().await?;
        Ok(row)
    }

    /// Every version of the scope, newest first.
    pub(crate) async fn list(
        &self,
        store: &Store,
        kind: &str,
        key: &str,
    ) -> Result<Vec<Row>, StoreError> {
        sql!(store.operator_data() => fetch_all(self.list, kind, key))
    }

    /// The active version of every scope, ordered by scope.
    pub(crate) async fn list_active(&self, store: &Store) -> Result<Vec<Row>, StoreError> {
        sql!(store.operator_data() => fetch_all(self.list_active))
    }
}

/// The tier or tenant a scope belongs to, whose row a PostgreSQL writer locks first.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Owner<'a> {
    Tier(&'a str),
    Tenant(&'a str),
}

/// PostgreSQL: locks the scope's owner (if any) and then the scope, until the transaction
/// ends; `StoreError::Missing` if the owner does not exist.
///
/// The owner's row is locked as the insert's foreign key would lock it, but before this
/// transaction holds any row of the table: a deletion of that tenant locks its row and then
/// deletes its rows of the table, so taking the two in the other order (update the active row,
/// then the insert's foreign-key check) could deadlock with it. The advisory lock, named after
/// `table` and `scope`, serialises writers of one scope (replicas included).
pub(crate) async fn pg_lock(
    conn: &mut PgConnection,
    owner: Option<Owner<'_>>,
    table: &str,
    scope: &str,
) -> Result<(), StoreError> {
    let owner = owner.map(|owner| match owner {
        Owner::Tier(name) => (
            "SELECT 1 FROM tiers WHERE name = $1 FOR KEY SHARE",
            name,
            "tier",
        ),
        Owner::Tenant(id) => (
            "SELECT 1 FROM tenants WHERE id = $1 FOR KEY SHARE",
            id,
            "tenant",
        ),
    });
    if let Some((sql, key, kind)) = owner {
        let found: Option<i32> = sqlx::query_scalar(sql)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
        if found.is_none() {
            return Err(StoreError::Missing(format!("{kind} {key} not found")));
        }
    }
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("{table}/{scope}"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}
