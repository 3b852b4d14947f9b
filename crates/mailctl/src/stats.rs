//! `mailctl stats`: what smtpd's inbound checks refused since it started, by reason
//! (through the control socket).

use std::time::Duration;

use postern_config::Config;
use postern_control::{Client, Request};

use crate::output::Table;

/// Prints the counts (JSON: an object reason → count).
pub(crate) fn run(config: &Config, json: bool) -> anyhow::Result<()> {
    let mut c = Client::for_config(config, Duration::from_secs(30))?;
    let r = c.request(&Request::Stats)?;
    if !r.ok {
        anyhow::bail!("{}", r.error_text());
    }
    let stats = r.stats.unwrap_or_default();
    if json {
        println!("{}", serde_json::to_string(&stats)?);
        return Ok(());
    }
    if stats.is_empty() {
        println!("No refusals since smtpd started.");
        return Ok(());
    }
    let mut t = Table::new(&["REASON", "COUNT"]);
    for (reason, n) in &stats {
        t.row(vec![reason.clone(), n.to_string()]);
    }
    t.print();
    Ok(())
}
