//! Where a statement runs, and the one way to run it on either backend.
//!
//! A store method first opens a `Db` with one of the `Store` methods below, and the one it
//! picks says whose rows its statements may touch: `operator_data` (the registry, as the
//! connecting user), `tenant_data` (one tenant's rows: on PostgreSQL a transaction as
//! `tenantry_app` with `app.tenant_id` set, `PgStore::scoped`) or `all_tenants` (the
//! operator's read-only reports across tenants, which demand an `OperatorGrant` or the platform's `SystemGrant`). It then runs
//! each statement with `sql!` (or `scalar!`), which takes the statement's SQLite and
//! PostgreSQL texts side by side and its bind values once, so the twins of a query cannot bind
//! different values or bind them in another order. The few steps only one backend takes (a
//! PostgreSQL lock, say) match on `Db` directly.
//!
//! This module must never open tenant data other than through `tenant_data` and
//! `tenant_data_tx`, and must never let a transaction outlive its `Db`: dropping one rolls it
//! back, and only `Db::commit` keeps its writes.

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgQueryResult, PgRow};
use sqlx::sqlite::{SqliteQueryResult, SqliteRow};
use sqlx::{Database, Postgres, Sqlite, Transaction};
use tenantry_core::{CrossTenantGrant, TenantId};

use crate::row::Row;
use crate::{Backend, Store, StoreError};

/// One statement in both dialects, for statements picked from a table rather than written at
/// the call (the deletes of each tenant table, the report of each grouping).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sql {
    pub(crate) sqlite: &'static str,
    pub(crate) postgres: &'static str,
}

/// A pooled connection or a transaction of one backend.
pub(crate) enum Held<DB: Database> {
    /// Each statement commits as it runs.
    Conn(PoolConnection<DB>),
    Tx(Transaction<'static, DB>),
}

impl<DB: Database> Held<DB> {
    pub(crate) fn conn(&mut self) -> &mut DB::Connection {
        match self {
            Held::Conn(conn) => conn,
            Held::Tx(tx) => tx,
        }
    }

    async fn end(self, commit: bool) -> Result<(), StoreError> {
        match self {
            Held::Conn(_) => {}
            Held::Tx(tx) if commit => tx.commit().await?,
            Held::Tx(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}

/// An open connection or transaction of the store's backend; see the module comment.
pub(crate) enum Db {
    Sqlite(Held<Sqlite>),
    Postgres(Held<Postgres>),
}

impl Db {
    /// Commits the transaction (a pooled connection's statements committed as they ran).
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        self.end(true).await
    }

    /// Rolls the transaction back: nothing it wrote stays.
    pub(crate) async fn rollback(self) -> Result<(), StoreError> {
        self.end(false).await
    }

    /// Lets `sql!` take an owned `Db` and a `&mut Db` alike.
    pub(crate) fn by_ref(&mut self) -> &mut Self {
        self
    }

    async fn end(self, commit: bool) -> Result<(), StoreError> {
        match self {
            Db::Sqlite(held) => held.end(commit).await,
            Db::Postgres(held) => held.end(commit).await,
        }
    }
}

/// Turns a driver's answer into the store's own, the same for both backends: rows into `Row`,
/// the result of a statement into the number of rows it affected.
pub(crate) trait Unify {
    type Out;
    fn unify(self) -> Self::Out;
}

impl Unify for SqliteRow {
    type Out = Row;
    fn unify(self) -> Row {
        Row::Sqlite(self)
    }
}

impl Unify for PgRow {
    type Out = Row;
    fn unify(self) -> Row {
        Row::Postgres(self)
    }
}

impl Unify for SqliteQueryResult {
    type Out = u64;
    fn unify(self) -> u64 {
        self.rows_affected()
    }
}

impl Unify for PgQueryResult {
    type Out = u64;
    fn unify(self) -> u64 {
        self.rows_affected()
    }
}

impl<T: Unify> Unify for Option<T> {
    type Out = Option<T::Out>;
    fn unify(self) -> Self::Out {
        self.map(T::unify)
    }
}

impl<T: Unify> Unify for Vec<T> {
    type Out = Vec<T::Out>;
    fn unify(self) -> Self::Out {
        self.into_iter().map(T::unify).collect()
    }
}

/// Runs one statement on a `Db` with `sqlx::$query`, then maps the answer with `$then`.
macro_rules! run {
    ($query:ident, $then:path, $db:ident . $fetch:ident (
        sqlite: $sqlite:expr, postgres: $postgres:expr $(, $bind:expr)* $(,)?
    )) => {
        match $db.by_ref() {
            $crate::db::Db::Sqlite(held) => sqlx::$query($sqlite)
                $(.bind($bind))*
                .$fetch(held.conn())
                .await
                .map($then),
            $crate::db::Db::Postgres(held) => sqlx::$query($postgres)
                $(.bind($bind))*
                .$fetch(held.conn())
                .await
                .map($then),
        }
        .map_err($crate::StoreError::from)
    };
    ($query:ident, $then:path, $db:ident . $fetch:ident ($sql:expr $(, $bind:expr)* $(,)?)) => {{
        let sql: $crate::db::Sql = $sql;
        $crate::db::run!($query, $then, $db.$fetch(
            sqlite: sql.sqlite, postgres: sql.postgres $(, $bind)*
        ))
    }};
}

/// Opens a `Db` with `$open`, runs one statement on it (`run!`) and commits.
macro_rules! once {
    ($query:ident, $then:path, $open:expr => $fetch:ident ($($args:tt)*)) => {
        async {
            let mut db = $open.await?;
            let out = $crate::db::run!($query, $then, db.$fetch($($args)*))?;
            db.commit().await?;
            Ok::<_, $crate::StoreError>(out)
        }
        .await
    };
}

/// `sql!(db.FETCH(sqlite: "...?1...", postgres: "...$1...", bind, ...))` runs the statement of
/// `db`'s dialect with the binds, in order, with sqlx's `FETCH` (`execute`, `fetch_one`,
/// `fetch_optional`, `fetch_all`), and answers `Result<_, StoreError>` of `Row`s (or, for
/// `execute`, the number of rows affected). `sql!(db.FETCH(SQL, bind, ...))` takes a `Sql`.
///
/// `sql!(self.tenant_data(tenant) => FETCH(...))` is a statement on its own: it opens the
/// `Db`, runs the statement and commits.
macro_rules! sql {
    ($db:ident . $fetch:ident ($($args:tt)*)) => {
        $crate::db::run!(query, $crate::db::Unify::unify, $db.$fetch($($args)*))
    };
    ($open:expr => $fetch:ident ($($args:tt)*)) => {
        $crate::db::once!(query, $crate::db::Unify::unify, $open => $fetch($($args)*))
    };
}

/// `sql!` for a statement that answers one column, decoded as the type the caller asks for.
macro_rules! scalar {
    ($db:ident . $fetch:ident ($($args:tt)*)) => {
        $crate::db::run!(query_scalar, ::std::convert::identity, $db.$fetch($($args)*))
    };
    ($open:expr => $fetch:ident ($($args:tt)*)) => {
        $crate::db::once!(query_scalar, ::std::convert::identity, $open => $fetch($($args)*))
    };
}

pub(crate) use {once, run, scalar, sql};

impl Store {
    /// Operator data (tiers, tenants, runtimes, settings, policy sets...), as the connecting
    /// user, each statement on its own.
    pub(crate) async fn operator_data(&self) -> Result<Db, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(s) => Db::Sqlite(Held::Conn(s.pool().acquire().await?)),
            Backend::Postgres(p) => Db::Postgres(Held::Conn(p.pool().acquire().await?)),
        })
    }

    /// Operator data in one transaction. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`), so two writers wait for each other (busy timeout) instead of failing.
    pub(crate) async fn operator_data_tx(&self) -> Result<Db, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(s) => {
                Db::Sqlite(Held::Tx(s.pool().begin_with("BEGIN IMMEDIATE").await?))
            }
            Backend::Postgres(p) => Db::Postgres(Held::Tx(p.pool().begin().await?)),
        })
    }

    /// `tenant`'s data. On PostgreSQL, a transaction that only sees and writes `tenant`'s rows
    /// (`PgStore::scoped`); on SQLite, a connection, so every statement must filter by
    /// `tenant_id` itself.
    pub(crate) async fn tenant_data(&self, tenant: &TenantId) -> Result<Db, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(s) => Db::Sqlite(Held::Conn(s.pool().acquire().await?)),
            Backend::Postgres(p) => Db::Postgres(Held::Tx(p.scoped(tenant).await?)),
        })
    }

    /// `tenant`'s data in one transaction (`BEGIN IMMEDIATE` on SQLite).
    pub(crate) async fn tenant_data_tx(&self, tenant: &TenantId) -> Result<Db, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(s) => {
                Db::Sqlite(Held::Tx(s.pool().begin_with("BEGIN IMMEDIATE").await?))
            }
            Backend::Postgres(p) => Db::Postgres(Held::Tx(p.scoped(tenant).await?)),
        })
    }

    /// Every tenant's rows, to read only: the operator's cross-tenant reports. On PostgreSQL,
    /// a read-only transaction as `tenantry_operator` (`PgStore::operator`).
    pub(crate) async fn all_tenants(
        &self,
        _grant: &impl CrossTenantGrant,
    ) -> Result<Db, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(s) => Db::Sqlite(Held::Conn(s.pool().acquire().await?)),
            Backend::Postgres(p) => Db::Postgres(Held::Tx(p.operator().await?)),
        })
    }
}
