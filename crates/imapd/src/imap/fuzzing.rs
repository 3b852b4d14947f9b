//! Entry points for the fuzz targets in `fuzz/` (not an API: nothing else may use them).
//!
//! [`run_imap`] drives the same path a connection takes — imap-next's `Server` decoding the
//! bytes (literals included), the session running each command, and, for lines imap-codec
//! refuses, the extension parsers of `cmd/ext.rs` — without sockets, authd or
//! TLS: LOGIN, AUTHENTICATE, STARTTLS and COMPRESS are answered `NO`.

use imap_codec::imap_types::command::CommandBody;
use imap_next::server::{Error as ServerError, Event, Options, Server};
use imap_next::{Interrupt, Io, State};
use postern_maildir::Maildir;

use super::cmd::ext;
use super::idle::Idle;
use super::resp;
use super::session::{Flow, Session, SessionConfig, User};
use super::{MAX_BAD, PreauthScanner, greeting, recover_tag, status};

/// Most events handled per run (a bound on the work one input can cause).
const MAX_EVENTS: usize = 10_000;

/// Runs `input` as the bytes a client sent, on a session logged in to `maildir` (or not
/// logged in when `maildir` is `None`); returns what the server wrote.
pub fn run_imap(input: &[u8], maildir: Option<&Maildir>, preauth_limit: u64) -> Vec<u8> {
    let cfg = SessionConfig {
        hostname: "mx.example.test".into(),
        append_limit: 1 << 20,
        starttls: true,
    };
    let mut sess = Session::new(cfg, true, false);
    if let Some(md) = maildir {
        sess.login(User {
            name: "fuzz@example.test".into(),
            maildir: md.clone(),
            quota_bytes: Some(10 << 20),
        });
    }
    let mut o = Options::default();
    o.crlf_relaxed = true;
    o.max_literal_size = 1 << 20;
    o.max_command_size = (1 << 20) + 64 * 1024;
    let mut server = Server::new(o, greeting(&sess));
    let mut out = Vec::new();
    if maildir.is_none() && !PreauthScanner::default().feed(input, preauth_limit.max(256)) {
        out.extend_from_slice(&sess.greeting());
        out.extend_from_slice(b"* BYE [LIMIT] Command too long\r\n");
        return out;
    }
    // In pieces, as the driver feeds it.
    let mut pending = super::input::Input::default();
    pending.set(input.to_vec());
    let mut bad = 0u32;
    for _ in 0..MAX_EVENTS {
        let flow = match server.next() {
            Ok(Event::CommandReceived { command }) => {
                bad = 0;
                let tag = command.tag.inner().to_owned();
                match command.body {
                    CommandBody::StartTLS | CommandBody::Compress { .. } => {
                        resp::tagged(&mut out, &tag, "NO", None, "Not here");
                        Flow::Continue
                    }
                    CommandBody::Login { .. } if !sess.is_authenticated() => {
                        resp::tagged(&mut out, &tag, "NO", None, "Not here");
                        Flow::Continue
                    }
                    _ => {
                        let mut f = sess.handle(command, &mut out);
                        let mut rounds = 0;
                        while f == Flow::More && rounds < MAX_EVENTS {
                            f = sess.resume(&mut out);
                            rounds += 1;
                        }
                        f
                    }
                }
            }
            Ok(Event::CommandAuthenticateReceived {
                command_authenticate,
            }) => {
                if let Some(st) = status("NO", &command_authenticate.tag, None, "Not here") {
                    let _ = server.authenticate_finish(st);
                }
                Flow::Continue
            }
            Ok(Event::AuthenticateDataReceived { .. }) => Flow::Continue,
            Ok(Event::IdleCommandReceived { tag }) => {
                match sess.idle(tag.inner()) {
                    Idle::Accept { .. } => {
                        if let Ok(ccr) =
                            imap_codec::imap_types::response::CommandContinuationRequest::basic(
                                None, "idling",
                            )
                        {
                            let _ = server.idle_accept(ccr);
                        }
                        sess.idle_wake(&mut out);
                    }
                    Idle::Refuse(t) => {
                        if let Some(st) = t.status(&tag) {
                            let _ = server.idle_reject(st);
                        }
                    }
                }
                Flow::Continue
            }
            Ok(Event::IdleDoneReceived) => {
                sess.idle_end(&mut out);
                Flow::Continue
            }
            Ok(Event::GreetingSent { .. } | Event::ResponseSent { .. }) => Flow::Continue,
            Err(Interrupt::Io(Io::Output(b))) => {
                out.extend_from_slice(&b);
                Flow::Continue
            }
            Err(Interrupt::Io(Io::NeedMoreInput)) => match pending.next_piece() {
                Some(piece) => {
                    server.enqueue_input(piece);
                    Flow::Continue
                }
                None => break,
            },
            Err(Interrupt::Error(e)) => {
                bad += 1;
                on_error(e, &mut sess, &mut out);
                if bad >= MAX_BAD {
                    Flow::Close
                } else {
                    Flow::Continue
                }
            }
        };
        if flow == Flow::Close {
            break;
        }
    }
    out
}

/// What `Driver::on_error` does with a command imap-next refused.
fn on_error(e: ServerError, sess: &mut Session, out: &mut Vec<u8>) {
    match e {
        ServerError::MalformedMessage { discarded_bytes }
        | ServerError::ExpectedCrlfGotLf { discarded_bytes } => {
            let raw = discarded_bytes.declassify().to_vec();
            if sess.is_authenticated()
                && let Some(job) = ext::reparse(&raw)
            {
                let mut f = job(sess, out);
                let mut rounds = 0;
                while f == Flow::More && rounds < MAX_EVENTS {
                    f = sess.resume(out);
                    rounds += 1;
                }
                return;
            }
            match recover_tag(&raw) {
                Some(t) => resp::tagged(out, &t, "BAD", None, "Syntax error"),
                None => resp::untagged(out, "BAD Syntax error"),
            }
        }
        ServerError::LiteralTooLong { .. } => {}
        ServerError::CommandTooLong { discarded_bytes } => {
            match recover_tag(discarded_bytes.declassify()) {
                Some(t) => resp::tagged(out, &t, "BAD", Some("TOOBIG"), "Command too long"),
                None => resp::untagged(out, "BAD [TOOBIG] Command too long"),
            }
        }
    }
}

/// The extension parsers alone (what [`run_imap`] reaches only for commands imap-codec
/// refuses).
pub fn reparse(raw: &[u8]) -> bool {
    ext::reparse(raw).is_some()
}

/// The MULTIAPPEND/CATENATE command parser, the IMAP URL parser and the CREATE USE parser
/// alone, asserting their invariants (panics on a violation).
pub fn append_ext(raw: &[u8]) {
    super::cmd::multiappend::fuzz_check(raw);
}

/// The literal-announcement scanner used before login.
pub fn preauth_scan(input: &[u8], limit: u64) -> bool {
    PreauthScanner::default().feed(input, limit)
}
