//! `mailctl sieve put|get|check|remove`: a user's active Sieve script, checked before it is
//! stored. The script lives where lmtp-deliver reads it (`[lmtp] sieve_script`, by default
//! Pigeonhole's `~/.dovecot.sieve`).

use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use postern_config::{Config, expand_template};
use postern_directory::Directory;

/// Largest script accepted.
const MAX_SCRIPT: u64 = 1 << 20;

/// `mailctl sieve …`
#[derive(Subcommand, Debug)]
pub enum SieveCmd {
    /// Check a script and make it USER's active script (from FILE, or stdin).
    Put {
        /// The account.
        user: String,
        /// The script file; stdin when absent.
        file: Option<PathBuf>,
    },
    /// Print USER's active script.
    Get {
        /// The account.
        user: String,
    },
    /// Check a script's syntax (from FILE, or stdin) without storing it.
    Check {
        /// The script file; stdin when absent.
        file: Option<PathBuf>,
    },
    /// Remove USER's active script (mail then goes to INBOX).
    Remove {
        /// The account.
        user: String,
    },
}

fn read_script(file: Option<&Path>) -> anyhow::Result<String> {
    let mut text = String::new();
    let n = match file {
        Some(f) => std::fs::File::open(f)
            .with_context(|| format!("opening {}", f.display()))?
            .take(MAX_SCRIPT + 1)
            .read_to_string(&mut text)?,
        None => std::io::stdin()
            .take(MAX_SCRIPT + 1)
            .read_to_string(&mut text)?,
    };
    if n as u64 > MAX_SCRIPT {
        anyhow::bail!("the script is larger than {MAX_SCRIPT} bytes");
    }
    Ok(text)
}

fn check(text: &str) -> anyhow::Result<()> {
    postern_sieve::compile(text)
        .map_err(|e| anyhow::anyhow!("the script does not compile: {e}"))?;
    Ok(())
}

async fn script_path(
    config: &Config,
    dir: &Directory,
    user: &str,
) -> anyhow::Result<(String, PathBuf)> {
    let acct = dir
        .account(user)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no account {user}"))?;
    let home = expand_template(&config.home_template(), &acct.address);
    let path = config.sieve_script_path(&acct.address, &home);
    // Pigeonhole keeps ~/.dovecot.sieve as a link to the active script: write through it.
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    Ok((acct.address, path))
}

/// Creates missing parents (0700) and hands them to the mail user when we are root.
fn make_parents(config: &Config, path: &Path) -> anyhow::Result<()> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let mut missing = Vec::new();
    let mut p = parent;
    while !p.exists() {
        missing.push(p.to_path_buf());
        match p.parent() {
            Some(up) => p = up,
            None => break,
        }
    }
    for d in missing.iter().rev() {
        std::fs::create_dir(d).with_context(|| format!("creating {}", d.display()))?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))?;
        give_to_mail_user(config, d)?;
    }
    Ok(())
}

fn give_to_mail_user(config: &Config, path: &Path) -> anyhow::Result<()> {
    let u = &config.authd.userdb;
    if nix::unistd::geteuid().is_root() && (u.uid.is_some() || u.gid.is_some()) {
        nix::unistd::chown(
            path,
            u.uid.map(nix::unistd::Uid::from_raw),
            u.gid.map(nix::unistd::Gid::from_raw),
        )
        .with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

/// `sieve check`: needs neither config nor database.
pub(crate) fn check_only(file: Option<&Path>) -> anyhow::Result<String> {
    check(&read_script(file)?)?;
    Ok("the script compiles".into())
}

pub(crate) async fn run(
    cmd: &SieveCmd,
    config: &Config,
    dir: &Directory,
) -> anyhow::Result<String> {
    match cmd {
        SieveCmd::Check { file } => check_only(file.as_deref()),
        SieveCmd::Put { user, file } => {
            let text = read_script(file.as_deref())?;
            check(&text)?;
            let (user, path) = script_path(config, dir, user).await?;
            make_parents(config, &path)?;
            let tmp = path.with_extension("postern-tmp");
            {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .with_context(|| format!("writing {}", tmp.display()))?;
                f.write_all(text.as_bytes())?;
                f.sync_all()?;
            }
            give_to_mail_user(config, &tmp)?;
            std::fs::rename(&tmp, &path)?;
            Ok(format!(
                "active Sieve script of {user} stored in {}",
                path.display()
            ))
        }
        SieveCmd::Get { user } => {
            let (user, path) = script_path(config, dir, user).await?;
            match std::fs::read_to_string(&path) {
                Ok(t) => Ok(t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    anyhow::bail!("{user} has no Sieve script")
                }
                Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
        SieveCmd::Remove { user } => {
            let (user, path) = script_path(config, dir, user).await?;
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(format!("Sieve script of {user} removed")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    anyhow::bail!("{user} has no Sieve script")
                }
                Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
            }
        }
    }
}
