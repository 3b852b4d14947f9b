//! The server side of the control socket `smtpd` in the run directory: queue control
//! (`mailctl queue`, `mailq`) and local submission (`sendmail`). The protocol (requests,
//! responses, codec, the blocking client) is `postern-control`, whose documentation
//! describes it.
//!
//! Whoever can connect (the socket's group, `postdrop` in the install guide, reached through
//! the setgid `sendmail`) may `submit`; every other request (`list`, `show`, `flush`, `hold`,
//! `release`, `delete`, `delete_from`, `stats`) needs the peer to be root or smtpd's own
//! user, as the queue shows who mails whom. A submission is recorded as authenticated by
//! `uid:N(name)`, the peer's Unix credentials.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use postern_control::{ErrorKind, QueueDetail, QueueEntry};
use postern_control::{
    IDLE_TIMEOUT, MAX_REQUEST_LINE, RecipientInfo, Request, Response, SubmitKind, check_envelope,
    decode_request, encode, normalize_crlf, socket_path, trim_eol,
};
use postern_queue::{Envelope, Filter, Origin, QueueError, QueueId, RcptStatus, Recipient};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Ctx;
use crate::qmgr::{QueueAnswer, QueueCmd};

/// How long the server waits for a submitted message's bytes.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(600);

/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;

/// Received headers beyond which a message is taken to be looping.
const MAX_HOPS: usize = 50;

/// The control protocol's view of a queued message.
pub(crate) trait OfEnvelope {
    /// The view of `env`; `delivering` when an attempt is running.
    fn of(env: &Envelope, delivering: bool) -> Self;
}

impl OfEnvelope for QueueEntry {
    fn of(env: &Envelope, delivering: bool) -> Self {
        let pending: Vec<String> = env.pending().map(|r| r.address.clone()).collect();
        Self {
            id: env.id.to_string(),
            size: env.size,
            arrival: env.arrival,
            sender: env.sender_str().to_owned(),
            recipients: pending,
            held: env.held,
            delivering,
            attempts: env.attempts,
            next_attempt: env.next_attempt,
            last_error: env.last_error.clone(),
        }
    }
}

impl OfEnvelope for QueueDetail {
    fn of(env: &Envelope, delivering: bool) -> Self {
        Self {
            entry: QueueEntry::of(env, delivering),
            recipient_status: env
                .recipients
                .iter()
                .map(|r| RecipientInfo {
                    address: r.address.clone(),
                    status: match &r.status {
                        RcptStatus::Pending => "pending".into(),
                        RcptStatus::Delivered => "delivered".into(),
                        RcptStatus::Bounced { .. } => "bounced".into(),
                    },
                    last_reply: match &r.status {
                        RcptStatus::Bounced { reply } => Some(reply.to_string()),
                        _ => r.last_reply.as_ref().map(ToString::to_string),
                    },
                    orcpt: r.orcpt.clone(),
                })
                .collect(),
            authenticated: env.authenticated.clone(),
            client_ip: env.client_ip.clone(),
            helo: env.helo.clone(),
            origin: env.origin.clone(),
            headers: None,
        }
    }
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A whole line, without its `\n`.
    Text(Vec<u8>),
    /// The peer closed the connection (a partial last line is dropped).
    Eof,
    /// The line is longer than the limit (what was read of it is discarded).
    TooLong,
}

/// Reads one `\n`-terminated line of at most `max` bytes, never buffering more than that.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> io::Result<Line> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(Line::Eof);
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            if line.len() + i > max {
                return Ok(Line::TooLong);
            }
            line.extend_from_slice(&buf[..i]);
            r.consume(i + 1);
            return Ok(Line::Text(line));
        }
        let n = buf.len();
        if line.len() + n > max {
            return Ok(Line::TooLong);
        }
        line.extend_from_slice(buf);
        r.consume(n);
    }
}

// ---------------------------------------------------------------------------------------
// The server

/// Binds the control socket (mode 0660), logging `listening on PATH`.
pub(crate) fn bind(config: &postern_config::Config) -> anyhow::Result<(UnixListener, PathBuf)> {
    let path = socket_path(config);
    let spec = &config.smtpd.control_socket;
    let l = postern_daemon::bind_unix(
        &path,
        spec.mode_bits()?,
        spec.owner.as_deref(),
        spec.group.as_deref(),
    )?;
    info!("listening on {}", path.display());
    Ok((l, path))
}

/// Serves the control socket until `shutdown`, then lets connections in flight finish (a
/// submission being committed) for a while, and removes the socket.
pub(crate) async fn serve(
    listener: UnixListener,
    path: PathBuf,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
) {
    let gate = postern_daemon::accept::UnixGate {
        name: "control",
        limit: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        when_full: postern_daemon::accept::WhenFull::Refuse(Arc::from(encode(&Response::fail(
            ErrorKind::TempFail,
            "too many control connections",
        )))),
    };
    let conns = postern_daemon::accept::Sessions::default();
    postern_daemon::accept::serve_unix(listener, gate, conns.clone(), shutdown.clone(), |stream| {
        connection(stream, ctx.clone(), shutdown.clone())
    })
    .await;
    drop(std::fs::remove_file(&path));
    let mut conns = conns.lock().await;
    postern_daemon::finish_within(&mut conns, crate::SHUTDOWN_GRACE, "control connections").await;
}

/// The peer's credentials.
struct Peer {
    uid: u32,
    /// The user name of `uid`, when it has one.
    name: Option<String>,
    /// `uid:N(name)`.
    identity: String,
    /// Root or smtpd's own user.
    admin: bool,
}

async fn peer_of(stream: &UnixStream) -> Option<Peer> {
    let cred = stream.peer_cred().ok()?;
    let uid = cred.uid();
    let name = tokio::task::spawn_blocking(move || {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
    })
    .await
    .ok()
    .flatten();
    let identity = match &name {
        Some(n) => format!("uid:{uid}({n})"),
        None => format!("uid:{uid}"),
    };
    let me = nix::unistd::geteuid().as_raw();
    Some(Peer {
        uid,
        name,
        identity,
        admin: uid == 0 || uid == me,
    })
}

async fn connection(stream: UnixStream, ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let Some(peer) = peer_of(&stream).await else {
        return;
    };
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        let line = tokio::select! {
            _ = shutdown.cancelled() => return,
            l = tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut r, MAX_REQUEST_LINE)) => l,
        };
        let line = match line {
            Ok(Ok(Line::Text(l))) => l,
            Ok(Ok(Line::TooLong)) => {
                let resp = Response::fail(ErrorKind::Usage, "request line too long");
                drop(w.write_all(&encode(&resp)).await);
                return;
            }
            _ => return,
        };
        if trim_eol(&line).is_empty() {
            continue;
        }
        let (resp, keep) = match decode_request(&line) {
            Err(e) => (Response::fail(ErrorKind::Usage, e), true),
            Ok(Request::Submit {
                sender,
                recipients,
                size,
                kind,
                on_behalf_of,
            }) => {
                let what = (kind, on_behalf_of);
                submit(&ctx, &peer, sender, recipients, size, what, &mut r, &mut w).await
            }
            Ok(req) => (queue_request(&ctx, &peer, req).await, true),
        };
        let written =
            tokio::time::timeout(IDLE_TIMEOUT, async { w.write_all(&encode(&resp)).await }).await;
        if !matches!(written, Ok(Ok(()))) || !keep {
            return;
        }
    }
}

fn parse_id(id: &str) -> Result<QueueId, Box<Response>> {
    id.trim()
        .parse()
        .map_err(|e| Box::new(Response::fail(ErrorKind::Usage, format!("{id:?}: {e}"))))
}

async fn queue_request(ctx: &Ctx, peer: &Peer, req: Request) -> Response {
    // Everything but submission is the administrator's: the queue shows who mails whom.
    if !peer.admin {
        return Response::fail(
            ErrorKind::Denied,
            format!(
                "uid {} may only submit mail here (the queue is for root and smtpd's own user)",
                peer.uid
            ),
        );
    }
    if req == Request::Stats {
        return Response {
            ok: true,
            stats: Some(ctx.checks.stats.snapshot()),
            ..Response::default()
        };
    }
    let (cmd, want_headers) = match req {
        Request::List {
            sender,
            recipient,
            domain,
        } => (
            QueueCmd::List(Filter {
                sender,
                recipient,
                domain,
            }),
            false,
        ),
        Request::Show { id, headers } => match parse_id(&id) {
            Ok(id) => (QueueCmd::Show(id), headers),
            Err(r) => return *r,
        },
        Request::Flush { id } => match id.as_deref().map(parse_id).transpose() {
            Ok(id) => (QueueCmd::Flush(id), false),
            Err(r) => return *r,
        },
        Request::Hold { id } => match parse_id(&id) {
            Ok(id) => (QueueCmd::Hold(id), false),
            Err(r) => return *r,
        },
        Request::Release { id } => match parse_id(&id) {
            Ok(id) => (QueueCmd::Release(id), false),
            Err(r) => return *r,
        },
        Request::Delete { id } => match parse_id(&id) {
            Ok(id) => (QueueCmd::Delete(id), false),
            Err(r) => return *r,
        },
        Request::DeleteFrom { sender } => (QueueCmd::DeleteFrom(sender), false),
        Request::Stats | Request::Submit { .. } => {
            return Response::fail(ErrorKind::Usage, "submit is not a queue command");
        }
    };
    match ctx.queue.control(cmd).await {
        Err((kind, e)) => Response::fail(kind, e),
        Ok(QueueAnswer::List(messages)) => Response {
            ok: true,
            count: Some(messages.len()),
            messages: Some(messages),
            ..Response::default()
        },
        Ok(QueueAnswer::Show(mut detail)) => {
            if want_headers && let Ok(id) = detail.entry.id.parse::<QueueId>() {
                let spool = ctx.queue.committer.spool().clone();
                detail.headers =
                    match tokio::task::spawn_blocking(move || spool.read_message(id)).await {
                        Ok(Ok(m)) => Some(header_of(&m)),
                        Ok(Err(e)) if e.is_not_found() => {
                            return Response::fail(ErrorKind::NotFound, format!("no message {id}"));
                        }
                        Ok(Err(e)) => return Response::fail(ErrorKind::TempFail, e.to_string()),
                        Err(e) => return Response::fail(ErrorKind::TempFail, e.to_string()),
                    };
            }
            Response {
                ok: true,
                id: Some(detail.entry.id.clone()),
                message: Some(*detail),
                ..Response::default()
            }
        }
        Ok(QueueAnswer::Done { text, id, count }) => Response {
            ok: true,
            text: Some(text),
            id: id.map(|i| i.to_string()),
            count: Some(count),
            ..Response::default()
        },
    }
}

/// The header of a message (up to the empty line), as text.
fn header_of(message: &[u8]) -> String {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|i| i + 1))
        .unwrap_or(message.len());
    String::from_utf8_lossy(&message[..end]).into_owned()
}

/// Counts `Received:` fields in the header.
fn hops(message: &[u8]) -> usize {
    message
        .split(|&b| b == b'\n')
        .take_while(|l| !l.is_empty() && *l != b"\r")
        .filter(|l| l.len() >= 9 && l[..9].eq_ignore_ascii_case(b"received:"))
        .count()
}
/// How a local submission of `kind` by `peer` enters the queue, or why it may not.
fn submit_origin(
    config: &postern_config::Config,
    peer: &Peer,
    kind: SubmitKind,
    on_behalf_of: Option<String>,
) -> Result<Origin, Box<Response>> {
    if kind == SubmitKind::Local {
        return Ok(Origin::Local {
            uid: peer.uid,
            user: peer.name.clone(),
        });
    }
    let listed = config.smtpd.forward_users.iter().any(|u| {
        let u = u.trim();
        u == peer.uid.to_string() || peer.name.as_deref() == Some(u)
    });
    if !peer.admin && !listed {
        warn!(user = %peer.identity, ?kind, "forwarding submission refused: not in [smtpd] forward_users");
        return Err(Box::new(Response::fail(
            ErrorKind::Denied,
            format!(
                "uid {} may not hand over forwarded mail (only root, smtpd's own user and [smtpd] forward_users)",
                peer.uid
            ),
        )));
    }
    let user = on_behalf_of
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty());
    match kind {
        SubmitKind::AutoReply => match user {
            Some(user) => Ok(Origin::AutoReply { user }),
            None => Err(Box::new(Response::fail(
                ErrorKind::Usage,
                "auto_reply needs on_behalf_of",
            ))),
        },
        _ => Ok(Origin::Forward { by: user }),
    }
}

/// Local submission: checks the envelope, answers go-ahead, reads `size` bytes, commits.
/// Returns the final response and whether the connection can go on.
#[allow(clippy::too_many_arguments)]
async fn submit<R, W>(
    ctx: &Ctx,
    peer: &Peer,
    sender: Option<String>,
    recipients: Vec<String>,
    size: u64,
    (kind, on_behalf_of): (SubmitKind, Option<String>),
    r: &mut R,
    w: &mut W,
) -> (Response, bool)
where
    R: AsyncBufRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let c = &ctx.config;
    let origin = match submit_origin(c, peer, kind, on_behalf_of) {
        Ok(o) => o,
        Err(resp) => return (*resp, true),
    };
    let (sender, recipients) = match check_envelope(
        sender.as_deref(),
        &recipients,
        &c.hostname,
        c.smtpd.max_recipients,
    ) {
        Ok(x) => x,
        Err(resp) => return (*resp, true),
    };
    if size > c.smtpd.max_message_size {
        return (
            Response::fail(
                ErrorKind::TooLarge,
                format!(
                    "message of {size} bytes is larger than the limit of {} bytes",
                    c.smtpd.max_message_size
                ),
            ),
            true,
        );
    }
    if !matches!(
        tokio::time::timeout(
            IDLE_TIMEOUT,
            w.write_all(&encode(&Response::done("go ahead")))
        )
        .await,
        Ok(Ok(()))
    ) {
        return (Response::fail(ErrorKind::TempFail, "write failed"), false);
    }
    let mut body = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 20));
    let mut limited = (&mut *r).take(size);
    match tokio::time::timeout(MESSAGE_TIMEOUT, limited.read_to_end(&mut body)).await {
        Ok(Ok(n)) if n as u64 == size => {}
        Ok(Ok(_)) | Ok(Err(_)) => {
            return (
                Response::fail(
                    ErrorKind::Usage,
                    "connection closed before the whole message",
                ),
                false,
            );
        }
        Err(_) => {
            return (
                Response::fail(ErrorKind::TempFail, "timed out reading the message"),
                false,
            );
        }
    }
    let body = normalize_crlf(&body);
    // Results claiming to be ours, and our own markers, come only from us (as on port 25).
    let body = match crate::checks::spf_dkim_dmarc::strip_forged(&body, &c.hostname) {
        Some(clean) => {
            info!(user = %peer.identity, "removed a forged Authentication-Results or X-Postern- header");
            clean
        }
        None => body,
    };
    if hops(&body) > MAX_HOPS {
        return (
            Response::fail(ErrorKind::Data, "too many Received headers: mail loop"),
            true,
        );
    }
    let mut env = Envelope::new(
        sender.clone(),
        recipients.iter().map(Recipient::new).collect(),
    );
    env.authenticated = Some(peer.identity.clone());
    env.origin = Some(origin);
    env.smtputf8 =
        !sender.as_deref().unwrap_or("").is_ascii() || recipients.iter().any(|a| !a.is_ascii());
    env.body_8bit = !body.is_ascii();
    env.id = ctx.queue.committer.reserve_id();
    let mut message = format!(
        "Received: from local uid {} by {} (Postern) with local id {};\r\n\t{}\r\n",
        peer.uid,
        c.hostname,
        env.id,
        mail_builder::headers::date::Date::now().to_rfc822()
    )
    .into_bytes();
    message.extend_from_slice(&body);
    drop(body);
    match ctx.queue.committer.commit(env, message).await {
        Ok(env) => {
            info!(id = %env.id, from = env.sender_str(), rcpts = env.recipients.len(), size = env.size,
                user = %peer.identity, "queued (local submission)");
            let id = env.id;
            ctx.queue.enqueue(env);
            let mut resp = Response::done(format!("queued as {id}"));
            resp.id = Some(id.to_string());
            (resp, true)
        }
        Err(QueueError::TooLarge { .. }) => (
            Response::fail(ErrorKind::TooLarge, "message too big for system"),
            true,
        ),
        Err(e) => {
            warn!(error = %e, "queue commit failed (local submission)");
            (
                Response::fail(
                    ErrorKind::TempFail,
                    "local error in processing, try again later",
                ),
                true,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_control::{Client, ClientError, decode_response};
    use std::path::Path;

    #[tokio::test]
    async fn bounded_lines() {
        let data: &[u8] = b"short\nthis one is far too long\nlast";
        let mut r = BufReader::with_capacity(4, data);
        assert_eq!(
            read_line(&mut r, 10).await.unwrap(),
            Line::Text(b"short".to_vec())
        );
        assert_eq!(read_line(&mut r, 10).await.unwrap(), Line::TooLong);
        let mut r = BufReader::new(&b"abc"[..]);
        assert_eq!(read_line(&mut r, 10).await.unwrap(), Line::Eof);
        let mut r = BufReader::new(&b"0123456789\n"[..]);
        assert_eq!(
            read_line(&mut r, 10).await.unwrap(),
            Line::Text(b"0123456789".to_vec())
        );
    }

    #[test]
    fn headers_and_hops() {
        assert_eq!(header_of(b"A: 1\r\nB: 2\r\n\r\nbody"), "A: 1\r\nB: 2\r\n");
        assert_eq!(
            hops(b"Received: a\r\nreceived: b\r\n\r\nReceived: c\r\n"),
            2
        );
    }

    /// Calls `f` until it is not `busy` (a delivery attempt in flight).
    fn retry_busy(c: &mut Client, req: &Request) -> Response {
        for _ in 0..100 {
            let r = c.request(req).unwrap();
            if r.kind != Some(ErrorKind::Busy) {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("still busy");
    }

    /// Regression (issue 11 §1): forwarded mail is marked as such only when lmtp-deliver's
    /// user (or root, or smtpd's own) hands it over; any other local user gets `denied`.
    #[test]
    fn only_forward_users_may_hand_over_forwarded_mail() {
        let config = postern_config::Config::parse(
            "hostname = \"mx.example\"\n[smtpd]\nforward_users = [\"vmail\", \"5001\"]\n",
            Path::new("/nonexistent"),
        )
        .unwrap();
        let peer = |uid: u32, name: &str, admin: bool| Peer {
            uid,
            name: Some(name.to_owned()),
            identity: format!("uid:{uid}({name})"),
            admin,
        };
        let mallory = peer(1000, "mallory", false);
        assert_eq!(
            submit_origin(&config, &mallory, SubmitKind::Local, None).unwrap(),
            Origin::Local {
                uid: 1000,
                user: Some("mallory".into())
            }
        );
        for kind in [SubmitKind::Forward, SubmitKind::AutoReply] {
            let e = submit_origin(&config, &mallory, kind, Some("a@b".into())).unwrap_err();
            assert_eq!(e.kind, Some(ErrorKind::Denied), "{e:?}");
        }
        let vmail = peer(5000, "vmail", false);
        assert_eq!(
            submit_origin(&config, &vmail, SubmitKind::Forward, Some("a@b".into())).unwrap(),
            Origin::Forward {
                by: Some("a@b".into())
            }
        );
        let by_uid = peer(5001, "other", false);
        assert!(submit_origin(&config, &by_uid, SubmitKind::Forward, None).is_ok());
        let root = peer(0, "root", true);
        assert_eq!(
            submit_origin(&config, &root, SubmitKind::AutoReply, Some("a@b".into())).unwrap(),
            Origin::AutoReply { user: "a@b".into() }
        );
        let e = submit_origin(&config, &root, SubmitKind::AutoReply, None).unwrap_err();
        assert_eq!(e.kind, Some(ErrorKind::Usage));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn control_server_in_process() {
        let dir = tempfile::tempdir().unwrap();
        let config = postern_config::Config::parse(
            "hostname = \"mx.example\"\n[paths]\nrun_dir = \"run\"\nstate_dir = \"state\"\n\
             [smtpd]\nlisten = []\nsubmission = []\nsubmissions = []\nmax_message_size = 1000\n",
            dir.path(),
        )
        .unwrap();
        let listeners = crate::bind(&config).await.unwrap();
        let path = socket_path(&config);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o660
        );
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(crate::run(config, listeners, shutdown.clone()));
        let p = path.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = Client::connect(&p, Duration::from_secs(10)).unwrap();
            // Submission: bare names get @hostname, line ends become CRLF.
            let r = c
                .submit(
                    Some("alice"),
                    &["bob@example.org".into(), "root".into()],
                    b"Subject: hi\n\nbody\n",
                )
                .unwrap();
            assert!(r.ok, "{r:?}");
            let id = r.id.clone().unwrap();
            let r = c
                .request(&Request::List {
                    sender: None,
                    recipient: Some("root@".into()),
                    domain: None,
                })
                .unwrap();
            let list = r.messages.unwrap();
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].id, id);
            assert_eq!(list[0].sender, "alice@mx.example");
            assert_eq!(list[0].recipients, ["bob@example.org", "root@mx.example"]);
            let r = c
                .request(&Request::Show {
                    id: id.clone(),
                    headers: true,
                })
                .unwrap();
            let d = r.message.unwrap();
            let me = nix::unistd::geteuid().as_raw();
            assert!(
                d.authenticated
                    .as_deref()
                    .unwrap()
                    .starts_with(&format!("uid:{me}"))
            );
            let h = d.headers.unwrap();
            assert!(
                h.starts_with(&format!(
                    "Received: from local uid {me} by mx.example (Postern) with local id "
                )),
                "{h}"
            );
            assert!(h.ends_with("Subject: hi\r\n"), "{h}");
            // Hold, flush refused while held, release, delete.
            let r = retry_busy(&mut c, &Request::Hold { id: id.clone() });
            assert!(r.ok, "{r:?}");
            let r = c
                .request(&Request::List {
                    sender: None,
                    recipient: None,
                    domain: None,
                })
                .unwrap();
            assert!(r.messages.unwrap()[0].held);
            let r = c
                .request(&Request::Flush {
                    id: Some(id.clone()),
                })
                .unwrap();
            assert_eq!(r.kind, Some(ErrorKind::Usage));
            assert!(c.request(&Request::Release { id: id.clone() }).unwrap().ok);
            let r = retry_busy(&mut c, &Request::Delete { id: id.clone() });
            assert!(r.ok, "{r:?}");
            let r = c
                .request(&Request::Show {
                    id: id.clone(),
                    headers: false,
                })
                .unwrap();
            assert_eq!(r.kind, Some(ErrorKind::NotFound));
            // Delete by sender.
            for _ in 0..3 {
                assert!(c.submit(None, &["x@y.org".into()], b"a\r\n").unwrap().ok);
            }
            let r = retry_busy(
                &mut c,
                &Request::DeleteFrom {
                    sender: "<>".into(),
                },
            );
            assert!(r.ok, "{r:?}");
            // Refusals.
            let r = c.submit(None, &["x@y.org".into()], &[b'a'; 1001]).unwrap();
            assert_eq!(r.kind, Some(ErrorKind::TooLarge));
            let r = c.submit(None, &["a b@c".into()], b"x").unwrap();
            assert_eq!(r.kind, Some(ErrorKind::BadAddress));
            let r = c.request(&Request::Hold { id: "nope".into() }).unwrap();
            assert_eq!(r.kind, Some(ErrorKind::Usage));
        })
        .await
        .unwrap();
        // A bad line gets an error and the connection goes on.
        let mut s = UnixStream::connect(&path).await.unwrap();
        s.write_all(b"hello\n{\"op\":\"list\"}\n").await.unwrap();
        let mut r = BufReader::new(s);
        let Line::Text(l) = read_line(&mut r, 1 << 20).await.unwrap() else {
            panic!()
        };
        assert_eq!(decode_response(&l).unwrap().kind, Some(ErrorKind::Usage));
        let Line::Text(l) = read_line(&mut r, 1 << 20).await.unwrap() else {
            panic!()
        };
        let resp = decode_response(&l).unwrap();
        assert!(resp.ok);
        shutdown.cancel();
        server.await.unwrap().unwrap();
        assert!(!path.exists());
        assert!(matches!(
            Client::connect(&path, Duration::from_secs(1)),
            Err(ClientError::NotRunning(..))
        ));
    }
}
