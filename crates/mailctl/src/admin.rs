//! The directory commands: domain, user, alias, sender, lockout.

use anyhow::Context;
use clap::Subcommand;
use postern_config::Config;
use postern_directory::{Directory, NewSecret};
use serde_json::json;

use crate::output::{Table, format_size, format_time, parse_size};
use crate::{Cli, Command, secret};

/// `mailctl domain …`
#[derive(Subcommand, Debug)]
pub enum DomainCmd {
    /// Add a domain, with aliases postmaster@ and abuse@ it (RFC 5321, RFC 2142) to
    /// --postmaster, else to where an existing domain's postmaster alias points; none when
    /// [smtpd] postmaster is set (smtpd sends them there).
    Add {
        /// The domain name.
        domain: String,
        /// Where postmaster@DOMAIN and abuse@DOMAIN go.
        #[arg(long, value_name = "ADDRESS")]
        postmaster: Option<String>,
        /// Create no postmaster/abuse aliases.
        #[arg(long, conflicts_with = "postmaster")]
        no_role_aliases: bool,
    },
    /// List domains with their account and alias counts.
    List,
    /// Remove a domain.
    Remove {
        /// The domain name.
        domain: String,
        /// Also remove its accounts, aliases and sender permissions.
        #[arg(long)]
        force: bool,
    },
}

/// `mailctl user …`
#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add an account; the password is read from stdin (or prompted for on a terminal).
    Add {
        /// The address (its domain must exist).
        address: String,
        /// Quota, e.g. 500M, 2G; 0 or absent for none.
        #[arg(long)]
        quota: Option<String>,
        /// Store this ready-made hash instead of asking for a password (migration).
        #[arg(long, value_name = "HASH")]
        password_hash: Option<String>,
        /// The cluster node the account lives on ([proxy]); absent or "" = this node.
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
    },
    /// Set the cluster node an account lives on ([proxy]); "" = this node.
    SetHost {
        /// The address.
        address: String,
        /// A host name or IP address, or "" for this node.
        host: String,
    },
    /// Move a mailbox to another cluster node (run on the node it lives on): mark it moving
    /// (mail waits, logins are refused for now), copy and verify the home on HOST's imapd,
    /// switch, release. Run it again to resume after an interruption.
    Move {
        /// The address.
        address: String,
        /// The destination node (as accounts' `host` names it).
        #[arg(long, value_name = "HOST", required_unless_present = "abort")]
        to: Option<String>,
        /// Abandon a move that was not switched yet: the destination drops its copy and
        /// the account is served here again.
        #[arg(long, conflicts_with = "to")]
        abort: bool,
    },
    /// Set a new password (read from stdin or prompted for).
    Passwd {
        /// The address.
        address: String,
        /// Store this ready-made hash instead of asking for a password.
        #[arg(long, value_name = "HASH")]
        password_hash: Option<String>,
    },
    /// List accounts.
    List {
        /// Only this domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Remove an account (its mail stays on disk).
    Remove {
        /// The address.
        address: String,
    },
    /// Set an account's quota (e.g. 1G; 0 for none).
    Quota {
        /// The address.
        address: String,
        /// The quota.
        size: String,
    },
    /// Allow logins again.
    Enable {
        /// The address.
        address: String,
    },
    /// Refuse logins (mail is still accepted).
    Disable {
        /// The address.
        address: String,
    },
}

/// `mailctl alias …`
#[derive(Subcommand, Debug)]
pub enum AliasCmd {
    /// Add destinations to an alias.
    Add {
        /// The alias address, or @domain for a catch-all.
        source: String,
        /// Where it delivers.
        #[arg(required = true)]
        destinations: Vec<String>,
    },
    /// List aliases.
    List {
        /// Only this domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Remove an alias, or only the destinations named.
    Remove {
        /// The alias address or @domain.
        source: String,
        /// Only these destinations.
        destinations: Vec<String>,
    },
}

/// `mailctl sender …`
#[derive(Subcommand, Debug)]
pub enum SenderCmd {
    /// Let LOGIN send as ADDRESS (or as anyone at @domain).
    Add {
        /// The address or @domain.
        address: String,
        /// The account allowed.
        login: String,
    },
    /// List explicit sender permissions.
    List,
    /// Withdraw a permission.
    Remove {
        /// The address or @domain.
        address: String,
        /// The account.
        login: String,
    },
}

/// `mailctl lockout …`
#[derive(Subcommand, Debug)]
pub enum LockoutCmd {
    /// Show failure counts and active lockouts.
    List,
    /// Lift the lockout of an IP or account (or of everything with --all).
    Clear {
        /// The IP address or account.
        subject: Option<String>,
        /// Clear every record.
        #[arg(long, conflicts_with = "subject")]
        all: bool,
    },
}

/// Runs a directory command.
pub(crate) async fn dispatch(cli: &Cli, config: &Config) -> anyhow::Result<()> {
    let dir = Directory::open(config)
        .await
        .context("opening the directory database")?;
    let r = run(cli, config, &dir).await;
    dir.close().await;
    r
}

pub(crate) fn done(json: bool, what: String) {
    if json {
        println!("{}", json!({ "ok": true, "message": what }));
    } else {
        println!("{what}");
    }
}

async fn run(cli: &Cli, config: &Config, dir: &Directory) -> anyhow::Result<()> {
    let json = cli.json;
    match &cli.command {
        Command::Domain(cmd) => domain(cmd, config, dir, json).await,
        Command::User(cmd) => user(cmd, config, dir, json).await,
        Command::Alias(cmd) => alias(cmd, dir, json).await,
        Command::Sender(cmd) => sender(cmd, dir, json).await,
        Command::Lockout(cmd) => lockout(cmd, dir, json).await,
        Command::Share(cmd) => crate::share::run(cmd, config, dir, json).await,
        Command::Sieve(cmd) => {
            let out = crate::sieve::run(cmd, config, dir).await?;
            match cmd {
                crate::sieve::SieveCmd::Get { .. } if json => {
                    println!("{}", json!({ "script": out }))
                }
                crate::sieve::SieveCmd::Get { .. } => print!("{out}"),
                _ => done(json, out),
            }
            Ok(())
        }
        Command::Init(_)
        | Command::Run
        | Command::Queue(_)
        | Command::Dkim(_)
        | Command::Migrate(_)
        | Command::Stats
        | Command::Dns(_)
        | Command::Check(_) => {
            unreachable!("handled in main_with")
        }
    }
}

/// `mailctl domain …`
async fn domain(
    cmd: &DomainCmd,
    config: &Config,
    dir: &Directory,
    json: bool,
) -> anyhow::Result<()> {
    match cmd {
        DomainCmd::Add {
            domain,
            postmaster,
            no_role_aliases,
        } => {
            let d = dir.add_domain(domain).await?;
            let mut text = format!("domain {d} added");
            if !no_role_aliases {
                role_aliases(config, dir, &d, postmaster.as_deref(), &mut text).await?;
            }
            done(json, text);
        }
        DomainCmd::List => {
            let rows = dir.list_domains().await?;
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(d, u, a)| json!({"domain": d, "accounts": u, "aliases": a}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                let mut t = Table::new(&["DOMAIN", "ACCOUNTS", "ALIASES"]);
                for (d, u, a) in rows {
                    t.row(vec![d, u.to_string(), a.to_string()]);
                }
                t.print();
            }
        }
        DomainCmd::Remove { domain, force } => {
            dir.remove_domain(domain, *force).await?;
            done(json, format!("domain {domain} removed"));
        }
    }
    Ok(())
}

/// `mailctl user …`
async fn user(cmd: &UserCmd, config: &Config, dir: &Directory, json: bool) -> anyhow::Result<()> {
    match cmd {
        UserCmd::Add {
            address,
            quota,
            password_hash,
            host,
        } => {
            let quota = quota.as_deref().map(parse_size).transpose()?.unwrap_or(0);
            let host = host.as_deref().unwrap_or("");
            let a = match password_hash {
                Some(h) => {
                    dir.add_user_on(address, NewSecret::Hash(h), quota, host)
                        .await?
                }
                None => {
                    let pw = secret::read_new_password(&format!("Password for {address}: "))?;
                    dir.add_user_on(address, NewSecret::Password(&pw), quota, host)
                        .await?
                }
            };
            done(json, format!("account {a} added"));
        }
        UserCmd::SetHost { address, host } => {
            let h = dir.set_host(address, host).await?;
            let where_ = if h.is_empty() {
                "this node".to_owned()
            } else {
                format!("host {h}")
            };
            done(json, format!("account {address} now lives on {where_}"));
        }
        UserCmd::Move { address, to, abort } => {
            crate::mover::run(config, dir, address, to.as_deref(), *abort, json).await?;
        }
        UserCmd::Passwd {
            address,
            password_hash,
        } => {
            match password_hash {
                Some(h) => dir.set_password(address, NewSecret::Hash(h)).await?,
                None => {
                    let pw = secret::read_new_password(&format!("New password for {address}: "))?;
                    dir.set_password(address, NewSecret::Password(&pw)).await?;
                }
            }
            done(json, format!("password of {address} changed"));
        }
        UserCmd::List { domain } => list_users(dir, domain.as_deref(), json).await?,
        UserCmd::Remove { address } => {
            dir.remove_user(address).await?;
            done(
                json,
                format!(
                    "account {address} removed; its mail under {} is kept",
                    config.mail_root().display()
                ),
            );
        }
        UserCmd::Quota { address, size } => {
            let q = parse_size(size)?;
            dir.set_quota(address, q).await?;
            done(
                json,
                format!("quota of {address} set to {}", format_size(q)),
            );
        }
        UserCmd::Enable { address } => {
            dir.set_enabled(address, true).await?;
            done(json, format!("account {address} enabled"));
        }
        UserCmd::Disable { address } => {
            dir.set_enabled(address, false).await?;
            done(json, format!("account {address} disabled"));
        }
    }
    Ok(())
}

/// `mailctl user list [--domain D]`: a table, or a JSON array.
async fn list_users(dir: &Directory, domain: Option<&str>, json: bool) -> anyhow::Result<()> {
    let users = dir.list_users(domain).await?;
    if json {
        let v: Vec<_> = users
            .iter()
            .map(|u| {
                json!({"address": u.address, "quota_bytes": u.quota_bytes, "enabled": u.enabled,
                       "scheme": u.scheme, "created": u.created, "host": u.host,
                       "moving_to": u.moving_to})
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        let mut t = Table::new(&["ADDRESS", "QUOTA", "ENABLED", "SCHEME", "CREATED", "HOST"]);
        for u in users {
            t.row(vec![
                u.address,
                format_size(u.quota_bytes),
                if u.enabled { "yes" } else { "no" }.into(),
                u.scheme,
                format_time(u.created),
                host_column(&u.host, &u.moving_to),
            ]);
        }
        t.print();
    }
    Ok(())
}

/// `user list`'s HOST: the node, `-` for this one; a move shows as `b1 → b2 (moving)`
/// (after the switch: `b2 (moving, releasing)`).
fn host_column(host: &str, moving_to: &str) -> String {
    let h = if host.is_empty() { "-" } else { host };
    match moving_to {
        "" => h.to_owned(),
        m if m == host => format!("{h} (moving, releasing)"),
        m => format!("{h} \u{2192} {m} (moving)"),
    }
}

/// `mailctl alias …`
async fn alias(cmd: &AliasCmd, dir: &Directory, json: bool) -> anyhow::Result<()> {
    match cmd {
        AliasCmd::Add {
            source,
            destinations,
        } => {
            let n = dir.add_alias(source, destinations).await?;
            done(json, format!("alias {source}: {n} destination(s) added"));
        }
        AliasCmd::List { domain } => {
            let aliases = dir.list_aliases(domain.as_deref()).await?;
            if json {
                let v: Vec<_> = aliases
                    .iter()
                    .map(|a| json!({"source": a.source, "destinations": a.destinations}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                let mut t = Table::new(&["SOURCE", "DESTINATIONS"]);
                for a in aliases {
                    t.row(vec![a.source, a.destinations.join(", ")]);
                }
                t.print();
            }
        }
        AliasCmd::Remove {
            source,
            destinations,
        } => {
            let n = dir.remove_alias(source, destinations).await?;
            done(json, format!("alias {source}: {n} destination(s) removed"));
        }
    }
    Ok(())
}

/// `mailctl sender …`
async fn sender(cmd: &SenderCmd, dir: &Directory, json: bool) -> anyhow::Result<()> {
    match cmd {
        SenderCmd::Add { address, login } => {
            dir.add_sender(address, login).await?;
            done(json, format!("{login} may send as {address}"));
        }
        SenderCmd::List => {
            let rows = dir.list_senders().await?;
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|s| json!({"address": s.address, "login": s.login}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                let mut t = Table::new(&["ADDRESS", "LOGIN"]);
                for s in rows {
                    t.row(vec![s.address, s.login]);
                }
                t.print();
            }
        }
        SenderCmd::Remove { address, login } => {
            dir.remove_sender(address, login).await?;
            done(json, format!("{login} may no longer send as {address}"));
        }
    }
    Ok(())
}

/// `mailctl lockout …`
async fn lockout(cmd: &LockoutCmd, dir: &Directory, json: bool) -> anyhow::Result<()> {
    match cmd {
        LockoutCmd::List => list_lockouts(dir, json).await?,
        LockoutCmd::Clear { subject, all } => {
            if subject.is_none() && !all {
                anyhow::bail!("name an IP address or account to clear, or use --all");
            }
            let n = dir.lockouts().clear(subject.as_deref()).await?;
            done(json, format!("{n} record(s) cleared"));
        }
    }
    Ok(())
}

/// `mailctl lockout list`: failure counts and lockouts, a table or a JSON array.
async fn list_lockouts(dir: &Directory, json: bool) -> anyhow::Result<()> {
    let rows = dir.lockouts().list().await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({"scope": r.scope, "subject": r.subject, "failures": r.failures,
                       "last_failure": r.last_failure, "locked_until": r.locked_until,
                       "locked": r.locked_until > now, "lockouts": r.lockouts})
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        let mut t = Table::new(&[
            "SCOPE",
            "SUBJECT",
            "FAILURES",
            "LAST FAILURE",
            "LOCKED UNTIL",
        ]);
        for r in rows {
            t.row(vec![
                r.scope,
                r.subject,
                r.failures.to_string(),
                format_time(r.last_failure),
                if r.locked_until > now {
                    format_time(r.locked_until)
                } else {
                    "-".into()
                },
            ]);
        }
        t.print();
    }
    Ok(())
}

/// `domain add`: postmaster@ and abuse@ the new domain as aliases to `given`, else to the
/// first existing postmaster alias's destinations; says what it did in `text`.
async fn role_aliases(
    config: &Config,
    dir: &Directory,
    domain: &str,
    given: Option<&str>,
    text: &mut String,
) -> anyhow::Result<()> {
    let mut roles = vec!["postmaster"];
    if config.smtpd.accept_abuse {
        roles.push("abuse");
    }
    let to: Vec<String> = match (given, &config.smtpd.postmaster) {
        (Some(g), _) => vec![g.to_owned()],
        (None, Some(p)) => {
            for r in &roles {
                text.push_str(&format!("\n{r}@{domain}: to {p} ([smtpd] postmaster)"));
            }
            return Ok(());
        }
        (None, None) => dir
            .list_aliases(None)
            .await?
            .into_iter()
            .find(|a| a.source.starts_with("postmaster@"))
            .map(|a| a.destinations)
            .unwrap_or_default(),
    };
    if to.is_empty() {
        text.push_str(&format!(
            "\nno postmaster@{domain} alias made: RFC 5321 wants one; give --postmaster \
             ADDRESS, run `mailctl alias add postmaster@{domain} ADDRESS`, or set [smtpd] postmaster"
        ));
        return Ok(());
    }
    for r in roles {
        let source = format!("{r}@{domain}");
        dir.add_alias(&source, &to)
            .await
            .with_context(|| format!("adding the alias {source}"))?;
        text.push_str(&format!("\nalias {source} -> {} added", to.join(", ")));
    }
    Ok(())
}
