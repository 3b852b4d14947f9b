//! Who may send what to whom: recipient checks through authd's socketmap (domains,
//! mailboxes, aliases with catch-all), the relay rule, and the sender check on submission
//! (authd's `senders` map).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use postern_auth_proto::client::SocketmapClient;
use postern_auth_proto::socketmap::Reply as MapReply;
use postern_smtp_session::{Address, Reply, Verdict};
use tracing::{debug, warn};

/// Which door the client came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Door {
    /// Port 25: mail for our domains from anyone.
    Mx,
    /// Port 587: STARTTLS then AUTH.
    Submission,
    /// Port 465: implicit TLS then AUTH.
    Submissions,
}

impl Door {
    /// True where MAIL needs an authenticated session.
    pub(crate) fn requires_auth(self) -> bool {
        !matches!(self, Self::Mx)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Mx => "smtp",
            Self::Submission => "submission",
            Self::Submissions => "submissions",
        }
    }
}

/// How long a domain found local is believed without asking authd again.
pub(crate) const DOMAIN_TTL: Duration = Duration::from_secs(30);

type DomainCache = Mutex<HashMap<String, Instant>>;

fn domain_cache() -> &'static DomainCache {
    static CACHE: OnceLock<DomainCache> = OnceLock::new();
    CACHE.get_or_init(DomainCache::default)
}

fn domain_cached(domain: &str) -> bool {
    domain_cache()
        .lock()
        .ok()
        .and_then(|m| m.get(domain).copied())
        .is_some_and(|at| at.elapsed() < DOMAIN_TTL)
}

fn remember_domain(domain: String) {
    if let Ok(mut m) = domain_cache().lock() {
        // Bounded: our own domains only (foreign ones are never stored).
        if m.len() > 10_000 {
            m.clear();
        }
        m.insert(domain, Instant::now());
    }
}

impl Drop for Lookups {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !self.in_flight
            && let Ok(mut p) = pool().lock()
            && p.len() < POOL_MAX
        {
            p.push((self.path.clone(), c, Instant::now()));
        }
    }
}

/// A socketmap answer, with temporary failures kept apart.
enum Found {
    Yes(String),
    No,
    Perm(String),
}

/// Idle socketmap connections kept for the next session (authd closes them after its
/// idle timeout; a dead one is noticed by the failed lookup and replaced).
const POOL_MAX: usize = 64;
/// Age beyond which a pooled connection is not reused.
const POOL_IDLE: Duration = Duration::from_secs(20);

type Pool = Mutex<Vec<(PathBuf, SocketmapClient, Instant)>>;

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(Pool::default)
}

/// authd's socketmap: a connection taken from a shared pool for the session, reconnected
/// once on failure, and given back when the session ends.
pub(crate) struct Lookups {
    path: PathBuf,
    client: Option<SocketmapClient>,
    /// A lookup was started and has not finished (its future may have been dropped, leaving
    /// a reply on the wire): the connection must not go back to the pool.
    in_flight: bool,
}

impl Lookups {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            client: None,
            in_flight: false,
        }
    }

    /// A pooled connection to this socket, if a fresh one is there.
    fn pooled(&self) -> Option<SocketmapClient> {
        let mut p = pool().lock().ok()?;
        p.retain(|(_, _, at)| at.elapsed() < POOL_IDLE);
        let i = p.iter().rposition(|(path, _, _)| *path == self.path)?;
        Some(p.swap_remove(i).1)
    }

    async fn query(&mut self, map: &str, key: &str) -> Result<Found, String> {
        for attempt in 0..2 {
            if self.client.is_none() && attempt == 0 {
                self.client = self.pooled();
            }
            if self.client.is_none() {
                match SocketmapClient::connect(&self.path).await {
                    Ok(c) => self.client = Some(c),
                    Err(e) => return Err(format!("authd unreachable: {e}")),
                }
            }
            let Some(c) = self.client.as_mut() else {
                continue;
            };
            self.in_flight = true;
            let reply = c.lookup(map, key).await;
            self.in_flight = false;
            match reply {
                Ok(MapReply::Ok(v)) => return Ok(Found::Yes(v)),
                Ok(MapReply::NotFound) => return Ok(Found::No),
                Ok(MapReply::Perm(why)) => return Ok(Found::Perm(why)),
                Ok(MapReply::Temp(why) | MapReply::Timeout(why)) => return Err(why),
                Err(e) => {
                    debug!(error = %e, attempt, "socketmap connection failed");
                    self.client = None;
                }
            }
        }
        Err("socketmap connection failed".into())
    }

    /// True when `domain` is one of ours. A yes is remembered for [`DOMAIN_TTL`] (every
    /// message asks; domains are rarely removed); a no is always asked again.
    pub(crate) async fn is_local_domain(&mut self, domain: &str) -> Result<bool, String> {
        let domain = domain.to_lowercase();
        if domain_cached(&domain) {
            return Ok(true);
        }
        let local = matches!(self.query("domains", &domain).await?, Found::Yes(_));
        if local {
            remember_domain(domain);
        }
        Ok(local)
    }

    /// Where mail for `rcpt` goes: its final addresses, or the reply refusing it.
    /// `delimiter` is the plus-addressing separator ("" = none).
    pub(crate) async fn recipient(
        &mut self,
        rcpt: &Address,
        relay_allowed: bool,
        delimiter: &str,
    ) -> Result<Vec<String>, Reply> {
        let temp = |why: String| {
            warn!(rcpt = %rcpt, reason = %why, "recipient lookup failed");
            Reply::new(
                451,
                (4, 3, 0),
                format!("<{rcpt}> Temporary lookup failure, try again later"),
            )
        };
        let address = rcpt.as_str().to_lowercase();
        if !self.is_local_domain(rcpt.domain()).await.map_err(temp)? {
            return if relay_allowed {
                Ok(vec![rcpt.as_str().to_owned()])
            } else {
                Err(Reply::new(
                    554,
                    (5, 7, 1),
                    format!("<{rcpt}> Relay access denied"),
                ))
            };
        }
        // Plus-addressing: user+detail is delivered to user's mailbox (the detail kept).
        let base = match address.split_once('@') {
            Some((local, dom)) if !delimiter.is_empty() => match local.split_once(delimiter) {
                Some((b, d)) if !b.is_empty() && !d.is_empty() => Some(format!("{b}@{dom}")),
                _ => None,
            },
            _ => None,
        };
        for key in std::iter::once(address.as_str()).chain(base.as_deref()) {
            match self.query("aliases", key).await.map_err(temp)? {
                Found::Yes(list) => {
                    let targets: Vec<String> = list
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                    if !targets.is_empty() {
                        // An address that maps to itself (a mailbox beside a catch-all) keeps
                        // the spelling the client used, so plus-details survive.
                        if targets.len() == 1 && targets[0] == key {
                            return Ok(vec![rcpt.as_str().to_owned()]);
                        }
                        return Ok(targets);
                    }
                }
                Found::Perm(why) => {
                    return Err(Reply::new(550, (5, 4, 6), format!("<{rcpt}> {why}")));
                }
                Found::No => {}
            }
            if let Found::Yes(_) = self.query("mailboxes", key).await.map_err(temp)? {
                return Ok(vec![rcpt.as_str().to_owned()]);
            }
        }
        Err(Reply::new(
            550,
            (5, 1, 1),
            format!("<{rcpt}> Recipient address rejected: User unknown"),
        ))
    }

    /// On an authenticated session: may `login` use `sender`?
    pub(crate) async fn sender(&mut self, login: &str, sender: &Address) -> Verdict {
        match self.query("senders", &sender.as_str().to_lowercase()).await {
            Ok(Found::Yes(logins))
                if logins
                    .split(',')
                    .any(|l| l.trim().eq_ignore_ascii_case(login)) =>
            {
                Verdict::Accept
            }
            Ok(_) => Verdict::Reject(Reply::new(
                553,
                (5, 7, 1),
                format!("<{sender}> Sender address rejected: not owned by user {login}"),
            )),
            Err(why) => {
                warn!(sender = %sender, reason = %why, "sender lookup failed");
                Verdict::Reject(Reply::new(
                    451,
                    (4, 3, 0),
                    "Temporary lookup failure, try again later",
                ))
            }
        }
    }
}
