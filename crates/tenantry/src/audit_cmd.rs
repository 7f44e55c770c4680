//! `tenantry audit`: the audit log (control-plane changes, policy decisions), for the operator.

use anyhow::{Result, anyhow};
use clap::Args;
use serde_json::Value;

use crate::admin::print;
use crate::cli::Target;
use crate::client::AdminClient;
use crate::models_cmd::{encode, utc_time};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this tenant's events [default: every tenant's and the platform's].
    #[arg(long)]
    tenant: Option<String>,
    /// Only events since this time: unix seconds, or an age such as 90m, 12h or 7d.
    #[arg(long)]
    since: Option<String>,
    /// Only actions starting with this (e.g. `tool.decision`, `policy`, `tenant.update`).
    #[arg(long)]
    action: Option<String>,
    /// At most this many events, newest first [default: 100].
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print the events as JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

/// `since` as unix seconds: given as such, or as an age before `now`.
fn since_of(raw: &str, now: i64) -> Result<i64> {
    let raw = raw.trim();
    if let Ok(secs) = raw.parse::<i64>() {
        return Ok(secs);
    }
    let bad = || anyhow!("--since {raw:?}: write unix seconds or an age such as 90m, 12h or 7d");
    let split = raw.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = raw.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    Ok(now - n.saturating_mul(unit))
}

pub async fn audit(args: AuditArgs) -> Result<()> {
    let client = AdminClient::new(&args.target)?;
    let mut events: Vec<Value> = Vec::new();
    let mut before: Option<String> = None;
    // Pages of at most 1,000 until `limit` events or the end.
    while events.len() < args.limit as usize {
        let want = (args.limit as usize - events.len()).min(1000);
        let mut q = vec![format!("limit={want}")];
        if let Some(t) = &args.tenant {
            q.push(format!("tenant={}", encode(t)));
        }
        if let Some(s) = &args.since {
            q.push(format!("since={}", since_of(s, tenantry_core::unix_now())?));
        }
        if let Some(a) = &args.action {
            q.push(format!("action={}", encode(a)));
        }
        if let Some(b) = &before {
            q.push(format!("before={}", encode(b)));
        }
        let page = client
            .get(&format!("/v1/admin/audit?{}", q.join("&")))
            .await?;
        events.extend(page["events"].as_array().cloned().unwrap_or_default());
        match page["next_before"].as_str() {
            Some(next) => before = Some(next.to_string()),
            None => break,
        }
    }
    if args.json {
        return print(&Value::Array(events));
    }
    print!("{}", render(&events));
    Ok(())
}

/// The events as a table a person reads, newest first.
fn render(events: &[Value]) -> String {
    let mut out = format!(
        "{:<20} {:<16} {:<24} {:<26} {:<24} {}\n",
        "TIME", "TENANT", "ACTOR", "ACTION", "TARGET", "OUTCOME"
    );
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    for e in events {
        out.push_str(&format!(
            "{:<20} {:<16} {:<24} {:<26} {:<24} {}\n",
            utc_time(e["at"].as_i64().unwrap_or(0)),
            text(&e["tenant"]),
            text(&e["actor"]),
            text(&e["action"]),
            text(&e["target"]),
            text(&e["outcome"]),
        ));
    }
    if events.is_empty() {
        out.push_str("(no events)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_seconds_or_an_age() {
        assert_eq!(since_of("1700000000", 0).ok(), Some(1_700_000_000));
        assert_eq!(since_of("90m", 10_000).ok(), Some(10_000 - 5400));
        assert_eq!(since_of("7d", 1_000_000).ok(), Some(1_000_000 - 7 * 86_400));
        for bad in ["", "h", "3w", "1.5h", "-"] {
            assert!(since_of(bad, 0).is_err(), "{bad:?}");
        }
    }
}
