//! `mailctl dkim generate|show`: DKIM keys for smtpd's signing, and the DNS records to
//! publish for them (the role of `opendkim-genkey`).

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use postern_config::Config;
use postern_dns::dkim::{self, Algorithm};
use serde_json::json;

/// `mailctl dkim …`
#[derive(Subcommand, Debug)]
pub enum DkimCmd {
    /// Make a new key for DOMAIN (written to `[dkim] key_dir`/DOMAIN/SELECTOR.key, mode
    /// 0600) and print the TXT record to publish. smtpd signs with it from its next
    /// delivery on; publish the record first.
    Generate {
        /// The signing domain (the From: domain of the mail to sign).
        domain: String,
        /// The selector (default: the current year and month, e.g. `202611`).
        #[arg(long, short)]
        selector: Option<String>,
        /// Key type: RSA-2048 (understood everywhere) or Ed25519 (RFC 8463; sign with both
        /// for the best of each).
        #[arg(long, short, value_enum, default_value_t = Alg::Rsa)]
        algorithm: Alg,
    },
    /// Show DOMAIN's keys and the TXT records to publish for them.
    Show {
        /// The signing domain.
        domain: String,
    },
}

/// `--algorithm`.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum Alg {
    /// RSA, 2048 bits.
    Rsa,
    /// Ed25519.
    Ed25519,
}

/// Runs a `dkim` command.
pub(crate) fn run(cmd: &DkimCmd, config: &Config, json: bool) -> anyhow::Result<()> {
    let key_dir = config.dkim_key_dir();
    match cmd {
        DkimCmd::Generate {
            domain,
            selector,
            algorithm,
        } => {
            let selector = selector.clone().unwrap_or_else(default_selector);
            let algorithm = match algorithm {
                Alg::Rsa => Algorithm::Rsa,
                Alg::Ed25519 => Algorithm::Ed25519,
            };
            let (path, key) = dkim::generate(&key_dir, domain, &selector, algorithm)?;
            let record = key.dns_record(domain);
            if json {
                println!(
                    "{}",
                    json!({
                        "domain": domain.trim_end_matches('.').to_ascii_lowercase(),
                        "selector": selector,
                        "algorithm": algorithm.tag(),
                        "key_file": path,
                        "dns_record": record,
                    })
                );
            } else {
                println!("# Key written to {}", path.display());
                println!("# Publish this record, then mail from {domain} is signed by smtpd:");
                println!("{record}");
            }
        }
        DkimCmd::Show { domain } => {
            let keys = dkim::load_domain(&key_dir, domain)?;
            if keys.is_empty() {
                anyhow::bail!(
                    "no DKIM key for {domain} in {} (mailctl dkim generate {domain})",
                    dkim::domain_dir(&key_dir, domain).display()
                );
            }
            if json {
                let list: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "selector": k.selector,
                            "algorithm": k.algorithm.tag(),
                            "key_file": key_file(&key_dir, domain, &k.selector),
                            "dns_record": k.dns_record(domain),
                        })
                    })
                    .collect();
                println!("{}", json!(list));
            } else {
                for k in &keys {
                    println!(
                        "# {} ({})",
                        key_file(&key_dir, domain, &k.selector).display(),
                        dkim::describe(k)
                    );
                    println!("{}", k.dns_record(domain));
                }
            }
        }
    }
    Ok(())
}

fn key_file(key_dir: &std::path::Path, domain: &str, selector: &str) -> PathBuf {
    dkim::domain_dir(key_dir, domain).join(format!("{selector}.key"))
}

/// `YYYYMM` of today (UTC).
fn default_selector() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}")
}
