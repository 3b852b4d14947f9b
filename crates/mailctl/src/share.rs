//! `mailctl share add|remove|list`: shared mailboxes (RFC 4314 ACLs), written where imapd
//! reads them — the folder's `dovecot-acl` in the owner's Maildir (Dovecot's format, under
//! its dotlock, fsynced and renamed into place) — and the sharing index
//! `<mail_root>/.shared-mailboxes` that imapd's LIST uses to find what is shared with a user
//! (`postern_maildir::acl`). Files written as root are given the owner of the Maildir they
//! belong to (the mail user imapd runs as).
//!
//! The owner's Maildir is the one authd's userdb gives (`[authd.userdb] home` / `mail`
//! templates for the account from the directory). An account that lives on another node
//! (`[proxy]`) is refused: its Maildir is not here; run the command on that node.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use postern_config::{Config, expand_template};
use postern_directory::Directory;
use postern_maildir::Maildir;
use postern_maildir::acl::{self, Identifier, Rights, SharedIndex};
use serde_json::json;

/// Most folders of one owner read.
const MAX_FOLDERS: usize = 10_000;

/// `mailctl share …`
#[derive(Subcommand, Debug)]
pub enum ShareCmd {
    /// Grant GRANTEE (an address, `anyone`, `authenticated`; `-address` for negative rights)
    /// RIGHTS (RFC 4314 letters `lrswipkxtea`; `+lr` adds, `-w` removes, `lr` replaces) on
    /// OWNER's MAILBOX. Others see it as `Shared/OWNER/MAILBOX`.
    Add {
        /// The mailbox's owner (an account).
        owner: String,
        /// The owner's mailbox (`INBOX`, `Team`, `Projects/2026`).
        mailbox: String,
        /// Who gets the rights.
        grantee: String,
        /// The rights.
        rights: String,
    },
    /// Remove GRANTEE's entry from OWNER's MAILBOX.
    Remove {
        /// The mailbox's owner.
        owner: String,
        /// The owner's mailbox.
        mailbox: String,
        /// Whose entry goes.
        grantee: String,
    },
    /// The ACL entries of OWNER's mailboxes (of every owner in the sharing index without).
    List {
        /// The owner.
        owner: Option<String>,
    },
}

/// The owner's Maildir (which must exist: nothing is created for an account that never
/// received mail or logged in).
async fn owner_maildir(
    config: &Config,
    dir: &Directory,
    owner: &str,
) -> anyhow::Result<(String, Maildir)> {
    acl::check_name(owner).map_err(|why| anyhow::anyhow!("owner {owner:?}: {why}"))?;
    let acct = dir
        .account(owner)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no account {owner}"))?;
    if let Some(node) = config.proxy.remote_host(&acct.host) {
        bail!(
            "{} lives on node {node}: its Maildir is not on this server; run `mailctl share` there (shared mailboxes work between users of the same node)",
            acct.address
        );
    }
    let home = expand_template(&config.home_template(), &acct.address);
    let mail = expand_template(&config.mail_template(), &acct.address);
    let root = mail_location(&mail, Path::new(&home))?;
    if !root.join("cur").is_dir() {
        bail!(
            "{} has no Maildir yet ({}): it is made at the first delivery or login",
            acct.address,
            root.display()
        );
    }
    let md = Maildir::open_or_create(&root, Maildir::DEFAULT_DIR_MODE)
        .with_context(|| format!("opening {}", root.display()))?;
    Ok((acct.address, md))
}

/// Dovecot's `maildir:<path>[:options]`, `~` being the home (as authd's userdb answers).
fn mail_location(loc: &str, home: &Path) -> anyhow::Result<PathBuf> {
    let rest = loc
        .strip_prefix("maildir:")
        .ok_or_else(|| anyhow::anyhow!("unsupported mail location {loc:?} (only maildir:)"))?;
    let path = rest.split(':').next().unwrap_or("");
    if path.is_empty() {
        bail!("empty mail location");
    }
    Ok(match path.strip_prefix("~/") {
        Some(rel) => home.join(rel),
        None if path == "~" => home.to_owned(),
        None => PathBuf::from(path),
    })
}

/// `-address` → negative; `anyone`, `authenticated`, an address.
fn grantee(s: &str) -> anyhow::Result<(bool, Identifier)> {
    let (neg, id) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let id = Identifier::from_imap(id).map_err(|why| anyhow::anyhow!("grantee {s:?}: {why}"))?;
    if matches!(id, Identifier::Owner | Identifier::Group(_)) {
        bail!("grantee {s:?}: give an address, anyone or authenticated");
    }
    Ok((neg, id))
}

fn folder_name(mailbox: &str) -> anyhow::Result<String> {
    let m = mailbox.trim_end_matches('/');
    postern_maildir::folder::dir_name(m)
        .map_err(|e| anyhow::anyhow!("mailbox {mailbox:?}: {e}"))?;
    Ok(if postern_maildir::folder::is_inbox(m) {
        "INBOX".to_owned()
    } else {
        m.to_owned()
    })
}

fn index(config: &Config) -> SharedIndex {
    SharedIndex::at(config.mail_root().join(acl::INDEX_FILE), 0o600)
}

/// Gives a file written as root the owner of `like` (the Maildir directory it belongs
/// to), so that imapd, running as the mail user, can read and rewrite it — whether or not
/// `[authd.userdb] uid/gid` name that user.
fn give_like(path: &Path, like: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() || !path.exists() {
        return Ok(());
    }
    let m = std::fs::metadata(like).with_context(|| format!("stat {}", like.display()))?;
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(m.uid())),
        Some(nix::unistd::Gid::from_raw(m.gid())),
    )
    .with_context(|| format!("chown {}", path.display()))?;
    Ok(())
}

/// One line of `share list`.
fn entries_of(owner: &str, md: &Maildir) -> Vec<serde_json::Value> {
    let mut folders = vec!["INBOX".to_owned()];
    folders.extend(
        md.list_folders()
            .unwrap_or_default()
            .into_iter()
            .take(MAX_FOLDERS),
    );
    let mut v = Vec::new();
    for f in folders {
        match md.acl(&f) {
            Ok(Ok(a)) => {
                for e in &a.entries {
                    v.push(json!({
                        "owner": owner,
                        "mailbox": f,
                        "shared_as": format!("Shared/{owner}/{f}"),
                        "grantee": e.imap_id(),
                        "rights": e.rights.imap_string(),
                    }));
                }
            }
            Ok(Err(e)) => v.push(json!({
                "owner": owner, "mailbox": f, "error": format!("ACL file refused (grants nothing): {e}"),
            })),
            Err(e) => v.push(json!({ "owner": owner, "mailbox": f, "error": e.to_string() })),
        }
    }
    v
}

pub(crate) async fn run(
    cmd: &ShareCmd,
    config: &Config,
    dir: &Directory,
    json_out: bool,
) -> anyhow::Result<()> {
    match cmd {
        ShareCmd::Add {
            owner,
            mailbox,
            grantee: g,
            rights,
        } => {
            let (neg, id) = grantee(g)?;
            let (op, letters) = match rights.as_bytes().first() {
                Some(b'+') => (1, &rights[1..]),
                Some(b'-') => (-1, &rights[1..]),
                _ => (0, rights.as_str()),
            };
            let r = Rights::parse_imap(letters).map_err(|c| {
                anyhow::anyhow!("{c:?} is not a right (RFC 4314: l r s w i p k x t e a)")
            })?;
            let folder = folder_name(mailbox)?;
            let (owner, md) = owner_maildir(config, dir, owner).await?;
            if let Identifier::User(u) = &id
                && u.eq_ignore_ascii_case(&owner)
            {
                bail!("{owner} owns {folder} and always has every right on it");
            }
            if !md.folder_exists(&folder)? {
                bail!("{owner} has no mailbox {folder}");
            }
            let acl = md.update_acl(&folder, |a| {
                let cur = a.get(neg, &id).unwrap_or_default();
                let new = match op {
                    1 => cur.union(r),
                    -1 => cur.minus(r),
                    _ => r,
                };
                a.set(neg, id.clone(), new);
            })?;
            finish(config, &owner, &md, &folder)?;
            let now = acl.get(neg, &id).unwrap_or_default().imap_string();
            let who = format!("{}{}", if neg { "-" } else { "" }, id.imap());
            if json_out {
                println!(
                    "{}",
                    json!({"ok": true, "owner": owner, "mailbox": folder, "grantee": who,
                        "rights": now, "shared_as": format!("Shared/{owner}/{folder}")})
                );
            } else {
                println!("{who} now has {now:?} on {owner}'s {folder} (Shared/{owner}/{folder})");
            }
            Ok(())
        }
        ShareCmd::Remove {
            owner,
            mailbox,
            grantee: g,
        } => {
            let (neg, id) = grantee(g)?;
            let folder = folder_name(mailbox)?;
            let (owner, md) = owner_maildir(config, dir, owner).await?;
            if !md.folder_exists(&folder)? {
                bail!("{owner} has no mailbox {folder}");
            }
            let mut had = false;
            md.update_acl(&folder, |a| had = a.remove(neg, &id))?;
            finish(config, &owner, &md, &folder)?;
            let msg = if had {
                format!("{g} removed from {owner}'s {folder}")
            } else {
                format!("{g} had no entry on {owner}'s {folder}")
            };
            crate::admin::done(json_out, msg);
            Ok(())
        }
        ShareCmd::List { owner } => {
            let owners: Vec<String> = match owner {
                Some(o) => vec![o.clone()],
                None => {
                    let set: BTreeSet<String> = index(config)
                        .entries()?
                        .into_iter()
                        .map(|(_, o)| o)
                        .collect();
                    set.into_iter().collect()
                }
            };
            let mut all = Vec::new();
            for o in owners {
                match owner_maildir(config, dir, &o).await {
                    Ok((name, md)) => all.extend(entries_of(&name, &md)),
                    Err(e) if owner.is_some() => return Err(e),
                    Err(e) => all.push(json!({ "owner": o, "error": e.to_string() })),
                }
            }
            if json_out {
                println!("{}", serde_json::Value::Array(all));
            } else if all.is_empty() {
                println!("nothing is shared");
            } else {
                for e in &all {
                    let s = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("");
                    if e.get("error").is_some() {
                        println!("{} {}: {}", s("owner"), s("mailbox"), s("error"));
                    } else {
                        println!(
                            "{}\t{}\t{}\t{}",
                            s("shared_as"),
                            s("grantee"),
                            s("rights"),
                            s("mailbox")
                        );
                    }
                }
            }
            Ok(())
        }
    }
}

/// After an ACL change: the files to the mail user, the owner's index entries rewritten.
fn finish(config: &Config, owner: &str, md: &Maildir, folder: &str) -> anyhow::Result<()> {
    let dir = md.folder_dir(folder)?;
    give_like(&dir.join(acl::ACL_FILE), &dir)?;
    let idx = index(config);
    let grantees = acl::lookup_grantees(md, MAX_FOLDERS)?;
    idx.set_owner(owner, &grantees)
        .context("updating the sharing index")?;
    give_like(idx.path(), md.root())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked() {
        assert!(grantee("bob@example.org").is_ok());
        assert!(grantee("-bob@example.org").unwrap().0);
        assert!(grantee("anyone").is_ok());
        for bad in ["", "a b", "a\nb", "owner", "$staff", "../x", "a/b"] {
            assert!(grantee(bad).is_err(), "{bad:?}");
        }
        assert_eq!(folder_name("inbox").unwrap(), "INBOX");
        assert_eq!(folder_name("Team/").unwrap(), "Team");
        for bad in ["../x", "a/../b", ".x", "a//b", ""] {
            assert!(folder_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            mail_location("maildir:~/Maildir", Path::new("/v/a")).unwrap(),
            PathBuf::from("/v/a/Maildir")
        );
        assert!(mail_location("mbox:~/x", Path::new("/v")).is_err());
    }
}
