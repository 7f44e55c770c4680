//! The usage report of the ledger, for the operator (`/v1/admin/usage`): exact sums per tenant
//! and group over a time window.

use super::{parse_tenant, require_tenant};
use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::Money;
use tenantry_store::{UsageGroup, UsageQuery, UsageRow};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/admin/usage", get(usage))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageParams {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    group_by: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

fn parse_group(raw: &str) -> ApiResult<UsageGroup> {
    match raw {
        "tenant" => Ok(UsageGroup::Tenant),
        "user" => Ok(UsageGroup::User),
        "model" => Ok(UsageGroup::Model),
        "runtime" => Ok(UsageGroup::Runtime),
        "day" => Ok(UsageGroup::Day),
        "kind" => Ok(UsageGroup::Kind),
        other => Err(ApiError::invalid(format!(
            "group_by {other:?} is not known: use tenant, user, model, runtime, day or kind"
        ))),
    }
}

/// The usage report of the ledger: exact sums per tenant and group over `[from, to)`.
///
/// `from` and `to` are unix seconds, RFC 3339 UTC times (`2026-11-01T00:00:00Z`) or dates
/// (`2026-11-01`); a date as `to` includes that whole day. By default: from the start of the
/// current UTC month until now, grouped by model.
async fn usage(
    op: Operator,
    State(state): State<AppState>,
    params: Result<Query<UsageParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(p) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    let now = tenantry_core::unix_now();
    let tenant = p.tenant.as_deref().map(parse_tenant).transpose()?;
    let group_by = parse_group(p.group_by.as_deref().unwrap_or("model"))?;
    let from = match p.from.as_deref() {
        Some(raw) => {
            time::parse(raw, false).map_err(|m| ApiError::invalid(format!("from: {m}")))?
        }
        None => time::month_start(now),
    };
    let to = match p.to.as_deref() {
        Some(raw) => time::parse(raw, true).map_err(|m| ApiError::invalid(format!("to: {m}")))?,
        None => now + 1,
    };
    if to <= from {
        return Err(ApiError::invalid("`to` must be after `from`"));
    }
    if let Some(t) = &tenant {
        require_tenant(&state, t).await?;
    }
    // This replica's pending ledger entries first, so the operator reads their own calls.
    if !state.ledger.flush(std::time::Duration::from_secs(5)).await {
        tracing::warn!("the usage report does not wait longer for the ledger writer");
    }
    let query = UsageQuery {
        tenant: tenant.clone(),
        from,
        to,
        group_by,
    };
    let rows = state.store.usage_report(op.0, &query).await?;
    Ok(Json(json!({
        "tenant": tenant,
        "group_by": group_by,
        "from": from,
        "to": to,
        "rows": rows,
        "totals": totals(&rows),
    })))
}

fn totals(rows: &[UsageRow]) -> Value {
    let sum = |f: fn(&UsageRow) -> i64| rows.iter().map(f).fold(0i64, i64::saturating_add);
    let cost = rows
        .iter()
        .map(|r| r.cost.micros())
        .fold(0i64, i64::saturating_add);
    json!({
        "calls": sum(|r| r.calls),
        "input_tokens": sum(|r| r.input_tokens),
        "output_tokens": sum(|r| r.output_tokens),
        "cpu_ms": sum(|r| r.cpu_ms),
        "memory_mb_ms": sum(|r| r.memory_mb_ms),
        "cost": Money::from_micros(cost),
        "records": sum(|r| r.records),
    })
}

/// UTC calendar arithmetic for the report's window, without a date library.
mod time {
    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// (year, month) of a day count since 1970-01-01.
    fn civil_from_days(z: i64) -> (i64, i64) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(m <= 2), m)
    }

    /// Unix seconds at the start of the UTC month of `now`.
    pub fn month_start(now: i64) -> i64 {
        let (y, m) = civil_from_days(now.div_euclid(86_400));
        days_from_civil(y, m, 1) * 86_400
    }

    fn number(s: &str, what: &str) -> Result<i64, String> {
        s.parse()
            .map_err(|_| format!("{what} {s:?} is not a number"))
    }

    fn date(s: &str) -> Result<i64, String> {
        let parts: Vec<&str> = s.split('-').collect();
        let [y, m, d] = parts.as_slice() else {
            return Err(format!("{s:?} is not a date: write YYYY-MM-DD"));
        };
        let (y, m, d) = (number(y, "year")?, number(m, "month")?, number(d, "day")?);
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
            return Err(format!("{s:?} is not a date: write YYYY-MM-DD"));
        }
        Ok(days_from_civil(y, m, d))
    }

    /// Unix seconds from unix seconds, `YYYY-MM-DD` (with `end_of_day`, the next midnight),
    /// or `YYYY-MM-DDTHH:MM:SS[Z]` (UTC).
    pub fn parse(raw: &str, end_of_day: bool) -> Result<i64, String> {
        let raw = raw.trim();
        if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
            return number(raw, "time");
        }
        if let Some((day, clock)) = raw.split_once('T') {
            let clock = clock.strip_suffix('Z').unwrap_or(clock);
            let hms: Vec<&str> = clock.split(':').collect();
            let [h, mi, s] = hms.as_slice() else {
                return Err(format!("{raw:?}: write the time as HH:MM:SS in UTC"));
            };
            let (h, mi, s) = (
                number(h, "hour")?,
                number(mi, "minute")?,
                number(s, "second")?,
            );
            if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..61).contains(&s) {
                return Err(format!("{raw:?}: write the time as HH:MM:SS in UTC"));
            }
            return Ok(date(day)? * 86_400 + h * 3600 + mi * 60 + s);
        }
        let days = date(raw)?;
        Ok((days + i64::from(end_of_day)) * 86_400)
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used)]
        use super::*;

        #[test]
        fn dates_and_times() {
            assert_eq!(parse("1970-01-01", false).unwrap(), 0);
            assert_eq!(parse("1970-01-01", true).unwrap(), 86_400);
            assert_eq!(parse("2026-11-26", false).unwrap(), 1_795_651_200);
            assert_eq!(parse("2026-11-26T05:00:00Z", false).unwrap(), 1_795_669_200);
            assert_eq!(parse("1795651200", true).unwrap(), 1_795_651_200);
            assert_eq!(parse("2024-02-29", false).unwrap(), 1_709_164_800);
            assert!(parse("2026-13-01", false).is_err());
            assert!(parse("yesterday", false).is_err());
            assert_eq!(
                month_start(1_795_669_200),
                parse("2026-11-01", false).unwrap()
            );
            assert_eq!(month_start(0), 0);
            assert_eq!(
                month_start(parse("2024-03-01", false).unwrap() - 1),
                parse("2024-02-01", false).unwrap()
            );
        }
    }
}
