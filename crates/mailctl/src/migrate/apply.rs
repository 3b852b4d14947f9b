//! `mailctl migrate apply`: the config file, DKIM keys, the import, the switch steps.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use postern_config::Config;
use postern_directory::{Directory, DirectoryError, NewSecret};
use serde_json::json;

use super::plan::{DatabasePlan, Import, Plan};
use super::render::{self, OutPaths};
use super::steps;
use super::{ApplyArgs, old_values, read_limited, read_source};

/// The Postfix parameters the switch steps change.
const STEP_PARAMS: &[&str] = &[
    "smtpd_sasl_type",
    "smtpd_sasl_path",
    "virtual_mailbox_domains",
    "virtual_mailbox_maps",
    "virtual_alias_maps",
    "virtual_transport",
];

pub(super) fn run(a: &ApplyArgs, json: bool) -> anyhow::Result<()> {
    let source = read_source(&a.source)?;
    let plan = super::plan::build(&source.inputs);
    if !plan.blockers.is_empty() && !a.force {
        bail!(
            "the plan has blockers (run `mailctl migrate plan`; --force to go on anyway):\n- {}",
            plan.blockers.join("\n- ")
        );
    }
    let out = absolute(&a.out)?;
    refuse_old_config(&out, &a.source.postfix, &a.source.dovecot)?;
    if out.exists() && !a.force {
        bail!("{} exists already (--force to replace it)", out.display());
    }
    let dir = out
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;

    let mut paths = OutPaths {
        state_dir: a.state_dir.clone(),
        run_dir: a.run_dir.clone(),
        ..OutPaths::default()
    };
    if let DatabasePlan::Import(_) = &plan.database
        && let Some(s) = &a.state_dir
    {
        paths.sqlite_url = Some(format!("sqlite://{}/postern.db", absolute(s)?.display()));
    }
    if let DatabasePlan::Sql {
        password: Some(p), ..
    } = &plan.database
    {
        let f = dir.join("db-password");
        write_secret(&f, p)?;
        paths.db_password_file = Some(f);
    }
    if let Some(p) = &plan.smtpd.relayhost_password {
        let f = dir.join("relay.password");
        write_secret(&f, p)?;
        paths.relay_password_file = Some(f);
    }
    let source_desc = format!(
        "{} and {}",
        a.source.postfix.display(),
        a.source.dovecot.display()
    );
    let text = render::config_toml(&plan, &paths, &source_desc);
    // The file must load with Postern's own loader before it replaces anything.
    Config::parse(&text, &dir)
        .map_err(|e| anyhow::anyhow!("the written config would not load: {e}"))?;
    write_atomic(&out, text.as_bytes(), 0o640)?;
    let config = Config::load(&out)?;

    let mut report = Vec::new();
    report.push(format!("wrote {}", out.display()));
    for k in &plan.dkim {
        report.push(copy_dkim_key(&config, k)?);
    }
    let mut imported = json!(null);
    let mut not_imported = 0;
    if let DatabasePlan::Import(i) = &plan.database {
        let state = config.state_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&state)
            .with_context(|| format!("creating {}", state.display()))?;
        let (lines, counts, failed) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(import_rows(&config, i))?;
        report.extend(lines);
        imported = counts;
        not_imported = failed;
    }
    let old = old_values(&source.inputs, STEP_PARAMS);
    let sample = sample_account(&plan);
    let steps = steps::steps(&steps::Context {
        postfix_dir: &a.source.postfix,
        config: &out,
        auth_socket: &config.socket_path(&config.authd.auth_socket),
        socketmap_socket: &config.socket_path(&config.authd.socketmap_socket),
        lmtp_socket: &config.socket_path(&config.lmtp.socket),
        old: &old,
        sample_account: sample.as_deref(),
    });
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "config": out,
                "report": report,
                "imported": imported,
                "dkim": plan.dkim,
                "steps": steps,
            }))?
        );
    } else {
        for r in &report {
            println!("{r}");
        }
        print!("{}", steps::render(&steps));
    }
    if not_imported > 0 {
        bail!("{not_imported} account(s) could not be imported (listed above)");
    }
    Ok(())
}

fn sample_account(plan: &Plan) -> Option<String> {
    match &plan.database {
        DatabasePlan::Import(i) => i.accounts.first().map(|a| a.address.clone()),
        _ => None,
    }
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir()?.join(p)
    })
}

/// The new config may not be written into the old configuration's directories.
fn refuse_old_config(out: &Path, postfix: &Path, dovecot: &Path) -> anyhow::Result<()> {
    let parent = out
        .parent()
        .and_then(|p| fs::canonicalize(p).ok())
        .unwrap_or_else(|| out.to_owned());
    for old in [postfix, dovecot] {
        let old_dir = if old.is_file() {
            old.parent().unwrap_or(old).to_owned()
        } else {
            old.to_owned()
        };
        if let Ok(o) = fs::canonicalize(&old_dir)
            && parent.starts_with(&o)
        {
            bail!(
                "{} is inside {}: the old configuration is never touched, write elsewhere",
                out.display(),
                o.display()
            );
        }
    }
    Ok(())
}

/// Writes a secret file, mode 0600 (replacing an earlier one of ours).
fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    write_atomic(path, format!("{secret}\n").as_bytes(), 0o600)
}

fn write_atomic(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let r = f
        .write_all(data)
        .and_then(|()| f.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = r {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// Copies an OpenDKIM key to `KEY_DIR/DOMAIN/SELECTOR.key` and checks that Postern loads it.
fn copy_dkim_key(config: &Config, k: &super::plan::DkimPlan) -> anyhow::Result<String> {
    let ok_label = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    if !ok_label(&k.domain) || !ok_label(&k.selector) || k.selector.contains('.') {
        bail!(
            "DKIM key {}/{}: not a usable domain/selector",
            k.domain,
            k.selector
        );
    }
    let pem = read_limited(Path::new(&k.key_file))?;
    let key_dir = config.dkim_key_dir();
    let dir = postern_dns::dkim::domain_dir(&key_dir, &k.domain);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let dest = dir.join(format!("{}.key", k.selector));
    match fs::read_to_string(&dest) {
        Ok(existing) if existing == pem => {}
        Ok(_) => bail!("{} exists with another key: not replaced", dest.display()),
        Err(_) => write_atomic(&dest, pem.as_bytes(), 0o600)?,
    }
    let keys = postern_dns::dkim::load_domain(&key_dir, &k.domain)?;
    let Some(key) = keys.iter().find(|x| x.selector == k.selector) else {
        bail!("{} did not load", dest.display());
    };
    Ok(format!(
        "DKIM {} selector {}: {} (record: {})",
        k.domain,
        k.selector,
        dest.display(),
        key.dns_record(&k.domain)
    ))
}

/// Imports domains, accounts (hashes as they are) and aliases into Postern's database.
/// What exists already is kept and reported.
async fn import_rows(
    config: &Config,
    i: &Import,
) -> anyhow::Result<(Vec<String>, serde_json::Value, usize)> {
    let dir = Directory::open(config).await?;
    let mut lines = Vec::new();
    let (mut d, mut u, mut al, mut kept) = (0, 0, 0, 0);
    for domain in &i.domains {
        match dir.add_domain(domain).await {
            Ok(_) => d += 1,
            Err(DirectoryError::Conflict(_)) => kept += 1,
            Err(e) => return Err(e).with_context(|| format!("domain {domain}")),
        }
    }
    let mut failed = 0;
    for acc in &i.accounts {
        let quota = i64::try_from(acc.quota_bytes).unwrap_or(i64::MAX);
        match dir
            .add_user(&acc.address, NewSecret::Hash(&acc.hash), quota)
            .await
        {
            Ok(_) => u += 1,
            Err(DirectoryError::Conflict(m)) if m.contains("exists") => {
                kept += 1;
                lines.push(format!(
                    "account {} exists already: kept as it is",
                    acc.address
                ));
            }
            // A row Postern cannot take (no usable hash, not an address): reported, and
            // the others still go in; apply fails at the end.
            Err(
                e @ (DirectoryError::Conflict(_)
                | DirectoryError::Password(_)
                | DirectoryError::Address(_)
                | DirectoryError::Policy(_)),
            ) => {
                failed += 1;
                lines.push(format!("account {}: NOT imported: {e}", acc.address));
            }
            Err(e) => return Err(e).with_context(|| format!("account {}", acc.address)),
        }
    }
    for (src, dests) in &i.aliases {
        match dir.add_alias(src, dests).await {
            Ok(_) => al += 1,
            Err(e) => lines.push(format!("alias {src}: not imported: {e}")),
        }
    }
    dir.close().await;
    lines.push(format!(
        "imported {d} domain(s), {u} account(s), {al} alias(es); {kept} existing kept; {failed} account(s) not imported"
    ));
    Ok((
        lines,
        json!({"domains": d, "accounts": u, "aliases": al, "kept": kept, "failed": failed}),
        failed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::plan::ImportAccount;

    /// A bad row (an empty or unreadable hash) is reported, and the others are imported.
    #[test]
    fn one_bad_account_does_not_stop_the_import() {
        let dir = std::env::temp_dir().join(format!(
            "postern-migrate-import-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "hostname = \"m.example.org\"\n[paths]\nstate_dir = \"{d}\"\n[database]\nurl = \"sqlite://{d}/postern.db\"\n",
            d = dir.display()
        );
        let config = Config::parse(&text, &dir).unwrap();
        let account = |address: &str, hash: &str| ImportAccount {
            address: address.into(),
            hash: hash.into(),
            scheme: String::new(),
            quota_bytes: 0,
        };
        let import = Import {
            domains: vec!["example.org".into()],
            accounts: vec![
                account("empty@example.org", ""),
                account("alice@example.org", "{PLAIN}alice-secret"),
                account("bad@example.org", "{NOSUCHSCHEME}x"),
            ],
            aliases: vec![("team@example.org".into(), vec!["alice@example.org".into()])],
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (lines, counts, failed) = rt.block_on(import_rows(&config, &import)).unwrap();
        assert_eq!(failed, 2, "{lines:?}");
        assert_eq!(counts["accounts"], 1);
        assert_eq!(counts["aliases"], 1);
        assert!(
            lines.iter().any(|l| l.contains("empty@example.org")),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("bad@example.org")),
            "{lines:?}"
        );
        // Nothing of the hash reaches the report.
        assert!(!lines.iter().any(|l| l.contains("alice-secret")));
        // Run again: everything there is kept.
        let (_, counts, failed) = rt.block_on(import_rows(&config, &import)).unwrap();
        assert_eq!((counts["accounts"].as_i64(), failed), (Some(0), 2));
        let _ = fs::remove_dir_all(&dir);
    }
}
