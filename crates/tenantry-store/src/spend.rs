//! What the budgets of the limiter count, read back from the usage ledger: the model spend
//! (tokens and money) of one tenant's users since a moment. An in-process limiter starts empty,
//! so the server seeds it from this at start-up, and a budget holds across restarts on every
//! limiter backend.
//!
//! Only `model` entries count: they are what the model gateway reserves and settles against
//! the budgets (tool prices and compute are billed, not budgeted). A tenant's read, in its
//! scope like every tenant read (on PostgreSQL under row-level security).

use tenantry_core::{Money, UserId};

use crate::StoreError;
use crate::postgres::PgStore;
use crate::record::Columns;
use crate::sqlite::SqliteStore;

/// The model spend of one user of a tenant over a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpend {
    /// `None` for entries without a user (none are written today).
    pub user_id: Option<UserId>,
    /// Input plus output tokens.
    pub tokens: i64,
    pub cost: Money,
}

fn spend_from_row(row: &impl Columns) -> Result<ModelSpend, StoreError> {
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

impl SqliteStore {
    pub(crate) async fn model_spend_since(
        &self,
        tenant: &tenantry_core::TenantId,
        since: i64,
    ) -> Result<Vec<ModelSpend>, StoreError> {
        let rows = sqlx::query(
            "SELECT COALESCE(user_id, '') AS user_id,
                    sum(input_tokens + output_tokens) AS tokens, sum(cost_micros) AS cost_micros
             FROM usage_records
             WHERE tenant_id = ?1 AND kind = 'model' AND at >= ?2
             GROUP BY COALESCE(user_id, '')
             ORDER BY 1",
        )
        .bind(tenant.as_str())
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(spend_from_row).collect()
    }
}

impl PgStore {
    pub(crate) async fn model_spend_since(
        &self,
        tenant: &tenantry_core::TenantId,
        since: i64,
    ) -> Result<Vec<ModelSpend>, StoreError> {
        let mut tx = self.scoped(tenant).await?;
        let rows = sqlx::query(
            "SELECT COALESCE(user_id, '') AS user_id,
                    CAST(sum(input_tokens + output_tokens) AS BIGINT) AS tokens,
                    CAST(sum(cost_micros) AS BIGINT) AS cost_micros
             FROM usage_records
             WHERE tenant_id = $1 AND kind = 'model' AND at >= $2
             GROUP BY COALESCE(user_id, '')
             ORDER BY 1",
        )
        .bind(tenant.as_str())
        .bind(since)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(spend_from_row).collect()
    }
}
