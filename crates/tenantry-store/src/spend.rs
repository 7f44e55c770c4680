//! What the budgets of the limiter count, read back from the usage ledger: the model spend
//! (tokens and money) of one tenant's users since a moment. An in-process limiter starts empty,
//! so the server seeds it from this at start-up, and a budget holds across restarts on every
//! limiter backend.
//!
//! Only `model` entries count: they are what the model gateway reserves and settles against
//! the budgets (tool prices and compute are billed, not budgeted). A tenant's read, in its
//! scope like every tenant read (on PostgreSQL under row-level security). This module must
//! never count another tenant's entries, nor write to the ledger.

use tenantry_core::{Money, TenantScope, UserId};

use crate::db::sql;
use crate::row::Row;
use crate::{Store, StoreError};

/// The model spend of one user of a tenant over a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpend {
    /// `None` for entries without a user (none are written today).
    pub user_id: Option<UserId>,
    /// Input plus output tokens.
    pub tokens: i64,
    pub cost: Money,
}

fn spend_from_row(row: &Row) -> Result<ModelSpend, StoreError> {
    let user_id = match row.text("user_id")?.as_str() {
        "" => None,
        u => Some(UserId::new(u).map_err(StoreError::corrupt)?),
    };
    Ok(ModelSpend {
        user_id,
        tokens: row.int("tokens")?,
        cost: Money::from_micros(row.int("cost_micros")?),
    })
}

impl Store {
    /// The scope's model spend since `since` (unix seconds, inclusive), per user: what the
    /// limiter's token and money budgets count, for seeding an in-process limiter at start-up.
    pub async fn model_spend_since(
        &self,
        scope: &TenantScope,
        since: i64,
    ) -> Result<Vec<ModelSpend>, StoreError> {
        let tenant = scope.tenant();
        let rows = sql!(self.tenant_data(tenant) => fetch_all(
            sqlite: "SELECT COALESCE(user_id, '') AS user_id,
                            sum(input_tokens + output_tokens) AS tokens,
                            sum(cost_micros) AS cost_micros
                     FROM usage_records
                     WHERE tenant_id = ?1 AND kind = 'model' AND at >= ?2
                     GROUP BY COALESCE(user_id, '')
                     ORDER BY 1",
            postgres: "SELECT COALESCE(user_id, '') AS user_id,
                              CAST(sum(input_tokens + output_tokens) AS BIGINT) AS tokens,
                              CAST(sum(cost_micros) AS BIGINT) AS cost_micros
                       FROM usage_records
                       WHERE tenant_id = $1 AND kind = 'model' AND at >= $2
                       GROUP BY COALESCE(user_id, '')
                       ORDER BY 1",
            tenant.as_str(),
            since,
        ))?;
        rows.iter().map(spend_from_row).collect()
    }
}
