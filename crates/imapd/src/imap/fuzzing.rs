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
    let sess = session(maildir);
    drive(sess, input, maildir.is_none(), preauth_limit)
}

/// The user [`run_imap`] logs in as.
pub const FUZZ_USER: &str = "fuzz@example.test";
/// The other user whose mailboxes [`run_imap_shared`] shares (`Shared/owner@example.test/…`).
pub const FUZZ_OWNER: &str = "owner@example.test";

/// As [`run_imap`] logged in to `maildir`, with a `Shared/` namespace: `owner` is the
/// Maildir of [`FUZZ_OWNER`] (also found as `Owner@Example.Test`; `remote@example.test` is on
/// another node, every other name does not exist). The owner's INBOX and `Team` (created
/// here) grant the fuzz user `rights` (IMAP letters; unknown ones ignored), Team/Private
/// nothing, and the sharing index (next to `owner`'s Maildir) lists the owner for the user.
pub fn run_imap_shared(input: &[u8], maildir: &Maildir, owner: &Maildir, rights: &str) -> Vec<u8> {
    use postern_maildir::acl::{Identifier, Rights, SharedIndex};
    use std::sync::Arc;

    use super::shared::{Lookup, Owner, SharedState};
    let r: Rights = rights
        .chars()
        .filter_map(Rights::of)
        .fold(Rights::NONE, Rights::union);
    for f in ["Team", "Team/Private"] {
        if !owner.folder_exists(f).unwrap_or(true) {
            let _ = owner.create_folder(f);
        }
    }
    for f in ["INBOX", "Team"] {
        let _ = owner.update_acl(f, |acl| {
            acl.set(false, Identifier::User(FUZZ_USER.into()), r)
        });
    }
    let index_dir = owner.root().parent().unwrap_or(owner.root()).to_path_buf();
    let index = SharedIndex::at(index_dir.join(".shared-mailboxes"), 0o600);
    let _ = index.set_owner(
        FUZZ_OWNER,
        &[format!("user/{FUZZ_USER}")].into_iter().collect(),
    );
    let found = Arc::new(Owner {
        name: FUZZ_OWNER.into(),
        maildir: owner.clone(),
        quota_bytes: Some(10 << 20),
    });
    let mut sess = session(Some(maildir));
    sess.shared = SharedState::new(
        Arc::new(move |name: &str| {
            if name.eq_ignore_ascii_case(FUZZ_OWNER) {
                Lookup::Found(found.clone())
            } else if name == "remote@example.test" {
                Lookup::Remote
            } else {
                Lookup::NotFound
            }
        }),
        Some(index),
    );
    drive(sess, input, false, 0)
}

fn session(maildir: Option<&Maildir>) -> Session {
    let cfg = SessionConfig {
        hostname: "mx.example.test".into(),
        append_limit: 1 << 20,
        starttls: true,
    };
    let mut sess = Session::new(cfg, true, false);
    if let Some(md) = maildir {
        sess.login(User {
            name: FUZZ_USER.into(),
            maildir: md.clone(),
            quota_bytes: Some(10 << 20),
        });
    }
    sess
}

fn drive(mut sess: Session, input: &[u8], preauth: bool, preauth_limit: u64) -> Vec<u8> {
    let mut o = Options::default();
    o.crlf_relaxed = true;
    o.max_literal_size = 1 << 20;
    o.max_command_size = (1 << 20) + 64 * 1024;
    let mut server = Server::new(o, greeting(&sess));
    let mut out = Vec::new();
    if preauth && !PreauthScanner::default().feed(input, preauth_limit.max(256)) {
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
