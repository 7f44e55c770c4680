//! The versioned schema migrations of each dialect and the plan of which to apply.
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

use crate::StoreError;

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
