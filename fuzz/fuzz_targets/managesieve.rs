//! managesieve: the RFC 5804 grammar (`parse::frame` on the raw bytes, with its invariants)
//! and the session on a client's bytes, fed in fuzzer-chosen chunks, with SASL steps, TLS
//! and storage requests answered as the driver would.
//!
//! Input: 8 bytes of settings and driver choices, then the client's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_managesieve::parse::{Command, Framed, Limits, frame};
use postern_managesieve::{
    Action, AuthError, Session, Settings, StoreError, StoreReply, valid_script_name,
};

const HEAD: usize = 8;
const MAX_STEPS: usize = 4_000;

/// xorshift64*: the driver's choices.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// The grammar alone: what `frame` claims about the buffer holds.
fn grammar(text: &[u8], limits: &Limits) {
    let mut rest = text;
    for _ in 0..64 {
        match frame(rest, limits) {
            Framed::Incomplete { need } => {
                assert!(need > rest.len(), "need {need} <= {}", rest.len());
                return;
            }
            Framed::Line { tokens, used } => {
                assert!(used > 0 && used <= rest.len());
                assert_eq!(rest[used - 1], b'\n');
                if let Ok(cmd) = Command::from_tokens(tokens) {
                    let _ = cmd.name();
                }
                rest = &rest[used..];
            }
            Framed::Bad {
                used, line_ended, ..
            } => {
                assert!(used <= rest.len());
                if line_ended {
                    assert!(used > 0 && rest[used - 1] == b'\n');
                } else {
                    assert_eq!(used, rest.len());
                }
                rest = &rest[used..];
            }
            Framed::LiteralTooLarge { size, used } => {
                assert!(size > 0, "an empty literal always fits");
                assert!(used <= rest.len());
                return;
            }
            Framed::LineTooLong => return,
        }
        if rest.is_empty() {
            return;
        }
    }
}

fn check_reply(bytes: &[u8]) {
    assert!(
        bytes.ends_with(b"\r\n"),
        "reply without CRLF: {:?}",
        String::from_utf8_lossy(bytes)
    );
}

fn run(data: &[u8]) {
    let mut head = [0u8; HEAD];
    let split = data.len().min(HEAD);
    head[..split].copy_from_slice(&data[..split]);
    let mut text = &data[split..];
    let mut rng = Rng(u64::from_le_bytes(head) | 1);
    grammar(
        text,
        &Limits {
            max_line: 64 + usize::from(head[1]) * 8,
            max_literal: usize::from(head[2]) * 16,
        },
    );
    // A trusted proxy's XCLIENT is offered (and its arguments passed on) only when enabled.
    let xclient = head[0] & 8 == 8;
    let mut s = Session::new(Settings {
        implementation: "Postern".into(),
        sieve_extensions: "fileinto vacation".into(),
        max_redirects: Some(4),
        starttls: head[0] & 1 == 1,
        secured: head[0] & 2 == 2,
        trusted: head[0] & 4 == 4,
        xclient,
        max_auth_failures: u32::from(head[0] >> 6) + 1,
        max_line: 64 + usize::from(head[1]) * 8,
        max_preauth: 32 + usize::from(head[3]) * 4,
        max_script_size: usize::from(head[2]) * 8,
    });
    let mut queue: Vec<Action> = s.greeting();
    for _ in 0..MAX_STEPS {
        let mut next = Vec::new();
        for action in queue.drain(..) {
            let more = match action {
                Action::Reply(bytes) => {
                    check_reply(&bytes);
                    continue;
                }
                Action::Close => {
                    assert!(s.is_closed());
                    return;
                }
                Action::AuthCancel | Action::Unauthenticated => continue,
                Action::ClientAddress(args) => {
                    assert!(xclient, "XCLIENT taken from a session not offering it");
                    assert!(args.iter().all(|a| !a.contains(['\r', '\n'])), "{args:?}");
                    continue;
                }
                Action::StartTls => s.tls_started(),
                Action::AuthStart { .. } | Action::AuthContinue(_) => match rng.below(4) {
                    0 => s.auth_challenge(b"Username:"),
                    1 => s.auth_done(Err(AuthError::Failed(None))),
                    2 => s.auth_done(Err(AuthError::Temporary("later\r\n".into()))),
                    _ => s.auth_done(Ok("alice@example.org".into())),
                },
                Action::Store(req) => {
                    let name_ok = |n: &str| assert!(valid_script_name(n).is_ok(), "{n:?}");
                    match &req {
                        postern_managesieve::Request::Get(n)
                        | postern_managesieve::Request::Delete(n)
                        | postern_managesieve::Request::SetActive(Some(n)) => name_ok(n),
                        postern_managesieve::Request::Put { name, .. }
                        | postern_managesieve::Request::HaveSpace { name, .. } => name_ok(name),
                        postern_managesieve::Request::Rename { from, to } => {
                            name_ok(from);
                            name_ok(to);
                        }
                        _ => {}
                    }
                    s.stored(match rng.below(5) {
                        0 => Ok(StoreReply::Listed(vec![("a\"b".into(), true)])),
                        1 => Ok(StoreReply::Script(b"keep;\r\n".to_vec())),
                        2 => Ok(StoreReply::Done(Some("w\r\nx".into()))),
                        3 => Err(StoreError::Invalid("line 2: x\nline 3: y".into())),
                        _ => Err(StoreError::TryLater("disk".into())),
                    })
                }
            };
            next.extend(more.expect("the session asked for this completion"));
        }
        if next.is_empty() {
            if text.is_empty() || s.is_closed() {
                break;
            }
            let n = (rng.below(64) as usize + 1).min(text.len());
            let (chunk, rest) = text.split_at(n);
            text = rest;
            next = if rng.below(200) == 0 {
                s.timeout()
            } else {
                s.input(chunk)
            };
        }
        queue = next;
    }
}

fuzz_target!(|data: &[u8]| run(data));
