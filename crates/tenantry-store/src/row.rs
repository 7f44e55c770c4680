//! A row of either dialect, and typed access to its columns, so each record is decoded by one
//! function for both backends.
//!
//! Decoding is strict: a column of another type, an id that no longer validates or JSON that
//! no longer parses is reported as `StoreError::Corrupt`, never patched up or skipped. JSON
//! columns are always read as text (PostgreSQL statements select them as `col::text AS col`).
//! This module must never run a query.

use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Postgres, Row as _, Sqlite, Type};

use crate::StoreError;

/// A row that `sql!` fetched.
#[derive(Debug)]
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Row {
    fn get<T>(&self, col: &str) -> Result<T, StoreError>
    where
        T: for<'r> Decode<'r, Sqlite>
            + Type<Sqlite>
            + for<'r> Decode<'r, Postgres>
            + Type<Postgres>,
    {
        match self {
            Row::Sqlite(row) => row.try_get(col),
            Row::Postgres(row) => row.try_get(col),
        }
        .map_err(|e| StoreError::corrupt(format!("column {col}: {e}")))
    }

    pub(crate) fn text(&self, col: &str) -> Result<String, StoreError> {
        self.get(col)
    }

    pub(crate) fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.get(col)
    }

    pub(crate) fn int(&self, col: &str) -> Result<i64, StoreError> {
        self.get(col)
    }

    pub(crate) fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        self.get(col)
    }

    pub(crate) fn float(&self, col: &str) -> Result<f64, StoreError> {
        self.get(col)
    }

    pub(crate) fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError> {
        self.get(col)
    }

    /// A text column parsed by `parse` (an id type's `new`).
    pub(crate) fn parsed<T, E: std::fmt::Display>(
        &self,
        col: &str,
        parse: impl FnOnce(String) -> Result<T, E>,
    ) -> Result<T, StoreError> {
        parse(self.text(col)?).map_err(StoreError::corrupt)
    }

    /// A nullable text column parsed by `parse` when it is not NULL.
    pub(crate) fn opt_parsed<T, E: std::fmt::Display>(
        &self,
        col: &str,
        parse: impl FnOnce(String) -> Result<T, E>,
    ) -> Result<Option<T>, StoreError> {
        self.opt_text(col)?
            .map(parse)
            .transpose()
            .map_err(StoreError::corrupt)
    }

    /// A JSON column (read as text) deserialized; `what` names the record in the error.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        col: &str,
    ) -> Result<T, StoreError> {
        let text = self.text(col)?;
        serde_json::from_str(&text).map_err(|e| StoreError::corrupt(format!("{what} {col}: {e}")))
    }
}

/// A JSON column in a column list: its bare name (`names`, for an insert), as it is in a
/// select list on SQLite, as text in one on PostgreSQL (whose `jsonb` sqlx does not decode
/// into a `String`).
macro_rules! json_col {
    (names, $col:literal) => {
        $col
    };
    (sqlite, $col:literal) => {
        $col
    };
    (postgres, $col:literal) => {
        concat!($col, "::text AS ", $col)
    };
}

pub(crate) use json_col;

/// The JSON text of a value to store.
pub(crate) fn to_json(value: &impl Serialize) -> Result<String, StoreError> {
    // Serializing our own plain data types cannot fail; if it ever does, it is a bug, not a
    // database problem.
    serde_json::to_string(value).map_err(|e| StoreError::Database(format!("encoding JSON: {e}")))
}
