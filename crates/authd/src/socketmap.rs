//! The `socketmap` socket: Postfix's socketmap table protocol with the maps `domains`,
//! `mailboxes`, `aliases`, `senders` and `transport` (where an account on another cluster
//! node gets its mail: `lmtp:[host]:port`, for Postfix's `transport_maps` and smtpd), and
//! `recipient` (smtpd's `aliases`-then-`mailboxes` question in one round trip); smtpd's
//! cluster-wide policy maps `sendlimit` and `greylist` are in `shared_policy.rs`.

use std::sync::Arc;

use postern_auth_proto::cache::Lookup;
use postern_auth_proto::socketmap::{NetstringDecoder, Reply, parse_request};
use postern_directory::{AliasExpansion, DirectoryError, domain_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::Ctx;

/// Postfix's limit on a socketmap reply.
const MAX_REPLY: usize = 100_000;
/// Longest request accepted ("name key").
const MAX_REQUEST: usize = 10_000;

/// Serves one socketmap client until it closes, idles out, errs, or shutdown.
pub(crate) async fn serve(stream: UnixStream, ctx: Arc<Ctx>, shutdown: CancellationToken) {
    // Registered for reading only: each answer the client reads would otherwise wake this
    // process for nothing (see postern_auth_proto::client::QuietUnixStream).
    let Ok(mut stream) = postern_auth_proto::client::QuietUnixStream::from_tokio(stream) else {
        return;
    };
    let mut dec = NetstringDecoder::new(MAX_REQUEST);
    let idle = ctx.config.authd.idle_timeout_secs.duration();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(idle, stream.read(&mut buf)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => n,
                Err(_) => { debug!("socketmap client idle, closing"); return }
            },
        };
        dec.push(&buf[..n]);
        for item in dec.by_ref() {
            let (reply, close) = match item {
                Ok(req) => {
                    let started = std::time::Instant::now();
                    let reply = answer(&req, &ctx).await;
                    crate::metrics::socketmap(&reply, started);
                    (reply, false)
                }
                Err(e) => {
                    // The stream is out of step: answer once and hang up.
                    warn!(error = %e, "socketmap: malformed netstring");
                    (Reply::Perm(format!("malformed request: {e}")), true)
                }
            };
            if stream.write_all(&reply.encode()).await.is_err() || close {
                return;
            }
        }
    }
}

async fn answer(raw: &[u8], ctx: &Ctx) -> Reply {
    let req = match parse_request(raw) {
        Ok(r) => r,
        Err(e) => return Reply::Perm(format!("malformed request: {e}")),
    };
    // smtpd's cluster-wide policy maps: they change state, so never through the cache.
    if let Some(reply) = crate::shared_policy::answer(&ctx.policy, &req.name, &req.key).await {
        return reply;
    }
    match lookup(&req.name, &req.key, ctx).await {
        Ok(Some(v)) if v.len() > MAX_REPLY - 8 => {
            warn!(map = %req.name, key = %req.key, "socketmap reply too large");
            Reply::Perm("result too large".into())
        }
        Ok(Some(v)) => Reply::Ok(v),
        Ok(None) => Reply::NotFound,
        Err(LookupError::Perm(why)) => Reply::Perm(why),
        Err(LookupError::Temp(why)) => Reply::Temp(why),
        Err(LookupError::Db(e)) => {
            warn!(map = %req.name, key = %req.key, error = %e, "socketmap lookup failed");
            Reply::Temp("directory temporarily unavailable".into())
        }
    }
}

enum LookupError {
    Perm(String),
    /// Try again later (an account being moved); never cached.
    Temp(String),
    Db(DirectoryError),
}

impl From<DirectoryError> for LookupError {
    fn from(e: DirectoryError) -> Self {
        Self::Db(e)
    }
}

/// One lookup through the cache: `Some(value)` found, `None` not found. Answers (found, not
/// found, a permanent refusal) are cached; database failures are not.
async fn lookup(map: &str, key: &str, ctx: &Ctx) -> Result<Option<String>, LookupError> {
    let key = key.trim().to_lowercase();
    let cache_key = (map.to_owned(), key);
    let ticket = match ctx.maps.get(&cache_key) {
        Lookup::Hit(Ok(v)) => return Ok(v),
        Lookup::Hit(Err(why)) => return Err(LookupError::Perm(why)),
        Lookup::Miss(t) => t,
    };
    let answer = lookup_uncached(map, &cache_key.1, ctx).await;
    match &answer {
        Ok(v) => ctx.maps.put(ticket, cache_key, Ok(v.clone())),
        Err(LookupError::Perm(why)) => ctx.maps.put(ticket, cache_key, Err(why.clone())),
        Err(LookupError::Db(_) | LookupError::Temp(_)) => {}
    }
    answer
}

/// One lookup in the database; `key` is trimmed and lower-cased.
async fn lookup_uncached(map: &str, key: &str, ctx: &Ctx) -> Result<Option<String>, LookupError> {
    let dir = &ctx.directory;
    let key = key.to_owned();
    match map {
        "domains" => Ok(dir.domain_exists(&key).await?.then_some(key)),
        "mailboxes" => Ok(dir.account(&key).await?.map(|a| {
            // Postfix's virtual(8) reads a trailing slash as Maildir; the path is relative
            // to virtual_mailbox_base.
            let (local, domain) = postern_mail_types::split(&a.address);
            format!("{domain}/{local}/Maildir/")
        })),
        "aliases" => match dir.expand_alias(&key).await? {
            AliasExpansion::NotAlias => Ok(None),
            AliasExpansion::Targets(t) if t.is_empty() => Ok(None),
            AliasExpansion::Targets(t) => Ok(Some(t.join(","))),
            AliasExpansion::Loop => {
                warn!(alias = %key, "alias loop");
                Err(LookupError::Perm(format!("alias loop for {key}")))
            }
        },
        // smtpd's one question per recipient (instead of `aliases` then `mailboxes`): the
        // alias expansion as `alias <targets>`, else `mailbox` for an account, else not found.
        "recipient" => match dir.expand_alias(&key).await? {
            AliasExpansion::Targets(t) if !t.is_empty() => {
                Ok(Some(format!("alias {}", t.join(","))))
            }
            AliasExpansion::Loop => {
                warn!(alias = %key, "alias loop");
                Err(LookupError::Perm(format!("alias loop for {key}")))
            }
            AliasExpansion::NotAlias | AliasExpansion::Targets(_) => {
                Ok(dir.account(&key).await?.map(|_| "mailbox".to_owned()))
            }
        },
        // A moving account has no route until the move is over: TEMP, so the queue keeps
        // its mail (smtpd defers it with 451 4.3.0; Postfix too). RCPT-time maps
        // (`recipient`, `mailboxes`) still answer, so the mail is accepted and waits.
        "transport" => match dir.account(&key).await? {
            Some(a) if a.is_moving() => Err(LookupError::Temp(format!(
                "mailbox of {} is being moved; try again later",
                a.address
            ))),
            a => Ok(a.and_then(|a| transport(&ctx.config.proxy, &a.host))),
        },
        "senders" => {
            let logins = if key.starts_with('@') {
                dir.domain_senders(domain_of(&key)).await?
            } else {
                dir.senders(&key).await?
            };
            Ok((!logins.is_empty()).then(|| logins.join(",")))
        }
        other => Err(LookupError::Perm(format!(
            "unknown map {:?} (maps: domains, mailboxes, aliases, recipient, senders, transport; smtpd's sendlimit, greylist)",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// The `transport` answer for an account on `host`: `lmtp:[host]:port` (Postfix's nexthop
/// syntax, brackets for a name and for an IPv4 or IPv6 address alike) when it lives on
/// another node; `None` (not found: the usual local delivery) when it lives here.
fn transport(proxy: &postern_config::Proxy, host: &str) -> Option<String> {
    let host = proxy.remote_host(host)?;
    Some(format!("lmtp:[{host}]:{}", proxy.lmtp_port))
}

#[cfg(test)]
mod tests {
    use super::transport;

    #[test]
    fn transport_answers() {
        let proxy = postern_config::Proxy {
            self_name: "b1".into(),
            lmtp_port: 2424,
            ..Default::default()
        };
        assert_eq!(transport(&proxy, ""), None);
        assert_eq!(transport(&proxy, "b1"), None);
        assert_eq!(
            transport(&proxy, "b2.example").as_deref(),
            Some("lmtp:[b2.example]:2424")
        );
        assert_eq!(
            transport(&proxy, "2001:db8::2").as_deref(),
            Some("lmtp:[2001:db8::2]:2424")
        );
    }
}
