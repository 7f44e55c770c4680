//! `tenantry logs`: a session's agent output, for the operator (any tenant's session).

use anyhow::{Result, anyhow, bail};
use clap::Args;
use serde_json::Value;

use crate::cli::Target;
use crate::client::AdminClient;
use crate::models_cmd::utc_time;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The session whose agent output to print.
    session: String,
    /// The tenant the session belongs to.
    #[arg(long)]
    tenant: String,
    /// How many of the last lines [default: 200, at most 10000].
    #[arg(long)]
    tail: Option<usize>,
    /// Keep printing new lines as the agent writes them, until interrupted.
    #[arg(long, short)]
    follow: bool,
    #[command(flatten)]
    target: Target,
}

pub async fn logs(args: LogsArgs) -> Result<()> {
    let client = AdminClient::new(&args.target)?;
    let mut path = format!(
        "/v1/admin/tenants/{}/sessions/{}/logs?tail={}",
        args.tenant,
        args.session,
        args.tail.unwrap_or(200)
    );
    if !args.follow {
        let body = client.get(&path).await?;
        for line in body["lines"].as_array().into_iter().flatten() {
            print_line(line);
        }
        return Ok(());
    }
    path.push_str("&follow=true");
    let mut response = client.open_stream(&path).await?;
    let mut pending = String::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| anyhow!("the log stream broke off: {e}"))?
    {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            if let Some(data) = event.trim_end().strip_prefix("event: log\ndata: ") {
                match serde_json::from_str::<Value>(data) {
                    Ok(line) => print_line(&line),
                    Err(e) => bail!("the server sent a log line that is not JSON: {e}"),
                }
            }
        }
    }
    Ok(())
}

fn print_line(line: &Value) {
    let ms = line["time_ms"].as_i64().unwrap_or(0);
    let text = line["text"].as_str().unwrap_or("");
    println!(
        "{}.{:03}  {text}",
        utc_time(ms.div_euclid(1000)).trim_end_matches('Z'),
        ms.rem_euclid(1000)
    );
}
