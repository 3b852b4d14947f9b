//! The LMTP proxy (Dovecot's `lmtp_proxy`): a recipient whose userdb answer names another
//! node (`host=`, remote by `[proxy] self`) is not delivered here. After `DATA` its
//! message goes to that backend's lmtp-deliver over LMTP/TCP (`[proxy] lmtp_port`,
//! connect timeout and TLS policy), one transaction per backend with all its recipients,
//! and each recipient's reply is the backend's own. A backend that cannot be reached, or
//! whose transaction breaks, gives its recipients `451 4.4.0` (the client retries):
//! never a local delivery, never a bounce.
//!
//! The message is the one the session already holds (`Transaction::message`): every
//! backend's transaction borrows it, nothing is copied per recipient or per backend.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::{Duration, Instant};

use postern_config::{Config, HopTls};
use postern_smtp_client::tls::server_name;
use postern_smtp_client::{
    Client, ClientError, Flavor, Notify, OutRcpt, Outgoing, RcptResult, Ret, ServerReply, Target,
    Timeouts,
};
use postern_smtp_session::{Address, BodyType, RcptParams, Reply, Transaction};
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

use crate::Ctx;
use crate::rcpt::{Lookup, Recipients};

/// Backends one message is sent to at the same time (the others wait their turn).
const PARALLEL_BACKENDS: usize = 8;

/// Idle connections kept per backend for the next transactions.
const POOL_PER_BACKEND: usize = 4;
/// Idle connections kept in all.
const POOL_MAX: usize = 64;
/// How long an idle connection is kept (at most `[proxy] idle_timeout_secs`); well below
/// the time a Postern backend lets an LMTP client sit idle.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// `Received:` fields past which a message is taken to be looping between nodes whose
/// `[proxy] self` or `host` values disagree (Postfix's `hopcount_limit`).
const MAX_HOPS: usize = 50;

/// A backend's LMTP server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Backend {
    /// Host name or IP address, as the userdb's `host=` gave it (checked, lower case).
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Backend {
    /// The backend for a userdb `host=` value, or `None` when the account is local
    /// (empty, or `[proxy] self`). A value that is no host name is an error: the
    /// recipient must not be delivered here by guess.
    pub(crate) fn for_host(config: &Config, host: &str) -> Option<Result<Self, String>> {
        let host = config.proxy.remote_host(host)?;
        if !postern_config::valid_host(host) {
            return Some(Err(format!("userdb host {:?} is no host name", host)));
        }
        Some(Ok(Self {
            host: host.to_ascii_lowercase(),
            port: config.proxy.lmtp_port,
        }))
    }

    fn target(&self) -> Target {
        if self.host.contains(':') {
            Target::Tcp(format!("[{}]:{}", self.host, self.port))
        } else {
            Target::Tcp(format!("{}:{}", self.host, self.port))
        }
    }
}

/// The client side of the hop (`[proxy] tls`), built once at start, and the idle
/// connections to backends kept between transactions.
pub(crate) struct Hop {
    /// `None`: plain text.
    tls: Option<TlsConnector>,
    /// `verify`: no TLS, no delivery.
    required: bool,
    timeouts: Timeouts,
    /// How long an idle connection is kept.
    pool_idle: Duration,
    /// Idle connections (backend, connection, since when), oldest first.
    pool: Mutex<Vec<(Backend, Client, Instant)>>,
}

impl Hop {
    pub(crate) fn new(config: &Config) -> anyhow::Result<Self> {
        let p = &config.proxy;
        let tls = postern_smtp_client::tls::hop_connector(config).map_err(anyhow::Error::msg)?;
        let idle = p.idle_timeout_secs.duration();
        let d = Timeouts::default();
        let timeouts = Timeouts {
            connect: p.connect_timeout_secs.duration(),
            greeting: d.greeting.min(idle),
            command: d.command.min(idle),
            data_block: d.data_block.min(idle),
            final_reply: d.final_reply.min(idle),
        };
        Ok(Self {
            tls,
            required: p.tls == HopTls::Verify,
            timeouts,
            pool_idle: POOL_IDLE.min(idle),
            pool: Mutex::new(Vec::new()),
        })
    }

    /// The most recently used idle connection to `backend` that is young enough; older
    /// ones (to any backend) are dropped on the way.
    fn take(&self, backend: &Backend) -> Option<Client> {
        let mut pool = self.pool.lock().ok()?;
        let idle = self.pool_idle;
        pool.retain(|(_, c, at)| at.elapsed() < idle && c.is_usable());
        let i = pool.iter().rposition(|(b, _, _)| b == backend)?;
        Some(pool.remove(i).1)
    }

    /// Keeps `c` for the next transaction to `backend`, if it is clean (no transaction
    /// left open) and there is room; else closes it. Expired idle connections are dropped
    /// on the way (as in [`Hop::take`]).
    async fn give_back(&self, backend: &Backend, c: Client) {
        let c = if c.is_usable() && !c.in_transaction() {
            match self.pool.lock() {
                Ok(mut pool) => {
                    let idle = self.pool_idle;
                    pool.retain(|(_, c, at)| at.elapsed() < idle && c.is_usable());
                    let mine = pool.iter().filter(|(b, _, _)| b == backend).count();
                    if mine < POOL_PER_BACKEND {
                        if pool.len() >= POOL_MAX {
                            // The longest idle goes.
                            pool.remove(0);
                        }
                        pool.push((backend.clone(), c, Instant::now()));
                        return;
                    }
                    c
                }
                Err(_) => c,
            }
        } else {
            c
        };
        drop(c.quit().await);
    }
}

/// After `DATA`: local recipients delivered here ([`crate::deliver`]), the others forwarded
/// to their backends at the same time; one reply per recipient, in `RCPT` order.
pub(crate) async fn deliver(
    ctx: &Ctx,
    recipients: &mut Recipients,
    mut tx: Transaction,
    peer: &str,
) -> Vec<Reply> {
    let mut remote = Vec::new();
    for (i, (address, _)) in tx.recipients.iter().enumerate() {
        let backend = match recipients.accepted(address.as_str()) {
            Some(r) => r.backend.clone(),
            // Not remembered (should not happen): ask, so that it is never delivered here
            // by mistake; deliver.rs asks again for the local ones.
            None => match recipients.lookup(address).await {
                Lookup::Found(r) => r.backend,
                Lookup::Unknown | Lookup::Unavailable(_) => None,
            },
        };
        if let Some(b) = backend {
            remote.push((i, b));
        }
    }
    if remote.is_empty() {
        return crate::deliver::deliver_all(ctx, recipients, &tx, peer).await;
    }
    let all = std::mem::take(&mut tx.recipients);
    let mut is_remote = vec![false; all.len()];
    for (i, _) in &remote {
        is_remote[*i] = true;
    }
    tx.recipients = all
        .iter()
        .zip(&is_remote)
        .filter(|(_, r)| !**r)
        .map(|(a, _)| a.clone())
        .collect();
    let local = async {
        if tx.recipients.is_empty() {
            Vec::new()
        } else {
            crate::deliver::deliver_all(ctx, recipients, &tx, peer).await
        }
    };
    let (local, forwarded) = tokio::join!(local, forward(ctx, &tx, &all, remote, peer));
    let mut replies: Vec<Option<Reply>> = vec![None; all.len()];
    let mut local = local.into_iter();
    for (slot, r) in replies.iter_mut().zip(&is_remote) {
        if !*r {
            *slot = local.next();
        }
    }
    for (i, reply) in forwarded {
        replies[i] = Some(reply);
    }
    replies
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Reply::new(451, (4, 3, 0), "Internal error, try again later")))
        .collect()
}

/// Sends `tx`'s message to the backends of the recipients at `remote` (index into `all`,
/// the transaction's recipients; backend); one reply per index, in any order.
async fn forward(
    ctx: &Ctx,
    tx: &Transaction,
    all: &[(Address, RcptParams)],
    remote: Vec<(usize, Backend)>,
    peer: &str,
) -> Vec<(usize, Reply)> {
    if received_fields(&tx.message) >= MAX_HOPS {
        warn!(
            hops = MAX_HOPS,
            "message loops between nodes: check [proxy] self and the accounts' host"
        );
        return remote
            .into_iter()
            .map(|(i, _)| {
                let text = format!("<{}> Too many hops, mail loop between nodes?", all[i].0);
                (i, Reply::new(554, (5, 4, 6), text))
            })
            .collect();
    }
    // Each hop adds its trace field, so that a loop ends (above) instead of going round.
    let trace = trace(ctx, tx, peer);
    let trace = trace.as_slice();
    let mut groups: BTreeMap<Backend, Vec<usize>> = BTreeMap::new();
    for (i, b) in remote {
        groups.entry(b).or_default().push(i);
    }
    let slots = Semaphore::new(PARALLEL_BACKENDS);
    let slots = &slots;
    let work = groups.into_iter().map(|(backend, idx)| async move {
        let _slot = slots.acquire().await;
        one_backend(ctx, tx, trace, all, &backend, &idx).await
    });
    join_all(work.collect())
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// One LMTP transaction to `backend` for the recipients at `idx`.
async fn one_backend(
    ctx: &Ctx,
    tx: &Transaction,
    trace: &[u8],
    all: &[(Address, RcptParams)],
    backend: &Backend,
    idx: &[usize],
) -> Vec<(usize, Reply)> {
    let rcpts = idx
        .iter()
        .map(|&i| out_rcpt(&all[i].0, &all[i].1))
        .collect();
    let mut out = Outgoing::new(
        tx.mail_from.as_ref().map(|a| a.as_str().to_owned()),
        rcpts,
        &tx.message,
    )
    .with_trace(trace);
    out.body_8bit = matches!(tx.body_type, BodyType::EightBitMime | BodyType::BinaryMime);
    out.smtputf8 = tx.smtputf8;
    // DSN (RFC 3461): passed on as the client gave them; the smtp client sends them only
    // to a backend that offers DSN.
    out.ret = tx.mail_params.ret.map(|r| match r {
        postern_smtp_session::Ret::Full => Ret::Full,
        postern_smtp_session::Ret::Hdrs => Ret::Headers,
    });
    out.envid = tx.mail_params.envid.clone();
    match transaction(ctx, backend, &out).await {
        Ok(results) => idx
            .iter()
            .zip(results)
            .map(|(&i, r)| {
                let reply = relayed(&r, backend);
                info!(rcpt = %r.address, backend = %backend.host, reply = %reply.lines().join(" "), "proxied");
                (i, reply)
            })
            .collect(),
        Err(e) => {
            warn!(backend = %backend.host, port = backend.port, error = %e, "backend unavailable; recipients deferred");
            idx.iter()
                .map(|&i| {
                    let reply = Reply::new(
                        451,
                        (4, 4, 0),
                        format!(
                            "<{}> Remote server {} not available, try again later",
                            all[i].0, backend.host
                        ),
                    );
                    (i, reply)
                })
                .collect()
        }
    }
}

/// A recipient with its DSN parameters (`NOTIFY=`, `ORCPT=` kept xtext-encoded).
fn out_rcpt(address: &Address, params: &RcptParams) -> OutRcpt {
    let mut r = OutRcpt::new(address.as_str());
    r.notify = params.notify.map(|n| Notify {
        success: n.success,
        failure: n.failure,
        delay: n.delay,
    });
    r.orcpt = params
        .orcpt
        .as_ref()
        .map(|o| format!("{};{}", o.addr_type, o.value));
    r
}

/// The transaction on an idle connection to `backend` if there is one, else on a new one.
/// A pooled connection that fails before the backend accepted anything of the transaction
/// (it closed the idle connection, or said `421`) is replaced once by a new connection;
/// once `MAIL` was accepted, a failure is final (the message may have been delivered).
async fn transaction(
    ctx: &Ctx,
    backend: &Backend,
    out: &Outgoing<'_>,
) -> Result<Vec<RcptResult>, ClientError> {
    let hop = &ctx.hop;
    if let Some(mut c) = hop.take(backend) {
        match c.send(out).await {
            Ok(results) => return finish(hop, backend, c, out, results).await,
            Err(e) if !c.in_transaction() && stale(&e) => {
                debug!(backend = %backend.host, error = %e, "idle LMTP connection gone; connecting again");
            }
            Err(e) => return Err(e),
        }
    }
    let mut c = Client::connect(
        &backend.target(),
        Flavor::Lmtp,
        &ctx.config.hostname,
        hop.timeouts,
    )
    .await?;
    if let Some(connector) = &hop.tls {
        let name = server_name(&backend.host)
            .ok_or_else(|| ClientError::Tls(format!("{} is no TLS server name", backend.host)))?;
        c.starttls_policy(connector, name, hop.required).await?;
    }
    let results = c.send(out).await?;
    finish(hop, backend, c, out, results).await
}

/// Whether a failed transaction on an idle connection says the connection was dead rather
/// than anything about the message: an I/O failure or time-out, or `421` (closing).
fn stale(e: &ClientError) -> bool {
    match e {
        ClientError::Rejected(r) => r.code == 421,
        ClientError::Io(_) | ClientError::Closed | ClientError::Timeout(_) => true,
        _ => false,
    }
}

/// After a transaction that gave results: the connection back to the pool, the results
/// checked.
async fn finish(
    hop: &Hop,
    backend: &Backend,
    c: Client,
    out: &Outgoing<'_>,
    results: Vec<RcptResult>,
) -> Result<Vec<RcptResult>, ClientError> {
    hop.give_back(backend, c).await;
    if results.len() != out.recipients.len() {
        return Err(ClientError::Protocol(
            "a reply per recipient was missing".into(),
        ));
    }
    Ok(results)
}

/// The backend's reply for one recipient, as this server's reply. `421` (the backend
/// closing the channel) says nothing about the recipient: `451 4.4.2`, to be retried.
fn relayed(r: &RcptResult, backend: &Backend) -> Reply {
    let s: &ServerReply = &r.reply;
    if s.code == 421 || !(200..600).contains(&s.code) {
        return Reply::new(
            451,
            (4, 4, 2),
            format!(
                "<{}> Remote server {} closed the connection, try again later",
                r.address, backend.host
            ),
        );
    }
    let enhanced = s
        .enhanced
        .filter(|(class, _, _)| u16::from(*class) == s.code / 100)
        .unwrap_or(match s.code / 100 {
            2 => (2, 0, 0),
            4 => (4, 0, 0),
            _ => (5, 0, 0),
        });
    let text = if s.text.trim().is_empty() {
        "(no text)"
    } else {
        s.text.as_str()
    };
    Reply::new(s.code, enhanced, text)
}

/// The proxy's `Received:` field; its `id` is the one of the message's topmost `Received:`
/// (the sending MTA's queue id), so that the backend's logs name it as a direct delivery's do.
fn trace(ctx: &Ctx, tx: &Transaction, peer: &str) -> Vec<u8> {
    let clean = |s: &str| -> String {
        let s: String = s
            .chars()
            .take(255)
            .map(|c| if c.is_ascii_graphic() { c } else { '?' })
            .collect();
        if s.is_empty() { "unknown".into() } else { s }
    };
    let date = mail_builder::headers::date::Date::now().to_rfc822();
    let id = crate::deliver::trace_id(&tx.message)
        .map(|id| format!(" id {id}"))
        .unwrap_or_default();
    format!(
        "Received: from {helo} ({peer})\r\n\tby {host} (Postern LMTP proxy) with {proto}{id};\r\n\t{date}\r\n",
        helo = clean(&tx.helo),
        peer = clean(peer),
        host = ctx.config.hostname,
        proto = tx.protocol(),
    )
    .into_bytes()
}

/// How many `Received:` fields the header section has.
fn received_fields(message: &[u8]) -> usize {
    message
        .split(|&b| b == b'\n')
        .take_while(|l| !l.is_empty() && *l != b"\r")
        .filter(|l| l.len() >= 9 && l[..9].eq_ignore_ascii_case(b"received:"))
        .count()
}

/// Runs `futures` together; their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (f, o) in futures.iter_mut().zip(outputs.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use postern_smtp_session::{Flavor, MailParams};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    /// A context for `config` (TOML after `hostname = …`), with no `[tls]` certificate.
    pub(crate) fn ctx(config: &str, tls: Option<postern_daemon::Tls>) -> Arc<Ctx> {
        let dir = std::env::temp_dir();
        let config =
            Config::parse(&format!("hostname = \"front.example\"\n{config}"), &dir).unwrap();
        let mut tcp_session = crate::session_config(&config);
        tcp_session.extensions.starttls = tls.is_some();
        Arc::new(Ctx {
            session: Arc::new(crate::session_config(&config)),
            tcp_session: Arc::new(tcp_session),
            userdb_socket: dir.join("no-such-userdb-socket"),
            user_cache: None,
            tls,
            hop: Hop::new(&config).unwrap(),
            config,
        })
    }

    fn tx(rcpts: &[&str]) -> Transaction {
        Transaction {
            flavor: Flavor::Lmtp,
            helo: "client".into(),
            esmtp: true,
            mail_from: Some(Address::parse("sender@example.org").unwrap()),
            mail_params: MailParams::default(),
            recipients: rcpts
                .iter()
                .map(|r| (Address::parse(r).unwrap(), RcptParams::default()))
                .collect(),
            message: b"Subject: hi\r\n\r\n.leading dot\r\n".to_vec(),
            body_type: BodyType::SevenBit,
            smtputf8: false,
            chunked: false,
            peer: postern_smtp_session::PeerInfo {
                ip: None,
                tls: false,
                authenticated: None,
            },
            authenticated: None,
            tls: false,
        }
    }

    /// A fake backend on loopback: `550` at RCPT for `nobody@…`, then `after_data` (one
    /// reply per accepted recipient). Returns its port and what it was sent (the body,
    /// dot-stuffed, and the commands).
    async fn backend(after_data: Vec<&'static str>) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            w.write_all(b"220 backend ready\r\n").await.unwrap();
            let mut seen = Vec::new();
            let mut in_data = false;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).await.unwrap() == 0 {
                    return seen;
                }
                let line = line.trim_end().to_owned();
                seen.push(line.clone());
                let reply: String = if in_data {
                    if line != "." {
                        continue;
                    }
                    in_data = false;
                    after_data.iter().map(|r| format!("{r}\r\n")).collect()
                } else if line.starts_with("LHLO") {
                    "250-backend\r\n250 ENHANCEDSTATUSCODES\r\n".into()
                } else if line.starts_with("RCPT") && line.contains("nobody@") {
                    "550 5.1.1 <nobody@example.org> User doesn't exist\r\n".into()
                } else if line == "DATA" {
                    in_data = true;
                    "354 go\r\n".into()
                } else if line == "QUIT" {
                    "221 bye\r\n".into()
                } else {
                    "250 2.1.0 ok\r\n".into()
                };
                w.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        (port, task)
    }

    #[tokio::test]
    async fn each_recipient_gets_the_backends_reply_and_one_transaction_per_backend() {
        let (port, server) = backend(vec![
            "250 2.0.0 <bob@example.org> Saved",
            "452 4.2.2 <carol@example.org> Mailbox is full",
        ])
        .await;
        let ctx = ctx(&format!("[proxy]\nlmtp_port = {port}\n"), None);
        let b = Backend::for_host(&ctx.config, "127.0.0.1")
            .unwrap()
            .unwrap();
        let tx = tx(&["bob@example.org", "nobody@example.org", "carol@example.org"]);
        let all = tx.recipients.clone();
        let remote = (0..3).map(|i| (i, b.clone())).collect();
        let mut got = forward(&ctx, &tx, &all, remote, "[127.0.0.1]").await;
        got.sort_by_key(|(i, _)| *i);
        let codes: Vec<(u16, String)> = got
            .iter()
            .map(|(_, r)| (r.code(), r.lines().join(" ")))
            .collect();
        assert_eq!(codes[0].0, 250);
        assert_eq!(
            codes[1],
            (550, "<nobody@example.org> User doesn't exist".into())
        );
        assert_eq!(
            codes[2],
            (452, "<carol@example.org> Mailbox is full".into())
        );
        assert_eq!(got[2].1.enhanced(), Some((4, 2, 2).into()));
        // The connection is kept for the next message: closing it ends the fake backend.
        drop(ctx);
        let seen = server.await.unwrap();
        assert_eq!(seen.iter().filter(|l| l.starts_with("LHLO")).count(), 1);
        assert_eq!(seen.iter().filter(|l| l.starts_with("RCPT")).count(), 3);
        // The body as sent, dot-stuffed once, after the proxy's trace field.
        assert!(seen.contains(&"..leading dot".to_owned()), "{seen:?}");
        let data = seen.iter().position(|l| l == "DATA").unwrap();
        assert_eq!(seen[data + 1], "Received: from client ([127.0.0.1])");
        assert!(
            seen[data + 2].starts_with("\tby front.example (Postern LMTP proxy) with LMTP;"),
            "{seen:?}"
        );
        assert_eq!(seen[data + 4], "Subject: hi");
    }

    #[tokio::test]
    async fn a_backend_that_is_down_defers_its_recipients() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let ctx = ctx(&format!("[proxy]\nlmtp_port = {port}\n"), None);
        let b = Backend::for_host(&ctx.config, "127.0.0.1")
            .unwrap()
            .unwrap();
        let tx = tx(&["bob@example.org", "dave@example.org"]);
        let all = tx.recipients.clone();
        let got = forward(&ctx, &tx, &all, vec![(0, b.clone()), (1, b)], "local").await;
        assert_eq!(got.len(), 2);
        for (_, r) in got {
            assert_eq!((r.code(), r.enhanced()), (451, Some((4, 4, 0).into())));
        }
    }

    #[tokio::test]
    async fn a_backend_closing_mid_transaction_defers_and_421_is_not_passed_on() {
        let (port, _server) = backend(vec!["421 4.3.2 shutting down"]).await;
        let ctx = ctx(&format!("[proxy]\nlmtp_port = {port}\n"), None);
        let b = Backend::for_host(&ctx.config, "127.0.0.1")
            .unwrap()
            .unwrap();
        let tx = tx(&["bob@example.org"]);
        let all = tx.recipients.clone();
        let got = forward(&ctx, &tx, &all, vec![(0, b)], "local").await;
        assert_eq!(got[0].1.code(), 451, "{:?}", got[0].1);
    }

    /// How a [`multi_backend`] connection behaves.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Conduct {
        /// Answers every transaction (`250` to each recipient).
        Serve,
        /// Serves one transaction, then closes the connection (an idle backend's close,
        /// noticed only by the next transaction).
        CloseAfterOne,
        /// Serves one transaction, then answers the next `MAIL` with `421` and closes.
        Say421AfterOne,
        /// Serves one transaction; in the next, closes after the message's final dot
        /// without a reply (something of it may have been delivered).
        CloseAfterSecondDot,
    }

    /// A fake backend on loopback that takes many connections, one after another (the
    /// `n`th behaving as `conduct[n]`, the last one repeated), advertising `DSN` when
    /// `dsn`. Returns its port and everything it was sent, as (connection number, line).
    async fn multi_backend(
        dsn: bool,
        conduct: Vec<Conduct>,
    ) -> (u16, Arc<Mutex<Vec<(usize, String)>>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for n in 0.. {
                let Ok((s, _)) = l.accept().await else { return };
                let how = conduct[n.min(conduct.len() - 1)];
                let log = log.clone();
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = BufReader::new(r);
                    w.write_all(b"220 backend ready\r\n").await.unwrap();
                    let (mut in_data, mut rcpts, mut done) = (false, 0, 0);
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end().to_owned();
                        log.lock().unwrap().push((n, line.clone()));
                        let reply: String = if in_data {
                            if line != "." {
                                continue;
                            }
                            in_data = false;
                            done += 1;
                            if how == Conduct::CloseAfterSecondDot && done == 2 {
                                return;
                            }
                            let r = "250 2.0.0 Saved\r\n".repeat(rcpts);
                            rcpts = 0;
                            r
                        } else if line.starts_with("LHLO") {
                            let dsn = if dsn { "250-DSN\r\n" } else { "" };
                            format!("250-backend\r\n{dsn}250 ENHANCEDSTATUSCODES\r\n")
                        } else if line.starts_with("MAIL") && done == 1 {
                            match how {
                                Conduct::CloseAfterOne => return,
                                Conduct::Say421AfterOne => {
                                    drop(w.write_all(b"421 4.4.2 idle too long\r\n").await);
                                    return;
                                }
                                _ => "250 2.1.0 ok\r\n".into(),
                            }
                        } else if line.starts_with("RCPT") {
                            rcpts += 1;
                            "250 2.1.5 ok\r\n".into()
                        } else if line == "DATA" {
                            in_data = true;
                            "354 go\r\n".into()
                        } else if line == "QUIT" {
                            "221 bye\r\n".into()
                        } else {
                            "250 2.0.0 ok\r\n".into()
                        };
                        if w.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, seen)
    }

    /// The connections a [`multi_backend`] saw, and its lines starting with `prefix`.
    fn lines(seen: &Mutex<Vec<(usize, String)>>, prefix: &str) -> (usize, Vec<String>) {
        let seen = seen.lock().unwrap();
        let conns = seen.iter().map(|(n, _)| n + 1).max().unwrap_or(0);
        let l = seen
            .iter()
            .filter(|(_, l)| l.starts_with(prefix))
            .map(|(_, l)| l.clone())
            .collect();
        (conns, l)
    }

    /// Sends `tx` to the backend on `port` (every recipient there); the replies' codes.
    async fn send_all(ctx: &Ctx, tx: &Transaction) -> Vec<u16> {
        let b = Backend::for_host(&ctx.config, "127.0.0.1")
            .unwrap()
            .unwrap();
        let all = tx.recipients.clone();
        let remote = (0..all.len()).map(|i| (i, b.clone())).collect();
        let mut got = forward(ctx, tx, &all, remote, "local").await;
        got.sort_by_key(|(i, _)| *i);
        got.into_iter().map(|(_, r)| r.code()).collect()
    }

    #[tokio::test]
    async fn dsn_parameters_reach_a_backend_that_offers_dsn() {
        let mut t = tx(&["bob@example.org", "carol@example.org"]);
        t.mail_params.ret = Some(postern_smtp_session::Ret::Hdrs);
        t.mail_params.envid = Some("q1+x".into());
        t.recipients[0].1.notify = Some(postern_smtp_session::Notify {
            success: true,
            failure: true,
            delay: false,
        });
        t.recipients[0].1.orcpt = Some(postern_smtp_session::Orcpt {
            addr_type: "rfc822".into(),
            value: "bob+2Bold@example.org".into(),
        });
        t.recipients[1].1.notify = Some(postern_smtp_session::Notify::NEVER);
        for dsn in [true, false] {
            let (port, seen) = multi_backend(dsn, vec![Conduct::Serve]).await;
            let ctx = ctx(&format!("[proxy]\nlmtp_port = {port}\n"), None);
            assert_eq!(send_all(&ctx, &t).await, [250, 250]);
            let (_, mail) = lines(&seen, "MAIL");
            let (_, rcpt) = lines(&seen, "RCPT");
            if dsn {
                assert_eq!(
                    mail,
                    ["MAIL FROM:<sender@example.org> RET=HDRS ENVID=q1+2Bx"]
                );
                assert_eq!(
                    rcpt,
                    [
                        "RCPT TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Bold@example.org",
                        "RCPT TO:<carol@example.org> NOTIFY=NEVER",
                    ]
                );
            } else {
                // A backend without DSN gets none of them (and still the message).
                assert_eq!(mail, ["MAIL FROM:<sender@example.org>"]);
                assert_eq!(
                    rcpt,
                    ["RCPT TO:<bob@example.org>", "RCPT TO:<carol@example.org>"]
                );
            }
        }
    }

    #[tokio::test]
    async fn connections_to_a_backend_are_reused_between_transactions() {
        let (port, seen) = multi_backend(false, vec![Conduct::Serve]).await;
        let ctx = ctx(&format!("[proxy]\nlmtp_port = {port}\n"), None);
        for _ in 0..3 {
            assert_eq!(send_all(&ctx, &tx(&["bob@example.org"])).await, [250]);
        }
        let (conns, lhlo) = lines(&seen, "LHLO");
        assert_eq!((conns, lhlo.len()), (1, 1), "one connection, one LHLO");
        assert_eq!(lines(&seen, "MAIL").1.len(), 3);
        assert!(lines(&seen, "QUIT").1.is_empty(), "kept open, not quit");
    }

    #[tokio::test]
    async fn a_stale_pooled_connection_is_replaced_before_anything_was_accepted() {
        for stale in [Conduct::CloseAfterOne, Conduct::Say421AfterOne] {
            let (port, seen) = multi_backend(false, vec![stale, Conduct::Serve]).await;
            let ctx = ctx(&format!("[proxy]\nlmtp_port = {port}\n"), None);
            assert_eq!(send_all(&ctx, &tx(&["bob@example.org"])).await, [250]);
            // The backend dropped the idle connection: the next message goes on a fresh
            // one instead of being deferred.
            assert_eq!(send_all(&ctx, &tx(&["bob@example.org"])).await, [250]);
            let (conns, _) = lines(&seen, "LHLO");
            assert_eq!(conns, 2);
            assert_eq!(lines(&seen, "DATA").1.len(), 2, "each message sent once");
        }
    }

    #[tokio::test]
    async fn no_second_try_once_the_message_went_out() {
        let (port, seen) = multi_backend(false, vec![Conduct::CloseAfterSecondDot]).await;
        let ctx = ctx(&format!("[proxy]\nlmtp_port = {port}\n"), None);
        assert_eq!(send_all(&ctx, &tx(&["bob@example.org"])).await, [250]);
        // The message went out and the backend went away without a reply: it may have
        // been delivered, so it is deferred rather than sent again at once.
        assert_eq!(send_all(&ctx, &tx(&["bob@example.org"])).await, [451]);
        let (conns, _) = lines(&seen, "LHLO");
        assert_eq!(conns, 1);
    }

    #[test]
    fn the_trace_field_carries_the_senders_queue_id() {
        let ctx = ctx("", None);
        let mut tx = tx(&["bob@example.org"]);
        tx.helo = "mx\r\nX-Evil: 1".into();
        tx.message =
            b"Received: from c by mx.example (Postern) with ESMTP id 00AB12;\r\n\tdate\r\n\r\nx"
                .to_vec();
        let t = String::from_utf8(trace(&ctx, &tx, "local")).unwrap();
        assert!(
            t.starts_with("Received: from mx??X-Evil:?1 (local)\r\n\tby front.example (Postern LMTP proxy) with LMTP id 00AB12;\r\n\t"),
            "{t}"
        );
        assert_eq!(t.matches("\r\n").count(), 3, "{t}");
    }

    #[tokio::test]
    async fn a_looping_message_is_refused_without_connecting() {
        let ctx = ctx("[proxy]\nlmtp_port = 9\n", None);
        let b = Backend::for_host(&ctx.config, "127.0.0.1")
            .unwrap()
            .unwrap();
        let mut tx = tx(&["bob@example.org"]);
        let mut looped = "Received: from a by b;\r\n\td\r\n".repeat(MAX_HOPS);
        looped.push_str("Subject: x\r\n\r\nReceived: in the body\r\n");
        tx.message = looped.into_bytes();
        assert_eq!(received_fields(&tx.message), MAX_HOPS);
        let all = tx.recipients.clone();
        let got = forward(&ctx, &tx, &all, vec![(0, b)], "local").await;
        assert_eq!(
            (got[0].1.code(), got[0].1.enhanced()),
            (554, Some((5, 4, 6).into()))
        );
        tx.message = b"Received: x\r\nreceived: y\nSubject: s\n\nReceived: z\n".to_vec();
        assert_eq!(received_fields(&tx.message), 2);
    }

    #[test]
    fn hosts_and_targets() {
        let ctx = ctx("[proxy]\nself = \"b1.example\"\nlmtp_port = 2424\n", None);
        let c = &ctx.config;
        assert!(Backend::for_host(c, "").is_none());
        assert!(Backend::for_host(c, "B1.example").is_none());
        let b = Backend::for_host(c, "B2.example").unwrap().unwrap();
        assert_eq!(b.target(), Target::Tcp("b2.example:2424".into()));
        let v6 = Backend::for_host(c, "2001:db8::2").unwrap().unwrap();
        assert_eq!(v6.target(), Target::Tcp("[2001:db8::2]:2424".into()));
        assert!(Backend::for_host(c, "b2.example:25").unwrap().is_err());
        assert!(Backend::for_host(c, "a b").unwrap().is_err());
    }

    #[test]
    fn replies_are_relayed_with_their_class() {
        let b = Backend {
            host: "b2".into(),
            port: 24,
        };
        let r = |code, enhanced, text: &str| RcptResult {
            address: "x@example.org".into(),
            reply: ServerReply::new(code, enhanced, text),
        };
        let ok = relayed(&r(250, None, "ok"), &b);
        assert_eq!((ok.code(), ok.enhanced()), (250, Some((2, 0, 0).into())));
        // An enhanced code of another class than the reply's is not passed on.
        let odd = relayed(&r(550, Some((2, 0, 0)), "no"), &b);
        assert_eq!(odd.enhanced(), Some((5, 0, 0).into()));
        assert_eq!(relayed(&r(421, None, "bye"), &b).code(), 451);
    }
}
