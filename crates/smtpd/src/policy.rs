//! Who may send what to whom: recipient checks through authd's socketmap (domains,
//! mailboxes, aliases with catch-all), the relay rule, and the sender check on submission
//! (authd's `senders` map).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use postern_auth_proto::cache::{Cache, MAX_KEY_LEN, layer_ttl};
use postern_auth_proto::client::SocketmapClient;
use postern_auth_proto::socketmap::Reply as MapReply;
use postern_mail_types::{Domain, same_mailbox, try_split};
use postern_queue::{Address as QueueAddress, Destination};
use postern_smtp_session::{Address, Reply, Verdict};
use tracing::{debug, info, warn};

use crate::srs::Srs;

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

/// How long a domain found local is believed without asking authd again (when answers
/// are not kept in the stamp-watched [`MapCache`]).
pub(crate) const DOMAIN_TTL: Duration = Duration::from_secs(30);

/// A socketmap answer, with temporary failures kept apart.
#[derive(Clone)]
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
/// Domains remembered as local without a [`MapCache`] (our own only; foreign ones are
/// never stored).
const DOMAINS_MAX: usize = 10_000;

/// authd's definite answers (found, not found, refused) on the lookup maps, kept here too
/// for half of `[authd] cache_ttl_secs` and emptied at once by the directory's change stamp,
/// so a recipient seen a moment ago costs no round trip. The policy maps are never kept.
type MapCache = Cache<(String, String), Found>;

/// authd's socketmap as this smtpd asks it: the socket, the connections kept between
/// sessions, and the answers kept; and SRS, which turns bounce addresses back into senders.
/// One per daemon, shared (in an `Arc`) by the sessions, the queue manager and the
/// autoconfig listener; nothing of it is process-wide, so several daemons in one process
/// (tests) do not share connections, answers or SRS secrets.
pub(crate) struct Directory {
    path: PathBuf,
    pool: Mutex<Vec<(SocketmapClient, Instant)>>,
    cache: Option<MapCache>,
    /// Without `cache`: domains found local, and when.
    domains: Mutex<HashMap<String, Instant>>,
    /// SRS (`[smtpd] srs`): reverses bounces to our SRS addresses here, and gives the queue
    /// manager the senders of mail it passes on.
    srs: Option<Srs>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("path", &self.path)
            .field("cached", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// authd's socketmap at `path`, nothing cached but local domains for [`DOMAIN_TTL`].
    pub(crate) fn new(path: PathBuf) -> Arc<Self> {
        Self::build(path, None, None)
    }

    fn build(path: PathBuf, cache: Option<MapCache>, srs: Option<Srs>) -> Arc<Self> {
        Arc::new(Self {
            path,
            pool: Mutex::default(),
            cache,
            domains: Mutex::default(),
            srs,
        })
    }

    /// The config's socketmap socket, with answers cached: the cache watches the directory's
    /// change stamp in the state directory, or where smtpd's user cannot read that, its
    /// public copy in the run directory; without a stamp this process can watch (no inotify,
    /// no run directory) every lookup asks authd. SRS as `[smtpd] srs` sets it up (its secret
    /// read from the state directory, or made there).
    pub(crate) fn from_config(config: &postern_config::Config) -> anyhow::Result<Arc<Self>> {
        let srs = crate::srs::from_config(config).context("setting up SRS")?;
        let ttl = layer_ttl(config.authd.cache_ttl_secs.duration());
        let stamps = [config.directory_stamp(), config.public_directory_stamp()];
        let cache = match Cache::for_client_on_first(ttl, stamps) {
            Ok(c) => {
                info!(ttl_ms = ttl.as_millis(), stamp = %c.stamp().display(), "socketmap answers cached");
                Some(c)
            }
            Err(why) => {
                info!(reason = %why, "socketmap answers not cached here: every lookup asks authd");
                None
            }
        };
        Ok(Self::build(
            config.socket_path(&config.authd.socketmap_socket),
            cache,
            srs,
        ))
    }

    /// This directory's SRS, when it is on.
    pub(crate) fn srs(&self) -> Option<&Srs> {
        self.srs.as_ref()
    }

    /// Lookups for one session or task; its connection comes back to the pool at the end.
    pub(crate) fn lookups(self: &Arc<Self>) -> Lookups {
        Lookups {
            dir: self.clone(),
            client: None,
            in_flight: false,
        }
    }

    /// A pooled connection, if a fresh one is there.
    fn pooled(&self) -> Option<SocketmapClient> {
        let mut p = self.pool.lock().ok()?;
        p.retain(|(_, at)| at.elapsed() < POOL_IDLE);
        p.pop().map(|(c, _)| c)
    }

    fn give_back(&self, c: SocketmapClient) {
        if let Ok(mut p) = self.pool.lock()
            && p.len() < POOL_MAX
        {
            p.push((c, Instant::now()));
        }
    }

    fn domain_cached(&self, domain: &str) -> bool {
        self.domains
            .lock()
            .ok()
            .and_then(|m| m.get(domain).copied())
            .is_some_and(|at| at.elapsed() < DOMAIN_TTL)
    }

    fn remember_domain(&self, domain: String) {
        if let Ok(mut m) = self.domains.lock() {
            if m.len() >= DOMAINS_MAX {
                m.clear();
            }
            m.insert(domain, Instant::now());
        }
    }
}

impl Drop for Lookups {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !self.in_flight
        {
            self.dir.give_back(c);
        }
    }
}

/// A final recipient of an accepted `RCPT TO`, and where it goes when that was decided then
/// (`None`: the queue manager asks at delivery).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) address: String,
    pub(crate) destination: Option<Destination>,
}

impl Target {
    fn new(address: impl Into<String>, destination: Destination) -> Self {
        Self {
            address: address.into(),
            destination: Some(destination),
        }
    }

    pub(crate) fn undecided(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            destination: None,
        }
    }
}

/// authd's socketmap: a connection taken from the [`Directory`]'s pool for the session,
/// reconnected once on failure, and given back when the session ends.
pub(crate) struct Lookups {
    dir: Arc<Directory>,
    client: Option<SocketmapClient>,
    /// A lookup was started and has not finished (its future may have been dropped, leaving
    /// a reply on the wire): the connection must not go back to the pool.
    in_flight: bool,
}

impl Lookups {
    /// A lookup map's answer: from the map cache when it has it, else asked (and kept when
    /// definite).
    async fn query(&mut self, map: &str, key: &str) -> Result<Found, String> {
        let dir = self.dir.clone();
        match &dir.cache {
            Some(cache) if key.len() <= MAX_KEY_LEN => {
                cache
                    .through((map.to_owned(), key.to_owned()), self.ask(map, key))
                    .await
            }
            _ => self.ask(map, key).await,
        }
    }

    /// Asks authd.
    async fn ask(&mut self, map: &str, key: &str) -> Result<Found, String> {
        for attempt in 0..2 {
            if self.client.is_none() && attempt == 0 {
                self.client = self.dir.pooled();
            }
            if self.client.is_none() {
                match SocketmapClient::connect(&self.dir.path).await {
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

    /// One of authd's policy maps (`sendlimit`, `greylist`; they change state, so they are
    /// never cached): the value, or why there is none (a temporary or permanent failure,
    /// not found, authd unreachable), for the caller to fall back to its local state.
    pub(crate) async fn policy_map(&mut self, map: &str, key: &str) -> Result<String, String> {
        match self.ask(map, key).await? {
            Found::Yes(v) => Ok(v),
            Found::No => Err(format!("{map}: not found")),
            Found::Perm(why) => Err(why),
        }
    }

    /// True when `domain` is one of ours. Through the map cache when there is one (a removal
    /// with mailctl is seen at once); else a yes is remembered for [`DOMAIN_TTL`] (every
    /// message asks; domains are rarely removed) and a no is always asked again.
    pub(crate) async fn is_local_domain(&mut self, domain: &str) -> Result<bool, String> {
        let domain = domain.to_lowercase();
        let stamped = self.dir.cache.is_some();
        if !stamped && self.dir.domain_cached(&domain) {
            return Ok(true);
        }
        let local = matches!(self.query("domains", &domain).await?, Found::Yes(_));
        if local && !stamped {
            self.dir.remember_domain(domain);
        }
        Ok(local)
    }

    /// authd's `transport` map for a local recipient (then for its plus-addressing base):
    /// `Some(answer)` when its account lives on another cluster node, `None` when here. An
    /// authd that knows no such map (a permanent refusal) means here.
    pub(crate) async fn transport(
        &mut self,
        address: &str,
        delimiter: &str,
    ) -> Result<Option<String>, String> {
        let address = address.to_lowercase();
        let base = plus_base(&address, delimiter);
        for key in std::iter::once(address.as_str()).chain(base.as_deref()) {
            match self.query("transport", key).await? {
                Found::Yes(v) => return Ok(Some(v)),
                Found::Perm(why) => {
                    debug!(rcpt = key, reason = %why, "no transport map: delivered here");
                    return Ok(None);
                }
                Found::No => {}
            }
        }
        Ok(None)
    }

    /// Where mail for `rcpt` goes: its final addresses (with the destination decided here,
    /// kept in the queue so delivery need not ask again), or the reply refusing it.
    /// `delimiter` is the plus-addressing separator ("" = none).
    pub(crate) async fn recipient(
        &mut self,
        rcpt: &Address,
        relay_allowed: bool,
        delimiter: &str,
    ) -> Result<Vec<Target>, Reply> {
        let temp = |why: String| {
            warn!(rcpt = %rcpt, reason = %why, "recipient lookup failed");
            Reply::new(
                451,
                (4, 3, 0),
                format!("<{rcpt}> Temporary lookup failure, try again later"),
            )
        };
        let address = rcpt.as_str().to_lowercase();
        // A bounce to one of our SRS addresses goes on to the sender it stands for.
        if let Some(srs) = self.dir.srs()
            && srs.is_ours(rcpt.as_str())
            && crate::srs::is_srs_local(rcpt.local_part())
        {
            return match srs.reverse(rcpt.as_str(), crate::srs::today()) {
                Ok(original) => {
                    debug!(rcpt = %rcpt, original = %original, "SRS address reversed");
                    // Its domain was not looked at: delivery decides.
                    Ok(vec![Target::undecided(original)])
                }
                Err(why) => {
                    info!(rcpt = %rcpt, reason = %why, "SRS address refused");
                    Err(Reply::new(
                        550,
                        (5, 1, 1),
                        format!("<{rcpt}> Recipient address rejected: {why}"),
                    ))
                }
            };
        }
        if !self.is_local_domain(rcpt.domain()).await.map_err(temp)? {
            return if relay_allowed {
                Ok(vec![Target::new(rcpt.as_str(), Destination::Remote)])
            } else {
                Err(Reply::new(
                    554,
                    (5, 7, 1),
                    format!("<{rcpt}> Relay access denied"),
                ))
            };
        }
        // Plus-addressing: user+detail is delivered to user's mailbox (the detail kept).
        let base = plus_base(&address, delimiter);
        for key in std::iter::once(address.as_str()).chain(base.as_deref()) {
            // One round trip to authd (its `recipient` map: the alias expansion, else whether
            // it is a mailbox); an authd without that map is asked `aliases`, then `mailboxes`.
            let (alias, mailbox) = match self.query("recipient", key).await.map_err(temp)? {
                Found::Yes(v) => match v.strip_prefix("alias ") {
                    Some(list) => (Found::Yes(list.to_owned()), None),
                    None => (Found::No, Some(v == "mailbox")),
                },
                Found::No => (Found::No, Some(false)),
                Found::Perm(why) if why.starts_with("unknown map") => {
                    (self.query("aliases", key).await.map_err(temp)?, None)
                }
                Found::Perm(why) => (Found::Perm(why), None),
            };
            match alias {
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
                            return Ok(vec![Target::new(rcpt.as_str(), Destination::Local)]);
                        }
                        // Targets in this (local) domain are local; other domains are
                        // decided at delivery.
                        return Ok(targets
                            .into_iter()
                            .map(|t| {
                                let same = QueueAddress::new(t.clone()).domain().is(rcpt.domain());
                                if same {
                                    Target::new(t, Destination::Local)
                                } else {
                                    Target::undecided(t)
                                }
                            })
                            .collect());
                    }
                }
                Found::Perm(why) => {
                    return Err(Reply::new(550, (5, 4, 6), format!("<{rcpt}> {why}")));
                }
                Found::No => {}
            }
            let mailbox = match mailbox {
                Some(known) => known,
                None => matches!(
                    self.query("mailboxes", key).await.map_err(temp)?,
                    Found::Yes(_)
                ),
            };
            if mailbox {
                return Ok(vec![Target::new(rcpt.as_str(), Destination::Local)]);
            }
        }
        Err(Reply::new(
            550,
            (5, 1, 1),
            format!("<{rcpt}> Recipient address rejected: User unknown"),
        ))
    }

    /// On an authenticated session, at the end of DATA: may `login` use every header From:
    /// address of the message (the same rule as for the envelope sender)? `None`: yes; else
    /// the refusal (`553 5.7.1`, or `451` when authd cannot be asked).
    pub(crate) async fn header_from(&mut self, login: &str, header: &[u8]) -> Option<Reply> {
        let refuse = |why: String| {
            Some(Reply::new(
                553,
                (5, 7, 1),
                format!("Header From: rejected: {why}"),
            ))
        };
        let addrs = match header_from_addresses(header) {
            Ok(a) => a,
            Err(why) => return refuse(why),
        };
        for a in addrs {
            let Ok(addr) = Address::parse(&a) else {
                return refuse(format!("<{a}> is not a valid address"));
            };
            match self.sender(login, &addr).await {
                Verdict::Accept | Verdict::AcceptWith(_) => {}
                Verdict::Reject(r) if r.code() == 553 => {
                    info!(user = login, from = %a, "header From: not owned by the login");
                    return refuse(format!("<{a}> not owned by user {login}"));
                }
                Verdict::Reject(r) => return Some(r),
            }
        }
        None
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

/// At the end of DATA/BDAT: on an authenticated session, the header From: addresses must
/// be ones the login may send as ([`Lookups::header_from`]); `Some` is the refusal.
pub(crate) async fn check_header_from(
    lookups: &mut Lookups,
    tx: &postern_smtp_session::Transaction,
) -> Option<Reply> {
    let login = tx.authenticated.as_deref()?;
    lookups.header_from(login, &tx.message).await
}

/// The addresses of the header's From: field (the header section of `message`; what follows
/// the empty line is not looked at). No From: field gives an empty list; more than one
/// From: field, or one without a usable address, is an error (the text for the reply).
pub(crate) fn header_from_addresses(message: &[u8]) -> Result<Vec<String>, String> {
    let end = header_end(message);
    let header = &message[..end];
    let mut fields = 0;
    for line in header.split(|&b| b == b'\n') {
        if matches!(line.first(), Some(b' ' | b'\t')) {
            continue;
        }
        if let Some(i) = line.iter().position(|&b| b == b':')
            && line[..i].trim_ascii().eq_ignore_ascii_case(b"from")
        {
            fields += 1;
        }
    }
    match fields {
        0 => return Ok(Vec::new()),
        1 => {}
        _ => return Err("more than one From: field".into()),
    }
    let mut section = header.to_vec();
    section.extend_from_slice(b"\r\n");
    let parsed = mail_parser::MessageParser::new()
        .parse_headers(&section)
        .ok_or("unreadable header")?;
    let from = parsed.from().ok_or("From: field without an address")?;
    let mut out = Vec::new();
    for a in from.iter() {
        match a.address() {
            Some(x) if x.contains('@') => out.push(x.trim().to_owned()),
            _ => return Err("From: field without a usable address".into()),
        }
    }
    if out.is_empty() {
        return Err("From: field without an address".into());
    }
    Ok(out)
}

/// Where the header section ends (after its empty line), or the whole input.
fn header_end(message: &[u8]) -> usize {
    let mut i = 0;
    for line in message.split_inclusive(|&b| b == b'\n') {
        i += line.len();
        if line == b"\n" || line == b"\r\n" {
            return i;
        }
    }
    message.len()
}

/// The address `user+detail@domain` stands for under plus-addressing (`user@domain`;
/// `delimiter` "" is none). The local part ends at the domain's `@`, not at an `@` inside a
/// quoted local part; a quoted local part is not split (a delimiter inside the quotes would
/// leave an unbalanced quote, which no mailbox has).
fn plus_base(address: &str, delimiter: &str) -> Option<String> {
    if delimiter.is_empty() {
        return None;
    }
    let (local, domain) = try_split(address)?;
    if local.starts_with('"') {
        return None;
    }
    match local.split_once(delimiter) {
        Some((b, d)) if !b.is_empty() && !d.is_empty() => Some(format!("{b}@{domain}")),
        _ => None,
    }
}

/// How a message that came in over SMTP entered: decided at intake from the session, never
/// later from the stored client address.
pub(crate) fn smtp_origin(
    config: &postern_config::Config,
    authenticated: Option<&str>,
    client: std::net::IpAddr,
) -> postern_queue::Origin {
    use postern_queue::Origin;
    match authenticated {
        Some(login) => Origin::Submission {
            login: login.to_owned(),
        },
        None if config
            .smtpd
            .trusted_networks
            .iter()
            .any(|n| n.contains(&client)) =>
        {
            Origin::Trusted
        }
        None => Origin::Mx,
    }
}

/// May the local Unix `user` have mail with the header From: `address` signed? Its own
/// `user@hostname`, and what `[smtpd] local_senders` lists for it (`a@b`, or `@b` for a
/// whole domain).
pub(crate) fn local_may_use(config: &postern_config::Config, user: &str, address: &str) -> bool {
    let Some((_, domain)) = try_split(address) else {
        return false;
    };
    let own = format!("{user}@{}", config.hostname);
    if same_mailbox(address, &own) {
        return true;
    }
    let domain = Domain::new(domain);
    config.smtpd.local_senders.get(user).is_some_and(|list| {
        list.iter().any(|e| {
            let e = e.trim();
            match e.strip_prefix('@') {
                Some(d) => !d.is_empty() && domain.is(d),
                None => same_mailbox(e, address),
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_config() -> postern_config::Config {
        toml::from_str("hostname = \"mail.example.org\"\n[database]\nurl = \"sqlite::memory:\"\n")
            .unwrap()
    }

    #[test]
    fn header_from_addresses_of_a_message() {
        let ok = |m: &str| header_from_addresses(m.as_bytes()).unwrap();
        let err = |m: &str| header_from_addresses(m.as_bytes()).unwrap_err();
        assert_eq!(
            ok("Subject: x\r\nFrom: Boss <boss@B.example>\r\n\r\nFrom: body@x\r\n"),
            ["boss@B.example"]
        );
        assert_eq!(
            ok("From: a@x.example,\r\n\t\"Q\" <b@y.example>\r\nTo: c@z\r\n\r\n"),
            ["a@x.example", "b@y.example"]
        );
        // Only the header counts; no From: at all is left to the receivers.
        assert!(ok("Subject: x\r\n\r\nFrom: a@b\r\n").is_empty());
        assert!(ok("Subject: x\n\nFrom: a@b\n").is_empty());
        // A display name that looks like an address is not the address.
        assert_eq!(
            ok("From: \"boss@b.example\" <me@a.example>\r\n\r\n"),
            ["me@a.example"]
        );
        assert!(err("From: a@x\r\nfrom : b@y\r\n\r\n").contains("more than one"));
        assert!(err("From: undisclosed:;\r\n\r\n").contains("address"));
        assert!(err("From: nobody\r\n\r\n").contains("address"));
    }

    #[test]
    fn local_senders_allow_list() {
        let mut c = test_config();
        c.smtpd.local_senders.insert(
            "www-data".into(),
            vec!["noreply@example.org".into(), "@shop.example".into()],
        );
        assert!(local_may_use(&c, "root", "root@mail.example.org"));
        assert!(local_may_use(&c, "root", "ROOT@Mail.Example.org"));
        assert!(!local_may_use(&c, "root", "root@example.org"));
        assert!(!local_may_use(&c, "root", "noreply@example.org"));
        assert!(local_may_use(&c, "www-data", "noreply@example.org"));
        assert!(local_may_use(&c, "www-data", "any@shop.example"));
        assert!(!local_may_use(&c, "www-data", "any@sub.shop.example"));
        assert!(!local_may_use(&c, "www-data", "ceo@example.org"));
        // An `@` in a quoted local part is not the domain's.
        assert!(!local_may_use(
            &c,
            "www-data",
            "\"a@shop.example\"@evil.example"
        ));
        assert!(!local_may_use(&c, "www-data", "nodomain"));
    }

    #[test]
    fn local_senders_domains_in_any_case_and_label_form() {
        // Compared with ASCII rules only, `@bücher.example` did not allow
        // `a@BÜCHER.example` nor its A-label spelling.
        let mut c = test_config();
        c.smtpd.local_senders.insert(
            "shop".into(),
            vec!["@bücher.example".into(), "info@Köln.example".into()],
        );
        for from in [
            "a@bücher.example",
            "a@BÜCHER.example",
            "a@xn--bcher-kva.example",
            "INFO@köln.example",
            "info@XN--KLN-SNA.example",
        ] {
            assert!(local_may_use(&c, "shop", from), "{from}");
        }
        assert!(!local_may_use(&c, "shop", "a@bucher.example"));
        assert!(!local_may_use(&c, "shop", "other@köln.example"));
    }

    #[test]
    fn plus_addressing_splits_the_local_part() {
        assert_eq!(
            plus_base("user+tag@example.org", "+").as_deref(),
            Some("user@example.org")
        );
        assert_eq!(
            plus_base("user-a-b@example.org", "-").as_deref(),
            Some("user@example.org")
        );
        for none in [
            "user@example.org",
            "+tag@example.org",
            "user+@example.org",
            "user",
            "user+tag",
        ] {
            assert_eq!(plus_base(none, "+"), None, "{none}");
        }
        assert_eq!(plus_base("user+tag@example.org", ""), None);
        // The delimiter in the domain is not plus-addressing.
        assert_eq!(plus_base("user@a+b.example", "+"), None);
    }

    #[test]
    fn plus_addressing_of_quoted_local_parts() {
        // Split at the first `@`, `"x+y@z"@example.org` was looked up as `"x@z"@example.org`,
        // another address; and `"x+y"@example.org` as `"x@example.org`.
        assert_eq!(plus_base("\"x+y@z\"@example.org", "+"), None);
        assert_eq!(plus_base("\"x+y\"@example.org", "+"), None);
        assert_eq!(plus_base("\"a@b\"@x+y.example", "+"), None);
    }

    #[test]
    fn origin_at_intake() {
        use postern_queue::Origin;
        let c = test_config();
        let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let out: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(smtp_origin(&c, None, out), Origin::Mx);
        assert_eq!(smtp_origin(&c, None, lo), Origin::Trusted);
        assert_eq!(
            smtp_origin(&c, Some("a@b"), out),
            Origin::Submission {
                login: "a@b".into()
            }
        );
    }

    /// A fake authd socketmap answering from `answer`; records every request.
    async fn fake_authd(
        dir: &std::path::Path,
        answer: fn(&str, &str) -> MapReply,
    ) -> (PathBuf, Arc<Mutex<Vec<String>>>) {
        use postern_auth_proto::socketmap::{NetstringDecoder, parse_request};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let path = dir.join("socketmap");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let log = log.clone();
                log.lock().unwrap().push("connect".into());
                tokio::spawn(async move {
                    let mut dec = NetstringDecoder::new(10_000);
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        dec.push(&buf[..n]);
                        let reqs: Vec<Vec<u8>> = dec.by_ref().filter_map(Result::ok).collect();
                        for raw in reqs {
                            let req = parse_request(&raw).unwrap();
                            log.lock()
                                .unwrap()
                                .push(format!("{} {}", req.name, req.key));
                            let reply = answer(&req.name, &req.key);
                            s.write_all(&reply.encode()).await.unwrap();
                        }
                    }
                });
            }
        });
        (path, seen)
    }

    /// authd's `recipient` map answers in one round trip what `aliases` then `mailboxes` did;
    /// an authd without it (an older one) is asked the two maps, with the same results.
    #[tokio::test]
    async fn recipients_in_one_lookup_or_two_with_an_older_authd() {
        fn new_authd(map: &str, key: &str) -> MapReply {
            match (map, key) {
                ("domains", "example.org") => MapReply::Ok(key.into()),
                ("recipient", "bob@example.org") => MapReply::Ok("mailbox".into()),
                ("recipient", "team@example.org") => {
                    MapReply::Ok("alias bob@example.org,x@example.net".into())
                }
                ("recipient", "loop@example.org") => MapReply::Perm("alias loop".into()),
                _ => MapReply::NotFound,
            }
        }
        fn old_authd(map: &str, key: &str) -> MapReply {
            match (map, key) {
                ("domains", "example.org") => MapReply::Ok(key.into()),
                ("recipient", _) => MapReply::Perm("unknown map \"recipient\" (maps: …)".into()),
                ("mailboxes", "bob@example.org") => MapReply::Ok("example.org/bob/Maildir/".into()),
                ("aliases", "team@example.org") => {
                    MapReply::Ok("bob@example.org,x@example.net".into())
                }
                ("aliases", "loop@example.org") => MapReply::Perm("alias loop".into()),
                _ => MapReply::NotFound,
            }
        }
        for (authd, lookups) in [(new_authd as fn(&str, &str) -> MapReply, 2), (old_authd, 6)] {
            let dir = tempfile::tempdir().unwrap();
            let (path, seen) = fake_authd(dir.path(), authd).await;
            let mut l = Directory::new(path).lookups();
            let rcpt = |a: &str| Address::parse(a).unwrap();
            let bob = l
                .recipient(&rcpt("Bob+tag@example.org"), false, "+")
                .await
                .unwrap();
            assert_eq!(
                bob,
                vec![Target::new("Bob+tag@example.org", Destination::Local)]
            );
            let team = l
                .recipient(&rcpt("team@example.org"), false, "+")
                .await
                .unwrap();
            assert_eq!(
                team,
                vec![
                    Target::new("bob@example.org", Destination::Local),
                    Target::undecided("x@example.net"),
                ]
            );
            let who = l
                .recipient(&rcpt("who@example.org"), false, "+")
                .await
                .unwrap_err();
            assert_eq!(who.code(), 550);
            let looped = l
                .recipient(&rcpt("loop@example.org"), false, "+")
                .await
                .unwrap_err();
            assert!(looped.to_string().starts_with("550 5.4.6"), "{looped}");
            // Bob+tag: the address, then its base; one lookup each (an older authd: three each).
            let seen = seen.lock().unwrap().clone();
            let for_bob: Vec<&String> = seen
                .iter()
                .filter(|r| r.contains("bob+tag") || r.ends_with(" bob@example.org"))
                .collect();
            assert_eq!(for_bob.len(), lookups, "{seen:?}");
        }
    }

    /// Each daemon's [`Directory`] keeps its own connections and answers: a connection goes
    /// back to the pool of the directory it came from and is reused by that directory's next
    /// session; another directory (another authd) neither gets it nor sees its answers.
    #[tokio::test]
    async fn connections_and_answers_stay_with_their_directory() {
        fn ours(map: &str, key: &str) -> MapReply {
            match (map, key) {
                ("domains", "example.org" | "example.net") => MapReply::Ok(key.into()),
                _ => MapReply::NotFound,
            }
        }
        fn theirs(_: &str, _: &str) -> MapReply {
            MapReply::NotFound
        }
        let dir = tempfile::tempdir().unwrap();
        let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a_dir).unwrap();
        std::fs::create_dir_all(&b_dir).unwrap();
        let (a_path, a_seen) = fake_authd(&a_dir, ours).await;
        let (b_path, b_seen) = fake_authd(&b_dir, theirs).await;
        let (a, b) = (Directory::new(a_path), Directory::new(b_path));
        let mut l = a.lookups();
        assert_eq!(l.is_local_domain("Example.ORG").await, Ok(true));
        drop(l);
        let mut l = b.lookups();
        assert_eq!(l.is_local_domain("example.org").await, Ok(false));
        drop(l);
        let mut l = a.lookups();
        // Remembered (no cache of answers here: domains found local are kept a while).
        assert_eq!(l.is_local_domain("example.org").await, Ok(true));
        assert_eq!(l.is_local_domain("example.net").await, Ok(true));
        drop(l);
        let a_seen = a_seen.lock().unwrap().clone();
        assert_eq!(
            a_seen,
            ["connect", "domains example.org", "domains example.net"],
            "one connection, reused; example.org asked once"
        );
        let b_seen = b_seen.lock().unwrap().clone();
        assert_eq!(b_seen, ["connect", "domains example.org"]);
    }

    /// SRS belongs to the directory built from a config, not to the process: two configs
    /// give two SRS domains and secrets (a process-wide one kept the first config's), one
    /// with `srs = false` gives none, and each reverses only its own addresses.
    #[test]
    fn each_directory_has_the_srs_of_its_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = |name: &str, extra: &str| {
            let base = dir.path().join(name);
            std::fs::create_dir_all(&base).unwrap();
            postern_config::Config::parse(
                &format!(
                    "hostname = \"mail.{name}.test\"\n[paths]\nstate_dir = \"state\"\n\
                     [smtpd]\n{extra}"
                ),
                &base,
            )
            .unwrap()
        };
        let a = Directory::from_config(&config("a", "")).unwrap();
        let b = Directory::from_config(&config("b", "srs_domain = \"bounces.b.test\"\n")).unwrap();
        let off = Directory::from_config(&config("off", "srs = false\n")).unwrap();
        let (sa, sb) = (
            a.srs().expect("SRS on by default"),
            b.srs().expect("SRS on"),
        );
        assert_eq!(sa.domain(), "mail.a.test");
        assert_eq!(sb.domain(), "bounces.b.test");
        assert!(off.srs().is_none());
        assert!(Directory::new(dir.path().join("socketmap")).srs().is_none());
        // Each made its own secret in its own state directory.
        for name in ["a", "b"] {
            assert!(
                dir.path().join(name).join("state/srs.secret").is_file(),
                "{name}"
            );
        }
        let day = crate::srs::today();
        let from_a = sa.forward("someone@example.org", day);
        assert!(from_a.ends_with("@mail.a.test"), "{from_a}");
        assert_eq!(sa.reverse(&from_a, day).unwrap(), "someone@example.org");
        assert!(!sb.is_ours(&from_a));
        // b's secret does not verify a's hash, even under b's domain.
        let moved = from_a.replace("@mail.a.test", "@bounces.b.test");
        assert!(sb.reverse(&moved, day).is_err());
    }
}
