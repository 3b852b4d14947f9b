//! Who a recipient is: plus-address detail split off, authd's userdb asked for the Maildir,
//! home and quota, the quota checked against the size hint.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use postern_auth_proto::cache::{Cache, MAX_KEY_LEN, layer_ttl};
use postern_auth_proto::client::{ClientError, UserdbClient};
use postern_maildir::{Maildir, Quota};
use postern_smtp_session::{Address, Reply, Verdict};
use tracing::{debug, info, warn};

use crate::Ctx;

/// A recipient that passed RCPT.
#[derive(Debug, Clone)]
pub(crate) struct Rcpt {
    /// The user (address without the detail), as the userdb names it.
    pub(crate) user: String,
    /// The plus-address detail, if any.
    pub(crate) detail: Option<String>,
    pub(crate) maildir: PathBuf,
    pub(crate) home: PathBuf,
    /// Quota in bytes; 0 = none.
    pub(crate) quota: u64,
    /// The node the account lives on when it is not this one (`host=`, `[proxy] self`):
    /// its mail is forwarded there ([`crate::proxy`]), never delivered here.
    pub(crate) backend: Option<crate::proxy::Backend>,
}

/// A userdb answer's fields.
type Fields = Vec<(String, String)>;

/// authd's definite userdb answers (the user's fields, or no such user), kept here too for
/// half of `[authd] cache_ttl_secs` and emptied at once by the directory's change stamp, so
/// a recipient seen a moment ago costs no round trip. Temporary failures are never kept.
pub(crate) type UserCache = Cache<String, Option<Fields>>;

/// The user cache for this config ([`crate::Ctx::user_cache`]). It watches the directory's
/// change stamp in the state directory, or where lmtp-deliver's user cannot read that, its
/// public copy in the run directory; `None` (every lookup asks authd) without a stamp this
/// process can watch (no inotify, no run directory) or with a TTL of 0.
pub(crate) fn user_cache(config: &postern_config::Config) -> Option<UserCache> {
    let ttl = layer_ttl(config.authd.cache_ttl_secs.duration());
    let stamps = [config.directory_stamp(), config.public_directory_stamp()];
    match Cache::for_client_on_first(ttl, stamps) {
        Ok(c) => {
            info!(ttl_ms = ttl.as_millis(), stamp = %c.stamp().display(), "userdb answers cached");
            Some(c)
        }
        Err(why) => {
            info!(reason = %why, "userdb answers not cached here: every lookup asks authd");
            None
        }
    }
}

/// The recipients of the current transaction, and the userdb connection.
pub(crate) struct Recipients {
    ctx: Arc<Ctx>,
    userdb: Option<UserdbClient>,
    accepted: HashMap<String, Rcpt>,
    size_hint: Option<u64>,
}

/// The userdb's answer.
pub(crate) enum Lookup {
    Found(Rcpt),
    Unknown,
    Unavailable(String),
}

impl Recipients {
    pub(crate) fn new(ctx: Arc<Ctx>) -> Self {
        Self {
            ctx,
            userdb: None,
            accepted: HashMap::new(),
            size_hint: None,
        }
    }

    /// A new MAIL FROM: forget the previous transaction's recipients.
    pub(crate) fn new_transaction(&mut self, size_hint: Option<u64>) {
        self.accepted.clear();
        self.size_hint = size_hint;
    }

    /// A recipient accepted at RCPT, by the address as given.
    pub(crate) fn accepted(&self, address: &str) -> Option<&Rcpt> {
        self.accepted.get(address)
    }

    /// Splits `user+detail@domain` when the delimiter is configured.
    fn split_detail(&self, address: &Address) -> (String, Option<String>) {
        let delim = &self.ctx.config.lmtp.recipient_delimiter;
        let local = address.local_part();
        if !delim.is_empty()
            && let Some((base, detail)) = local.split_once(delim.as_str())
            && !base.is_empty()
            && !detail.is_empty()
        {
            return (
                format!("{base}@{}", address.domain()),
                Some(detail.to_owned()),
            );
        }
        (address.as_str().to_owned(), None)
    }

    /// The userdb's answer for `address`: from the user cache when it has it, else asked
    /// (and kept when definite).
    pub(crate) async fn lookup(&mut self, address: &Address) -> Lookup {
        let (user, detail) = self.split_detail(address);
        let ctx = Arc::clone(&self.ctx);
        let answer = match ctx.user_cache.as_ref() {
            Some(cache) if user.len() <= MAX_KEY_LEN => {
                cache.through(user.clone(), self.ask(&user)).await
            }
            _ => self.ask(&user).await,
        };
        match answer {
            Ok(Some(fields)) => self.found(&user, detail, &fields),
            Ok(None) => Lookup::Unknown,
            Err(why) => Lookup::Unavailable(why),
        }
    }

    /// Asks the userdb, reconnecting once if the connection broke: the user's fields, `None`
    /// for no such user, or why it could not say (temporary).
    async fn ask(&mut self, user: &str) -> Result<Option<Fields>, String> {
        for attempt in 0..2 {
            if self.userdb.is_none() {
                match UserdbClient::connect(&self.ctx.userdb_socket).await {
                    Ok(c) => self.userdb = Some(c),
                    Err(e) => return Err(format!("userdb unreachable: {e}")),
                }
            }
            let Some(client) = self.userdb.as_mut() else {
                continue;
            };
            match client.user(user, "lmtp").await {
                Ok(answer) => return Ok(answer),
                Err(ClientError::Failed(reason)) => return Err(reason),
                Err(e) => {
                    debug!(error = %e, attempt, "userdb connection failed");
                    self.userdb = None;
                }
            }
        }
        Err("userdb connection failed".into())
    }

    fn found(&self, asked: &str, detail: Option<String>, fields: &[(String, String)]) -> Lookup {
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let backend =
            match get("host").and_then(|h| crate::proxy::Backend::for_host(&self.ctx.config, h)) {
                Some(Ok(b)) => Some(b),
                Some(Err(why)) => return Lookup::Unavailable(why),
                None => None,
            };
        if backend.is_some() {
            // Delivered elsewhere: no home, Maildir or quota of ours is involved.
            return Lookup::Found(Rcpt {
                user: asked.to_owned(),
                detail,
                maildir: PathBuf::new(),
                home: PathBuf::new(),
                quota: 0,
                backend,
            });
        }
        let Some(home) = get("home").map(PathBuf::from) else {
            return Lookup::Unavailable("userdb gave no home".into());
        };
        let maildir = match get("mail").map(|m| postern_auth_proto::userdb::mail_location(m, &home))
        {
            Some(Ok(p)) => p,
            Some(Err(why)) => return Lookup::Unavailable(why),
            None => home.join("Maildir"),
        };
        let quota = get("quota_rule")
            .and_then(postern_auth_proto::userdb::parse_quota_rule)
            .unwrap_or(0);
        Lookup::Found(Rcpt {
            user: asked.to_owned(),
            detail,
            maildir,
            home,
            quota,
            backend: None,
        })
    }

    /// The RCPT verdict for `address`.
    pub(crate) async fn check(&mut self, address: &Address) -> Verdict {
        let rcpt = match self.lookup(address).await {
            Lookup::Found(r) => r,
            Lookup::Unknown => {
                return Verdict::Reject(Reply::new(
                    550,
                    (5, 1, 1),
                    format!("<{address}> User doesn't exist"),
                ));
            }
            Lookup::Unavailable(why) => {
                warn!(rcpt = %address, reason = %why, "recipient lookup failed");
                return Verdict::Reject(Reply::new(
                    451,
                    (4, 3, 0),
                    format!("<{address}> Temporary user lookup failure"),
                ));
            }
        };
        if rcpt.quota > 0 {
            let incoming = self.size_hint.unwrap_or(0);
            let dir = rcpt.maildir.clone();
            let quota = rcpt.quota;
            // A Maildir not made yet counts as empty (and is not made here).
            let usage = tokio::task::spawn_blocking(move || {
                Quota::usage(&Maildir::at(&dir, Maildir::DEFAULT_DIR_MODE))
            })
            .await;
            match usage {
                Ok(Ok(u)) if !Quota::check(quota, u, incoming) => {
                    return Verdict::Reject(self.quota_reply(address));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    warn!(rcpt = %address, error = %e, "quota usage unreadable; accepting")
                }
                Err(e) => warn!(rcpt = %address, error = %e, "quota check failed; accepting"),
            }
        }
        self.accepted.insert(address.as_str().to_owned(), rcpt);
        Verdict::Accept
    }

    /// 552 5.2.2, or 452 4.2.2 when the config prefers a retry.
    pub(crate) fn quota_reply(&self, address: &impl std::fmt::Display) -> Reply {
        if self.ctx.config.lmtp.quota_full_tempfail {
            Reply::new(
                452,
                (4, 2, 2),
                format!("<{address}> Mailbox is full, try again later"),
            )
        } else {
            Reply::new(552, (5, 2, 2), format!("<{address}> Mailbox is full"))
        }
    }
}

use postern_maildir::folder::is_special_use;

/// Where `user+detail` files: the existing folder named `detail` (compared without regard to
/// case, as addresses are). A special-use folder only when `allow_special_use` (the
/// `lmtp.plus_address_special_use` option): a stranger must not be able to file mail into the
/// user's Sent, Drafts or Trash. `None`: INBOX.
pub(crate) fn plus_folder(m: &Maildir, detail: &str, allow_special_use: bool) -> Option<String> {
    let folder = if m.folder_exists(detail).unwrap_or(false) {
        Some(detail.to_owned())
    } else {
        m.list_folders()
            .ok()?
            .into_iter()
            .find(|f| f.eq_ignore_ascii_case(detail))
    }?;
    (allow_special_use || !is_special_use(&folder)).then_some(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A userdb that answers every `USER` with a temporary `FAIL`, as authd does for an
    /// account `mailctl user move` is moving: the recipient is refused with 451 4.3.0 and
    /// not accepted (so nothing is written).
    #[tokio::test]
    async fn a_userdb_fail_is_a_temporary_refusal() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("auth-userdb");
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.expect("accept");
            let (r, mut w) = s.into_split();
            w.write_all(b"VERSION\t1\t0\nSPID\t42\n").await.unwrap();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some(rest) = l.strip_prefix("USER\t") {
                    let id = rest.split('\t').next().unwrap_or("0");
                    let reply = format!("FAIL\t{id}\treason=Mailbox is being moved\n");
                    w.write_all(reply.as_bytes()).await.unwrap();
                }
            }
        });
        let base = crate::proxy::tests::ctx("", None);
        let ctx = Arc::new(Ctx {
            config: base.config.clone(),
            session: base.session.clone(),
            tcp_session: base.tcp_session.clone(),
            userdb_socket: socket,
            user_cache: None,
            tls: None,
            hop: crate::proxy::Hop::new(&base.config).unwrap(),
        });
        let mut rcpts = Recipients::new(ctx);
        let bob = Address::parse("bob@example.org").unwrap();
        let Verdict::Reject(r) = rcpts.check(&bob).await else {
            panic!("accepted a recipient the userdb failed");
        };
        assert_eq!((r.code(), r.enhanced()), (451, Some((4, 3, 0).into())));
        assert!(rcpts.accepted("bob@example.org").is_none());
    }

    #[test]
    fn plus_folders_skip_special_use_unless_allowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = Maildir::open_or_create(dir.path().join("Maildir"), 0o700).expect("maildir");
        for f in [
            "Sent",
            "Drafts",
            "Trash",
            "Junk",
            "Archive",
            "Spam",
            "Trash/old",
            "Lists",
        ] {
            m.create_folder(f).expect("create");
        }
        for detail in [
            "Sent",
            "sent",
            "DRAFTS",
            "trash",
            "Junk",
            "archive",
            "spam",
            "Trash/old",
        ] {
            assert_eq!(plus_folder(&m, detail, false), None, "{detail}");
            assert!(plus_folder(&m, detail, true).is_some(), "{detail}");
        }
        assert_eq!(plus_folder(&m, "lists", false).as_deref(), Some("Lists"));
        assert_eq!(plus_folder(&m, "Lists", false).as_deref(), Some("Lists"));
        assert_eq!(plus_folder(&m, "nosuch", true), None);
        assert_eq!(plus_folder(&m, "../x", true), None);
        assert!(is_special_use("Sent Items") && !is_special_use("Sentinel"));
    }
}
