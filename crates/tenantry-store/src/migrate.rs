//! The versioned schema migrations of each dialect, the plan of which to apply, and applying
//! them (`Store::migrate`, at connect).
//!
//! A migration is `(name, sql)` where the name starts with its version number (`0001_...`).
//! The applied ones are recorded in `schema_migrations(version, name, applied_at)`; each
//! pending one is applied, with its record, in one transaction of its own (the backends hold a
//! lock for it: `BEGIN IMMEDIATE` on SQLite, `pg_advisory_xact_lock` on PostgreSQL), so a
//! restart, or several replicas starting at once, apply each migration exactly once.
//!
//! A published migration must never be edited or renumbered: a database that recorded a
//! version under another name refuses to start. Versions newer than this build knows are
//! accepted (a newer replica migrated first during a rolling deploy), so migrations must only
//! ever add to the schema in a way older builds tolerate.

use std::collections::BTreeMap;

use tenantry_core::unix_now;

use crate::db::{Db, Held, sql};
use crate::{Backend, Store, StoreError};

/// SQLite migrations, in order.
pub(crate) const SQLITE: &[(&str, &str)] = &[
    (
        "0001_registry_and_api_keys",
        include_str!("../migrations/sqlite/0001_registry_and_api_keys.sql"),
    ),
    (
        "0002_runtimes_sessions_usage",
        include_str!("../migrations/sqlite/0002_runtimes_sessions_usage.sql"),
    ),
    (
        "0003_tier_and_tenant_settings",
        include_str!("../migrations/sqlite/0003_tier_and_tenant_settings.sql"),
    ),
    (
        "0004_policy_sets_and_vault",
        include_str!("../migrations/sqlite/0004_policy_sets_and_vault.sql"),
    ),
    (
        "0005_tool_targets",
        include_str!("../migrations/sqlite/0005_tool_targets.sql"),
    ),
    (
        "0006_tenant_uid_and_session_node",
        include_str!("../migrations/sqlite/0006_tenant_uid_and_session_node.sql"),
    ),
    (
        "0007_guardrail_profiles",
        include_str!("../migrations/sqlite/0007_guardrail_profiles.sql"),
    ),
    (
        "0009_audit_events",
        include_str!("../migrations/sqlite/0009_audit_events.sql"),
    ),
    (
        "0010_memory",
        include_str!("../migrations/sqlite/0010_memory.sql"),
    ),
    (
        "0011_knowledge",
        include_str!("../migrations/sqlite/0011_knowledge.sql"),
    ),
    (
        "0012_access_keys",
        include_str!("../migrations/sqlite/0012_access_keys.sql"),
    ),
];

/// PostgreSQL migrations, in order.
pub(crate) const POSTGRES: &[(&str, &str)] = &[
    (
        "0001_tenantry_app_role",
        include_str!("../migrations/postgres/0001_tenantry_app_role.sql"),
    ),
    (
        "0002_registry_and_api_keys",
        include_str!("../migrations/postgres/0002_registry_and_api_keys.sql"),
    ),
    (
        "0003_runtimes_sessions_usage",
        include_str!("../migrations/postgres/0003_runtimes_sessions_usage.sql"),
    ),
    (
        "0004_tier_and_tenant_settings",
        include_str!("../migrations/postgres/0004_tier_and_tenant_settings.sql"),
    ),
    (
        "0005_policy_sets_and_vault",
        include_str!("../migrations/postgres/0005_policy_sets_and_vault.sql"),
    ),
    (
        "0006_tool_targets",
        include_str!("../migrations/postgres/0006_tool_targets.sql"),
    ),
    (
        "0007_tenant_uid_and_session_node",
        include_str!("../migrations/postgres/0007_tenant_uid_and_session_node.sql"),
    ),
    (
        "0008_guardrail_profiles",
        include_str!("../migrations/postgres/0008_guardrail_profiles.sql"),
    ),
    (
        "0010_audit_events",
        include_str!("../migrations/postgres/0010_audit_events.sql"),
    ),
    (
        "0011_memory",
        include_str!("../migrations/postgres/0011_memory.sql"),
    ),
    (
        "0012_knowledge",
        include_str!("../migrations/postgres/0012_knowledge.sql"),
    ),
    (
        "0013_access_keys",
        include_str!("../migrations/postgres/0013_access_keys.sql"),
    ),
];

/// The lock every PostgreSQL migration transaction takes first ("tenantry" in ASCII).
pub(crate) const PG_ADVISORY_LOCK_KEY: i64 = 0x7465_6e61_6e74_7279;

/// One migration to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The version number a migration name starts with.
pub(crate) fn version_of(name: &str) -> Result<i64, StoreError> {
    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().map_err(|_| {
        StoreError::Migration(format!(
            "migration {name:?} does not start with a version number"
        ))
    })
}

/// The migrations of `all` that `applied` (version -> name) lacks, in order. Fails if the list
/// is out of order or if the database recorded a known version under another name.
pub(crate) fn pending(
    all: &'static [(&'static str, &'static str)],
    applied: &BTreeMap<i64, String>,
) -> Result<Vec<Migration>, StoreError> {
    let mut out = Vec::new();
    let mut last = 0;
    for &(name, sql) in all {
        let version = version_of(name)?;
        if version <= last {
            return Err(StoreError::Migration(format!(
                "migration {name:?} is out of order (after version {last})"
            )));
        }
        last = version;
        match applied.get(&version) {
            Some(recorded) if recorded == name => {}
            Some(recorded) => {
                return Err(StoreError::Migration(format!(
                    "database recorded migration {version} as {recorded:?}, this build calls it {name:?}; \
                     a published migration was edited or renumbered"
                )));
            }
            None => out.push(Migration { version, name, sql }),
        }
    }
    Ok(out)
}

impl Store {
    /// Applies the pending migrations of the store's dialect, each with its record in one
    /// transaction of its own that holds the migration lock.
    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        let all = match &self.backend {
            Backend::Sqlite(_) => SQLITE,
            Backend::Postgres(_) => POSTGRES,
        };
        let mut db = self.migration_tx().await?;
        script(
            &mut db,
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    INTEGER NOT NULL PRIMARY KEY,
                name       TEXT    NOT NULL,
                applied_at INTEGER NOT NULL
            ) STRICT",
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    BIGINT NOT NULL PRIMARY KEY,
                name       TEXT   NOT NULL,
                applied_at BIGINT NOT NULL
            )",
        )
        .await?;
        let recorded = applied(&mut db).await?;
        db.commit().await?;

        for Migration { version, name, sql } in pending(all, &recorded)? {
            let mut db = self.migration_tx().await?;
            // Another process or replica may have applied it since we looked.
            if applied(&mut db).await?.contains_key(&version) {
                continue;
            }
            script(&mut db, sql, sql)
                .await
                .map_err(|e| StoreError::Migration(format!("{name}: {e}")))?;
            sql!(db.execute(
                sqlite: "INSERT INTO schema_migrations (version, name, applied_at)
                         VALUES (?1, ?2, ?3)",
                postgres: "INSERT INTO schema_migrations (version, name, applied_at)
                           VALUES ($1, $2, $3)",
                version,
                name,
                unix_now(),
            ))?;
            db.commit().await?;
        }
        Ok(())
    }

    /// A transaction of the connecting user that holds the migration lock: `BEGIN IMMEDIATE`
    /// on SQLite, `PG_ADVISORY_LOCK_KEY` on PostgreSQL.
    async fn migration_tx(&self) -> Result<Db, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => self.operator_data_tx().await,
            Backend::Postgres(p) => Ok(Db::Postgres(Held::Tx(p.locked().await?))),
        }
    }
}

/// Runs a script that may hold several statements (unprepared), of `db`'s dialect.
async fn script(
    db: &mut Db,
    sqlite: &'static str,
    postgres: &'static str,
) -> Result<(), sqlx::Error> {
    match db {
        Db::Sqlite(held) => sqlx::raw_sql(sqlite).execute(held.conn()).await.map(drop),
        Db::Postgres(held) => sqlx::raw_sql(postgres).execute(held.conn()).await.map(drop),
    }
}

/// The migrations the database recorded: version -> name.
async fn applied(db: &mut Db) -> Result<BTreeMap<i64, String>, StoreError> {
    let rows = sql!(db.fetch_all(
        sqlite: "SELECT version, name FROM schema_migrations",
        postgres: "SELECT version, name FROM schema_migrations",
    ))?;
    rows.iter()
        .map(|row| Ok((row.int("version")?, row.text("name")?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_lists_are_ordered_and_named() {
        for list in [SQLITE, POSTGRES] {
            let all = pending(list, &BTreeMap::new()).map(|p| p.len());
            assert_eq!(all.ok(), Some(list.len()));
        }
    }

    #[test]
    fn applied_versions_are_skipped_and_renames_refused() {
        let mut applied = BTreeMap::new();
        applied.insert(1, "0001_tenantry_app_role".to_owned());
        let rest = pending(POSTGRES, &applied).unwrap_or_default();
        assert_eq!(rest.first().map(|m| m.version), Some(2));

        applied.insert(2, "0002_something_else".to_owned());
        assert!(matches!(
            pending(POSTGRES, &applied),
            Err(StoreError::Migration(_))
        ));
    }

    #[test]
    fn names_need_a_version() {
        assert!(version_of("init").is_err());
        assert_eq!(version_of("0012_x").ok(), Some(12));
    }
}
