//! Appending a batch of ledger entries with as few statements as possible: one multi-row
//! `INSERT` per `ROWS_PER_INSERT` entries, inside the caller's transaction. The ledger's group
//! commit writes hundreds of entries per transaction under load, and each statement is a
//! round trip to the database (on SQLite, to its worker thread).
//!
//! A duplicate id fails the whole statement (and so the batch): the caller retries entry by
//! entry to find it, which is what the ledger writer does.

/// Entries per statement: 18 columns each stays far below both dialects' limits on bound
/// parameters (32,766 on SQLite, 65,535 on PostgreSQL).
pub(crate) const ROWS_PER_INSERT: usize = 256;

/// The `INSERT` of `usages` (at most `ROWS_PER_INSERT`) of `tenant`, for database `$db`.
macro_rules! usage_insert {
    ($db:ty, $tenant:expr, $usages:expr) => {{
        let mut q = sqlx::QueryBuilder::<$db>::new(
            "INSERT INTO usage_records (tenant_id, id, user_id, runtime, session_id, kind, \
             resource, provider, input_tokens, output_tokens, cpu_ms, memory_mb_ms, calls, \
             cost_micros, latency_ms, ttft_ms, status, at) ",
        );
        let tenant: &tenantry_core::TenantId = $tenant;
        q.push_values($usages.iter(), |mut b, u: &crate::record::UsageRecord| {
            b.push_bind(tenant.as_str())
                .push_bind(u.id.as_str())
                .push_bind(u.user_id.as_ref().map(tenantry_core::UserId::as_str))
                .push_bind(u.runtime.as_ref().map(tenantry_core::RuntimeName::as_str))
                .push_bind(u.session_id.as_deref())
                .push_bind(u.kind.as_str())
                .push_bind(u.resource.as_deref())
                .push_bind(u.provider.as_deref())
                .push_bind(u.input_tokens)
                .push_bind(u.output_tokens)
                .push_bind(u.cpu_ms)
                .push_bind(u.memory_mb_ms)
                .push_bind(u.calls)
                .push_bind(u.cost.micros())
                .push_bind(u.latency_ms)
                .push_bind(u.ttft_ms)
                .push_bind(u.status.as_str())
                .push_bind(u.at);
        });
        q
    }};
}

pub(crate) use usage_insert;

/// The error of a batch insert that met an existing id.
pub(crate) fn batch_conflict(n: usize) -> String {
    format!("a usage record of this batch of {n} already exists")
}
